package health

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kclb/kclb/internal/backend"
)

// fakeClock is a Clock that moves only when the test advances it.
type fakeClock struct {
	mu      sync.Mutex // guards now and waiters
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 7, 31, 0, 0, 0, 0, time.UTC)}
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- f.now
		return ch
	}
	f.waiters = append(f.waiters, fakeWaiter{at: f.now.Add(d), ch: ch})
	return ch
}

// Advance moves time forward and fires every waiter that is due.
func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	keep := f.waiters[:0]
	for _, w := range f.waiters {
		if w.at.After(f.now) {
			keep = append(keep, w)
			continue
		}
		w.ch <- f.now
	}
	f.waiters = keep
}

// BlockUntil waits until at least n waiters are registered, i.e. n
// goroutines are idle on the clock.
func (f *fakeClock) BlockUntil(t testing.TB, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d clock waiters", n), func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.waiters) >= n
	})
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Health bodies exactly as docs/keycloak.md gives them.
const (
	bodyReadyUp   = `{"status":"UP","checks":[{"name":"Keycloak cluster health check","status":"UP"},{"name":"Keycloak database connections async health check","status":"UP"}]}`
	bodyReadyDown = `{"status":"DOWN","checks":[{"name":"Keycloak cluster health check","status":"UP"},{"name":"Keycloak database connections async health check","status":"DOWN","data":{"Failing since":"2026-07-31 00:59:19,000"}}]}`
	bodyNoChecks  = `{"status":"UP","checks":[]}`
	bodyStarting  = `{"status":"DOWN","checks":[{"name":"Keycloak Initialized","status":"DOWN"}]}`
	bodyStarted   = `{"status":"UP","checks":[{"name":"Keycloak Initialized","status":"UP"}]}`
	failingSince  = "2026-07-31 00:59:19,000"
	dbCheckName   = "Keycloak database connections async health check"
	testRealm     = "test"
	testClientID  = "kclb-probe"
	testSecret    = "s3cr3t-Pr0be+value"
)

// readyMode is how a fake node answers /health/ready.
type readyMode int32

const (
	readyUp       readyMode = iota
	readyDBDown             // 503 with the DOWN body
	ready200Down            // 200 with the DOWN body
	readyInvalid            // 200 with invalid JSON
	readyHuge               // 200 with a 2 MiB body
	readyHang               // never answers
	readyStarting           // 503 with "Keycloak Initialized" DOWN
)

// fakeKC is a minimal Keycloak stand-in: management and traffic ports on
// loopback with switches.
type fakeKC struct {
	node    string
	mgmt    *httptest.Server
	traffic *httptest.Server

	ready     atomic.Int32 // readyMode
	starting  atomic.Bool
	notLive   atomic.Bool
	split     atomic.Bool
	tokenFail atomic.Bool
	lbDown    atomic.Bool
	size      int

	readyHits   atomic.Int64
	startedHits atomic.Int64
	liveHits    atomic.Int64
	tokenHits   atomic.Int64
}

func newFakeKC(t testing.TB, node string, clusterSize int) *fakeKC {
	return newFakeKCWith(t, node, clusterSize, false)
}

// newFakeKCWith optionally serves the management port over TLS (the
// httptest certificate, valid for 127.0.0.1).
func newFakeKCWith(t testing.TB, node string, clusterSize int, mgmtTLS bool) *fakeKC {
	t.Helper()
	k := &fakeKC{node: node, size: clusterSize}
	if mgmtTLS {
		k.mgmt = httptest.NewUnstartedServer(http.HandlerFunc(k.serveMgmt))
		k.mgmt.Config.ErrorLog = log.New(io.Discard, "", 0) // expected handshake failures
		k.mgmt.StartTLS()
	} else {
		k.mgmt = httptest.NewServer(http.HandlerFunc(k.serveMgmt))
	}
	k.traffic = httptest.NewServer(http.HandlerFunc(k.serveTraffic))
	t.Cleanup(func() {
		k.mgmt.Close()
		k.traffic.Close()
	})
	return k
}

func (k *fakeKC) setReady(m readyMode) { k.ready.Store(int32(m)) }

func hostport(s *httptest.Server) string { return s.Listener.Addr().String() }

func (k *fakeKC) spec() backend.Spec {
	return backend.Spec{Name: k.node, Addr: hostport(k.traffic), Mgmt: hostport(k.mgmt)}
}

func writeHealth(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	io.WriteString(w, body)
}

func (k *fakeKC) serveMgmt(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/health/ready":
		k.readyHits.Add(1)
		switch readyMode(k.ready.Load()) {
		case readyUp:
			writeHealth(w, 200, bodyReadyUp)
		case readyDBDown:
			writeHealth(w, 503, bodyReadyDown)
		case ready200Down:
			writeHealth(w, 200, bodyReadyDown)
		case readyInvalid:
			writeHealth(w, 200, `{"status":"UP","checks":[`)
		case readyHuge:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(200)
			io.WriteString(w, `{"status":"UP","checks":[],"pad":"`)
			chunk := strings.Repeat("x", 64<<10)
			for range 32 {
				if _, err := io.WriteString(w, chunk); err != nil {
					return
				}
			}
			io.WriteString(w, `"}`)
		case readyHang:
			<-r.Context().Done()
		case readyStarting:
			writeHealth(w, 503, bodyStarting)
		}
	case "/health/started":
		k.startedHits.Add(1)
		if k.starting.Load() {
			writeHealth(w, 503, bodyStarting)
			return
		}
		writeHealth(w, 200, bodyStarted)
	case "/health/live":
		k.liveHits.Add(1)
		if k.notLive.Load() {
			writeHealth(w, 503, `{"status":"DOWN","checks":[]}`)
			return
		}
		writeHealth(w, 200, bodyNoChecks)
	case "/metrics":
		size := k.size
		if k.split.Load() {
			size = 1
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		fmt.Fprintf(w, "# HELP vendor_cluster_size The size of the cluster\n# TYPE vendor_cluster_size gauge\n")
		fmt.Fprintf(w, "vendor_cluster_size{cluster=\"ISPN\",node=%q} %d.0\n", k.node, size)
	default:
		http.NotFound(w, r)
	}
}

func (k *fakeKC) serveTraffic(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/realms/" + testRealm + "/.well-known/openid-configuration":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"issuer":"http://%s/realms/%s"}`, r.Host, testRealm)
	case "/realms/" + testRealm + "/protocol/openid-connect/token":
		k.tokenHits.Add(1)
		if r.Method != http.MethodPost || r.ParseForm() != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		ok := r.PostForm.Get("grant_type") == "client_credentials" &&
			r.PostForm.Get("client_id") == testClientID &&
			r.PostForm.Get("client_secret") == testSecret
		w.Header().Set("Content-Type", "application/json")
		if !ok || k.tokenFail.Load() {
			w.WriteHeader(http.StatusUnauthorized)
			// A hostile or buggy server echoing the secret must not leak it.
			fmt.Fprintf(w, `{"error":"unauthorized_client %s","error_description":"Invalid client credentials"}`, r.PostForm.Get("client_secret"))
			return
		}
		io.WriteString(w, `{"access_token":"eyJhbGciOiJSUzI1NiJ9.e30.sig","expires_in":60,"token_type":"Bearer"}`)
	case "/lb-check":
		if k.lbDown.Load() {
			writeHealth(w, 503, `{"status":"DOWN"}`)
			return
		}
		writeHealth(w, 200, `{"status":"UP"}`)
	default:
		io.WriteString(w, "ok")
	}
}

// event is one OnHealth call.
type event struct {
	server   string // "" for panic-mode edges
	from, to backend.Health
	reason   string
	panic    bool
}

// env is a pool of fake nodes with a running checker, on a fake clock
// (clk) or on the clock of the synctest bubble it was made in (clk nil).
type env struct {
	t       *testing.T
	clk     *fakeClock
	pool    *backend.Pool
	checker *Checker
	nodes   []*fakeKC
	events  chan event
	opts    Options
	logs    *syncBuffer
	// idle is the number of clock waiters when every goroutine is idle
	// (fake clock only).
	idle int
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testOptions are Options for fake-clock tests: 1s interval, no jitter.
func testOptions() Options {
	return Options{
		Interval: time.Second,
		Timeout:  5 * time.Second,
		Rise:     2,
		Fall:     3,
		Jitter:   -1,
	}
}

func newEnv(t *testing.T, n int, opts Options) *env {
	t.Helper()
	nodes := newNodes(t, n)
	e := newEnvSpecs(t, specsOf(nodes), opts)
	e.nodes = nodes
	return e
}

// newNodes starts n fake nodes named node1..noden. In a synctest test,
// call it outside the bubble: a server's goroutines wait on sockets,
// which never counts as durably blocked, so inside the bubble time would
// never move.
func newNodes(t *testing.T, n int) []*fakeKC {
	t.Helper()
	nodes := make([]*fakeKC, 0, n)
	for i := range n {
		nodes = append(nodes, newFakeKC(t, fmt.Sprintf("node%d", i+1), n))
	}
	return nodes
}

func specsOf(nodes []*fakeKC) []backend.Spec {
	specs := make([]backend.Spec, 0, len(nodes))
	for _, k := range nodes {
		specs = append(specs, k.spec())
	}
	return specs
}

// newBubbleEnv starts a checker for nodes on the clock of the synctest
// bubble it is called in (t is the bubble's): rounds run at exact
// instants, and settle is synctest.Wait.
func newBubbleEnv(t *testing.T, nodes []*fakeKC, opts Options) *env {
	t.Helper()
	e := newEnvClock(t, specsOf(nodes), opts, nil)
	e.nodes = nodes
	return e
}

// newEnvSpecs starts a checker on a fake clock for a pool of specs.
func newEnvSpecs(t *testing.T, specs []backend.Spec, opts Options) *env {
	t.Helper()
	return newEnvClock(t, specs, opts, newFakeClock())
}

// newEnvClock starts a checker for a pool of specs on clk, or on the
// synctest bubble's clock when clk is nil.
func newEnvClock(t *testing.T, specs []backend.Spec, opts Options, clk *fakeClock) *env {
	t.Helper()
	e := &env{t: t, clk: clk, events: make(chan event, 1000), logs: &syncBuffer{}}
	pool, err := backend.NewPool(specs, backend.PoolOptions{
		// The pool ramps on the wall clock: an hour keeps a returning
		// server at weight 1 for the whole test.
		Slowstart: time.Hour,
		OnHealth: func(s *backend.Server, from, to backend.Health, reason string, panicMode bool) {
			ev := event{from: from, to: to, reason: reason, panic: panicMode}
			if s != nil {
				ev.server = s.Name()
			}
			e.events <- ev
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.pool = pool
	if clk != nil {
		opts.Clock = clk
	}
	opts.Logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.opts = opts
	c, err := New(pool.Servers, pool, opts)
	if err != nil {
		t.Fatal(err)
	}
	e.checker = c
	e.idle = len(specs) + 1
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	e.settle()
	return e
}

// settle waits until every goroutine is idle on the clock: the round in
// progress is complete.
func (e *env) settle() {
	e.t.Helper()
	if e.clk == nil {
		synctest.Wait()
		return
	}
	e.clk.BlockUntil(e.t, e.idle)
}

// advance moves the clock forward by d.
func (e *env) advance(d time.Duration) {
	if e.clk == nil {
		time.Sleep(d)
		return
	}
	e.clk.Advance(d)
}

// step advances one interval and waits for the round to complete.
func (e *env) step() {
	e.t.Helper()
	e.settle()
	e.advance(time.Second)
	e.settle()
}

func (e *env) server(i int) *backend.Server { return e.pool.Lookup(e.nodes[i].node) }

// drain returns the events received so far.
func (e *env) drain() []event {
	var out []event
	for {
		select {
		case ev := <-e.events:
			out = append(out, ev)
		default:
			return out
		}
	}
}

// serverEvents filters out panic-mode edges.
func serverEvents(evs []event) []event {
	var out []event
	for _, ev := range evs {
		if ev.server != "" {
			out = append(out, ev)
		}
	}
	return out
}
