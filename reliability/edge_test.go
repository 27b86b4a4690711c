package reliability

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kclb/kclb/backend"
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
// (raw frames); a trusted proxy's are kept.
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
				if l == trusted && !ok {
					t.Errorf("%s: trusted proxy's %s was dropped", proto, k)
				}
			}
		}
	}
}
