package admin

import (
	"time"

	"github.com/kclb/kclb/affinity"
	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/proxy"
)

// Status is the body of GET /v1/status.
type Status struct {
	// Name is the instance name ([global] name).
	Name string `json:"name"`
	// Version is the kclb build version.
	Version string `json:"version"`
	// Started is when the process started; UptimeSeconds is the time since.
	Started       time.Time `json:"started"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	// Authorized tells the caller whether it may change admin states
	// (always true on the Unix socket; a valid bearer token over TCP).
	Authorized bool `json:"authorized"`
	// Panic is true while the pool routes to servers that are down but
	// live because too few are up.
	Panic bool `json:"panic"`
	// AnyAvailable is true when at least one server takes new clients.
	AnyAvailable bool `json:"any_available"`
	// Listeners are the public listeners.
	Listeners []Listener `json:"listeners"`
	// Servers are the backend servers in pool order.
	Servers []ServerStatus `json:"servers"`
	// VRRP lists the VRRP instances; absent when VRRP is off.
	VRRP []VRRPStatus `json:"vrrp,omitempty"`
	// Proxy holds the request handler's counters; absent if unknown.
	Proxy *ProxyStatus `json:"proxy,omitempty"`
	// Affinity holds the affinity counters; absent when affinity is off.
	Affinity *AffinityStatus `json:"affinity,omitempty"`
	// Pair is the pair channel's view; absent without a [pair].
	Pair *PairStatus `json:"pair,omitempty"`
}

// ProxyStatus are the request handler's counters since the last reload.
type ProxyStatus struct {
	Requests     uint64 `json:"requests"`
	Blocked      uint64 `json:"blocked"`
	Retries      uint64 `json:"retries"`
	NoServer     uint64 `json:"no_server"`
	QueueFull    uint64 `json:"queue_full"`
	BadGateway   uint64 `json:"bad_gateway"`
	Timeouts     uint64 `json:"timeouts"`
	ClientAborts uint64 `json:"client_aborts"`
	Truncated    uint64 `json:"truncated"`
}

// proxyStatus converts the handler's counters.
func proxyStatus(p proxy.Stats) *ProxyStatus {
	return &ProxyStatus{Requests: p.Requests, Blocked: p.Blocked, Retries: p.Retries, NoServer: p.NoServer,
		QueueFull: p.QueueFull, BadGateway: p.BadGateway, Timeouts: p.Timeouts, ClientAborts: p.ClientAborts,
		Truncated: p.Truncated}
}

// Listener is one public listener.
type Listener struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	TLS  bool   `json:"tls"`
}

// VRRPStatus is one VRRP instance as the status API shows it.
type VRRPStatus struct {
	Name string `json:"name"`
	// State is "init", "backup", "master" or "fault".
	State string `json:"state"`
	// Priority is the effective priority after tracking.
	Priority           int  `json:"priority"`
	ConfiguredPriority int  `json:"configured_priority"`
	Healthy            bool `json:"healthy"`
	// Health is the tracked health: "ok", "degraded" (panic mode,
	// priority - track_weight) or "down" (priority - 2 x track_weight).
	Health string `json:"health,omitempty"`
	// Standby is true during a planned handover (kclb handover): the
	// effective priority is 1 until kclb handover --back.
	Standby     bool      `json:"standby,omitempty"`
	Master      string    `json:"master,omitempty"`
	Since       time.Time `json:"since"`
	Transitions uint64    `json:"transitions"`
	// AdvertsSent, AdvertsReceived (valid) and AdvertsAsMaster (received
	// from another router while Master) count adverts; Resignations the
	// priority-0 adverts received.
	AdvertsSent     uint64 `json:"adverts_sent"`
	AdvertsReceived uint64 `json:"adverts_received"`
	AdvertsAsMaster uint64 `json:"adverts_received_as_master"`
	Resignations    uint64 `json:"resignations"`
	// Errors counts failed side effects (VIP changes, ARP, hooks, sends).
	Errors uint64 `json:"errors"`
	// Drops counts dropped packets by reason; only non-zero reasons.
	Drops map[string]uint64 `json:"drops,omitempty"`
	// MaxTimerLagMillis is the largest delay of a timer so far.
	MaxTimerLagMillis float64 `json:"max_timer_lag_ms"`
}

// AffinityStatus summarises the affinity counters.
type AffinityStatus struct {
	// Hits counts decisions by source ("balancer", "cookie", "auth_session").
	Hits map[string]uint64 `json:"hits"`
	// Misses counts ignored cookies and routes by reason.
	Misses        map[string]uint64 `json:"misses"`
	NoServer      uint64            `json:"no_server"`
	Redispatches  uint64            `json:"redispatches"`
	RoutesLearned uint64            `json:"routes_learned"`
	Routes        int               `json:"routes"`
	// RouteTable maps learned Keycloak routes to server names.
	RouteTable map[string]string `json:"route_table,omitempty"`
}

// ServerStatus is one backend server.
type ServerStatus struct {
	Name       string `json:"name"`
	Address    string `json:"address"`
	Management string `json:"management,omitempty"`
	// Health is "up", "down", "dead" or "starting"; Reason explains it and
	// Since is when it last changed.
	Health string    `json:"health"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
	// Admin is "ready", "drain" or "maint".
	Admin string `json:"admin"`
	// PeerAdmin is the server's admin state on the pair's other instance
	// ("absent" when its pool has no such server); empty without a
	// [pair] or before the peer first answered.
	PeerAdmin string `json:"peer_admin,omitempty"`
	// Available is true when the server takes new clients.
	Available bool `json:"available"`
	// Backup is true for a backup server ([[backend.server]] backup):
	// it takes new clients only while no other server is up and ready.
	Backup bool `json:"backup,omitempty"`
	// Weight is the effective weight (slow start applied).
	Weight       int    `json:"weight"`
	InFlight     int64  `json:"in_flight"`
	Queued       int64  `json:"queued"`
	Requests     uint64 `json:"requests"`
	Errors       uint64 `json:"errors"`
	Redispatches uint64 `json:"redispatches"`
	// RecentRequests counts the requests the server started in the last
	// RecentWindow (10 s): new and pinned clients, the approximate number
	// of active affinity clients. Absent until the first sample.
	RecentRequests *uint64 `json:"recent_requests,omitempty"`
	// LastUse is when the server last started a request, and IdleSeconds
	// the time since; both absent if it never did.
	LastUse     *time.Time `json:"last_use,omitempty"`
	IdleSeconds *float64   `json:"idle_seconds,omitempty"`
	// Check is the last active health check; absent before the first.
	Check *CheckStatus `json:"check,omitempty"`
	// Passes and Fails count consecutive check results.
	Passes       int    `json:"passes"`
	Fails        int    `json:"fails"`
	FailingSince string `json:"failing_since,omitempty"`
	Split        bool   `json:"split,omitempty"`
	// Responses counts the responses the server gave clients by status
	// class; BytesIn and BytesOut count request body bytes forwarded to
	// it and response body bytes returned from it. Absent without
	// metrics.
	Responses *CodeCounts `json:"responses,omitempty"`
	BytesIn   uint64      `json:"bytes_in"`
	BytesOut  uint64      `json:"bytes_out"`
	// DowntimeSeconds is the time the server's health was not up since
	// kclb started, Downs the number of times it left up and LastDown
	// when it last did (absent if never).
	DowntimeSeconds float64    `json:"downtime_seconds"`
	Downs           uint64     `json:"downs"`
	LastDown        *time.Time `json:"last_down,omitempty"`
	// History holds the last HistoryLen active check results, oldest
	// first.
	History []CheckResult `json:"history,omitempty"`
}

// CodeCounts counts responses by status class.
type CodeCounts struct {
	Informational uint64 `json:"1xx"`
	Success       uint64 `json:"2xx"`
	Redirect      uint64 `json:"3xx"`
	ClientError   uint64 `json:"4xx"`
	ServerError   uint64 `json:"5xx"`
}

// Traffic is what the metrics know of one server's responses and bytes
// (Options.Traffic).
type Traffic struct {
	Responses         CodeCounts
	BytesIn, BytesOut uint64
}

// CheckResult is one active health check in ServerStatus.History.
type CheckResult struct {
	Time          time.Time `json:"time"`
	OK            bool      `json:"ok"`
	LatencyMillis float64   `json:"latency_ms"`
}

// CheckStatus is the outcome of the last active health check.
type CheckStatus struct {
	Time          time.Time `json:"time"`
	Result        string    `json:"result"`
	LatencyMillis float64   `json:"latency_ms"`
}

// serverStatus snapshots s at now.
func serverStatus(s *backend.Server, now time.Time) ServerStatus {
	c := s.Counters()
	d := s.Detail()
	st := ServerStatus{
		Name: s.Name(), Address: s.Addr(), Management: s.Mgmt(),
		Health: s.Health().String(), Reason: d.Reason, Since: d.Since,
		Admin: s.Admin().String(), Available: s.Available(), Backup: s.Backup(), Weight: s.Weight(),
		InFlight: c.InFlight, Queued: c.Queued, Requests: c.Requests, Errors: c.Errors,
		Redispatches: c.Redispatches,
		Passes:       d.Passes, Fails: d.Fails, FailingSince: d.FailingSince, Split: d.Split,
	}
	if lu := s.LastUse(); !lu.IsZero() {
		idle := max(now.Sub(lu), 0).Seconds()
		st.LastUse, st.IdleSeconds = &lu, &idle
	}
	if !d.LastCheck.IsZero() {
		st.Check = &CheckStatus{Time: d.LastCheck, Result: d.LastResult,
			LatencyMillis: float64(d.LastLatency.Microseconds()) / 1000}
	}
	return st
}

// affinityStatus converts the affinity counters.
func affinityStatus(a affinity.Stats, routes map[string]string) *AffinityStatus {
	out := &AffinityStatus{
		Hits: map[string]uint64{}, Misses: map[string]uint64{},
		NoServer: a.NoServer, Redispatches: a.Redispatches, RoutesLearned: a.RoutesLearned,
		Routes: a.Routes, RouteTable: routes,
	}
	for i, n := range a.Hits {
		out.Hits[affinity.Source(i).String()] = n
	}
	for i, n := range a.Misses {
		out.Misses[affinity.MissReason(i).String()] = n
	}
	return out
}
