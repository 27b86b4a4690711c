package proxy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/balancer"
	"github.com/kclb/kclb/internal/pathpolicy"
)

// echoed is what the test backend saw.
type echoed struct {
	Node   string
	Method string
	URI    string
	Host   string
	Header http.Header
	Body   string
}

// startBackend starts a loopback backend named node that echoes the
// request as JSON, and serves a few special paths.
func startBackend(t *testing.T, node string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/framed"):
			w.Header().Set("X-Frame-Options", "SAMEORIGIN")
			w.Header().Set("Strict-Transport-Security", "max-age=1")
		case strings.HasSuffix(r.URL.Path, "/login-status-iframe.html"):
			w.Header().Set("Content-Security-Policy", "object-src 'none';")
		case strings.HasSuffix(r.URL.Path, "/big"):
			w.Header().Set("X-Big", strings.Repeat("a", 100<<10))
		case strings.HasSuffix(r.URL.Path, "/busy"):
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Connection", "close-me-not")
		json.NewEncoder(w).Encode(echoed{Node: node, Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: r.Header, Body: string(b)})
	}))
	t.Cleanup(srv.Close)
	return srv
}

type testProxy struct {
	pool  *backend.Pool
	h     *Handler
	front *httptest.Server
}

func newTestProxy(t *testing.T, addrs []string, mod func(*Options)) *testProxy {
	t.Helper()
	var specs []backend.Spec
	for i, a := range addrs {
		specs = append(specs, backend.Spec{Name: fmt.Sprintf("kc%d", i+1), Addr: a})
	}
	pool, err := backend.NewPool(specs, backend.PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		Pool:     pool,
		Router:   BalancerRouter{Selector: &balancer.RoundRobin{}},
		Policy:   pathpolicy.New(pathpolicy.Options{AdminNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}),
		Security: NewSecurityHeaders("max-age=31536000; includeSubDomains", "nosniff", "no-referrer", "SAMEORIGIN"),
	}
	if mod != nil {
		mod(&opts)
	}
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	front := httptest.NewServer(h)
	t.Cleanup(front.Close)
	return &testProxy{pool: pool, h: h, front: front}
}

func hostOf(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

func get(t *testing.T, c *http.Client, req *http.Request) (*http.Response, echoed) {
	t.Helper()
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e echoed
	b, _ := io.ReadAll(resp.Body)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("bad echo %q: %v", b, err)
		}
	}
	return resp, e
}

func TestRoundRobinSpreads(t *testing.T) {
	b1, b2, b3 := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")
	p := newTestProxy(t, []string{hostOf(b1), hostOf(b2), hostOf(b3)}, nil)
	seen := map[string]int{}
	for range 30 {
		req, _ := http.NewRequest("GET", p.front.URL+"/realms/test/x", nil)
		_, e := get(t, nil, req)
		seen[e.Node]++
	}
	for _, n := range []string{"a", "b", "c"} {
		if seen[n] != 10 {
			t.Fatalf("distribution %v, want 10 each", seen)
		}
	}
}

func TestStoppedServerSkipped(t *testing.T) {
	b1 := startBackend(t, "a")
	dead := startBackend(t, "dead")
	deadAddr := hostOf(dead)
	dead.Close()
	p := newTestProxy(t, []string{deadAddr, hostOf(b1)}, nil)
	for i := range 10 {
		// POST with a body is replayed too: a refused connect sent nothing.
		req, _ := http.NewRequest("POST", p.front.URL+"/realms/test/login-actions/authenticate", strings.NewReader("user=alice"))
		resp, e := get(t, nil, req)
		if resp.StatusCode != 200 || e.Node != "a" || e.Body != "user=alice" {
			t.Fatalf("request %d: status %d node %q body %q", i, resp.StatusCode, e.Node, e.Body)
		}
	}
	if st := p.h.Stats(); st.Retries == 0 {
		t.Fatalf("no retry counted: %+v", st)
	}
	// Passive detection ejects as down, never dead (issue 18, item 2).
	if got := p.pool.Lookup("kc1").Health(); got != backend.HealthDown {
		t.Fatalf("stopped server health = %v, want down after passive failures", got)
	}
}

func TestAllServersDown(t *testing.T) {
	dead := startBackend(t, "dead")
	addr := hostOf(dead)
	dead.Close()
	p := newTestProxy(t, []string{addr}, nil)
	req, _ := http.NewRequest("GET", p.front.URL+"/realms/test/x", nil)
	resp, _ := get(t, nil, req)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	p.pool.SetAdmin("kc1", backend.AdminMaint)
	resp, _ = get(t, nil, req)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d retry-after %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func TestBusyRetriedElsewhere(t *testing.T) {
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(busy.Close)
	ok := startBackend(t, "ok")
	p := newTestProxy(t, []string{hostOf(busy), hostOf(ok)}, nil)
	for range 6 {
		req, _ := http.NewRequest("GET", p.front.URL+"/realms/test/x", nil)
		resp, e := get(t, nil, req)
		if resp.StatusCode != 200 || e.Node != "ok" {
			t.Fatalf("status %d node %q", resp.StatusCode, e.Node)
		}
	}
	if h := p.pool.Lookup("kc1").Health(); h != backend.HealthUp {
		t.Fatalf("busy server ejected: %v", h)
	}
}

func TestForwardedHeadersNotTrusted(t *testing.T) {
	b := startBackend(t, "a")
	p := newTestProxy(t, []string{hostOf(b)}, nil)
	req, _ := http.NewRequest("GET", p.front.URL+"/realms/test/x", nil)
	req.Host = "sso.example.com"
	for k, v := range map[string]string{
		"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https",
		"Forwarded": "for=6.6.6.6", "X-Real-IP": "6.6.6.6", "Traceparent": "00-x", "X-B3-TraceId": "1",
		"X-Original-URL": "/admin", "X-Request-ID": "abc-123",
	} {
		req.Header.Set(k, v)
	}
	_, e := get(t, nil, req)
	h := e.Header
	want := map[string]string{
		"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Host": "sso.example.com",
		"X-Forwarded-Proto": "http", "X-Forwarded-Port": "80", "X-Request-Id": "abc-123",
	}
	for k, v := range want {
		if got := h.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want [%q]", k, got, v)
		}
	}
	for _, k := range []string{"Forwarded", "X-Real-Ip", "Traceparent", "X-B3-Traceid", "X-Original-Url"} {
		if v := h.Values(k); len(v) != 0 {
			t.Errorf("%s reached the backend: %q", k, v)
		}
	}
	if e.Host != "sso.example.com" {
		t.Errorf("Host = %q, want the client's", e.Host)
	}
}

func TestForwardedFamilyAndTrustedProxy(t *testing.T) {
	b := startBackend(t, "a")
	p := newTestProxy(t, []string{hostOf(b)}, func(o *Options) {
		o.Headers = Forwarded
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	req, _ := http.NewRequest("GET", p.front.URL+"/realms/test/x", nil)
	req.Host = "sso.example.com:8443"
	req.Header.Set("Forwarded", "for=192.0.2.1;proto=https")
	req.Header.Set("X-Forwarded-For", "192.0.2.1")
	_, e := get(t, nil, req)
	got := e.Header.Values("Forwarded")
	want := `for=192.0.2.1;proto=https, for=127.0.0.1;proto=http;host="sso.example.com:8443"`
	if len(got) != 1 || got[0] != want {
		t.Fatalf("Forwarded = %q, want %q", got, want)
	}
	if v := e.Header.Values("X-Forwarded-For"); len(v) != 0 {
		t.Fatalf("second family reached the backend: %q", v)
	}
}

func TestPathPolicyBlocksBypasses(t *testing.T) {
	b := startBackend(t, "a")
	p := newTestProxy(t, []string{hostOf(b)}, nil)
	for _, path := range []string{"/admin/", "//admin/master/console/", "/%61dmin/", "/realms/../admin/", "/ADMIN/", "/admin;x/", "/realms%2F..%2Fadmin/", "/metrics", "/health/ready", "/"} {
		// Send the raw request target so the client does not clean it.
		conn, err := net.Dial("tcp", hostOf(p.front))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path)
		b, _ := io.ReadAll(conn)
		conn.Close()
		status := strings.SplitN(string(b), " ", 3)
		if len(status) < 2 || (status[1] != "403" && status[1] != "404") {
			t.Errorf("%s: got %q, want 403/404", path, strings.SplitN(string(b), "\r\n", 2)[0])
		}
	}
	// The canonical path is what reaches the backend.
	req, _ := http.NewRequest("GET", p.front.URL+"/realms/test/x", nil)
	req.URL.RawPath = "/realms//test/./%78"
	resp, e := get(t, nil, req)
	if resp.StatusCode != 200 || e.URI != "/realms/test/x" {
		t.Fatalf("status %d, backend saw %q", resp.StatusCode, e.URI)
	}
	if p.h.Stats().Blocked < 10 {
		t.Fatalf("blocked counter %d", p.h.Stats().Blocked)
	}
}

func TestSecurityHeaders(t *testing.T) {
	b := startBackend(t, "a")
	p := newTestProxy(t, []string{hostOf(b)}, nil)
	tests := []struct {
		name, path string
		want       map[string]string
	}{
		// Plain HTTP: no HSTS added (issue 12, item 7; RFC 6797 7.2).
		{"added when missing", "/realms/test/x", map[string]string{
			"X-Frame-Options": "SAMEORIGIN", "Strict-Transport-Security": "",
			"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}},
		{"keycloak's own kept", "/realms/test/framed", map[string]string{
			"X-Frame-Options": "SAMEORIGIN", "Strict-Transport-Security": "max-age=1"}},
		{"iframe page not framed", "/realms/test/protocol/openid-connect/login-status-iframe.html", map[string]string{
			"X-Frame-Options": "", "X-Content-Type-Options": "nosniff"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", p.front.URL+tt.path, nil)
			resp, _ := get(t, nil, req)
			for k, v := range tt.want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if resp.Header.Get("Connection") != "" {
				t.Errorf("hop-by-hop Connection leaked: %q", resp.Header.Get("Connection"))
			}
		})
	}
}

func TestLargeResponseHeader(t *testing.T) {
	b := startBackend(t, "a")
	p := newTestProxy(t, []string{hostOf(b)}, nil)
	req, _ := http.NewRequest("GET", p.front.URL+"/realms/test/big", nil)
	resp, _ := get(t, nil, req)
	if resp.StatusCode != 200 || len(resp.Header.Get("X-Big")) != 100<<10 {
		t.Fatalf("status %d, X-Big %d bytes", resp.StatusCode, len(resp.Header.Get("X-Big")))
	}
}

func TestRedirectHandler(t *testing.T) {
	tests := []struct {
		name, host, uri string
		port            int
		want            string
	}{
		{"default port", "sso.example.com", "/realms/x?a=b", 443, "https://sso.example.com/realms/x?a=b"},
		{"other port", "sso.example.com:8080", "/", 8443, "https://sso.example.com:8443/"},
		{"ipv6", "[::1]:8080", "/r", 8443, "https://[::1]:8443/r"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("GET", tt.uri, nil)
			req.Host = tt.host
			RedirectHandler(tt.port).ServeHTTP(rec, req)
			if rec.Code != http.StatusPermanentRedirect || rec.Header().Get("Location") != tt.want {
				t.Fatalf("%d %q, want 308 %q", rec.Code, rec.Header().Get("Location"), tt.want)
			}
		})
	}
}

// rawExchange writes req on a new connection to addr and returns what
// came back until the server closed the connection (or 5 s passed).
func rawExchange(t *testing.T, addr, req string) (resp string, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err == nil
}

func TestBrokenClientBodyIsNotBackendFault(t *testing.T) {
	be := startBackend(t, "kc1")
	p := newTestProxy(t, []string{hostOf(be)}, nil)
	const n = 5 // more than PassiveFails (3)
	for i := range n {
		req := "POST /realms/test/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nAB\r\n0\r\n\r\n"
		resp, closed := rawExchange(t, hostOf(p.front), req)
		if !strings.HasPrefix(resp, "HTTP/1.1 400 ") || !closed {
			t.Fatalf("request %d: got %q closed=%v, want a 400 and the connection closed", i, resp, closed)
		}
	}
	if got := p.h.Stats().BadRequests; got != n {
		t.Errorf("BadRequests = %d, want %d", got, n)
	}
	if s := p.pool.Servers()[0]; s.Health() != backend.HealthUp {
		t.Errorf("server health %v after broken client bodies, want up", s.Health())
	}
	if st := p.h.Stats(); st.BadGateway != 0 || st.Timeouts != 0 {
		t.Errorf("client errors counted as gateway errors: %+v", st)
	}
}

func TestChunkedRequestClosesConnection(t *testing.T) {
	be := startBackend(t, "kc1")
	p := newTestProxy(t, []string{hostOf(be)}, nil)
	// Content-Length and Transfer-Encoding together: net/http frames by
	// Transfer-Encoding; the connection must not serve a second request.
	req := "POST /realms/test/x HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" +
		"GET /realms/test/smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
	resp, closed := rawExchange(t, hostOf(p.front), req)
	if !closed || strings.Count(resp, "HTTP/1.1 ") != 1 || !strings.HasPrefix(resp, "HTTP/1.1 200 ") {
		t.Fatalf("got %q closed=%v, want one 200 and the connection closed", resp, closed)
	}
	if strings.Contains(resp, "smuggled") {
		t.Errorf("second request was served: %q", resp)
	}
}

func TestTruncatedBodyReleasesSlot(t *testing.T) {
	addr, _ := rawBackend(t, func(_ int, c net.Conn, br *bufio.Reader) {
		http.ReadRequest(br)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("x", 8192))
	})
	p := newTestProxy(t, []string{addr}, nil)
	s := p.pool.Servers()[0]
	for i := range 3 {
		resp, err := http.Get(p.front.URL + "/realms/test/x")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err == nil {
			t.Fatalf("request %d: truncated body read without error", i)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.InFlight() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := s.InFlight(); n != 0 {
		t.Errorf("InFlight = %d after truncated responses, want 0 (slot leaked)", n)
	}
	if got := p.h.Stats().Truncated; got != 3 {
		t.Errorf("Truncated = %d, want 3", got)
	}
}

func TestEmptyBodyRetried(t *testing.T) {
	// kc1 accepts and closes every connection without answering.
	addr, _ := rawBackend(t, func(_ int, _ net.Conn, br *bufio.Reader) {
		http.ReadRequest(br) // then close without answering
	})
	good := startBackend(t, "kc2")
	p := newTestProxy(t, []string{addr, hostOf(good)}, nil)
	for i := range 4 {
		// A GET whose body is empty but not absent (chunked, zero length).
		resp, _ := rawExchange(t, hostOf(p.front), "GET /realms/test/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n")
		if !strings.HasPrefix(resp, "HTTP/1.1 200 ") {
			t.Fatalf("request %d: %q, want 200 after a retry on kc2", i, resp)
		}
	}
	if st := p.h.Stats(); st.Retries == 0 || st.BadGateway != 0 {
		t.Errorf("stats %+v, want retries and no 502", st)
	}
}

func TestRefusedChunkedRequestClosesConnection(t *testing.T) {
	be := startBackend(t, "kc1")
	p := newTestProxy(t, []string{hostOf(be)}, nil)
	req := "POST /admin/x HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" +
		"GET /realms/test/smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
	resp, closed := rawExchange(t, hostOf(p.front), req)
	if !closed || strings.Count(resp, "HTTP/1.1 ") != 1 || !strings.HasPrefix(resp, "HTTP/1.1 403 ") {
		t.Fatalf("got %q closed=%v, want one 403 and the connection closed", resp, closed)
	}
}
