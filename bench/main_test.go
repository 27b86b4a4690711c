package main

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kclb/kclb/bench/driver"
	"github.com/kclb/kclb/bench/load"
	"github.com/kclb/kclb/bench/procstat"
	"github.com/kclb/kclb/bench/report"
	"github.com/kclb/kclb/bench/target"
	"github.com/kclb/kclb/internal/kcsim"
)

// fakeTarget is an already running server in this process.
type fakeTarget struct {
	name, addr, tlsAddr string
	starts              int
}

func (f *fakeTarget) Name() string                            { return f.name }
func (f *fakeTarget) Start(context.Context, target.Env) error { f.starts++; return nil }
func (f *fakeTarget) HTTPAddr() string                        { return f.addr }
func (f *fakeTarget) HTTPSAddr() string                       { return f.tlsAddr }
func (f *fakeTarget) Proc() procstat.Group                    { return procstat.Group{Root: os.Getpid()} }
func (f *fakeTarget) Stop() error                             { return nil }

// fakeBackends reports this process and a request counter.
type fakeBackends struct {
	count func() int64
}

func (f fakeBackends) Proc() []procstat.Group { return []procstat.Group{{Root: os.Getpid()}} }
func (f fakeBackends) Stats(context.Context) (target.ServerStats, bool) {
	return target.ServerStats{Requests: f.count()}, true
}
func (f fakeBackends) Control(context.Context, int, string) error { return nil }

func testSuite(t *testing.T, tg target.Target, count func() int64) *suite {
	t.Helper()
	cert, err := target.WriteCert(t.TempDir(), target.ECDSA)
	if err != nil {
		t.Fatal(err)
	}
	return &suite{
		opts:     options{duration: time.Second, runs: 1, idleConns: 50},
		dir:      t.TempDir(),
		backends: fakeBackends{count: count},
		targets:  []target.Target{tg},
		certs:    map[target.KeyType]*target.Cert{target.ECDSA: cert},
	}
}

// TestSmokeCountsMatchServer runs the tool's scenario machinery for 1 s
// against an httptest server and checks that the requests the report
// counts are the requests the server answered.
func TestSmokeCountsMatchServer(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		io.WriteString(w, strings.Repeat("x", 955))
	}))
	t.Cleanup(srv.Close)
	tg := &fakeTarget{name: "fake", addr: srv.Listener.Addr().String()}
	s := testSuite(t, tg, served.Load)
	tests := []struct {
		name string
		sc   scenario
	}{
		{name: "closed loop", sc: scenario{name: "ka", mode: modeH1, workers: 8, path: helloPath}},
		{name: "open loop", sc: scenario{name: "open", mode: modeH1, workers: 8, rate: 500, path: helloPath}},
		{name: "new connection per request", sc: scenario{name: "close", mode: modeH1, workers: 4, newConn: true, path: helloPath}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := served.Load()
			rs := s.runScenario(context.Background(), tc.sc)
			if len(rs.Runs) != 1 {
				t.Fatalf("%d runs, want 1: %s", len(rs.Runs), rs.Description)
			}
			r := rs.Runs[0]
			client := int64(r.Result.Requests + r.Result.TotalErrors())
			if client == 0 || r.Result.TotalErrors() != 0 {
				t.Fatalf("requests %d, errors %v", r.Result.Requests, r.Result.Errors)
			}
			if got := served.Load() - before; got != client {
				t.Fatalf("server answered %d, client counted %d", got, client)
			}
			if !r.ServerCounted || r.ServerRequests != client {
				t.Fatalf("run's server count %d (%v), client %d", r.ServerRequests, r.ServerCounted, client)
			}
			if tc.sc.rate > 0 && client != r.Result.Planned {
				t.Fatalf("open loop: %d sent, %d planned", client, r.Result.Planned)
			}
			if r.PeakRSS <= 0 || r.ProxyCPU < 0 {
				t.Fatalf("process measures: rss %d cpu %v", r.PeakRSS, r.ProxyCPU)
			}
		})
	}
}

func TestSmokeIdle(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
	}))
	t.Cleanup(srv.Close)
	tg := &fakeTarget{name: "fake", addr: srv.Listener.Addr().String()}
	s := testSuite(t, tg, served.Load)
	rs := s.runScenario(context.Background(), scenario{name: "idle", mode: modeIdle, workers: 50, path: helloPath})
	if len(rs.Runs) != 1 || rs.Runs[0].Result.Requests != 50 || served.Load() != 50 || tg.starts != 1 {
		t.Fatalf("runs %d, held %d, served %d, starts %d", len(rs.Runs), rs.Runs[0].Result.Requests, served.Load(), tg.starts)
	}
}

// TestSmokeLoginMix drives the Keycloak mix against an in-process
// stand-in node over TLS.
func TestSmokeLoginMix(t *testing.T) {
	node := kcsim.New(kcsim.Options{Node: "keycloak1", Strict: true})
	var served atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		node.TrafficHandler().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	tg := &fakeTarget{name: "fake"}
	s := testSuite(t, tg, served.Load)
	pair, err := tlsPair(s.certs[target.ECDSA])
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = pair
	srv.StartTLS()
	tg.tlsAddr = srv.Listener.Addr().String()
	s.opts.duration = 500 * time.Millisecond
	rs := s.runScenario(context.Background(), scenario{name: "mix", mode: modeMix, tls: true, workers: 4})
	r := rs.Runs[0]
	if r.Result.Requests < load.MixSteps || r.Result.TotalErrors() != 0 {
		t.Fatalf("mix: %d requests, errors %v (%s)", r.Result.Requests, r.Result.Errors, rs.Description)
	}
	if st := node.Stats(); st.Logins == 0 || st.Tokens == 0 || r.ServerRequests != int64(r.Result.Requests) {
		t.Fatalf("node stats %+v, server count %d, client %d", st, r.ServerRequests, r.Result.Requests)
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(options) bool
		wantErr bool
	}{
		{name: "defaults", args: nil, check: func(o options) bool { return o.runs == 3 && o.duration == 5*time.Second && o.idleConns == 10000 }},
		{name: "quick", args: []string{"-quick"}, check: func(o options) bool { return o.runs == 1 && o.duration == 2*time.Second }},
		{name: "quick keeps explicit runs", args: []string{"-quick", "-runs", "2"}, check: func(o options) bool { return o.runs == 2 }},
		{name: "bad runs", args: []string{"-runs", "0"}, wantErr: true},
		{name: "builtin driver", args: nil, check: func(o options) bool { return len(o.tools) == 0 && !o.rateSet }},
		{name: "both tools once, issue 16's 2 runs of 10 s", args: []string{"-driver", "wrk, h2load,wrk,builtin"}, check: func(o options) bool {
			return len(o.tools) == 2 && o.tools[0] == driver.Wrk && o.tools[1] == driver.H2load && o.runs == 2 && o.duration == 10*time.Second
		}},
		{name: "tools keep explicit durations", args: []string{"-driver", "wrk", "-runs", "3", "-duration", "5s"}, check: func(o options) bool {
			return o.runs == 3 && o.duration == 5*time.Second
		}},
		{name: "tools with quick", args: []string{"-driver", "wrk", "-quick"}, check: func(o options) bool { return o.runs == 1 && o.duration == 2*time.Second }},
		{name: "unknown driver", args: []string{"-driver", "wrk2"}, wantErr: true},
		{name: "explicit rate", args: []string{"-rate", "100"}, check: func(o options) bool { return o.rateSet && o.openRate == 100 }},
		{name: "stray argument", args: []string{"x"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseFlags(tc.args, io.Discard)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v", err)
			}
			if err == nil && !tc.check(o) {
				t.Fatalf("options %+v", o)
			}
		})
	}
}

func TestSelectScenarios(t *testing.T) {
	all := allScenarios(10000, 5000)
	tests := []struct {
		name    string
		list    string
		want    int
		wantErr bool
	}{
		{name: "default leaves out optional", list: "", want: len(all) - 2},
		{name: "optional by name", list: "fail", want: 2},
		{name: "prefix", list: "tls", want: 3},
		{name: "exact and prefix", list: "http-ka-c64,h2", want: 2},
		{name: "overlapping prefixes once", list: "http,https,http-ka-c64", want: 4},
		{name: "unknown", list: "nope", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := selectScenarios(all, tc.list)
			if (err != nil) != tc.wantErr || len(got) != tc.want {
				t.Fatalf("got %d scenarios, err %v; want %d", len(got), err, tc.want)
			}
		})
	}
}

func TestWriteReportFiles(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "docs", "benchmarks.md")
	os.MkdirAll(filepath.Dir(out), 0o755)
	os.WriteFile(out, []byte("# Benchmarks\n\nHand-written intro.\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "docs", "bench"), 0o755)
	os.WriteFile(filepath.Join(dir, "docs", "bench", "latency-gone.svg"), []byte("<svg/>"), 0o644)
	rep := &report.Report{Targets: []string{"haproxy"}, Runs: 1, Scenarios: []report.Scenario{{Name: "s1", Runs: []report.Run{
		{Target: "haproxy", Index: 1, Result: fakeResult()}}}}}
	if err := writeReport(rep, out, io.Discard); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(out)
	if !strings.Contains(string(md), "Hand-written intro.") || !strings.Contains(string(md), "| haproxy | builtin | 1 |") {
		t.Fatalf("markdown:\n%s", md)
	}
	for _, f := range []string{"throughput.svg", "latency-s1.svg"} {
		if _, err := os.Stat(filepath.Join(dir, "docs", "bench", f)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "docs", "bench", "latency-gone.svg")); !os.IsNotExist(err) {
		t.Fatalf("stale chart kept: %v", err)
	}
}

func tlsPair(c *target.Cert) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}}, nil
}

func fakeResult() *load.Result {
	r := &load.Result{Requests: 100, Elapsed: time.Second}
	for i := range 100 {
		r.Latency.RecordDuration(time.Duration(i+1) * time.Millisecond)
	}
	return r
}

func TestPickPortBase(t *testing.T) {
	// Occupy one port of base 28000's set; an explicit base must fail, an
	// implicit one must move on.
	ln, err := net.Listen("tcp", loop(28000+210))
	if err != nil {
		t.Skip("port 28210 already in use: ", err)
	}
	defer ln.Close()
	if _, err := pickPortBase(28000, true); err == nil {
		t.Fatal("explicit busy base accepted")
	}
	b, err := pickPortBase(28000, false)
	if err != nil {
		t.Skip("no free fallback base: ", err)
	}
	if b == 28000 {
		t.Fatal("busy base chosen")
	}
}

// TestDriverFor pins which rows the external tools run (issue 16: wrk for
// HTTP/1.1, h2load for HTTP/2; the fixed-rate row stays with the built-in
// generator because wrk2 is not packaged, the full-handshake rows because
// wrk resumes TLS sessions, see driver.TestRealWrkResumesTLS).
func TestDriverFor(t *testing.T) {
	both := []driver.Tool{driver.Wrk, driver.H2load}
	want := map[string]string{ // scenario -> tool with both listed, "" = builtin
		"http-ka-c64": "wrk", "http-ka-c1000": "wrk", "http-ka-fixed": "", "https-ka-c64": "wrk",
		"tls-hs-ecdsa": "", "tls-hs-rsa": "", "tls-resume": "wrk", "h2-c64-m10": "h2load",
		"idle-10k": "", "idle-tls-2k": "", "login-mix": "", "fail-refuse": "", "fail-slow": "",
	}
	all := allScenarios(10000, 4000)
	if len(all) != len(want) {
		t.Fatalf("%d scenarios, table has %d: add the new one", len(all), len(want))
	}
	for _, sc := range all {
		w, listed := want[sc.name]
		if !listed {
			t.Fatalf("scenario %s not in the table", sc.name)
		}
		tool, ok, why := driverFor(sc, both)
		if got := map[bool]string{true: tool.String()}[ok]; got != w {
			t.Errorf("%s: driver %q, want %q", sc.name, got, w)
		}
		if !ok && why == "" {
			t.Errorf("%s: builtin without a reason", sc.name)
		}
		if _, ok, why := driverFor(sc, nil); ok || why != "" {
			t.Errorf("%s: builtin-only run picked a tool or gave a reason %q", sc.name, why)
		}
		if tool, ok, _ := driverFor(sc, []driver.Tool{driver.H2load}); ok && (tool != driver.H2load || sc.mode != modeH2) {
			t.Errorf("%s: -driver h2load picked %v", sc.name, tool)
		}
	}
}

// TestFixRate: the fixed-rate row runs at half of HAProxy's peak measured
// earlier in the same run (issue 16 target "p99 at a fixed rate of half
// HAProxy's peak"), at -rate when given or when the peak is missing.
func TestFixRate(t *testing.T) {
	var fixed scenario
	for _, sc := range allScenarios(10000, 4000) {
		if sc.name == "http-ka-fixed" {
			fixed = sc
		}
	}
	if fixed.rateOf != "http-ka-c64" {
		t.Fatalf("fixed-rate scenario paced from %q", fixed.rateOf)
	}
	peaks := map[string]float64{"http-ka-c64": 30000}
	if got := fixRate(fixed, peaks, nil, options{}); got.rate != 15000 || !strings.Contains(got.desc, "half of HAProxy's median 30000") {
		t.Errorf("from the peak: rate %v, %q", got.rate, got.desc)
	}
	if got := fixRate(fixed, map[string]float64{}, nil, options{}); got.rate != 4000 || !strings.Contains(got.desc, "not measured") {
		t.Errorf("no peak: rate %v, %q", got.rate, got.desc)
	}
	if got := fixRate(fixed, peaks, nil, options{rateSet: true}); got.rate != 4000 || !strings.Contains(got.desc, "(-rate)") {
		t.Errorf("explicit -rate: rate %v, %q", got.rate, got.desc)
	}
	// wrk measured the source row: the built-in generator's peak, which
	// paces this row, is the one halved.
	builtin := map[string]float64{"http-ka-c64": 18000}
	if got := fixRate(fixed, peaks, builtin, options{}); got.rate != 9000 || !strings.Contains(got.desc, "18000 req/s under the built-in generator") {
		t.Errorf("tool-measured peak: rate %v, %q", got.rate, got.desc)
	}
}

// TestSmokeExternalDrivers runs one short row with wrk (keep-alive and a
// new connection per request) and one with h2load through the suite and
// checks the counts against the server's and the driver recorded in the
// run. Skips when a tool is missing.
func TestSmokeExternalDrivers(t *testing.T) {
	for _, tool := range []driver.Tool{driver.Wrk, driver.H2load} {
		if err := tool.Available(); err != nil {
			t.Skip(err)
		}
	}
	var served atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		io.WriteString(w, strings.Repeat("x", 955))
	})
	plain := httptest.NewServer(h)
	t.Cleanup(plain.Close)
	secure := httptest.NewUnstartedServer(h)
	secure.EnableHTTP2 = true
	secure.StartTLS()
	t.Cleanup(secure.Close)
	tg := &fakeTarget{name: "fake", addr: plain.Listener.Addr().String(), tlsAddr: secure.Listener.Addr().String()}
	s := testSuite(t, tg, served.Load)
	s.opts.tools = []driver.Tool{driver.Wrk, driver.H2load}
	tests := []struct {
		sc       scenario
		tool     string
		inFlight int
	}{
		{scenario{name: "ka", mode: modeH1, workers: 4, path: helloPath}, "wrk", 4},
		{scenario{name: "close", mode: modeH1, workers: 2, newConn: true, path: helloPath}, "wrk", 2},
		{scenario{name: "h2", mode: modeH2, tls: true, workers: 2, streams: 4, path: helloPath}, "h2load", 8},
	}
	for _, tc := range tests {
		t.Run(tc.sc.name, func(t *testing.T) {
			before := served.Load()
			rs := s.runScenario(context.Background(), tc.sc)
			if len(rs.Runs) != 1 {
				t.Fatalf("%d runs: %s", len(rs.Runs), rs.Description)
			}
			r := rs.Runs[0]
			if r.Driver != tc.tool || !strings.HasPrefix(r.Command, tc.tool+" ") || r.ClientCPU <= 0 {
				t.Fatalf("driver %q command %q client CPU %v", r.Driver, r.Command, r.ClientCPU)
			}
			if r.Result.Requests == 0 || r.Result.TotalErrors() != 0 {
				t.Fatalf("requests %d errors %v %q", r.Result.Requests, r.Result.Errors, r.Result.Sample)
			}
			// The warm-up (built-in) and the run both hit the server; the
			// run's own count comes from the backends' counter delta.
			if extra := r.ServerRequests - int64(r.Result.Requests); extra < 0 || extra > int64(tc.inFlight) {
				t.Fatalf("server answered %d during the run, %s counted %d", r.ServerRequests, tc.tool, r.Result.Requests)
			}
			if served.Load()-before < r.ServerRequests {
				t.Fatalf("served %d in all, %d in the run", served.Load()-before, r.ServerRequests)
			}
			if !strings.Contains(rs.Description, "Load: "+tc.tool) {
				t.Fatalf("description does not name the driver: %s", rs.Description)
			}
		})
	}
}

// TestDefaultSuiteEstimate keeps make bench's promise of under 10 minutes
// on the scenario durations (an estimate from the configured times, not a
// timed run) with the default driver and with the tools at the same
// durations; issue 16's 2 runs of 10 s with the tools may take up to 12.
func TestDefaultSuiteEstimate(t *testing.T) {
	targets := []string{"direct", "kclb", "haproxy", "nginx"}
	for _, tc := range []struct {
		args  []string
		limit time.Duration
	}{
		{nil, 10 * time.Minute},
		{[]string{"-driver", "wrk,h2load", "-runs", "3", "-duration", "5s"}, 10 * time.Minute},
		{[]string{"-driver", "wrk,h2load"}, 12 * time.Minute},
	} {
		args := tc.args
		o, err := parseFlags(args, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		scs, err := selectScenarios(allScenarios(o.idleConns, o.openRate), "")
		if err != nil {
			t.Fatal(err)
		}
		if d := estimate(scs, targets, o); d > tc.limit || d < 5*time.Minute {
			t.Errorf("%v: default suite estimated at %v, want 5 min..%v", args, d, tc.limit)
		} else {
			t.Logf("%v: %v", args, d)
		}
	}
	q, _ := parseFlags([]string{"-quick"}, io.Discard)
	scs, _ := selectScenarios(allScenarios(q.idleConns, q.openRate), "")
	if d := estimate(scs, targets, q); d > 2*time.Minute {
		t.Errorf("quick suite estimated at %v, want under 2 min", d)
	}
}
