package reliability

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/proxy"
)

// headBackend is a loopback HTTP/1.1 backend that records every request
// head byte for byte (and reads a Content-Length or chunked body) and
// answers with respond(head), by default a keep-alive 200 "ok".
type headBackend struct {
	addr string
	mu   sync.Mutex // guards heads and bodies
	// heads are the raw request heads in arrival order.
	heads []string
	// bodies are the request bodies as received (chunked bodies raw).
	bodies []string
}

// okResponse is headBackend's default answer.
const okResponse = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"

// startHeadBackend serves on a loopback port until the test ends.
// respond may be nil.
func startHeadBackend(t testing.TB, respond func(head string) string) *headBackend {
	t.Helper()
	hb := &headBackend{}
	rb := startRawBackendHeads(t, func(c *net.TCPConn, br *bufio.Reader, head string) bool {
		body, err := readBody(br, head)
		hb.mu.Lock()
		hb.heads = append(hb.heads, head)
		hb.bodies = append(hb.bodies, body)
		hb.mu.Unlock()
		if err != nil {
			return false
		}
		resp := okResponse
		if respond != nil {
			resp = respond(head)
		}
		_, err = io.WriteString(c, resp)
		return err == nil
	})
	hb.addr = rb
	return hb
}

// startRawBackendHeads accepts connections on a loopback port and calls
// serve for every request head read; serve returns whether to read
// another request on the connection.
func startRawBackendHeads(t testing.TB, serve func(c *net.TCPConn, br *bufio.Reader, head string) bool) string {
	t.Helper()
	return serveConns(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			head, err := readHead(br)
			if err != nil || !serve(c.(*net.TCPConn), br, head) {
				return
			}
		}
	})
}

// headerValue returns the value of the first field called name in head
// (case-insensitive), and whether there is one.
func headerValue(head, name string) (string, bool) {
	for _, line := range strings.Split(head, "\r\n")[1:] {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// readBody reads the body announced by head: Content-Length bytes, or a
// chunked body returned raw (chunks and trailers).
func readBody(br *bufio.Reader, head string) (string, error) {
	if te, ok := headerValue(head, "Transfer-Encoding"); ok && strings.EqualFold(te, "chunked") {
		var b strings.Builder
		for {
			line, err := br.ReadString('\n')
			b.WriteString(line)
			if err != nil {
				return b.String(), err
			}
			n, err := strconv.ParseInt(strings.TrimSpace(strings.SplitN(line, ";", 2)[0]), 16, 64)
			if err != nil {
				return b.String(), err
			}
			if n == 0 {
				for { // trailers up to the empty line
					line, err := br.ReadString('\n')
					b.WriteString(line)
					if err != nil || line == "\r\n" {
						return b.String(), err
					}
				}
			}
			chunk := make([]byte, n+2)
			if _, err := io.ReadFull(br, chunk); err != nil {
				return b.String(), err
			}
			b.Write(chunk)
		}
	}
	cl, ok := headerValue(head, "Content-Length")
	if !ok {
		return "", nil
	}
	n, err := strconv.ParseInt(cl, 10, 64)
	if err != nil {
		return "", err
	}
	body := make([]byte, n)
	_, err = io.ReadFull(br, body)
	return string(body), err
}

// all returns a copy of the recorded heads.
func (hb *headBackend) all() []string {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	return append([]string(nil), hb.heads...)
}

// count returns how many requests arrived.
func (hb *headBackend) count() int {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	return len(hb.heads)
}

// last returns the last head, or "".
func (hb *headBackend) last() string {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	if len(hb.heads) == 0 {
		return ""
	}
	return hb.heads[len(hb.heads)-1]
}

// TestH2PseudoHeaderValidation sends HTTP/2 requests whose :method,
// :path or :authority would inject into, or break, the HTTP/1.1 request
// kclb writes for the backend (issue 12, items 1 and 2). Each must be
// answered 400 on its own stream, counted in Stats.BadRequests, reach no
// backend, and leave the connection serving. The valid spellings next to
// them must pass unchanged.
func TestH2PseudoHeaderValidation(t *testing.T) {
	hb := startHeadBackend(t, nil)
	l := startLB(t, lbOptions{backends: []backend.Spec{{Addr: hb.addr}}})
	c := dialH2(t, l, 0)
	req := func(method, path, authority string) []string {
		return []string{":method", method, ":scheme", "https", ":authority", authority, ":path", path}
	}
	bad := []struct {
		name   string
		fields []string
	}{
		{"space in method", req("GET /admin/", "/realms/a", "localhost")},
		{"tab in method", req("GET\t/admin/", "/realms/a", "localhost")},
		{"slash in method", req("GET/", "/realms/a", "localhost")},
		{"space in query", req("GET", "/realms/a?x=1 /admin/ HTTP/1.1", "localhost")},
		{"space in path", req("GET", "/realms/a b", "localhost")},
		{"fragment", req("GET", "/realms/a#x", "localhost")},
		{"non-ASCII in path", req("GET", "/realms/\xc3\xa9", "localhost")},
		{"DEL in query", req("GET", "/realms/a?x=\x7f", "localhost")},
		{"script in authority", req("GET", "/realms/a", "evil.test<script>")},
		{"quote in authority", req("GET", "/realms/a", `x";for=6.6.6.6;by="`)},
		{"space in authority", req("GET", "/realms/a", "local host")},
		{"slash in authority", req("GET", "/realms/a", "localhost/admin")},
		{"brace in authority", req("GET", "/realms/a", "{localhost}")},
		{"pipe in authority", req("GET", "/realms/a", "local|host")},
		{"userinfo in authority", req("GET", "/realms/a", "user@localhost")},
		{"bad port", req("GET", "/realms/a", "localhost:44x")},
		{"port too big", req("GET", "/realms/a", "localhost:65536")},
		{"empty port", req("GET", "/realms/a", "localhost:")},
		{"zone in literal", req("GET", "/realms/a", "[fe80::1%eth0]")},
		{"unclosed literal", req("GET", "/realms/a", "[::1")},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			before := l.h.Stats()
			res := c.wait(c.send(c.block(tc.fields...), true), 5*time.Second)
			after := l.h.Stats()
			if res.goaway || res.closed {
				t.Fatalf("connection lost: %+v", res)
			}
			// net/http may reset a stream it cannot parse at all; what it
			// lets through, kclb answers 400 and counts.
			if res.reset {
				return
			}
			if res.status != 400 {
				t.Errorf("got %+v, want 400", res)
			}
			if got := after.BadRequests - before.BadRequests; got != 1 {
				t.Errorf("Stats.BadRequests +%d, want +1", got)
			}
		})
	}
	if n := hb.count(); n != 0 {
		t.Fatalf("backend got %d requests, want none: %q", n, hb.all())
	}
	good := []struct {
		name, authority, host string
	}{
		{"name", "localhost", "localhost"},
		{"name and port", "localhost:443", "localhost:443"},
		{"IPv4", "127.0.0.1", "127.0.0.1"},
		{"IPv6 and port", "[::1]:443", "[::1]:443"},
		{"sub-delims", "a-b_c~d.example", "a-b_c~d.example"},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			res := c.wait(c.send(c.block(req("GET", "/realms/a?x=1&y=%20", tc.authority)...), true), 5*time.Second)
			if res.status != 200 {
				t.Fatalf("got %+v, want 200", res)
			}
			head := hb.last()
			if !strings.HasPrefix(head, "GET /realms/a?x=1&y=%20 HTTP/1.1\r\n") {
				t.Errorf("request line: %q", strings.SplitN(head, "\r\n", 2)[0])
			}
			if v, _ := headerValue(head, "Host"); v != tc.host {
				t.Errorf("Host %q, want %q", v, tc.host)
			}
		})
	}
	t.Logf("pseudo-header cases: %d refused, %d passed; Stats %+v", len(bad), len(good), l.h.Stats())
}

// TestMissingHost pins issue 12, item 3: kclb never sends a backend's
// own address as Host. An HTTP/1.1 request with an empty Host is 400; an
// HTTP/1.0 request without Host and an HTTP/2 request without
// :authority get the configured public host name, or 400 without one.
func TestMissingHost(t *testing.T) {
	hb := startHeadBackend(t, nil)
	plain := startLB(t, lbOptions{backends: []backend.Spec{{Addr: hb.addr}}})
	public := startLB(t, lbOptions{backends: []backend.Spec{{Addr: hb.addr}},
		proxy: func(o *proxy.Options) { o.PublicHost = "auth.example.test" }})
	for _, l := range []*lb{plain, public} {
		want := 400
		if l == public {
			want = 200
		}
		tests := []struct {
			name, req string
			status    int
		}{
			{"HTTP/1.1 empty Host", "GET /realms/a HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n", 400},
			{"HTTP/1.1 blank Host", "GET /realms/a HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n", 400},
			{"HTTP/1.0 no Host", "GET /realms/a HTTP/1.0\r\n\r\n", want},
			{"HTTP/1.0 empty Host", "GET /realms/a HTTP/1.0\r\nHost:\r\n\r\n", want},
		}
		for _, tc := range tests {
			before := hb.count()
			res := rawHTTP(t, l.addr, tc.req, 5*time.Second)
			if res.status() != tc.status {
				t.Errorf("public host %v, %s: status %d, want %d: %q", l == public, tc.name, res.status(), tc.status, res.data)
			}
			if tc.status == 400 && hb.count() != before {
				t.Errorf("%s reached the backend: %q", tc.name, hb.last())
			}
		}
		c := dialH2(t, l, 0)
		before := hb.count()
		res := c.wait(c.send(c.block(":method", "GET", ":scheme", "https", ":path", "/realms/a"), true), 5*time.Second)
		if res.status != want {
			t.Errorf("public host %v, HTTP/2 without :authority: %+v, want %d", l == public, res, want)
		}
		if want == 400 && hb.count() != before {
			t.Errorf("HTTP/2 without :authority reached the backend: %q", hb.last())
		}
	}
	for _, head := range hb.all() {
		v, _ := headerValue(head, "Host")
		if v != "auth.example.test" {
			t.Errorf("backend got Host %q, want the public host name", v)
		}
		if strings.Contains(head, hb.addr) {
			t.Errorf("backend address in the request head: %q", head)
		}
	}
	if len(hb.all()) != 3 {
		t.Errorf("backend got %d requests, want 3 (HTTP/1.0 twice, HTTP/2 once, with the public host)", len(hb.all()))
	}
}

// clientCertHeaders are the headers Keycloak's x509cert-lookup providers
// read a client certificate from (haproxy, apache, nginx, envoy,
// traefik, RFC 9440) and the customary names around them.
var clientCertHeaders = []string{
	"SSL_CLIENT_CERT", "ssl-client-cert", "SSL_CLIENT_CERT_CHAIN_0", "CERT_CHAIN_0", "CERT_CHAIN_9",
	"ssl-client-verify", "X-Client-Cert", "X-SSL-Client-Cert", "X-SSL-Cert", "Client-Cert",
	"Client-Cert-Chain", "X-Forwarded-Client-Cert", "X-Forwarded-Tls-Client-Cert",
	"X-Forwarded-Tls-Client-Cert-Info",
}

// TestClientCertHeadersStripped pins issue 12, item 5: a client-sent
// client-certificate header never reaches Keycloak from an untrusted
// peer, over HTTP/1.1 (raw bytes, the spellings as written) and HTTP/2
// (raw frames); a trusted proxy's are kept on plain HTTP and removed on
// TLS, where kclb alone saw the handshake (issue 14, item 1).
func TestClientCertHeadersStripped(t *testing.T) {
	hb := startHeadBackend(t, nil)
	untrusted := startLB(t, lbOptions{backends: []backend.Spec{{Addr: hb.addr}}})
	trusted := startLB(t, lbOptions{backends: []backend.Spec{{Addr: hb.addr}}, trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	const cert = "-----BEGIN CERTIFICATE-----MIIforged-----END CERTIFICATE-----"
	for _, l := range []*lb{untrusted, trusted} {
		var b strings.Builder
		b.WriteString("GET /realms/a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n")
		var fields []string
		for _, k := range clientCertHeaders {
			b.WriteString(k + ": " + cert + "\r\n")
			fields = append(fields, strings.ToLower(k), cert)
		}
		b.WriteString("\r\n")
		if res := rawHTTP(t, l.addr, b.String(), 5*time.Second); res.status() != 200 {
			t.Fatalf("HTTP/1.1: status %d", res.status())
		}
		h1 := hb.last()
		c := dialH2(t, l, 0)
		if res := c.wait(c.get("/realms/a", fields...), 5*time.Second); res.status != 200 {
			t.Fatalf("HTTP/2: %+v", res)
		}
		h2 := hb.last()
		for proto, head := range map[string]string{"HTTP/1.1": h1, "HTTP/2": h2} {
			for _, k := range clientCertHeaders {
				_, ok := headerValue(head, k)
				if l == untrusted && ok {
					t.Errorf("%s: untrusted %s reached the backend", proto, k)
				}
				// Over TLS (HTTP/2 here) only kclb saw the handshake: every
				// client-sent copy goes, even a trusted proxy's (issue 14,
				// item 1; docs/configuration.md, client_cert_header).
				if l == trusted && proto == "HTTP/1.1" && !ok {
					t.Errorf("%s: trusted proxy's %s was dropped", proto, k)
				}
				if l == trusted && proto == "HTTP/2" && ok {
					t.Errorf("%s: trusted proxy's %s reached the backend over TLS", proto, k)
				}
			}
		}
	}
}

// busyResponse is a Keycloak node's answer when it is overloaded.
const busyResponse = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"

// TestH2BodilessRedispatch pins issue 12, item 4: an HTTP/2 request
// without a body (END_STREAM on HEADERS, or content-length: 0 and an
// empty DATA frame) is bodiless like the same request over HTTP/1.1, so
// a busy node's 503 is redispatched to the other node and the backend
// gets no body framing.
func TestH2BodilessRedispatch(t *testing.T) {
	busy := startHeadBackend(t, func(string) string { return busyResponse })
	good := startHeadBackend(t, nil)
	l := startLB(t, lbOptions{backends: []backend.Spec{{Addr: busy.addr}, {Addr: good.addr}}})
	c := dialH2(t, l, 0)
	const n = 6
	ok := 0
	for i := range 2 * n {
		var id uint32
		if i < n {
			id = c.get("/realms/a")
		} else {
			id = c.send(c.block(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/realms/a", "content-length", "0"), false)
			if err := c.fr.WriteData(id, true, nil); err != nil {
				t.Fatal(err)
			}
		}
		res := c.wait(id, 5*time.Second)
		if res.status == 200 {
			ok++
		} else {
			t.Errorf("request %d: %+v, want 200 (503 redispatched)", i, res)
		}
	}
	for _, head := range append(busy.all(), good.all()...) {
		if _, te := headerValue(head, "Transfer-Encoding"); te {
			t.Errorf("bodiless request sent with a body: %q", head)
		}
	}
	t.Logf("HTTP/2 bodiless GETs with one busy node: %d of %d answered 200; busy node saw %d, good node %d", ok, 2*n, busy.count(), good.count())
}

// TestH2BodyErrorResetsOnlyStream pins issue 12, item 4: a request body
// that breaks fails that stream only; the connection gets no GOAWAY and
// serves the next request. Two breaks: more DATA than the
// content-length (net/http resets the stream), and a body that stops
// arriving (the 2 s client timeout: 408 on that stream).
func TestH2BodyErrorResetsOnlyStream(t *testing.T) {
	hb := startHeadBackend(t, nil)
	l := startLB(t, lbOptions{backends: []backend.Spec{{Addr: hb.addr}}})
	c := dialH2(t, l, 0)
	before := l.h.Stats().BadRequests
	post := func() uint32 {
		return c.send(c.block(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/realms/a", "content-length", "10"), false)
	}
	tooMuch := post()
	if err := c.fr.WriteData(tooMuch, true, []byte("0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
	if res := c.wait(tooMuch, 5*time.Second); res.status == 200 || res.goaway || res.closed {
		t.Fatalf("too much DATA: %+v, want that stream failed and the connection kept", res)
	}
	stalled := post()
	if err := c.fr.WriteData(stalled, false, []byte("01234")); err != nil {
		t.Fatal(err)
	}
	if res := c.wait(stalled, 10*time.Second); res.status != 408 || res.goaway || res.closed {
		t.Fatalf("stalled body: %+v, want 408 on that stream and the connection kept", res)
	}
	res := c.wait(c.get("/realms/a"), 5*time.Second)
	if res.status != 200 || res.goaway || res.closed {
		t.Fatalf("next request on the connection: %+v", res)
	}
	if got := l.h.Stats().BadRequests - before; got < 1 {
		t.Errorf("BadRequests +%d, want the stalled body counted", got)
	}
}

// TestHTTP10TransferEncoding pins issue 12, item 7: an HTTP/1.0 request
// with Transfer-Encoding is faulty framing (RFC 9112 6.1). kclb's own
// HTTP/1.1 server answers 400 and closes (framingRule). net/http
// (listener.stdlib_http1) removes the header from HTTP/1.0 requests
// before kclb sees it, so there kclb closes every HTTP/1.0 connection
// after one response (closeHTTP10). Either way the bytes behind the
// request (a smuggled request) never reach the backend.
func TestHTTP10TransferEncoding(t *testing.T) {
	hb := startHeadBackend(t, nil)
	own := startLB(t, lbOptions{backends: []backend.Spec{{Addr: hb.addr}}})
	std := startLB(t, lbOptions{backends: []backend.Spec{{Addr: hb.addr}}, server: func(o *proxy.ServerOptions) { o.StdlibHTTP1 = true }})
	smuggled := "GET /realms/smuggled HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n"
	tests := []struct{ name, req string }{
		{"TE only", "GET /realms/a HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" + smuggled},
		{"TE and CL", "POST /realms/a HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"TE with a chunk", "POST /realms/a HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" +
			strconv.FormatInt(int64(len(smuggled)), 16) + "\r\n" + smuggled + "\r\n0\r\n\r\n"},
	}
	for _, l := range []*lb{own, std} {
		for _, tc := range tests {
			before := hb.count()
			res := rawHTTP(t, l.addr, tc.req, 5*time.Second)
			if !res.closed {
				t.Errorf("stdlib %v, %s: connection kept open", l == std, tc.name)
			}
			if n := strings.Count(res.data, "HTTP/1."); n > 1 {
				t.Errorf("stdlib %v, %s: %d responses on the connection, want at most 1: %q", l == std, tc.name, n, res.data)
			}
			if l == own && (res.status() != 400 || hb.count() != before) {
				t.Errorf("%s: status %d, backend requests +%d; want 400 and none", tc.name, res.status(), hb.count()-before)
			}
		}
	}
	for _, head := range hb.all() {
		if strings.Contains(head, "smuggled") {
			t.Errorf("smuggled request reached the backend: %q", head)
		}
	}
}

// TestTrailers pins issue 12, item 7: by default no request trailer
// reaches the backend (a `Trailer: X-Forwarded-For` could otherwise
// smuggle a forged value to a backend that merges trailers); with
// ForwardTrailers only harmless declared ones do. HTTP/1.1 chunked (kclb's
// HTTP/1.1 server drops request trailers always) and HTTP/2.
func TestTrailers(t *testing.T) {
	hb := startHeadBackend(t, nil)
	drop := startLB(t, lbOptions{backends: []backend.Spec{{Addr: hb.addr}}})
	keep := startLB(t, lbOptions{backends: []backend.Spec{{Addr: hb.addr}}, proxy: func(o *proxy.Options) { o.ForwardTrailers = true }})
	for _, l := range []*lb{drop, keep} {
		h1 := "POST /realms/a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nTrailer: X-Forwarded-For, X-Good, Ssl_Client_Cert\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"5\r\nhello\r\n0\r\nX-Forwarded-For: 6.6.6.6\r\nX-Good: 1\r\nSsl_Client_Cert: forged\r\nX-Undeclared: 1\r\n\r\n"
		if res := rawHTTP(t, l.addr, h1, 5*time.Second); res.status() != 200 {
			t.Fatalf("HTTP/1.1: %q", res.data)
		}
		c := dialH2(t, l, 0)
		id := c.send(c.block(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/realms/a", "trailer", "x-forwarded-for, x-good"), false)
		if err := c.fr.WriteData(id, false, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.block("x-forwarded-for", "6.6.6.6", "x-good", "1"), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		if res := c.wait(id, 5*time.Second); res.status != 200 {
			t.Fatalf("HTTP/2: %+v", res)
		}
	}
	hb.mu.Lock()
	bodies := append([]string(nil), hb.bodies...)
	hb.mu.Unlock()
	if len(bodies) != 4 {
		t.Fatalf("backend got %d requests, want 4", len(bodies))
	}
	for i, b := range bodies {
		low := strings.ToLower(b)
		for _, bad := range []string{"x-forwarded-for: 6.6.6.6", "ssl_client_cert", "x-undeclared"} {
			if strings.Contains(low, bad) {
				t.Errorf("request %d: trailer %q reached the backend: %q", i, bad, b)
			}
		}
		good := strings.Contains(low, "x-good: 1")
		if i < 2 && good {
			t.Errorf("request %d: trailer forwarded although forward_trailers is off: %q", i, b)
		}
		// kclb's own HTTP/1.1 server drops request trailers whatever
		// the option (request 2); HTTP/2's reach the handler (request 3).
		if i == 3 && !good {
			t.Errorf("request %d: harmless trailer X-Good dropped with ForwardTrailers: %q", i, b)
		}
	}
}

// TestUpgradeRefused pins issue 12, item 7: a WebSocket (or any other)
// Upgrade and CONNECT get a clear 501 instead of being silently
// downgraded to a plain request; an h2c offer is ignored.
func TestUpgradeRefused(t *testing.T) {
	hb := startHeadBackend(t, nil)
	l := startLB(t, lbOptions{backends: []backend.Spec{{Addr: hb.addr}}})
	ws := "GET /realms/a/ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if res := rawHTTP(t, l.addr, ws, 5*time.Second); res.status() != 501 || !strings.Contains(res.data, "WebSocket") {
		t.Errorf("websocket upgrade: %q, want a 501 that says why", res.data)
	}
	if res := rawHTTP(t, l.addr, "CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n", 5*time.Second); res.status() != 501 {
		t.Errorf("CONNECT: %q, want 501", res.data)
	}
	c := dialH2(t, l, 0)
	if res := c.wait(c.send(c.block(":method", "CONNECT", ":authority", "localhost:443"), false), 5*time.Second); res.status != 501 && !res.reset {
		t.Errorf("HTTP/2 CONNECT: %+v, want 501 or a reset", res)
	}
	if n := hb.count(); n != 0 {
		t.Fatalf("backend got %q", hb.all())
	}
	h2c := "GET /realms/a HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
	if res := rawHTTP(t, l.addr, h2c, 5*time.Second); res.status() != 200 {
		t.Errorf("h2c offer: %q, want it ignored (200)", res.data)
	}
	if _, ok := headerValue(hb.last(), "Upgrade"); ok {
		t.Errorf("Upgrade forwarded: %q", hb.last())
	}
}

// TestNoUserAgentAdded pins issue 12, item 7: kclb adds no User-Agent
// of its own upstream, and keeps the client's.
func TestNoUserAgentAdded(t *testing.T) {
	hb := startHeadBackend(t, nil)
	l := startLB(t, lbOptions{backends: []backend.Spec{{Addr: hb.addr}}})
	rawHTTP(t, l.addr, "GET /realms/a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", 5*time.Second)
	if ua, ok := headerValue(hb.last(), "User-Agent"); ok {
		t.Errorf("HTTP/1.1: User-Agent %q added", ua)
	}
	c := dialH2(t, l, 0)
	c.wait(c.get("/realms/a"), 5*time.Second)
	if ua, ok := headerValue(hb.last(), "User-Agent"); ok {
		t.Errorf("HTTP/2: User-Agent %q added", ua)
	}
	c.wait(c.get("/realms/a", "user-agent", "browser/1"), 5*time.Second)
	if ua, _ := headerValue(hb.last(), "User-Agent"); ua != "browser/1" {
		t.Errorf("client's User-Agent became %q", ua)
	}
}

// TestHSTSOnlyOnHTTPS pins issue 12, item 7: Strict-Transport-Security
// is added to HTTPS responses only (RFC 6797 7.2), refusals included.
func TestHSTSOnlyOnHTTPS(t *testing.T) {
	hb := startHeadBackend(t, nil)
	l := startLB(t, lbOptions{backends: []backend.Spec{{Addr: hb.addr}}})
	for _, path := range []string{"/realms/a", "/metrics"} {
		res := rawHTTP(t, l.addr, "GET "+path+" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", 5*time.Second)
		if res.status() == 0 || strings.Contains(strings.ToLower(res.data), "strict-transport-security") {
			t.Errorf("plain HTTP %s: %q", path, res.data)
		}
		c := dialH2(t, l, 0)
		h := c.wait(c.get(path), 5*time.Second)
		found := false
		for _, f := range h.fields {
			found = found || f.Name == "strict-transport-security"
		}
		if !found {
			t.Errorf("HTTPS %s: no HSTS in %+v", path, h.fields)
		}
	}
}

// TestEarlyHints pins issue 12, item 7: a backend's 103 Early Hints
// reaches HTTP/1.1 and HTTP/2 clients before the final response (and not
// HTTP/1.0 clients, RFC 9110 15.2); its Link does not leak into the
// final response.
func TestEarlyHints(t *testing.T) {
	const hints = "HTTP/1.1 103 Early Hints\r\nLink: </resources/s.css>; rel=preload; as=style\r\n\r\n"
	hb := startHeadBackend(t, func(string) string { return hints + okResponse })
	l := startLB(t, lbOptions{backends: []backend.Spec{{Addr: hb.addr}}})
	res := rawHTTP(t, l.addr, "GET /realms/a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", 5*time.Second)
	early, final, ok := strings.Cut(res.data, "\r\n\r\n")
	if !ok || !strings.HasPrefix(early, "HTTP/1.1 103 ") || !strings.Contains(early, "Link: </resources/s.css>") {
		t.Errorf("HTTP/1.1: no 103 first: %q", res.data)
	}
	if !strings.HasPrefix(final, "HTTP/1.1 200 ") || strings.Contains(final, "Link:") {
		t.Errorf("HTTP/1.1 final response: %q", final)
	}
	res = rawHTTP(t, l.addr, "GET /realms/a HTTP/1.0\r\nHost: localhost\r\n\r\n", 5*time.Second)
	if !strings.HasPrefix(res.data, "HTTP/1.0 200 ") {
		t.Errorf("HTTP/1.0 client got %q, want the 200 only", res.data)
	}
	c := dialH2(t, l, 0)
	id := c.get("/realms/a")
	first := c.wait(id, 5*time.Second)
	link := ""
	for _, f := range first.fields {
		if f.Name == "link" {
			link = f.Value
		}
	}
	if first.status != 103 || link != "</resources/s.css>; rel=preload; as=style" {
		t.Errorf("HTTP/2 first HEADERS: %+v, want 103 with the Link", first)
	}
	if second := c.wait(id, 5*time.Second); second.status != 200 {
		t.Errorf("HTTP/2 final: %+v", second)
	}
}

// fromAddr returns an HTTP/1.1 client for l whose connections come from
// the loopback address src (so that it is another client address than
// 127.0.0.1's), without keep-alive.
func fromAddr(t testing.TB, src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestSlowBodyAttack pins issue 12, item 6: 40 connections from one
// address (and 60 HTTP/2 streams from it) sending token POSTs with
// Content-Length: 100000 one byte at a time, against three servers of
// maxconn 5, for 3 s. The bodies are read before a server slot is taken
// and the address may have 16 requests waiting for their body, so no
// slot is ever held by the attack and another client (127.0.0.2, GETs
// and small token POSTs) is served with 0 errors.
func TestSlowBodyAttack(t *testing.T) {
	var backs []*headBackend
	var specs []backend.Spec
	for range 3 {
		hb := startHeadBackend(t, nil)
		backs = append(backs, hb)
		specs = append(specs, backend.Spec{Addr: hb.addr, MaxConn: 5})
	}
	l := startLB(t, lbOptions{backends: specs})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	const attackHead = "POST /realms/a/attack HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\n"
	var attempts, peak atomic.Int64
	for range 40 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.Dial("tcp", l.addr)
				if err != nil {
					return
				}
				attempts.Add(1)
				io.WriteString(c, attackHead)
				closed := make(chan struct{})
				go func() { io.Copy(io.Discard, c); close(closed) }()
			drip:
				for {
					select {
					case <-stop:
						c.Close()
						<-closed
						return
					case <-closed:
						break drip
					case <-time.After(200 * time.Millisecond):
						c.Write([]byte("g"))
					}
				}
				c.Close()
				time.Sleep(20 * time.Millisecond) // then at it again
			}
		})
	}
	h2 := dialH2(t, l, 0)
	for range 60 {
		id := h2.send(h2.block(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/realms/a/attack", "content-length", "100000"), false)
		h2.fr.WriteData(id, false, []byte("g"))
	}
	waitFor(t, 5*time.Second, "every attacker to have connected", func() bool { return attempts.Load() >= 40 })
	wg.Go(func() { // record the most slots the attack ever held
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			var n int64
			for _, s := range l.pool.Servers() {
				n += s.Counters().InFlight
			}
			if n > peak.Load() {
				peak.Store(n)
			}
		}
	})
	c := fromAddr(t, "127.0.0.2")
	sent, failed := 0, 0
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		var resp *http.Response
		var err error
		if i%2 == 0 {
			resp, err = c.Get(l.url("/realms/a/ok"))
		} else {
			resp, err = c.Post(l.url("/realms/a/protocol/openid-connect/token"), "application/x-www-form-urlencoded",
				strings.NewReader("grant_type=password&client_id=app&username=u&password=p"))
		}
		sent++
		if err != nil {
			failed++
			t.Logf("legit request %d: %v", i, err)
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			failed++
			t.Logf("legit request %d: status %d", i, resp.StatusCode)
		}
	}
	close(stop)
	wg.Wait()
	h2.conn.Close()
	if failed != 0 {
		t.Errorf("other client: %d of %d requests failed during the attack", failed, sent)
	}
	// The other client sends one request at a time: any further slot in
	// use was the attack's.
	if p := peak.Load(); p > 1 {
		t.Errorf("%d server slots were in use at once, want at most the other client's 1", p)
	}
	for _, hb := range backs {
		for _, head := range hb.all() {
			if strings.Contains(head, "/attack") {
				t.Errorf("an attacking request reached a backend: %q", head)
			}
		}
	}
	hb := backs[0]
	hb.mu.Lock()
	for i, head := range hb.heads {
		if strings.Contains(head, "/token") && (hb.bodies[i] != "grant_type=password&client_id=app&username=u&password=p" || !strings.Contains(head, "Content-Length: 55\r\n")) {
			t.Errorf("token request arrived as %q %q", head, hb.bodies[i])
		}
	}
	hb.mu.Unlock()
	st := l.h.Stats()
	t.Logf("slow-body attack: %d connections made, %d HTTP/2 streams; slots held at most %d of 15; 429 %d, 400/408 %d; other client %d requests, %d failed",
		attempts.Load(), 60, peak.Load(), st.BodyLimited, st.BadRequests, sent, failed)
}

// TestQueueTimeoutIsTotal pins issue 12, item 6 (the queue timeout a
// client sees): with every server at maxconn, a request waits
// QueueTimeout (1 s here) in all, not 1 s per server tried. The three
// slots are freed 2 s after they were taken: a request that waited 1 s
// per server (as on c0768d7) would get one on its third server and 200;
// with the total bound it gets 503 after 1 s.
func TestQueueTimeoutIsTotal(t *testing.T) {
	hold := func(head string) string {
		if strings.Contains(head, "hold") {
			time.Sleep(2 * time.Second)
		}
		return okResponse
	}
	var specs []backend.Spec
	for range 3 {
		specs = append(specs, backend.Spec{Addr: startHeadBackend(t, hold).addr, MaxConn: 1})
	}
	l := startLB(t, lbOptions{backends: specs, proxy: func(o *proxy.Options) { o.ServerTimeout = 5 * time.Second }})
	var wg sync.WaitGroup
	defer wg.Wait()
	for range 3 {
		wg.Go(func() {
			rawHTTP(t, l.addr, "GET /realms/a?hold HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", 10*time.Second)
		})
	}
	waitFor(t, 5*time.Second, "every server at maxconn", func() bool {
		for _, s := range l.pool.Servers() {
			if s.Counters().InFlight != 1 {
				return false
			}
		}
		return true
	})
	start := time.Now()
	res := rawHTTP(t, l.addr, "GET /realms/a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", 10*time.Second)
	waited := time.Since(start)
	if res.status() != 503 {
		t.Errorf("status %d after %v, want 503 once the 1 s queue timeout is spent", res.status(), waited.Round(time.Millisecond))
	}
	t.Logf("queue timeout 1 s, 3 full servers: %d after %v", res.status(), waited.Round(time.Millisecond))
}

// TestBodyTimeout pins issue 12, item 6: the buffered part of a request
// body must arrive within BodyTimeout (300 ms here), far sooner than the
// 30 s client timeout, over HTTP/1.1 and HTTP/2: 408, counted, nothing at
// the backend, and the HTTP/2 connection lives on.
func TestBodyTimeout(t *testing.T) {
	hb := startHeadBackend(t, nil)
	l := startLB(t, lbOptions{backends: []backend.Spec{{Addr: hb.addr}},
		proxy: func(o *proxy.Options) {
			o.BodyTimeout = 300 * time.Millisecond
			o.ClientTimeout = 30 * time.Second
		},
		server: func(o *proxy.ServerOptions) { o.ClientTimeout, o.WriteTimeout = 30*time.Second, 30*time.Second }})
	res := rawHTTP(t, l.addr, "POST /realms/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789", 5*time.Second)
	if res.status() != 408 || !res.closed {
		t.Errorf("HTTP/1.1 slow body: %q closed=%v, want 408 and close", res.data, res.closed)
	}
	c := dialH2(t, l, 0)
	id := c.send(c.block(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/realms/a", "content-length", "100"), false)
	c.fr.WriteData(id, false, []byte("0123456789"))
	if r := c.wait(id, 5*time.Second); r.status != 408 || r.goaway || r.closed {
		t.Errorf("HTTP/2 slow body: %+v, want 408 on the stream", r)
	}
	if n := hb.count(); n != 0 {
		t.Errorf("backend got %q", hb.all())
	}
	if st := l.h.Stats(); st.BadRequests != 2 {
		t.Errorf("BadRequests %d, want 2", st.BadRequests)
	}
}

// TestResponseTrailers pins issue 12, item 7 on the way back: a
// backend's response trailers reach an HTTP/2 client only with
// ForwardTrailers, and never one trailerAllowed refuses (Set-Cookie
// here).
func TestResponseTrailers(t *testing.T) {
	const resp = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum, Set-Cookie\r\n\r\n3\r\nok\n\r\n0\r\nX-Checksum: abc\r\nSet-Cookie: evil=1\r\n\r\n"
	hb := startHeadBackend(t, func(string) string { return resp })
	drop := startLB(t, lbOptions{backends: []backend.Spec{{Addr: hb.addr}}})
	keep := startLB(t, lbOptions{backends: []backend.Spec{{Addr: hb.addr}}, proxy: func(o *proxy.Options) { o.ForwardTrailers = true }})
	for _, l := range []*lb{drop, keep} {
		c := dialH2(t, l, 0)
		id := c.get("/realms/a")
		if res := c.wait(id, 5*time.Second); res.status != 200 {
			t.Fatalf("%+v", res)
		}
		// The trailers, if any, are a second HEADERS frame on the stream,
		// sent right behind the body; the wait for it is bounded (1 s).
		trailers := c.wait(id, time.Second)
		got := map[string]string{}
		for _, f := range trailers.fields {
			got[f.Name] = f.Value
		}
		if _, ok := got["set-cookie"]; ok {
			t.Errorf("forward %v: Set-Cookie trailer reached the client", l == keep)
		}
		if fwd := got["x-checksum"] == "abc"; fwd != (l == keep) {
			t.Errorf("forward %v: X-Checksum trailer forwarded %v (%v)", l == keep, fwd, got)
		}
	}
}
