// Package balancer chooses a backend server for a new client. Policies are
// values behind the one-method Selector interface; they only read the
// pool's per-server state through Server.Available and Server.Weight.
package balancer

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"

	"github.com/kclb/kclb/internal/backend"
)

// Selector picks a server for r among servers, skipping those in tried
// (servers this request already failed on). It returns nil when no
// server is eligible. Implementations must be safe for concurrent use.
type Selector interface {
	Select(r *http.Request, servers []*backend.Server, tried *Tried) *backend.Server
}

// maxTried bounds how many attempts one request records; kclb's retries
// are capped well below it.
const maxTried = 8

// Tried is the set of servers a request has already been sent to. The zero
// value is empty; it lives on the stack of the request handler and never
// allocates.
type Tried struct {
	list [maxTried]*backend.Server
	n    int
}

// Add records s. Beyond the capacity the oldest entries stay and s is
// dropped, which only means s may be chosen again.
func (t *Tried) Add(s *backend.Server) {
	if t.n < maxTried {
		t.list[t.n] = s
		t.n++
	}
}

// Has reports whether s was recorded. A nil *Tried is empty.
func (t *Tried) Has(s *backend.Server) bool {
	if t == nil {
		return false
	}
	for i := range t.n {
		if t.list[i] == s {
			return true
		}
	}
	return false
}

// Len returns the number of recorded servers.
func (t *Tried) Len() int {
	if t == nil {
		return 0
	}
	return t.n
}

// eligible reports whether s may take a new client for this request.
func eligible(s *backend.Server, tried *Tried) bool {
	return s.Available() && !tried.Has(s)
}

// New returns the policy called name: "round_robin" or "least_request".
func New(name string) (Selector, error) {
	switch name {
	case "round_robin":
		return &RoundRobin{}, nil
	case "least_request", "":
		return LeastRequest{}, nil
	}
	return nil, fmt.Errorf("balancer: unknown policy %q", name)
}

// RoundRobin is smooth weighted round robin (each server's share is its
// weight, interleaved rather than in bursts). The zero value is ready.
type RoundRobin struct {
	mu      sync.Mutex // guards current
	current []rrWeight
}

// rrWeight is one server's current weight in the smooth round robin.
type rrWeight struct {
	s *backend.Server
	c int
}

// slot returns the index of s in current, adding s at weight zero when it
// is new. The servers slice keeps its order between calls, so the entry at
// hint (the server's index in that slice) is checked first and the lookup
// is one comparison in the steady state.
func (rr *RoundRobin) slot(s *backend.Server, hint int) int {
	if hint < len(rr.current) && rr.current[hint].s == s {
		return hint
	}
	for i := range rr.current {
		if rr.current[i].s == s {
			return i
		}
	}
	rr.current = append(rr.current, rrWeight{s: s})
	return len(rr.current) - 1
}

// Select implements Selector. The lock covers one loop over the servers
// with no map operation and, once every server has a slot, no allocation.
func (rr *RoundRobin) Select(_ *http.Request, servers []*backend.Server, tried *Tried) *backend.Server {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if len(rr.current) > 2*len(servers)+8 {
		// Servers left the pool: forget them.
		clear(rr.current)
		rr.current = rr.current[:0]
	}
	best := -1
	total := 0
	for i, s := range servers {
		if !eligible(s, tried) {
			continue
		}
		w := s.Weight()
		total += w
		j := rr.slot(s, i)
		rr.current[j].c += w
		if best < 0 || rr.current[j].c > rr.current[best].c {
			best = j
		}
	}
	if best < 0 {
		return nil
	}
	rr.current[best].c -= total
	return rr.current[best].s
}

// LeastRequest picks two eligible servers at random and sends the request
// to the one with fewer in-flight requests per unit of weight (power of
// two choices). The zero value is ready.
type LeastRequest struct{}

// Select implements Selector.
func (LeastRequest) Select(_ *http.Request, servers []*backend.Server, tried *Tried) *backend.Server {
	var buf [64]*backend.Server
	cand := buf[:0]
	for _, s := range servers {
		if eligible(s, tried) {
			cand = append(cand, s)
		}
	}
	switch len(cand) {
	case 0:
		return nil
	case 1:
		return cand[0]
	}
	i := rand.IntN(len(cand))
	j := rand.IntN(len(cand) - 1)
	if j >= i {
		j++
	}
	a, b := cand[i], cand[j]
	// Compare (inflight+1)/weight without division.
	if (a.InFlight()+1)*int64(b.Weight()) <= (b.InFlight()+1)*int64(a.Weight()) {
		return a
	}
	return b
}

var (
	_ Selector = (*RoundRobin)(nil)
	_ Selector = LeastRequest{}
)
