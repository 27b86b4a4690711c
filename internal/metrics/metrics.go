// Package metrics exposes kclb's Prometheus metrics on a registry of its
// own (never the global one): per-server traffic, bytes, response, connect
// and queue times, health and admin state, health-check latency, affinity
// and path-policy counters, panic mode, VRRP state, certificate expiry,
// reload results and the configuration hash, and the Go runtime and
// process collectors.
//
// Almost everything is read at scrape time from the atomics the runtime
// packages already keep (backend.Server.Counters, affinity.Stats,
// proxy.Stats), so the request path pays little for it. Only the response
// code classes, bytes and the request, response, connect and queue times
// are counted on the hot path, by Metrics acting as the proxy's Observer:
// a per-server block of counters and histogram children found in a
// copy-on-write map keyed by *backend.Server, with no label lookup per
// request.
package metrics

import (
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kclb/kclb/affinity"
	"github.com/kclb/kclb/internal/accesslog"
	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/pathpolicy"
	"github.com/kclb/kclb/proxy"
)

// VRRP is one VRRP instance as metrics see it. It is the extension point
// for the vrrp package: cmd/kclb converts vrrp status into these values.
type VRRP struct {
	// Instance is the instance name (label "instance").
	Instance string
	// State is the current state; States lists every state name so that
	// the state set exports a 0 for the others.
	State  string
	States []string
	// Priority is the effective priority.
	Priority int
	// Transitions counts state changes since start.
	Transitions uint64
	// Health is the tracked health ("ok", "degraded", "down"); Healths
	// lists every name so that the state set exports a 0 for the others.
	// Empty omits kclb_vrrp_tracked_health.
	Health  string
	Healths []string
	// AdvertsSent, AdvertsReceived (valid ones) and AdvertsAsMaster
	// (received from another router while Master) count adverts.
	AdvertsSent, AdvertsReceived, AdvertsAsMaster uint64
	// Resignations counts priority-0 adverts received.
	Resignations uint64
	// Errors counts failed side effects (VIP changes, GARPs, hooks, sends).
	Errors uint64
	// Drops counts dropped packets by reason (label "reason").
	Drops map[string]uint64
	// MaxTimerLagSeconds is the largest delay of a VRRP timer so far.
	MaxTimerLagSeconds float64
}

// Options configures Metrics. Only Pool is required.
type Options struct {
	// Pool holds the servers. Required.
	Pool *backend.Pool
	// Version labels kclb_build_info.
	Version string
	// Started is the process start time. Zero means the time of New.
	Started time.Time
	// Proxy returns the request handler's counters. Nil omits them.
	Proxy func() proxy.Stats
	// Affinity returns the affinity policy in force, nil when affinity is
	// off. Nil means affinity is off.
	Affinity func() *affinity.Affinity
	// VRRP returns the VRRP instances; nil when VRRP is off.
	VRRP func() []VRRP
	// Conns returns the public listeners' connection counters. Nil omits
	// them.
	Conns func() proxy.ConnCounts
	// AdminUnauthorized returns the number of refused admin mutations.
	// Nil omits the metric.
	AdminUnauthorized func() uint64
	// Certificates returns the loaded certificates (kclb_certificate_not_after_seconds).
	// Nil omits them.
	Certificates func() []Certificate
	// Reloads returns the configuration reload counts by result
	// (kclb_reloads_total). Nil omits them.
	Reloads func() Reloads
	// ConfigHash returns the hash of the configuration file in force
	// (kclb_config_info). Nil omits it.
	ConfigHash func() string
	// CheckBuckets are the health-check latency buckets in seconds.
	// Nil means 1 ms .. 10 s.
	CheckBuckets []float64
	// DurationBuckets are the buckets in seconds of the request duration
	// and of the servers' response, connect and queue times. Nil means
	// 1 ms .. 60 s.
	DurationBuckets []float64
	// Registry receives the collectors and is served by Handler. Nil means
	// a new registry; never pass prometheus.DefaultRegisterer's registry
	// if other code registers there too.
	Registry *prometheus.Registry
}

// Certificate is one loaded certificate as metrics see it.
type Certificate struct {
	// File is the certificate file (label "file").
	File string
	// Name is the first subject alternative name (label "name").
	Name string
	// NotAfter is the end of the leaf's validity.
	NotAfter time.Time
	// OCSPThisUpdate is the thisUpdate of the OCSP response stapled now;
	// zero when none is.
	OCSPThisUpdate time.Time
}

// Reloads counts configuration reloads since start by result.
type Reloads struct {
	OK, Failed uint64
}

// codeClasses label the response code classes; index 0 is a request the
// client abandoned before a status was sent.
var codeClasses = [...]string{"none", "1xx", "2xx", "3xx", "4xx", "5xx"}

// classOf returns the index of code in codeClasses.
func classOf(code int) int {
	c := code / 100
	if c < 1 || c > 5 {
		return 0
	}
	return c
}

// numVerdicts bounds the pathpolicy verdicts counted.
const numVerdicts = 8

// serverCounters are the hot-path counters of one server.
type serverCounters struct {
	name     string
	codes    [len(codeClasses)]atomic.Uint64
	checks   [2]atomic.Uint64 // [0] failed, [1] passed
	bytesIn  atomic.Uint64    // request body bytes from clients
	bytesOut atomic.Uint64    // response body bytes to clients
	check    prometheus.Observer
	response prometheus.Observer // response head time
	connect  prometheus.Observer // connection opening time
	queue    prometheus.Observer // connection slot wait
}

// Metrics collects kclb's metrics. Create it with New; it is safe for
// concurrent use and implements proxy.Observer.
type Metrics struct {
	opts     Options
	reg      *prometheus.Registry
	checkVec *prometheus.HistogramVec
	// respVec, connVec and queueVec are the per-server response head,
	// connect and queue time histograms.
	respVec, connVec, queueVec *prometheus.HistogramVec
	duration                   prometheus.Histogram

	servers atomic.Pointer[map[*backend.Server]*serverCounters]
	mu      sync.Mutex // serialises updates of servers

	requests [len(codeClasses)]atomic.Uint64
	blocked  [numVerdicts]atomic.Uint64
}

var _ proxy.Observer = (*Metrics)(nil)

// New returns Metrics with kclb's collectors and the Go runtime and
// process collectors registered in opts.Registry. It fails if one of them
// is already registered there.
func New(opts Options) (*Metrics, error) {
	if opts.Started.IsZero() {
		opts.Started = time.Now()
	}
	if opts.CheckBuckets == nil {
		opts.CheckBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	}
	if opts.DurationBuckets == nil {
		opts.DurationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	m := &Metrics{opts: opts, reg: opts.Registry}
	empty := map[*backend.Server]*serverCounters{}
	m.servers.Store(&empty)
	m.checkVec = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "kclb_server_check_duration_seconds",
		Help:    "Duration of active health-check rounds per server.",
		Buckets: opts.CheckBuckets,
	}, []string{"server"})
	m.duration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "kclb_request_duration_seconds",
		Help:    "Time from receiving a request to finishing its response (or refusal).",
		Buckets: opts.DurationBuckets,
	})
	perServer := func(name, help string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: opts.DurationBuckets}, []string{"server"})
	}
	m.respVec = perServer("kclb_server_response_seconds",
		"Time from sending a request on a server connection to receiving the server's response head, per server (the answering attempt; connect time excluded).")
	m.connVec = perServer("kclb_server_connect_seconds",
		"Time spent opening new connections to each server, per request that opened any (pooled connections reused are not observed).")
	m.queueVec = perServer("kclb_server_queue_seconds",
		"Time requests waited for a connection slot on each server at its maxconn, per request answered by the server (0 when no wait).")
	for _, c := range []prometheus.Collector{
		m.checkVec, m.respVec, m.connVec, m.queueVec, m.duration, &collector{m: m},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := m.reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Registry returns the registry, for tests and for adding collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler returns the /metrics handler for the registry. Servers removed
// from the pool are forgotten before each scrape.
func (m *Metrics) Handler() http.Handler {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, MaxRequestsInFlight: 4})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.prune(m.opts.Pool.Servers())
		h.ServeHTTP(w, r)
	})
}

// counters returns the hot-path counters of s, creating them on first use.
func (m *Metrics) counters(s *backend.Server) *serverCounters {
	if c := (*m.servers.Load())[s]; c != nil {
		return c
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := *m.servers.Load()
	if c := cur[s]; c != nil {
		return c
	}
	n := s.Name()
	c := &serverCounters{name: n, check: m.checkVec.WithLabelValues(n),
		response: m.respVec.WithLabelValues(n), connect: m.connVec.WithLabelValues(n), queue: m.queueVec.WithLabelValues(n)}
	next := make(map[*backend.Server]*serverCounters, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	next[s] = c
	m.servers.Store(&next)
	return c
}

// prune forgets servers no longer in live (removed by discovery or reload).
func (m *Metrics) prune(live []*backend.Server) {
	stale := false
	for k := range *m.servers.Load() {
		if !slices.Contains(live, k) {
			stale = true
			break
		}
	}
	if !stale {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := *m.servers.Load()
	keep := make(map[*backend.Server]bool, len(live))
	names := make(map[string]bool, len(live))
	for _, s := range live {
		keep[s] = true
		names[s.Name()] = true
	}
	next := make(map[*backend.Server]*serverCounters, len(live))
	for k, v := range cur {
		if keep[k] {
			next[k] = v
		} else if !names[v.name] {
			for _, vec := range []*prometheus.HistogramVec{m.checkVec, m.respVec, m.connVec, m.queueVec} {
				vec.DeleteLabelValues(v.name)
			}
		}
	}
	m.servers.Store(&next)
}

// Request implements proxy.Observer: it counts the response code class,
// overall and for the server that answered, the duration, and for the
// server its bytes and its response, connect and queue times.
func (m *Metrics) Request(s *backend.Server, rec accesslog.Record) {
	cl := classOf(rec.Status)
	m.requests[cl].Add(1)
	if s != nil {
		c := m.counters(s)
		c.codes[cl].Add(1)
		c.bytesIn.Add(uint64(max(rec.BytesIn, 0)))
		c.bytesOut.Add(uint64(max(rec.BytesOut, 0)))
		if rec.UpstreamHeader >= 0 {
			c.response.Observe(rec.UpstreamHeader.Seconds())
		}
		if rec.Connect > 0 {
			c.connect.Observe(rec.Connect.Seconds())
		}
		c.queue.Observe(rec.Queue.Seconds())
	}
	m.duration.Observe(rec.Total.Seconds())
}

// Blocked implements proxy.Observer: it counts refusals by verdict.
func (m *Metrics) Blocked(v pathpolicy.Verdict) {
	if int(v) < numVerdicts {
		m.blocked[v].Add(1)
	}
}

// ObserveCheck records one health-check round of s; it matches
// health.Options.Observe.
func (m *Metrics) ObserveCheck(s *backend.Server, latency time.Duration, ok bool) {
	c := m.counters(s)
	c.check.Observe(latency.Seconds())
	if ok {
		c.checks[1].Add(1)
	} else {
		c.checks[0].Add(1)
	}
}

// ServerTraffic is one server's response and byte counters.
type ServerTraffic struct {
	// Codes counts responses by class: index 1 is 1xx ... 5 is 5xx,
	// index 0 requests the client abandoned before a status.
	Codes [6]uint64
	// BytesIn counts request body bytes forwarded to the server, BytesOut
	// response body bytes from it written to clients.
	BytesIn, BytesOut uint64
}

// Traffic returns s's counters (zero before its first request).
func (m *Metrics) Traffic(s *backend.Server) ServerTraffic {
	var t ServerTraffic
	c := (*m.servers.Load())[s]
	if c == nil {
		return t
	}
	for i := range c.codes {
		t.Codes[i] = c.codes[i].Load()
	}
	t.BytesIn, t.BytesOut = c.bytesIn.Load(), c.bytesOut.Load()
	return t
}
