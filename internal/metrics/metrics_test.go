package metrics

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kclb/kclb/affinity"
	"github.com/kclb/kclb/internal/accesslog"
	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/pathpolicy"
	"github.com/kclb/kclb/proxy"
)

// rec is a record of a request answered with code after 1 ms, with no
// connection opened and no queueing.
func rec(code int) accesslog.Record {
	return accesslog.Record{Status: code, Total: time.Millisecond, Connect: -1, UpstreamHeader: -1}
}

// Scrape fetches h's exposition and parses it with the Prometheus text
// parser.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape status %d", rec.Code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, rec.Body.String())
	}
	return fams
}

// value returns the value of the sample of family name whose labels
// include want; it fails if there is none.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no family %s", name)
	}
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("no sample %s%v", name, want)
	return 0
}

func TestScrapeAfterTraffic(t *testing.T) {
	pool, err := backend.NewPool([]backend.Spec{{Name: "kc1", Addr: "a:1"}, {Name: "kc2", Addr: "b:1"}}, backend.PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	unauth := uint64(3)
	m, err := New(Options{
		Pool: pool, Version: "test",
		Proxy:             func() proxy.Stats { return proxy.Stats{Retries: 4} },
		AdminUnauthorized: func() uint64 { return unauth },
		VRRP: func() []VRRP {
			return []VRRP{{Instance: "VI_1", State: "master", States: []string{"backup", "master", "fault"}, Priority: 110, Transitions: 2,
				Health: "degraded", Healths: []string{"ok", "degraded", "down"}, AdvertsSent: 7, AdvertsReceived: 5, AdvertsAsMaster: 3,
				Resignations: 1, Errors: 2, Drops: map[string]uint64{"unknown_peer": 300, "ttl": 0}, MaxTimerLagSeconds: 0.25}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	kc1, kc2 := pool.Lookup("kc1"), pool.Lookup("kc2")
	ctx := context.Background()
	for range 5 {
		kc1.Acquire(ctx, 1, time.Second)
		kc1.Release()
		m.Request(kc1, rec(200))
	}
	m.Request(kc2, rec(503))
	m.Request(nil, rec(404))
	m.Blocked(pathpolicy.Blocked)
	m.ObserveCheck(kc1, 3*time.Millisecond, true)
	m.ObserveCheck(kc1, 3*time.Millisecond, false)
	pool.SetAdmin("kc2", backend.AdminDrain)
	pool.SetHealth(kc2, backend.HealthDown, backend.Detail{})

	f := scrape(t, m.Handler())
	for _, tc := range []struct {
		name   string
		metric string
		labels map[string]string
		want   float64
	}{
		{"server 2xx", "kclb_server_responses_total", map[string]string{"server": "kc1", "code": "2xx"}, 5},
		{"server 5xx", "kclb_server_responses_total", map[string]string{"server": "kc2", "code": "5xx"}, 1},
		{"all 4xx", "kclb_requests_total", map[string]string{"code": "4xx"}, 1},
		{"all 2xx", "kclb_requests_total", map[string]string{"code": "2xx"}, 5},
		{"forwarded", "kclb_server_requests_total", map[string]string{"server": "kc1"}, 5},
		{"blocked", "kclb_blocked_requests_total", map[string]string{"verdict": "blocked"}, 1},
		{"checks pass", "kclb_server_health_checks_total", map[string]string{"server": "kc1", "result": "pass"}, 1},
		{"checks fail", "kclb_server_health_checks_total", map[string]string{"server": "kc1", "result": "fail"}, 1},
		{"check histogram", "kclb_server_check_duration_seconds", map[string]string{"server": "kc1"}, 2},
		{"duration histogram", "kclb_request_duration_seconds", nil, 7},
		{"drain state", "kclb_server_admin_state", map[string]string{"server": "kc2", "state": "drain"}, 1},
		{"ready state off", "kclb_server_admin_state", map[string]string{"server": "kc2", "state": "ready"}, 0},
		{"down", "kclb_server_health", map[string]string{"server": "kc2", "state": "down"}, 1},
		{"up", "kclb_server_up", map[string]string{"server": "kc1"}, 1},
		{"available", "kclb_servers_available", nil, 1},
		{"panic", "kclb_panic_mode", nil, 0},
		{"retries", "kclb_proxy_events_total", map[string]string{"event": "retry"}, 4},
		{"unauthorized", "kclb_admin_unauthorized_total", nil, 3},
		{"vrrp master", "kclb_vrrp_state", map[string]string{"instance": "VI_1", "state": "master"}, 1},
		{"vrrp backup", "kclb_vrrp_state", map[string]string{"instance": "VI_1", "state": "backup"}, 0},
		{"vrrp priority", "kclb_vrrp_priority", map[string]string{"instance": "VI_1"}, 110},
		// issue 17, item 6d: the vrrp package's counters on /metrics.
		{"vrrp health", "kclb_vrrp_tracked_health", map[string]string{"instance": "VI_1", "health": "degraded"}, 1},
		{"vrrp health ok off", "kclb_vrrp_tracked_health", map[string]string{"instance": "VI_1", "health": "ok"}, 0},
		{"vrrp sent", "kclb_vrrp_adverts_total", map[string]string{"instance": "VI_1", "event": "sent"}, 7},
		{"vrrp as master", "kclb_vrrp_adverts_total", map[string]string{"instance": "VI_1", "event": "received_as_master"}, 3},
		{"vrrp resignations", "kclb_vrrp_adverts_total", map[string]string{"instance": "VI_1", "event": "resignations"}, 1},
		{"vrrp drops", "kclb_vrrp_dropped_packets_total", map[string]string{"instance": "VI_1", "reason": "unknown_peer"}, 300},
		{"vrrp errors", "kclb_vrrp_errors_total", map[string]string{"instance": "VI_1"}, 2},
		{"vrrp lag", "kclb_vrrp_timer_lag_max_seconds", map[string]string{"instance": "VI_1"}, 0.25},
		{"build", "kclb_build_info", map[string]string{"version": "test"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := value(t, f, tc.metric, tc.labels); got != tc.want {
				t.Fatalf("%s%v = %v, want %v", tc.metric, tc.labels, got, tc.want)
			}
		})
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if f[name] == nil {
			t.Errorf("runtime/process metric %s missing", name)
		}
	}
}

func TestRemovedServerPruned(t *testing.T) {
	pool, _ := backend.NewPool([]backend.Spec{{Name: "kc1", Addr: "a:1"}, {Name: "kc2", Addr: "b:1"}}, backend.PoolOptions{})
	m, _ := New(Options{Pool: pool})
	m.ObserveCheck(pool.Lookup("kc2"), time.Millisecond, true)
	m.Request(pool.Lookup("kc2"), rec(200))
	pool.Remove("kc2")
	f := scrape(t, m.Handler())
	for _, mf := range f {
		for _, s := range mf.Metric {
			for _, l := range s.Label {
				if l.GetName() == "server" && l.GetValue() == "kc2" {
					t.Fatalf("%s still exports removed server kc2", mf.GetName())
				}
			}
		}
	}
	if len(*m.servers.Load()) != 0 {
		t.Fatalf("hot counters of removed server kept")
	}
}

func TestHandlerServesText(t *testing.T) {
	pool, _ := backend.NewPool([]backend.Spec{{Name: "kc1", Addr: "a:1"}}, backend.PoolOptions{})
	m, _ := New(Options{Pool: pool})
	ts := httptest.NewServer(m.Handler())
	defer ts.Close()
	resp, err := http.Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(resp.Header.Get("Content-Type"), "text/plain") || !strings.Contains(string(b), "kclb_server_up{server=\"kc1\"} 1") {
		t.Fatalf("content type %q body %.300s", resp.Header.Get("Content-Type"), b)
	}
}

func BenchmarkObserverRequest(b *testing.B) {
	pool, _ := backend.NewPool([]backend.Spec{{Name: "kc1", Addr: "a:1"}, {Name: "kc2", Addr: "b:1"}, {Name: "kc3", Addr: "c:1"}}, backend.PoolOptions{})
	m, _ := New(Options{Pool: pool})
	servers := pool.Servers()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			m.Request(servers[i%3], rec(200))
			i++
		}
	})
}

func TestRegistryPassedIn(t *testing.T) {
	pool, _ := backend.NewPool([]backend.Spec{{Name: "kc1", Addr: "a:1"}}, backend.PoolOptions{})
	reg := prometheus.NewRegistry()
	m, err := New(Options{Pool: pool, Registry: reg})
	if err != nil || m.Registry() != reg {
		t.Fatalf("New: %v", err)
	}
	if _, err := New(Options{Pool: pool, Registry: reg}); err == nil {
		t.Fatal("registering twice in one registry succeeded")
	}
}

// TestExchangeMetrics pins the per-server histograms and byte counters
// fed from the proxy's record, the certificate, reload and configuration
// metrics, and that promlint finds nothing to object to in the whole
// exposition (issue 15, item 4).
func TestExchangeMetrics(t *testing.T) {
	pool, _ := backend.NewPool([]backend.Spec{{Name: "kc1", Addr: "a:1"}}, backend.PoolOptions{})
	notAfter := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
	stapledAt := time.Now().Add(-time.Hour)
	m, err := New(Options{
		Pool: pool,
		Certificates: func() []Certificate {
			return []Certificate{{File: "/etc/kclb/sso.pem", Name: "sso.example.com", NotAfter: notAfter, OCSPThisUpdate: stapledAt},
				{File: "/etc/kclb/other.pem", Name: "other.example.com", NotAfter: notAfter}}
		},
		Reloads:    func() Reloads { return Reloads{OK: 2, Failed: 1} },
		ConfigHash: func() string { return "abc123" },
		Proxy:      func() proxy.Stats { return proxy.Stats{} },
		Conns:      func() proxy.ConnCounts { return proxy.ConnCounts{} },
		Affinity:   func() *affinity.Affinity { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	kc1 := pool.Lookup("kc1")
	r := accesslog.Record{Status: 200, BytesIn: 100, BytesOut: 2000, Queue: 2 * time.Millisecond,
		Connect: 3 * time.Millisecond, UpstreamHeader: 40 * time.Millisecond, Total: 50 * time.Millisecond}
	m.Request(kc1, r)
	r.Connect = 0 // a pooled connection: not a connect observation
	m.Request(kc1, r)
	m.Request(kc1, rec(502)) // no response head: not a response observation
	m.ObserveCheck(kc1, time.Millisecond, true)

	f := scrape(t, m.Handler())
	for _, tc := range []struct {
		metric string
		labels map[string]string
		want   float64
	}{
		{"kclb_server_bytes_in_total", map[string]string{"server": "kc1"}, 200},
		{"kclb_server_bytes_out_total", map[string]string{"server": "kc1"}, 4000},
		{"kclb_server_response_seconds", map[string]string{"server": "kc1"}, 2},
		{"kclb_server_connect_seconds", map[string]string{"server": "kc1"}, 1},
		{"kclb_server_queue_seconds", map[string]string{"server": "kc1"}, 3},
		{"kclb_certificate_not_after_seconds", map[string]string{"file": "/etc/kclb/sso.pem", "name": "sso.example.com"}, float64(notAfter.Unix())},
		{"kclb_reloads_total", map[string]string{"result": "ok"}, 2},
		{"kclb_reloads_total", map[string]string{"result": "failed"}, 1},
		{"kclb_config_info", map[string]string{"hash": "abc123"}, 1},
	} {
		if got := value(t, f, tc.metric, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.metric, tc.labels, got, tc.want)
		}
	}
	// Issue 14, item 4: the staple's age, only for a certificate that
	// has one.
	if age := value(t, f, "kclb_certificate_ocsp_staple_age_seconds", map[string]string{"name": "sso.example.com"}); age < 3600 || age > 3600+60 {
		t.Errorf("OCSP staple age %v, want about 3600 s", age)
	}
	if n := len(f["kclb_certificate_ocsp_staple_age_seconds"].GetMetric()); n != 1 {
		t.Errorf("%d OCSP staple age series, want 1 (none for a certificate without a staple)", n)
	}
	if sum := f["kclb_server_response_seconds"].Metric[0].Histogram.GetSampleSum(); sum < 0.079 || sum > 0.081 {
		t.Errorf("response time sum %v, want 0.08", sum)
	}

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	problems, err := promlint.New(strings.NewReader(rec.Body.String())).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// BenchmarkObserverExchange is one request's metrics with every timing
// present (the hot-path cost of the new histograms).
func BenchmarkObserverExchange(b *testing.B) {
	pool, _ := backend.NewPool([]backend.Spec{{Name: "kc1", Addr: "a:1"}}, backend.PoolOptions{})
	m, _ := New(Options{Pool: pool})
	kc1 := pool.Lookup("kc1")
	r := accesslog.Record{Status: 200, BytesIn: 100, BytesOut: 2000, Queue: 0,
		Connect: 3 * time.Millisecond, UpstreamHeader: 40 * time.Millisecond, Total: 50 * time.Millisecond}
	b.ReportAllocs()
	for b.Loop() {
		m.Request(kc1, r)
	}
}
