package admin

import (
	"context"
	"sync"
	"time"

	"github.com/kclb/kclb/internal/backend"
)

// recentSlots is the number of one-second samples kept per server: the
// status reports the requests of the last recentSlots-1 seconds.
const recentSlots = 11

// RecentWindow is the window of ServerStatus.RecentRequests.
const RecentWindow = (recentSlots - 1) * time.Second

// recent keeps the last request counter samples of every server, so the
// status can tell how many requests (new and pinned clients) a server
// started lately: the approximate number of active affinity clients.
type recent struct {
	mu    sync.Mutex // guards rings
	rings map[*backend.Server]*ring
}

// ring is a circular buffer of request counter samples.
type ring struct {
	v    [recentSlots]uint64
	next int // index of the next write
	n    int // samples stored, at most recentSlots
}

// sample records the request counters of servers and forgets servers no
// longer listed.
func (r *recent) sample(servers []*backend.Server) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rings == nil {
		r.rings = map[*backend.Server]*ring{}
	}
	live := make(map[*backend.Server]bool, len(servers))
	for _, s := range servers {
		live[s] = true
		rg := r.rings[s]
		if rg == nil {
			rg = &ring{}
			r.rings[s] = rg
		}
		rg.v[rg.next] = s.Counters().Requests
		rg.next = (rg.next + 1) % recentSlots
		rg.n = min(rg.n+1, recentSlots)
	}
	for s := range r.rings {
		if !live[s] {
			delete(r.rings, s)
		}
	}
}

// requests returns how many requests s started between its oldest kept
// sample and now, and false before the first sample.
func (r *recent) requests(s *backend.Server) (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rg := r.rings[s]
	if rg == nil || rg.n == 0 {
		return 0, false
	}
	oldest := rg.v[(rg.next-rg.n+recentSlots)%recentSlots]
	cur := s.Counters().Requests
	if cur < oldest {
		return 0, true
	}
	return cur - oldest, true
}

// Run samples the servers' request counters every second (for
// ServerStatus.RecentRequests) until ctx ends. It returns nil then.
func (s *Server) Run(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	s.recent.sample(s.opts.Pool.Servers())
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.recent.sample(s.opts.Pool.Servers())
		}
	}
}
