package admin

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/backend"
)

func testPool(t *testing.T) *backend.Pool {
	t.Helper()
	p, err := backend.NewPool([]backend.Spec{
		{Name: "kc1", Addr: "127.0.0.1:1"}, {Name: "kc2", Addr: "127.0.0.1:2"},
	}, backend.PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStateFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	f := NewStateFile(filepath.Join(dir, "sub", "state.json"))
	st, err := f.Load()
	if err != nil || len(st.Servers) != 0 {
		t.Fatalf("missing file: %v %v", st, err)
	}
	st.Servers["kc1"] = "drain"
	st.Servers["gone"] = "maint"
	if err := f.Save(st); err != nil {
		t.Fatal(err)
	}
	got, err := f.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got.Servers["kc1"] != "drain" || got.Servers["gone"] != "maint" || len(got.Servers) != 2 {
		t.Fatalf("loaded %v", got.Servers)
	}
	entries, _ := os.ReadDir(filepath.Dir(f.Path()))
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
}

func TestParseState(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"empty servers", `{"version":1,"servers":{}}`, true},
		{"drain", `{"version":1,"servers":{"a":"drain"}}`, true},
		{"no servers key", `{"version":1}`, true},
		{"bad version", `{"version":2,"servers":{}}`, false},
		{"bad state", `{"version":1,"servers":{"a":"off"}}`, false},
		{"empty name", `{"version":1,"servers":{"":"drain"}}`, false},
		{"not json", `drain`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseState([]byte(tc.in))
			if (err == nil) != tc.ok {
				t.Fatalf("ParseState(%s) error %v, want ok=%v", tc.in, err, tc.ok)
			}
		})
	}
}

func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"version":1,"servers":{"a":"drain","b":"maint"}}`))
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := ParseState(b)
		if err != nil {
			return
		}
		for name, a := range st.Servers {
			if _, ok := backend.ParseAdminState(a); !ok || name == "" {
				t.Fatalf("accepted %q=%q", name, a)
			}
		}
	})
}

func TestRestoreAppliesState(t *testing.T) {
	pool := testPool(t)
	f := NewStateFile(filepath.Join(t.TempDir(), "state.json"))
	if err := f.Save(State{Servers: map[string]string{"kc2": "maint", "other": "drain"}}); err != nil {
		t.Fatal(err)
	}
	s, _ := New(Options{Pool: pool, State: f})
	applied, err := s.Restore()
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != 1 || applied[0] != "kc2" || pool.Lookup("kc2").Admin() != backend.AdminMaint {
		t.Fatalf("applied %v, kc2 %v", applied, pool.Lookup("kc2").Admin())
	}
	// A later change keeps the unknown server's entry.
	if _, err := s.SetAdmin("kc1", backend.AdminDrain); err != nil {
		t.Fatal(err)
	}
	st, _ := f.Load()
	if st.Servers["other"] != "drain" || st.Servers["kc1"] != "drain" || st.Servers["kc2"] != "maint" {
		t.Fatalf("saved %v", st.Servers)
	}
	if _, err := s.SetAdmin("kc2", backend.AdminReady); err != nil {
		t.Fatal(err)
	}
	if st, _ := f.Load(); st.Servers["kc2"] != "" {
		t.Fatalf("ready server still persisted: %v", st.Servers)
	}
	if _, err := s.SetAdmin("nope", backend.AdminDrain); !errors.Is(err, ErrUnknownServer) {
		t.Fatalf("unknown server: %v", err)
	}
}

func TestSetAdminNotPersisted(t *testing.T) {
	pool := testPool(t)
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	os.WriteFile(blocker, nil, 0o600)
	s, _ := New(Options{Pool: pool, State: NewStateFile(filepath.Join(blocker, "state.json"))})
	if _, err := s.SetAdmin("kc1", backend.AdminDrain); !errors.Is(err, ErrNotPersisted) {
		t.Fatalf("err %v, want ErrNotPersisted", err)
	}
	if pool.Lookup("kc1").Admin() != backend.AdminDrain {
		t.Fatal("state not applied")
	}
}

// tcpServer serves s untrusted on loopback and returns its base URL.
func tcpServer(t *testing.T, s *Server, trusted bool) string {
	t.Helper()
	ts := httptest.NewServer(s.Handler(trusted))
	t.Cleanup(ts.Close)
	return ts.URL
}

func TestTokenAuth(t *testing.T) {
	pool := testPool(t)
	// Reads open to all (public_read), so that Status shows Authorized.
	s, _ := New(Options{Pool: pool, Token: "s3cret", PublicRead: true})
	base := tcpServer(t, s, false)
	ctx := context.Background()
	for _, tc := range []struct {
		name, token string
		ok          bool
	}{
		{"no token", "", false},
		{"wrong token", "nope", false},
		{"right token", "s3cret", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewTCPClient(base, tc.token)
			st, err := c.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Authorized != tc.ok {
				t.Fatalf("authorized %v", st.Authorized)
			}
			_, err = c.SetAdmin(ctx, "kc1", backend.AdminDrain)
			var ae *APIError
			if tc.ok != (err == nil) || (!tc.ok && (!errors.As(err, &ae) || ae.Code != http.StatusUnauthorized)) {
				t.Fatalf("SetAdmin: %v", err)
			}
		})
	}
	if s.Unauthorized() != 2 {
		t.Fatalf("unauthorized counter %d, want 2", s.Unauthorized())
	}
	// Without a configured token, no TCP caller is authorised.
	s2, _ := New(Options{Pool: pool})
	if _, err := NewTCPClient(tcpServer(t, s2, false), "").SetAdmin(ctx, "kc1", backend.AdminReady); err == nil {
		t.Fatal("mutation without a configured token succeeded")
	}
	// The trusted listener needs no token.
	if _, err := NewTCPClient(tcpServer(t, s2, true), "").SetAdmin(ctx, "kc1", backend.AdminReady); err != nil {
		t.Fatal(err)
	}
}

func TestAPIErrors(t *testing.T) {
	s, _ := New(Options{Pool: testPool(t)})
	base := tcpServer(t, s, true)
	for _, tc := range []struct {
		name, method, path string
		code               int
		msg                string
	}{
		{"unknown server", "POST", "/v1/servers/nope/drain", 404, `unknown server`},
		{"unknown action", "POST", "/v1/servers/kc1/stop", 404, "unknown action"},
		{"bad until", "GET", "/v1/servers/kc1/wait?until=soon", 400, "until="},
		{"bad timeout", "GET", "/v1/servers/kc1/wait?timeout=forever", 400, "timeout="},
		{"wrong method", "GET", "/v1/servers/kc1/drain", 404, ""},
		{"no endpoint", "GET", "/v2/x", 404, "no such endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, base+tc.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			buf := make([]byte, 4096)
			n, _ := resp.Body.Read(buf)
			b.Write(buf[:n])
			resp.Body.Close()
			if resp.StatusCode != tc.code || !strings.Contains(b.String(), tc.msg) {
				t.Fatalf("%d %s, want %d containing %q", resp.StatusCode, b.String(), tc.code, tc.msg)
			}
		})
	}
}

func TestWaitIdleAndHealthy(t *testing.T) {
	pool := testPool(t)
	s, _ := New(Options{Pool: pool, PollInterval: 5 * time.Millisecond})
	c := NewTCPClient(tcpServer(t, s, true), "")
	ctx := context.Background()
	kc1 := pool.Lookup("kc1")

	// Never used: idle at once.
	if _, err := c.Wait(ctx, "kc1", UntilIdle, time.Second, 0); err != nil {
		t.Fatal(err)
	}
	// A request in flight holds the wait until it is released.
	if err := kc1.Acquire(ctx, 10, time.Second); err != nil {
		t.Fatal(err)
	}
	_, err := c.Wait(ctx, "kc1", UntilIdle, 50*time.Millisecond, time.Millisecond)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != http.StatusGatewayTimeout || !strings.Contains(ae.Error(), "1 requests in flight") || ae.Body.Server == nil {
		t.Fatalf("wait with a request in flight: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Wait(ctx, "kc1", UntilIdle, 10*time.Second, 20*time.Millisecond)
		done <- err
	}()
	kc1.Release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Healthy: a down server times out, an up one returns.
	pool.SetHealth(kc1, backend.HealthDown, backend.Detail{Reason: "db down"})
	if _, err := c.Wait(ctx, "kc1", UntilHealthy, 30*time.Millisecond, 0); !errors.As(err, &ae) || !strings.Contains(err.Error(), "db down") {
		t.Fatalf("wait healthy on a down server: %v", err)
	}
	go func() {
		_, err := c.Wait(ctx, "kc1", UntilHealthy, 10*time.Second, 0)
		done <- err
	}()
	pool.SetHealth(kc1, backend.HealthUp, backend.Detail{})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestWaitHealthyNeedsFreshCheck(t *testing.T) {
	pool, _ := backend.NewPool([]backend.Spec{{Name: "kc1", Addr: "127.0.0.1:1", Mgmt: "127.0.0.1:2"}}, backend.PoolOptions{})
	s, _ := New(Options{Pool: pool, ActiveChecks: true, PollInterval: 5 * time.Millisecond})
	kc1 := pool.Lookup("kc1")
	pool.SetHealth(kc1, backend.HealthUp, backend.Detail{LastCheck: time.Now().Add(-time.Minute), Passes: 5})
	start := time.Now()
	if ok, why := s.condition(kc1, UntilHealthy, 0, start, start); ok || !strings.Contains(why, "no health check") {
		t.Fatalf("stale check accepted: %v %q", ok, why)
	}
	pool.SetHealth(kc1, backend.HealthUp, backend.Detail{LastCheck: start.Add(time.Millisecond), Fails: 1, LastResult: "timeout"})
	if ok, why := s.condition(kc1, UntilHealthy, 0, start, start); ok || !strings.Contains(why, "timeout") {
		t.Fatalf("failed check accepted: %v %q", ok, why)
	}
	pool.SetHealth(kc1, backend.HealthUp, backend.Detail{LastCheck: start.Add(time.Millisecond), Passes: 1})
	if ok, why := s.condition(kc1, UntilHealthy, 0, start, start); !ok {
		t.Fatalf("fresh passing check refused: %q", why)
	}
}

func TestClientSocketErrors(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	_, err := NewUnixClient(filepath.Join(dir, "missing.sock")).Status(ctx)
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing socket: %v", err)
	}
	// A socket file nobody listens on: connection refused.
	path := filepath.Join(dir, "dead.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := NewUnixClient(path).Status(ctx); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("dead socket: %v", err)
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	s, _ := New(Options{Pool: testPool(t), PublicRead: true})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx, ln, false) }()
	c := NewTCPClient("http://"+ln.Addr().String(), "")
	// A long wait in progress must not hold up shutdown.
	pool := s.opts.Pool
	pool.Lookup("kc1").Acquire(ctx, 1, time.Second)
	waitErr := make(chan error, 1)
	go func() {
		_, err := c.Wait(context.Background(), "kc1", UntilIdle, time.Hour, 0)
		waitErr <- err
	}()
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if err := <-waitErr; err == nil {
		t.Fatal("wait succeeded although the server stopped")
	}
}

func TestApplyPersistedToLateServer(t *testing.T) {
	pool := testPool(t)
	f := NewStateFile(filepath.Join(t.TempDir(), "state.json"))
	if err := f.Save(State{Servers: map[string]string{"late": "drain"}}); err != nil {
		t.Fatal(err)
	}
	s, _ := New(Options{Pool: pool, State: f})
	if _, err := s.Restore(); err != nil {
		t.Fatal(err)
	}
	if s.ApplyPersisted("late") {
		t.Fatal("applied to a server that is not in the pool")
	}
	pool.Add(backend.Spec{Name: "late", Addr: "127.0.0.1:3"})
	if !s.ApplyPersisted("late") || pool.Lookup("late").Admin() != backend.AdminDrain {
		t.Fatal("persisted drain not applied to a server added later")
	}
	if s.ApplyPersisted("kc1") {
		t.Fatal("applied a state to a server without one")
	}
}

func FuzzDurationParam(f *testing.F) {
	for _, s := range []string{"", "60s", "1m30s", "2.5", "0", "-1s", "1e9", "NaN", "+3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := durationParam(s, time.Second)
		if err == nil && d < 0 {
			t.Fatalf("durationParam(%q) = %v", s, d)
		}
	})
}

func TestRecentRequests(t *testing.T) {
	pool := testPool(t)
	s, _ := New(Options{Pool: pool})
	kc1 := pool.Lookup("kc1")
	if st := s.Snapshot(true); st.Servers[0].RecentRequests != nil {
		t.Fatal("recent requests before the first sample")
	}
	s.recent.sample(pool.Servers())
	ctx := context.Background()
	for range 5 {
		kc1.Acquire(ctx, 1, time.Second)
		kc1.Release()
	}
	if st := s.Snapshot(true); st.Servers[0].RecentRequests == nil || *st.Servers[0].RecentRequests != 5 || *st.Servers[1].RecentRequests != 0 {
		t.Fatalf("recent requests %v %v", st.Servers[0].RecentRequests, st.Servers[1].RecentRequests)
	}
	// The requests leave the window after recentSlots samples.
	for i := range recentSlots {
		if n, _ := s.recent.requests(kc1); n != 5 && i < recentSlots-1 {
			t.Fatalf("sample %d: %d recent requests, want 5", i, n)
		}
		s.recent.sample(pool.Servers())
	}
	if n, ok := s.recent.requests(kc1); !ok || n != 0 {
		t.Fatalf("after the window: %d %v", n, ok)
	}
	pool.Remove("kc2")
	s.recent.sample(pool.Servers())
	if len(s.recent.rings) != 1 {
		t.Fatalf("removed server kept: %d rings", len(s.recent.rings))
	}
}

// TestTCPGuard pins issue 12, item 8 on an untrusted listener: reads
// need the token unless PublicRead (the stats page's HTML excepted), a
// Host that does not name the listener is refused whatever the token,
// and a source address that failed the token 10 times gets 429, the
// right token included.
func TestTCPGuard(t *testing.T) {
	const token = "0123456789abcdef0123456789abcdef"
	s, _ := New(Options{Pool: testPool(t), Token: token, Hosts: []string{"kclb1.internal"}})
	base := tcpServer(t, s, false)
	get := func(path, host, tok string) int {
		req, _ := http.NewRequest("GET", base+path, nil)
		if host != "" {
			req.Host = host
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	port := base[strings.LastIndexByte(base, ':')+1:]
	tests := []struct {
		name, path, host, token string
		code                    int
	}{
		{"status without token", "/v1/status", "", "", 401},
		{"server without token", "/v1/servers/kc1", "", "", 401},
		{"wait without token", "/v1/servers/kc1/wait?timeout=0", "", "", 401},
		{"status with token", "/v1/status", "", token, 200},
		{"stats page without token", "/stats", "", "", 200},
		{"root page without token", "/", "", "", 200},
		{"localhost", "/v1/status", "localhost:" + port, token, 200},
		{"configured name", "/v1/status", "kclb1.internal:" + port, token, 200},
		{"rebound name", "/v1/status", "evil.example:" + port, token, 421},
		{"rebound name, page", "/stats", "evil.example", "", 421},
		{"empty Host", "/v1/status", " ", token, 421},
	}
	for _, tc := range tests {
		if got := get(tc.path, tc.host, tc.token); got != tc.code {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.code)
		}
	}
	if s.Misdirected() != 3 {
		t.Errorf("Misdirected %d, want 3", s.Misdirected())
	}
	// Token failures are limited per source address.
	for i := 0; i < maxTokenFailures-3; i++ { // 3 failures above already
		if got := get("/v1/status", "", "wrong"); got != 401 {
			t.Fatalf("failure %d: %d, want 401", i, got)
		}
	}
	if got := get("/v1/status", "", "wrong"); got != 429 {
		t.Errorf("after %d failures: %d, want 429", maxTokenFailures, got)
	}
	if got := get("/v1/status", "", token); got != 429 {
		t.Errorf("right token from a blocked address: %d, want 429", got)
	}
	open, _ := New(Options{Pool: testPool(t), Token: token, PublicRead: true})
	if got := getFrom(t, tcpServer(t, open, false)+"/v1/status"); got != 200 {
		t.Errorf("PublicRead status: %d, want 200", got)
	}
}

func getFrom(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestFailTableBounded(t *testing.T) {
	var ft failTable
	now := time.Now()
	for i := range maxFailEntries + 10 {
		ft.fail(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), now)
	}
	if n := len(ft.m); n > maxFailEntries {
		t.Fatalf("%d entries, want at most %d", n, maxFailEntries)
	}
	a := netip.MustParseAddr("192.0.2.1")
	for range maxTokenFailures {
		ft.fail(a, now)
	}
	if !ft.blocked(a, now) || ft.blocked(a, now.Add(tokenFailWindow)) {
		t.Fatalf("window not applied")
	}
}

// acceptSignal is a listener that reports each connection it accepts.
type acceptSignal struct {
	net.Listener
	accepted chan struct{}
}

func (l acceptSignal) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted <- struct{}{}
	}
	return c, err
}

// TestServeFinishesAcceptedOnListenerClose pins the hand-over of a binary
// upgrade: when the old process closes its admin listener (the new one
// serves on the same socket), a connection it had accepted and not yet
// read a request from is still answered, and Serve returns only after
// that, so the process does not exit (and reset the connection) first.
func TestServeFinishesAcceptedOnListenerClose(t *testing.T) {
	s, _ := New(Options{Pool: testPool(t), PublicRead: true})
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := acceptSignal{tl, make(chan struct{}, 1)}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(context.Background(), ln, false) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	<-ln.accepted
	ln.Close()
	select {
	case err := <-errc:
		t.Fatalf("Serve returned (%v) with an accepted connection not yet served", err)
	case <-time.After(300 * time.Millisecond): // a window for the failure only
	}
	io.WriteString(c, "GET /v1/status HTTP/1.1\r\nHost: "+ln.Addr().String()+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("request on the accepted connection: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("request on the accepted connection: %s", resp.Status)
	}
	select {
	case <-errc:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the request")
	}
}
