// Package ratelimit limits the request rate of client addresses on chosen
// paths (Keycloak's credential endpoints above all) in bounded memory.
//
// Each Rule keeps a fixed-size, set-associative table of client keys
// (Options.Entries, default 65536, in buckets of 8 ways); its size never
// grows, whatever the number of client addresses. A key's whole state is
// one theoretical arrival time (the generic cell rate algorithm, GCRA,
// equivalent to a token bucket of Burst tokens refilled at Limit per Per).
// A new key takes a slot in its bucket that has fully refilled (an empty
// slot or a client that has been quiet long enough: forgetting it changes
// nothing); if none has, it takes the slot of the client closest to fully
// refilled, so the clients deepest in debt, the ones being limited, are
// the last to be forgotten. Memory is 24 bytes per entry plus a mutex per
// bucket: 1.6 MiB per rule at the default size.
//
// Checking a request allocates nothing: paths are matched segment by
// segment on the canonical path, the key is the client address (IPv6
// aggregated to a prefix), hashed with a per-Limiter random seed so that
// nobody can aim addresses at one bucket.
//
// golang.org/x/time/rate is one limiter; a keyed table with a memory bound
// is not in it, so the table is this package's own.
package ratelimit

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Rule is one rate limit: requests whose canonical path lies under one of
// Paths and whose method is one of Methods count against their client
// key's allowance of Limit per Per, with bursts of up to Burst.
type Rule struct {
	// Name identifies the rule in metrics and logs. Required.
	Name string
	// Paths are path patterns: "/"-separated segments where "*" stands
	// for any one non-empty segment. A path matches when its leading
	// segments equal the pattern's (ASCII case folded, as the path policy
	// matches), so "/realms/*/protocol/openid-connect/token" covers the
	// token endpoint of every realm and everything below it. "/" matches
	// every path. At least one.
	Paths []string
	// Methods the rule applies to, such as "POST". Empty means every
	// method.
	Methods []string
	// Limit requests per Per are the sustained rate. Both required (> 0).
	Limit int
	Per   time.Duration
	// Burst is how many requests an idle client may send at once.
	// Default 1 (no burst beyond the rate).
	Burst int
	// IPv6Prefix aggregates IPv6 clients to networks of this length (a
	// client usually holds a whole /64). Default 64; 1..128.
	IPv6Prefix int
	// Exempt are client networks the rule never limits. Nil means none.
	Exempt []netip.Prefix
}

// Options configures a Limiter.
type Options struct {
	// Rules are checked in order; every rule that matches a request
	// counts it. Empty gives a Limiter that never limits.
	Rules []Rule
	// Entries is the number of client keys each rule remembers, rounded
	// up to a power of two. Default 65536.
	Entries int
	// Start is the earliest time Check will be given. Zero means the
	// time of New.
	Start time.Time
}

// DefaultEntries is the table size of a rule when Options.Entries is 0.
const DefaultEntries = 1 << 16

// ways is the bucket size of the tables.
const ways = 8

// Decision is the outcome of Check. The zero value allows the request.
type Decision struct {
	// Limited is true when the request must be refused (429).
	Limited bool
	// RetryAfter is when the client may try again (Limited only).
	RetryAfter time.Duration
	// Rule names the rule that refused the request (Limited only).
	Rule string
}

// RetryAfterSeconds is RetryAfter in whole seconds, rounded up, at least
// 1: the value of a Retry-After header.
func (d Decision) RetryAfterSeconds() int64 {
	s := int64((d.RetryAfter + time.Second - 1) / time.Second)
	return max(s, 1)
}

// RuleStats are the counters of one rule.
type RuleStats struct {
	// Name is the rule's name.
	Name string
	// Limited counts the requests the rule refused.
	Limited uint64
	// Entries is the rule's fixed table size (the bound on the clients
	// it remembers).
	Entries int
}

// Limiter checks requests against a set of rules. It is safe for
// concurrent use. A nil *Limiter never limits.
type Limiter struct {
	rules []*rule
	epoch time.Time
}

type rule struct {
	name     string
	paths    []pattern
	methods  []string
	interval int64 // nanoseconds between requests at the sustained rate
	tau      int64 // burst tolerance: Burst * interval
	v6bits   int
	exempt   []netip.Prefix
	table    table
	limited  atomic.Uint64
}

// pattern is a compiled path pattern: its segments, "*" for a wildcard.
type pattern []string

// New builds a Limiter. It returns an error naming the rule when a rule
// is invalid.
func New(o Options) (*Limiter, error) {
	entries := o.Entries
	if entries <= 0 {
		entries = DefaultEntries
	}
	start := o.Start
	if start.IsZero() {
		start = time.Now()
	}
	// One second before the start, so that no time Check sees is 0 (the
	// marker of an empty slot).
	l := &Limiter{epoch: start.Add(-time.Second)}
	seen := make(map[string]bool)
	for i, r := range o.Rules {
		cr, err := compile(r)
		if err != nil {
			return nil, fmt.Errorf("ratelimit: rule %d (%q): %w", i, r.Name, err)
		}
		if seen[r.Name] {
			return nil, fmt.Errorf("ratelimit: rule %d: name %q is used twice", i, r.Name)
		}
		seen[r.Name] = true
		cr.table = newTable(entries)
		l.rules = append(l.rules, cr)
	}
	return l, nil
}

// compile checks r and turns it into a rule without its table.
func compile(r Rule) (*rule, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	burst := r.Burst
	if burst == 0 {
		burst = DefaultBurst
	}
	v6 := r.IPv6Prefix
	if v6 == 0 {
		v6 = DefaultIPv6Prefix
	}
	cr := &rule{name: r.Name, v6bits: v6}
	for _, p := range r.Paths {
		pat, err := ParsePattern(p)
		if err != nil {
			return nil, err
		}
		cr.paths = append(cr.paths, pat)
	}
	cr.methods = append(cr.methods, r.Methods...)
	cr.interval = max(int64(r.Per)/int64(r.Limit), 1)
	hi, lo := bits.Mul64(uint64(cr.interval), uint64(burst))
	if hi != 0 || lo > 1<<62 {
		return nil, fmt.Errorf("burst %d at one request per %s is too long a window", burst, time.Duration(cr.interval))
	}
	cr.tau = int64(lo)
	for _, p := range r.Exempt {
		cr.exempt = append(cr.exempt, p.Masked())
	}
	return cr, nil
}

// ParsePattern checks and compiles a path pattern: it starts with "/",
// has no empty segment except a trailing slash (ignored), and "*" only as
// a whole segment.
func ParsePattern(s string) (pattern, error) {
	if msg := PatternProblem(s); msg != "" {
		return nil, fmt.Errorf("path %q %s", s, msg)
	}
	body := strings.TrimSuffix(s[1:], "/")
	if body == "" {
		return pattern{}, nil
	}
	return strings.Split(body, "/"), nil
}

// match reports whether the canonical path lies under p. It scans the
// path once, byte by byte (segments are short: a call per segment costs
// more than the comparison).
func (p pattern) match(path string) bool {
	if path == "" || path[0] != '/' {
		return false
	}
	i := 1
	for _, want := range p {
		j := i
		for j < len(path) && path[j] != '/' {
			j++
		}
		if j == i {
			return false // an empty segment, or the path ended
		}
		if want != "*" && !foldEqual(path[i:j], want) {
			return false
		}
		i = j + 1
	}
	return true
}

// foldEqual is strings.EqualFold for ASCII (paths are matched with ASCII
// case folding, like the path policy).
func foldEqual(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for k := 0; k < len(a); k++ {
		x, y := a[k], b[k]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// applies reports whether r counts a request for path and method.
func (r *rule) applies(path, method string) bool {
	if len(r.methods) > 0 {
		found := false
		for _, m := range r.methods {
			if m == method {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	for _, p := range r.paths {
		if p.match(path) {
			return true
		}
	}
	return false
}

func (r *rule) exempted(a netip.Addr) bool {
	for _, p := range r.exempt {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Check counts a request for the canonical path with method from client,
// arrived at now (the caller's clock reading, monotonic from time.Now),
// against every rule that applies, and says whether it must be refused.
// When several rules refuse, the longest RetryAfter is returned. A time
// before Options.Start counts as the start.
func (l *Limiter) Check(path, method string, client netip.Addr, now time.Time) Decision {
	if l == nil || len(l.rules) == 0 {
		return Decision{}
	}
	client = client.Unmap().WithZone("")
	var d Decision
	t := max(int64(now.Sub(l.epoch)), 1)
	for _, r := range l.rules {
		if !r.applies(path, method) || r.exempted(client) {
			continue
		}
		if wait, ok := r.table.take(keyOf(client, r.v6bits), t, r.interval, r.tau); !ok {
			r.limited.Add(1)
			if w := time.Duration(wait); !d.Limited || w > d.RetryAfter {
				d = Decision{Limited: true, RetryAfter: w, Rule: r.name}
			}
		}
	}
	return d
}

// Stats returns every rule's counters, in rule order.
func (l *Limiter) Stats() []RuleStats {
	if l == nil {
		return nil
	}
	out := make([]RuleStats, len(l.rules))
	for i, r := range l.rules {
		out[i] = RuleStats{Name: r.name, Limited: r.limited.Load(), Entries: len(r.table.buckets) * ways}
	}
	return out
}

// key is a client key: the 16-byte form of the (aggregated) address.
type key struct{ hi, lo uint64 }

func keyOf(a netip.Addr, v6bits int) key {
	if a.Is6() && v6bits < 128 {
		if p, err := a.Prefix(v6bits); err == nil {
			a = p.Addr()
		}
	}
	b := a.As16()
	return key{
		hi: uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 | uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7]),
		lo: uint64(b[8])<<56 | uint64(b[9])<<48 | uint64(b[10])<<40 | uint64(b[11])<<32 | uint64(b[12])<<24 | uint64(b[13])<<16 | uint64(b[14])<<8 | uint64(b[15]),
	}
}

// entry is one remembered client: its key and theoretical arrival time
// (0: the slot is empty).
type entry struct {
	k   key
	tat int64
}

// bucket is one set of the table.
type bucket struct {
	mu sync.Mutex // guards e
	e  [ways]entry
}

// table is a fixed-size set-associative map from client key to arrival
// time.
type table struct {
	buckets []bucket
	seed    [2]uint64 // random hash keys
}

func newTable(entries int) table {
	n := 1
	for n*ways < entries {
		n <<= 1
	}
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand panics rather)
	return table{buckets: make([]bucket, n), seed: [2]uint64{binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])}}
}

// hash mixes k with the table's random keys (two rounds of wyhash's
// multiply-fold): unpredictable without the keys, so bucket collisions
// cannot be aimed.
func (t *table) hash(k key) uint64 {
	hi, lo := bits.Mul64(k.hi^t.seed[0], k.lo^t.seed[1])
	hi, lo = bits.Mul64(hi^lo^0x9e3779b97f4a7c15, t.seed[0]^0xe7037ed1a0b428db)
	return hi ^ lo
}

// take applies GCRA to k at time now: it reports whether a request may
// pass and, if not, how long until one may.
func (t *table) take(k key, now, interval, tau int64) (wait int64, ok bool) {
	h := t.hash(k)
	b := &t.buckets[h&uint64(len(t.buckets)-1)]
	b.mu.Lock()
	defer b.mu.Unlock()
	slot := -1
	for i := range b.e {
		if b.e[i].tat != 0 && b.e[i].k == k {
			slot = i
			break
		}
	}
	if slot < 0 {
		// A slot whose client has fully refilled (or an empty one), or
		// else the one closest to it.
		slot = 0
		for i := range b.e {
			if b.e[i].tat <= now {
				slot = i
				break
			}
			if b.e[i].tat < b.e[slot].tat {
				slot = i
			}
		}
		b.e[slot] = entry{k: k, tat: now}
	}
	e := &b.e[slot]
	tat := max(e.tat, now)
	next := tat + interval
	if next-now > tau {
		return next - now - tau, false
	}
	e.tat = next
	return 0, true
}
