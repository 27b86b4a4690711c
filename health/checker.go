// Package health decides whether each Keycloak node may take traffic. It
// checks every server's management port (Keycloak's /health/ready, with
// /health/started and /health/live to tell a starting or a dead node from
// one that is merely not ready), optionally probes the traffic port (the
// realm's OpenID configuration, multi-site /lb-check, a client-credentials
// token request) and compares the nodes' cluster views from /metrics.
//
// Verdicts go through rise/fall counters (Keycloak's recommended
// load-balancer settings: inter 5s, fall 3, rise 2) into a Sink, normally
// the *backend.Pool: "server X is now up, down, dead or starting, because
// ...", and nothing else. The pool fires the OnHealth hook that logs
// transitions and ramps a returning server's weight (slow start). Passive
// ejection lives in the pool and marks a server Down; the checker never
// overrides it and requires Rise fresh passes to bring an ejected server
// back. Only the checker's liveness verdict marks a server Dead.
package health

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kclb/kclb/internal/backend"
)

// Sink receives the checker's verdicts; it is the checker's only way to
// change anything. *backend.Pool satisfies it.
type Sink interface {
	// CompareAndSetHealth records h and d for s only if s's health is
	// still old, and reports whether it did.
	CompareAndSetHealth(s *backend.Server, old, h backend.Health, d backend.Detail) bool
}

var _ Sink = (*backend.Pool)(nil)

// Checker runs active health checks on every server that has a management
// address. Create it with New; it does nothing until Run.
type Checker struct {
	opts    Options
	sink    Sink
	servers func() []*backend.Server
	client  *http.Client
	log     *slog.Logger
	// resync is how often Run looks for added and removed servers.
	resync time.Duration

	mu sync.Mutex // guards views
	// views holds each server's latest cluster size, for split detection.
	views map[*backend.Server]clusterSize

	// active counts running server goroutines (for tests).
	active atomic.Int64
}

// clusterSize is one node's view of the cluster at a point in time.
type clusterSize struct {
	size int
	at   time.Time
}

// New returns a checker for the servers that list returns (called on
// every resync, so membership may change at runtime), reporting to sink.
// It fails when opts is invalid or the CA file cannot be loaded.
func New(list func() []*backend.Server, sink Sink, opts Options) (*Checker, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	client, err := newClient(o)
	if err != nil {
		return nil, err
	}
	return &Checker{
		opts:    o,
		sink:    sink,
		servers: list,
		client:  client,
		log:     o.Logger.With("component", "health"),
		resync:  min(o.Interval, time.Second),
		views:   make(map[*backend.Server]clusterSize),
	}, nil
}

// Run checks servers until ctx is cancelled, then waits for every check
// goroutine to stop and returns nil. Each server with a management address
// gets one goroutine, so at most one check per server is in flight;
// servers that appear later get one at the next resync (within
// min(Interval, 1s)); servers that disappear lose theirs. Run must not be called twice at the same time.
func (c *Checker) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	workers := make(map[*backend.Server]context.CancelFunc)
	defer func() {
		for _, cancel := range workers {
			cancel()
		}
		wg.Wait()
		c.client.CloseIdleConnections()
	}()
	for {
		present := make(map[*backend.Server]bool)
		for _, s := range c.servers() {
			if s.Mgmt() == "" {
				continue
			}
			present[s] = true
			if _, ok := workers[s]; ok {
				continue
			}
			wctx, cancel := context.WithCancel(ctx)
			workers[s] = cancel
			w := c.newWorker(s)
			c.active.Add(1)
			wg.Go(func() {
				defer c.active.Add(-1)
				w.run(wctx)
			})
		}
		for s, cancel := range workers {
			if !present[s] {
				cancel()
				delete(workers, s)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.opts.Clock.After(c.resync):
		}
	}
}

// nextInterval is Interval spread by ±Jitter.
func (c *Checker) nextInterval() time.Duration {
	if c.opts.Jitter == 0 {
		return c.opts.Interval
	}
	f := 1 + c.opts.Jitter*(2*rand.Float64()-1)
	return time.Duration(float64(c.opts.Interval) * f)
}

// firstDelay spreads the first rounds over Jitter×Interval.
func (c *Checker) firstDelay() time.Duration {
	return time.Duration(float64(c.opts.Interval) * c.opts.Jitter * rand.Float64())
}

// recordView stores s's cluster size and compares it with the fresh views
// of the other nodes. The majority is the most common size (ties go to the
// larger view); at least two views are needed to judge.
func (c *Checker) recordView(s *backend.Server, size int, now time.Time) (split bool, majority int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.views[s] = clusterSize{size: size, at: now}
	counts := make(map[int]int)
	n := 0
	for _, v := range c.views {
		if now.Sub(v.at) > 3*c.opts.Interval {
			continue
		}
		counts[v.size]++
		n++
	}
	if n < 2 {
		return false, size
	}
	best, bestN := 0, 0
	for sz, k := range counts {
		if k > bestN || (k == bestN && sz > best) {
			best, bestN = sz, k
		}
	}
	return size != best, best
}

func (c *Checker) forgetView(s *backend.Server) {
	c.mu.Lock()
	delete(c.views, s)
	c.mu.Unlock()
}

// worker is the check loop of one server. Its fields belong to its
// goroutine.
type worker struct {
	c *Checker
	s *backend.Server
	m *machine

	tokenRan  bool
	tokenNext time.Time
	token     probeResult

	route       string
	lastOutcome string
}

func (c *Checker) newWorker(s *backend.Server) *worker {
	return &worker{c: c, s: s, m: newMachine(c.opts.Rise, c.opts.Fall)}
}

func (w *worker) run(ctx context.Context) {
	defer w.c.forgetView(w.s)
	clk := w.c.opts.Clock
	next := clk.Now().Add(w.c.firstDelay())
	for {
		now := clk.Now()
		if d := next.Sub(now); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-clk.After(d):
			}
			now = clk.Now()
		}
		if ctx.Err() != nil {
			return
		}
		w.round(ctx, now)
		next = now.Add(w.c.nextInterval())
	}
}

// round runs one check round and records its verdict.
func (w *worker) round(ctx context.Context, now time.Time) {
	c, s := w.c, w.s
	start := time.Now()
	res := c.readiness(ctx, s)
	if res.ok && c.opts.WellKnown {
		if r := c.wellKnown(ctx, s); !r.ok {
			res = r
		}
	}
	if res.ok && c.opts.LBCheck {
		if r := c.lbCheck(ctx, s); !r.ok {
			res = r
		}
	}
	if res.ok && c.opts.TokenProbe.ClientID != "" {
		// While the last token request failed, retry every round, so a
		// single failure costs one round and a lasting one fails Fall
		// rounds in a row.
		if !w.tokenRan || !w.token.ok || !now.Before(w.tokenNext) {
			w.token = c.tokenProbe(ctx, s)
			w.tokenRan = true
			w.tokenNext = now.Add(c.opts.TokenProbe.Interval)
		}
		if !w.token.ok {
			res = w.token
		}
	}
	split := false
	mgmtLive := res.ok || res.class != backend.HealthDead
	if mgmtLive && (c.opts.ClusterCheck != ClusterOff || c.opts.OnRoute != nil) {
		split = w.cluster(ctx, now, &res)
	}
	latency := time.Since(start)
	if ctx.Err() != nil {
		return // shutting down: a cancelled round proves nothing
	}
	if c.opts.Observe != nil {
		c.opts.Observe(s, latency, res.ok)
	}
	w.apply(res, split, latency, now)
}

// cluster reads the node's cluster view, learns its route and flags a
// split; in eject mode a split fails the round.
func (w *worker) cluster(ctx context.Context, now time.Time, res *probeResult) bool {
	c, s := w.c, w.s
	sample, err := c.clusterView(ctx, s)
	if err != nil {
		c.forgetView(s)
		c.log.Debug("cluster view unavailable", "server", s.Name(), "err", err)
		return false
	}
	if sample.Node != "" && sample.Node != w.route {
		w.route = sample.Node
		if c.opts.OnRoute != nil {
			c.opts.OnRoute(sample.Node, s)
		}
	}
	if c.opts.ClusterCheck == ClusterOff {
		return false
	}
	split, majority := c.recordView(s, sample.Size, now)
	if split && c.opts.ClusterCheck == ClusterEject && res.ok {
		*res = fail(backend.HealthDown, "cluster split: node %q sees %d members, the majority sees %d", clip(sample.Node), sample.Size, majority)
	}
	return split
}

// apply feeds the round's verdict to the state machine and records the
// result in the sink.
func (w *worker) apply(res probeResult, split bool, latency time.Duration, now time.Time) {
	s, m := w.s, w.m
	cur := s.Health()
	to := m.step(cur, verdict{ok: res.ok, class: res.class})

	d := s.Detail()
	d.LastCheck = now
	d.LastLatency = latency
	d.LastResult = res.reason
	d.Passes, d.Fails = m.passes, m.fails
	d.FailingSince = ""
	if !res.ok {
		d.FailingSince = res.failingSince
	}
	d.Split = split
	switch {
	case to != cur && res.ok:
		d.Reason = fmt.Sprintf("%s (%d consecutive passes)", res.reason, m.passes)
	case to != cur:
		d.Reason = fmt.Sprintf("%s (%d consecutive failures)", res.reason, m.fails)
	case to != backend.HealthUp && !res.ok && !m.external:
		d.Reason = res.reason
	case d.Reason == "":
		d.Reason = res.reason
	}
	if c := w.c; c.sink.CompareAndSetHealth(s, cur, to, d) {
		m.recorded(to)
	}
	if outcome := res.reason; outcome != w.lastOutcome {
		w.lastOutcome = outcome
		w.c.log.Debug("health check", "server", s.Name(), "ok", res.ok, "result", res.reason,
			"latency", latency, "passes", m.passes, "fails", m.fails, "split", split)
	}
}
