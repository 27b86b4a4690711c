// Package backend holds the Keycloak servers kclb forwards to and the
// per-server state that every routing policy reads: health, admin state,
// load counters and the effective weight.
//
// A Server is shared by the proxy (which counts in-flight requests), the
// balancer and affinity policies (which call Available and AcceptsPinned),
// the health checker (which reports through Pool.CompareAndSetHealth) and
// the operator interface (which reads Snapshot and sets admin states). All
// hot fields are atomics, so reading them never takes a lock.
//
// Slow start lives here too: a server that becomes Up, or joins a running
// pool Up, ramps its weight from 0 to full over the pool's Slowstart. The
// weight is a pure function of the time since the ramp began, so nothing
// ticks and the balancer reads it without locks or allocations.
package backend

import (
	"sync"
	"sync/atomic"
	"time"
)

// AdminState is the operator's intent for a server. The zero value is
// AdminReady.
type AdminState uint32

const (
	// AdminReady: the server takes new clients and pinned clients.
	AdminReady AdminState = iota
	// AdminDrain: no new clients; clients pinned to the server by
	// affinity keep reaching it so logins in progress finish.
	AdminDrain
	// AdminMaint: no traffic at all; pinned clients are redispatched.
	AdminMaint
)

// String returns "ready", "drain" or "maint".
func (a AdminState) String() string {
	switch a {
	case AdminReady:
		return "ready"
	case AdminDrain:
		return "drain"
	case AdminMaint:
		return "maint"
	}
	return "unknown"
}

// ParseAdminState is the inverse of AdminState.String.
func ParseAdminState(s string) (AdminState, bool) {
	switch s {
	case "ready":
		return AdminReady, true
	case "drain":
		return AdminDrain, true
	case "maint":
		return AdminMaint, true
	}
	return 0, false
}

// Health is what the health checker last concluded about a server.
type Health uint32

const (
	// HealthUp: the server is ready for traffic. New servers start Up
	// (like HAProxy) so a fresh kclb serves before its first check round;
	// the first failed checks take them out after `fall` failures.
	HealthUp Health = iota
	// HealthDown: readiness failed (or passive detection ejected it) but
	// the server may still be live; panic mode may route to it.
	HealthDown
	// HealthDead: the active checks found the server not even live
	// (management port refusing, or /health/live failing). Never used,
	// not even in panic mode. Passive detection never sets it.
	HealthDead
	// HealthStarting: the server reports that it is still starting.
	HealthStarting
)

// String returns "up", "down", "dead" or "starting".
func (h Health) String() string {
	switch h {
	case HealthUp:
		return "up"
	case HealthDown:
		return "down"
	case HealthDead:
		return "dead"
	case HealthStarting:
		return "starting"
	}
	return "unknown"
}

// Spec is the static description of a server, taken from configuration or
// discovery.
type Spec struct {
	// Name identifies the server in logs, the status API and admin
	// commands. Required and unique within a pool.
	Name string
	// Addr is the traffic address, host:port (hostnames allowed).
	Addr string
	// Mgmt is the management address (Keycloak's port 9000), host:port.
	// Empty disables active checks for this server.
	Mgmt string
	// Route is the Keycloak node name that appears as the AUTH_SESSION_ID
	// suffix. Empty means "learn it".
	Route string
	// Weight is the relative share of new clients, 1..MaxWeight (1000).
	// Zero means DefaultWeight (100).
	Weight int
	// MaxConn caps concurrent requests to the server; further requests
	// wait in a bounded queue. Zero means unlimited.
	MaxConn int
	// Backup makes the server a backup (HAProxy's "backup"): in a pool
	// it takes traffic only while no other server is Up and ready.
	Backup bool
}

// Server is one Keycloak node with its live state. Create servers with
// NewServer or through a Pool; the zero value is not usable.
type Server struct {
	spec Spec

	inflight     atomic.Int64
	queued       atomic.Int64
	requests     atomic.Uint64
	errors       atomic.Uint64
	redispatches atomic.Uint64
	passiveFails atomic.Int64 // consecutive passive failures
	// ejected is set while the server is Down by a passive ejection; any
	// later health transition clears it. Written under the pool's lock.
	ejected atomic.Bool
	lastUse atomic.Int64 // unix nanos of the last request start

	health atomic.Uint32 // Health
	admin  atomic.Uint32 // AdminState
	// rampFrom is when slow start began, in unix nanoseconds; 0 when the
	// server is not ramping (the usual case, which Weight answers without
	// reading the clock). Set under the pool's lock; Weight clears it
	// once the ramp is over.
	rampFrom atomic.Int64
	// slowstart is shared with the pool: the ramp's length in
	// nanoseconds, 0 for none. Nil outside a pool (no slow start).
	slowstart *atomic.Int64

	// slots bounds concurrency when MaxConn > 0.
	slots chan struct{}

	panic *atomic.Bool // shared with the pool: panic mode in force
	// backups is shared with the pool: backup servers are in use. Nil
	// outside a pool (a backup server is then an ordinary one).
	backups *atomic.Bool

	mu sync.Mutex // guards the fields below
	// detail is the health checker's latest report, for the status API.
	detail Detail
}

// Detail is the health checker's explanation of a server's state, kept
// for operators (kclb status).
type Detail struct {
	// Reason says why the server has its current health, e.g.
	// `check "Keycloak database connections async health check" DOWN`.
	Reason string
	// Since is when the health state last changed.
	Since time.Time
	// LastCheck is when the last active check completed.
	LastCheck time.Time
	// LastLatency is the duration of the last active check.
	LastLatency time.Duration
	// LastResult is a short description of the last check outcome.
	LastResult string
	// Passes and Fails count consecutive check results.
	Passes, Fails int
	// FailingSince is Keycloak's own "Failing since" for a failing check.
	FailingSince string
	// Split is set when the node's cluster view disagrees with the
	// majority of nodes.
	Split bool
}

// NewServer returns a server in state Up/Ready with full weight. panicFlag
// may be nil for a server outside any pool.
func NewServer(spec Spec, panicFlag *atomic.Bool) *Server {
	if spec.Weight <= 0 {
		spec.Weight = DefaultWeight
	}
	if panicFlag == nil {
		panicFlag = new(atomic.Bool)
	}
	s := &Server{spec: spec, panic: panicFlag}
	if spec.MaxConn > 0 {
		s.slots = make(chan struct{}, spec.MaxConn)
	}
	s.detail.Since = time.Now()
	return s
}

// Name returns the server's configured name.
func (s *Server) Name() string { return s.spec.Name }

// Addr returns the traffic address (host:port).
func (s *Server) Addr() string { return s.spec.Addr }

// Mgmt returns the management address (host:port), or "" if none.
func (s *Server) Mgmt() string { return s.spec.Mgmt }

// Backup reports whether the server is a backup server.
func (s *Server) Backup() bool { return s.spec.Backup }

// Route returns the configured Keycloak route, or "".
func (s *Server) Route() string { return s.spec.Route }

// Spec returns the static description the server was created from.
func (s *Server) Spec() Spec { return s.spec }

// Health returns the current health verdict.
func (s *Server) Health() Health { return Health(s.health.Load()) }

// Admin returns the operator's admin state.
func (s *Server) Admin() AdminState { return AdminState(s.admin.Load()) }

// SetAdmin sets the admin state. Pools use it; operators go through
// Pool.SetAdmin so that availability edges are reported.
func (s *Server) SetAdmin(a AdminState) { s.admin.Store(uint32(a)) }

// routable reports whether health allows traffic: Up, or Down while the
// pool is in panic mode; a backup server only while backups are in use.
func (s *Server) routable() bool {
	if s.spec.Backup && s.backups != nil && !s.backups.Load() {
		return false
	}
	switch Health(s.health.Load()) {
	case HealthUp:
		return true
	case HealthDown, HealthStarting:
		return s.panic.Load()
	}
	return false
}

// Available reports whether the server may receive a new client: healthy
// (or live in panic mode) and admin state ready. Every balancing policy
// calls this one predicate.
func (s *Server) Available() bool {
	return AdminState(s.admin.Load()) == AdminReady && s.routable()
}

// AcceptsPinned reports whether a client already pinned to the server
// (by affinity) may keep using it: like Available, but a draining server
// still accepts.
func (s *Server) AcceptsPinned() bool {
	return AdminState(s.admin.Load()) != AdminMaint && s.routable()
}

// Weight returns the effective weight: the configured weight, or, during
// slow start, the configured weight scaled by the share of the ramp that
// has passed, at least 1. Outside a ramp it reads no clock.
func (s *Server) Weight() int {
	from := s.rampFrom.Load()
	if from == 0 {
		return s.spec.Weight
	}
	var ramp int64
	if s.slowstart != nil {
		ramp = s.slowstart.Load()
	}
	w, done := rampWeight(s.spec.Weight, time.Duration(time.Now().UnixNano()-from), time.Duration(ramp))
	if done {
		s.rampFrom.CompareAndSwap(from, 0) // a new ramp may have begun meanwhile
	}
	return w
}

// rampWeight is the slow-start weight of a server of configured weight
// after elapsed of a ramp lasting slowstart: weight×elapsed/slowstart, at
// least 1, and weight itself (done) once elapsed reaches slowstart or
// slowstart is not positive. It is a pure function of its arguments.
func rampWeight(weight int, elapsed, slowstart time.Duration) (w int, done bool) {
	if slowstart <= 0 || elapsed >= slowstart {
		return weight, true
	}
	w = int(int64(weight) * int64(max(elapsed, 0)) / int64(slowstart))
	return max(w, 1), false
}

// InFlight returns the number of requests currently forwarded to the
// server.
func (s *Server) InFlight() int64 { return s.inflight.Load() }

// Queued returns the number of requests waiting for a connection slot.
func (s *Server) Queued() int64 { return s.queued.Load() }

// LastUse returns when the server last started a request (zero if never).
func (s *Server) LastUse() time.Time {
	n := s.lastUse.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Counters is a point-in-time copy of a server's traffic counters.
type Counters struct {
	Requests, Errors, Redispatches uint64
	InFlight, Queued               int64
}

// Counters returns the server's traffic counters.
func (s *Server) Counters() Counters {
	return Counters{
		Requests:     s.requests.Load(),
		Errors:       s.errors.Load(),
		Redispatches: s.redispatches.Load(),
		InFlight:     s.inflight.Load(),
		Queued:       s.queued.Load(),
	}
}

// Detail returns the health checker's latest explanation.
func (s *Server) Detail() Detail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.detail
}

// CountRedispatch records that a request pinned to or first tried on this
// server was sent elsewhere.
func (s *Server) CountRedispatch() { s.redispatches.Add(1) }
