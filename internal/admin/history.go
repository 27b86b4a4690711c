package admin

import (
	"sync"
	"time"

	"github.com/kclb/kclb/internal/backend"
)

// HistoryLen is the number of health-check results kept per server for
// ServerStatus.History.
const HistoryLen = 20

// history keeps, per server name, the last health-check results and the
// time the server spent not up since start (the stats page's check
// history and downtime). Memory is bounded by the number of servers:
// names no longer in the pool are forgotten at the next snapshot.
type history struct {
	mu      sync.Mutex // guards servers
	servers map[string]*serverHistory
}

// serverHistory is one server's record.
type serverHistory struct {
	checks [HistoryLen]CheckResult // ring, next is the oldest once full
	next   int
	n      int
	// downSince is when the server left up, zero while it is up;
	// downTotal is the time spent not up before that; downs counts the
	// transitions out of up.
	downSince time.Time
	downTotal time.Duration
	downs     uint64
	lastDown  time.Time
}

func (h *history) get(name string) *serverHistory {
	if h.servers == nil {
		h.servers = map[string]*serverHistory{}
	}
	sh := h.servers[name]
	if sh == nil {
		sh = &serverHistory{}
		h.servers[name] = sh
	}
	return sh
}

// check records one check result of name.
func (h *history) check(name string, at time.Time, latency time.Duration, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	sh := h.get(name)
	sh.checks[sh.next] = CheckResult{Time: at, OK: ok, LatencyMillis: float64(latency.Microseconds()) / 1000}
	sh.next = (sh.next + 1) % HistoryLen
	sh.n = min(sh.n+1, HistoryLen)
}

// health records a health transition of name at at.
func (h *history) health(name string, from, to backend.Health, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	sh := h.get(name)
	switch {
	case from == backend.HealthUp && to != backend.HealthUp:
		sh.downSince, sh.lastDown = at, at
		sh.downs++
	case from != backend.HealthUp && to == backend.HealthUp && !sh.downSince.IsZero():
		sh.downTotal += at.Sub(sh.downSince)
		sh.downSince = time.Time{}
	}
}

// fill adds name's history to st at now.
func (h *history) fill(st *ServerStatus, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	sh := h.servers[st.Name]
	if sh == nil {
		return
	}
	down := sh.downTotal
	if !sh.downSince.IsZero() {
		down += max(now.Sub(sh.downSince), 0)
	}
	st.DowntimeSeconds, st.Downs = down.Seconds(), sh.downs
	if !sh.lastDown.IsZero() {
		t := sh.lastDown
		st.LastDown = &t
	}
	st.History = make([]CheckResult, 0, sh.n)
	for i := range sh.n {
		st.History = append(st.History, sh.checks[(sh.next-sh.n+i+HistoryLen)%HistoryLen])
	}
}

// prune forgets the servers not named in live.
func (h *history) prune(live []*backend.Server) {
	h.mu.Lock()
	defer h.mu.Unlock()
	keep := make(map[string]bool, len(live))
	for _, s := range live {
		keep[s.Name()] = true
	}
	for n := range h.servers {
		if !keep[n] {
			delete(h.servers, n)
		}
	}
}

// ObserveCheck records one active health-check round of s for the
// status's check history (it matches health.Options.Observe).
func (s *Server) ObserveCheck(srv *backend.Server, latency time.Duration, ok bool) {
	s.history.check(srv.Name(), time.Now(), latency, ok)
}

// ObserveHealth records a health transition of srv for the status's
// downtime (call it from the pool's OnHealth hook).
func (s *Server) ObserveHealth(srv *backend.Server, from, to backend.Health) {
	s.history.health(srv.Name(), from, to, time.Now())
}
