package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kclb/kclb/affinity"
	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/balancer"
	"github.com/kclb/kclb/internal/pathpolicy"
	"golang.org/x/net/http2"
)

// startH1 serves h with kclb's HTTP/1.1 server on loopback and returns
// its address and the server.
func startH1(t *testing.T, o ServerOptions) (string, *Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(o)
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String(), srv
}

// h1Front serves oneBackend(addr, idle, sec) with kclb's HTTP/1.1
// server and returns the server's address.
func h1Front(t *testing.T, addr string, idle int, sec []SecurityHeader) string {
	t.Helper()
	front, _ := startH1(t, ServerOptions{Handler: oneBackend(t, addr, idle, sec)})
	return front
}

// oneBackend is a Handler over the one backend at addr: round robin,
// keeping idle backend connections, adding sec.
func oneBackend(t *testing.T, addr string, idle int, sec []SecurityHeader) *Handler {
	t.Helper()
	pool, err := backend.NewPool([]backend.Spec{{Name: "kc1", Addr: addr}}, backend.PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Options{Pool: pool, Router: BalancerRouter{Selector: &balancer.RoundRobin{}}, Policy: pathpolicy.New(pathpolicy.Options{}),
		MaxIdlePerServer: idle, Security: sec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// headsBackend answers the requests on each connection with 200 and the
// header lines of heads in turn, then body, and counts its connections.
func headsBackend(t *testing.T, heads []string, body string) (string, *atomic.Int64) {
	return rawBackend(t, func(n int, c net.Conn, br *bufio.Reader) {
		for i := 0; ; i++ {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\n"+heads[i%len(heads)]+"\r\n"+body); err != nil {
				return
			}
		}
	})
}

// exchange writes req on a new connection and reads until the server
// closes it.
func exchange(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, req)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(c)
	return string(b)
}

// TestH1ResponseFraming pins how kclb's server frames what a handler
// writes (issue 16: head and small body in one write, net/http's
// semantics kept): a small body of unknown length gets a Content-Length,
// a large one or a flushed one is chunked, HEAD and 204 carry none,
// pipelined requests are answered in order, HTTP/1.0 gets an HTTP/1.0
// status line and is closed unless it asked for keep-alive.
func TestH1ResponseFraming(t *testing.T) {
	big := strings.Repeat("b", 3*h1Pending)
	addr, _ := startH1(t, ServerOptions{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/small":
			io.WriteString(w, "hello")
		case "/big":
			io.WriteString(w, big)
		case "/flush":
			io.WriteString(w, "a")
			w.(http.Flusher).Flush()
			io.WriteString(w, "b")
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		case "/trailer":
			w.(http.Flusher).Flush()
			io.WriteString(w, "x")
			w.Header().Set(http.TrailerPrefix+"X-T", "1")
		}
	})})
	for _, tc := range []struct {
		name, req string
		want      []string
		absent    []string
	}{
		{"small", "GET /small HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
			[]string{"HTTP/1.1 200 OK\r\n", "Content-Length: 5\r\n", "\r\n\r\nhello"}, []string{"Transfer-Encoding"}},
		{"big", "GET /big HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
			[]string{"Transfer-Encoding: chunked\r\n", big, "\r\n0\r\n\r\n"}, []string{"Content-Length"}},
		{"flush", "GET /flush HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
			[]string{"Transfer-Encoding: chunked\r\n", "\r\n\r\n1\r\na\r\n1\r\nb\r\n0\r\n\r\n"}, nil},
		{"head", "HEAD /small HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
			[]string{"HTTP/1.1 200 OK\r\n"}, []string{"hello", "Transfer-Encoding"}},
		{"no content", "GET /nocontent HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
			[]string{"HTTP/1.1 204 No Content\r\n"}, []string{"Content-Length", "Transfer-Encoding"}},
		{"trailer", "GET /trailer HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
			[]string{"1\r\nx\r\n0\r\nX-T: 1\r\n\r\n"}, []string{"Trailer:X-T"}},
		{"pipelined", "GET /small HTTP/1.1\r\nHost: a\r\n\r\nGET /flush HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
			[]string{"\r\n\r\nhello", "hello" + "HTTP/1.1 200 OK\r\n", "1\r\na\r\n"}, nil},
		{"http/1.0", "GET /small HTTP/1.0\r\nHost: a\r\n\r\n",
			[]string{"HTTP/1.0 200 OK\r\n", "Connection: close\r\n", "hello"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := exchange(t, addr, tc.req)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("response lacks %q:\n%q", w, got)
				}
			}
			for _, a := range tc.absent {
				if strings.Contains(got, a) {
					t.Errorf("response has %q:\n%q", a, got)
				}
			}
		})
	}
}

// TestH1KeepAlive10 checks that an HTTP/1.0 client asking for keep-alive
// keeps its connection.
func TestH1KeepAlive10(t *testing.T) {
	addr, _ := startH1(t, ServerOptions{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := range 2 {
		io.WriteString(c, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.ReadAll(resp.Body)
		if resp.Header.Get("Connection") != "keep-alive" {
			t.Errorf("request %d: Connection %q, want keep-alive", i, resp.Header.Get("Connection"))
		}
	}
}

// TestH1ExpectContinue checks that 100 Continue is sent when the handler
// reads the body, and only then.
func TestH1ExpectContinue(t *testing.T) {
	addr, _ := startH1(t, ServerOptions{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %s", b)
	})})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("first line %q, %v; want 100 Continue", line, err)
	}
	br.ReadString('\n')
	io.WriteString(c, "body")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "got body" {
		t.Errorf("body %q", b)
	}
	if got := exchange(t, addr, "POST / HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\nContent-Length: 4\r\n\r\nbody"); !strings.HasPrefix(got, "HTTP/1.1 417 ") {
		t.Errorf("unknown expectation: %q, want 417", got)
	}
}

// TestH1HeadSurvivesBodyReads pins the rule that lets request strings
// share the read buffer (issue 16: an allocation-free head parser): a
// chunked body that crosses the end of the buffer many times, read
// before the headers are used, leaves the header values intact.
func TestH1HeadSurvivesBodyReads(t *testing.T) {
	var chunks strings.Builder
	var want strings.Builder
	for i := range 600 {
		s := fmt.Sprintf("%07d", i)
		fmt.Fprintf(&chunks, "%x\r\n%s\r\n", len(s), s)
		want.WriteString(s)
	}
	chunks.WriteString("0\r\n\r\n")
	long := strings.Repeat("v", 3000)
	addr, _ := startH1(t, ServerOptions{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil || string(b) != want.String() {
			http.Error(w, fmt.Sprintf("body %d bytes, %v", len(b), err), 500)
			return
		}
		fmt.Fprintf(w, "%s|%s|%s", r.Header.Get("X-A"), r.Header.Get("X-Long"), r.URL.Path)
	})})
	req := "POST /path/kept HTTP/1.1\r\nHost: a\r\nX-A: alpha\r\nX-Long: " + long + "\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks.String()
	got := exchange(t, addr, req)
	if !strings.Contains(got, "alpha|"+long+"|/path/kept") {
		t.Errorf("response %q", got[:min(len(got), 300)])
	}
}

// TestH1Shutdown checks graceful shutdown: an idle connection is closed
// at once, a request in flight finishes with Connection: close.
func TestH1Shutdown(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	addr, srv := startH1(t, ServerOptions{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		io.WriteString(w, "ok")
	})})
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	ibr := bufio.NewReader(idle)
	io.WriteString(idle, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, err := http.ReadResponse(ibr, nil); err != nil {
		t.Fatal(err)
	} else {
		io.ReadAll(resp.Body)
	}
	busy, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-started
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(context.Background()) }()
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := ibr.ReadByte(); err != io.EOF {
		t.Errorf("idle connection: %v, want EOF (closed by Shutdown)", err)
	}
	close(release)
	busy.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(busy)
	if !strings.Contains(string(b), "Connection: close\r\n") || !strings.HasSuffix(string(b), "ok") {
		t.Errorf("request in flight: %q, want ok with Connection: close", b)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestH1TLSALPN checks the TLS listener: http/1.1 (and no ALPN) is served
// by kclb's server, h2 by net/http's, on the same port.
func TestH1TLSALPN(t *testing.T) {
	ts := httptest.NewUnstartedServer(nil)
	ts.StartTLS() // only for its certificate
	cert := ts.TLS.Certificates[0]
	ts.Close()
	addr, _ := startH1(t, ServerOptions{
		TLS:   &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}},
		HTTP2: true,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, own := w.(*h1response)
			fmt.Fprintf(w, "%s own=%v tls=%v", r.Proto, own, r.TLS != nil)
		}),
	})
	for _, tc := range []struct {
		protos []string
		want   string
	}{
		{[]string{"h2"}, "HTTP/2.0 own=false tls=true"},
		{[]string{"http/1.1"}, "HTTP/1.1 own=true tls=true"},
		{nil, "HTTP/1.1 own=true tls=true"},
	} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, NextProtos: tc.protos}, ForceAttemptHTTP2: len(tc.protos) > 0 && tc.protos[0] == "h2"}
		if tc.protos == nil || tc.protos[0] != "h2" {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + addr + "/")
		if err != nil {
			t.Fatalf("ALPN %v: %v", tc.protos, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		if string(b) != tc.want {
			t.Errorf("ALPN %v: %q, want %q", tc.protos, b, tc.want)
		}
	}
}

// TestH1IdleWait pins the idle wait without buffers (issue 16: idle
// connections cost little): a request that arrives at any moment after
// the previous response, even before the server starts waiting, is
// served, here on 300 back-to-back keep-alive requests with a keep-alive
// timeout far beyond the client's patience.
func TestH1IdleWait(t *testing.T) {
	addr, _ := startH1(t, ServerOptions{KeepAlive: time.Hour, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := range 300 {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.ReadAll(resp.Body)
	}
}

// TestH1ResponseHeadArena: behind kclb's HTTP/1.1 server the backend's
// response head is parsed into memory the client connection reuses for
// its next response (no allocation per request). Every response must
// still reach the client with its own header values, and a route that
// affinity learns from a Set-Cookie must survive the responses after it.
func TestH1ResponseHeadArena(t *testing.T) {
	const learned = 8 // affinity's streak before it learns a route
	n := 0
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n++
		if n <= learned {
			w.Header().Set("Set-Cookie", "AUTH_SESSION_ID=c2Vzc2lvbg.nodeA; Path=/realms/test/")
		} else {
			// The same length at the same place, other bytes.
			w.Header().Set("Set-Cookie", "X_OTHER_COOKIE=zzzzzzzzzz.zzzzz; Path=/realms/test/")
		}
		w.Header().Set("X-Seq", fmt.Sprint(n))
		io.WriteString(w, "ok")
	}))
	t.Cleanup(be.Close)
	pool, err := backend.NewPool([]backend.Spec{{Name: "kc1", Addr: be.Listener.Addr().String()}}, backend.PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := affinity.New(affinity.Options{Secret: []byte("0123456789abcdef0123456789abcdef"), Learn: true}, &balancer.RoundRobin{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Options{Pool: pool, Router: affinity.Router{A: a}, Policy: pathpolicy.New(pathpolicy.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	addr, _ := startH1(t, ServerOptions{Handler: h})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i := 1; i <= 2*learned; i++ {
		io.WriteString(c, "GET /realms/test/x HTTP/1.1\r\nHost: sso.example.com\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if got := resp.Header.Get("X-Seq"); got != fmt.Sprint(i) {
			t.Fatalf("response %d carries X-Seq %q", i, got)
		}
		want := "AUTH_SESSION_ID=c2Vzc2lvbg.nodeA"
		if i > learned {
			want = "X_OTHER_COOKIE=zzzzzzzzzz.zzzzz"
		}
		if cookies := strings.Join(resp.Header.Values("Set-Cookie"), "\n"); !strings.Contains(cookies, want) {
			t.Fatalf("response %d: Set-Cookie %q, want %q", i, cookies, want)
		}
	}
	if got := a.Routes(); len(got) != 1 || got["nodeA"] != "kc1" {
		t.Errorf("learned routes %q, want nodeA → kc1", got)
	}
}

// TestH1BodilessRequestReleasesReadBuffer: while a bodiless request is
// served (a proxied one waits for its backend), its connection holds no
// read buffer (RSS at c1000, issue 16), and the request's strings stay
// intact when another connection takes that buffer from the pool and
// reads a request of its own into it.
func TestH1BodilessRequestReleasesReadBuffer(t *testing.T) {
	entered := make(chan *http.Request)
	release := make(chan struct{})
	held := make(chan bool, 2)
	addr, _ := startH1(t, ServerOptions{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		held <- w.(*h1response).c.buf != nil // the connection's own goroutine
		if r.URL.Path == "/first" {
			entered <- r
			<-release
		}
		io.WriteString(w, r.Header.Get("X-Probe")+" "+r.URL.Path)
	})})
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	io.WriteString(first, "GET /first HTTP/1.1\r\nHost: a\r\nX-Probe: aaaaaaaaaaaaaaaa\r\n\r\n")
	r := <-entered
	if <-held {
		t.Error("a bodiless request's connection holds its read buffer while it is served")
	}
	// A second connection reads its request into a pooled buffer, the
	// first one's if it was given back.
	if got := exchange(t, addr, "GET /second HTTP/1.1\r\nHost: b\r\nX-Probe: bbbbbbbbbbbbbbbb\r\nConnection: close\r\n\r\n"); !strings.HasSuffix(got, "bbbbbbbbbbbbbbbb /second") {
		t.Errorf("second response %q", got)
	}
	<-held
	if got := r.Header.Get("X-Probe") + " " + r.URL.Path + " " + r.Host; got != "aaaaaaaaaaaaaaaa /first a" {
		t.Errorf("the first request's strings changed under it: %q", got)
	}
	close(release)
	first.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(first), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "aaaaaaaaaaaaaaaa /first" {
		t.Errorf("first response %q", b)
	}
}

// TestH1ResponseHeadersUnderReuse: many clients at once through few
// backend connections, each backend response naming its request in a
// field and two Set-Cookies: every client gets its own response's
// fields, once each, with the security headers. The header map of a
// response parsed by kclb's backend client passes to the client's
// ResponseWriter (no copy), and the backend connection goes on with
// another map: no two responses may ever share one.
func TestH1ResponseHeadersUnderReuse(t *testing.T) {
	addr, _ := rawBackend(t, func(n int, c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			id := req.URL.Query().Get("id")
			resp := "HTTP/1.1 200 OK\r\nX-Id: " + id + "\r\nSet-Cookie: a=" + id + "\r\nSet-Cookie: b=" + id +
				"\r\nContent-Length: " + fmt.Sprint(len(id)) + "\r\n\r\n" + id
			if _, err := io.WriteString(c, resp); err != nil {
				return
			}
		}
	})
	front := h1Front(t, addr, 2, NewSecurityHeaders("", "nosniff", "no-referrer", "SAMEORIGIN"))
	const clients, each = 8, 150
	var wg sync.WaitGroup
	for w := range clients {
		wg.Go(func() {
			c, err := net.Dial("tcp", front)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for i := range each {
				id := fmt.Sprintf("c%dr%d", w, i)
				fmt.Fprintf(c, "GET /realms/test/x?id=%s HTTP/1.1\r\nHost: sso.example.com\r\n\r\n", id)
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Error(err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				hd := resp.Header
				if string(body) != id || len(hd["X-Id"]) != 1 || hd.Get("X-Id") != id ||
					strings.Join(hd["Set-Cookie"], ",") != "a="+id+",b="+id ||
					len(hd["X-Content-Type-Options"]) != 1 || len(hd["X-Frame-Options"]) != 1 || len(hd["Referrer-Policy"]) != 1 {
					t.Errorf("request %s: body %q, header %v", id, body, hd)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestH1ResponseHeadEdits pins kclb's edits of backend heads that follow
// one another on one reused backend connection, through kclb's server:
// hop-by-hop fields and those Connection names are dropped, Keycloak's
// own security headers are kept and not doubled, a CSP with
// frame-ancestors keeps X-Frame-Options out, and what one head had does
// not decide for the next (fastHead notes the names each head has, and
// the Handler skips looking for the others).
func TestH1ResponseHeadEdits(t *testing.T) {
	heads := []string{
		"Connection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n",
		"",
		"Content-Security-Policy: frame-ancestors 'self'\r\n",
		"X-Frame-Options: DENY\r\nReferrer-Policy: origin\r\nX-Content-Type-Options: nosniff\r\n",
		"",
		"Upgrade: h2c\r\nProxy-Connection: keep-alive\r\n",
	}
	for i := range heads {
		heads[i] += "Content-Length: 2\r\n"
	}
	addr, conns := headsBackend(t, heads, "ok")
	front := h1Front(t, addr, 1, NewSecurityHeaders("max-age=1", "nosniff", "no-referrer", "SAMEORIGIN"))
	c, err := net.Dial("tcp", front)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var raw bytes.Buffer
	br := bufio.NewReader(io.TeeReader(c, &raw))
	want := []map[string][]string{
		{"X-Frame-Options": {"SAMEORIGIN"}, "Referrer-Policy": {"no-referrer"}, "X-Content-Type-Options": {"nosniff"}},
		{"X-Frame-Options": {"SAMEORIGIN"}, "Referrer-Policy": {"no-referrer"}, "X-Content-Type-Options": {"nosniff"}},
		{"X-Frame-Options": nil, "Content-Security-Policy": {"frame-ancestors 'self'"}, "Referrer-Policy": {"no-referrer"}},
		{"X-Frame-Options": {"DENY"}, "Referrer-Policy": {"origin"}, "X-Content-Type-Options": {"nosniff"}},
		{"X-Frame-Options": {"SAMEORIGIN"}, "Content-Security-Policy": nil, "Referrer-Policy": {"no-referrer"}},
		{"X-Frame-Options": {"SAMEORIGIN"}, "Referrer-Policy": {"no-referrer"}},
	}
	for round := range 2 {
		for i, w := range want {
			fmt.Fprintf(c, "GET /realms/test/x HTTP/1.1\r\nHost: sso.example.com\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			// The fields go out in name order, as net/http writes them,
			// the backend's listed ones merged with those kclb added;
			// the server's own Date comes last, as net/http's does.
			head, _, _ := strings.Cut(raw.String(), "\r\n\r\n")
			raw.Reset()
			var names []string
			for _, l := range strings.Split(head, "\r\n")[1:] {
				k, _, _ := strings.Cut(l, ":")
				names = append(names, k)
			}
			if names[len(names)-1] != "Date" || !slices.IsSorted(names[:len(names)-1]) {
				t.Errorf("round %d head %d: fields out of order: %q", round, i, names)
			}
			for _, k := range []string{"Connection", "X-Secret", "Keep-Alive", "Upgrade", "Proxy-Connection", "Strict-Transport-Security"} {
				if v, ok := resp.Header[k]; ok {
					t.Errorf("round %d head %d: %s: %q reached the client", round, i, k, v)
				}
			}
			for k, vv := range w {
				if got := resp.Header[k]; strings.Join(got, "|") != strings.Join(vv, "|") {
					t.Errorf("round %d head %d: %s = %q, want %q", round, i, k, got, vv)
				}
			}
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d backend connections, want 1 (the heads must follow one another on one)", n)
	}
}

// browserFieldNames are the request field names Chrome and Firefox send
// to a Keycloak login page, in HTTP/2's lower case.
var browserFieldNames = []string{
	"accept", "accept-encoding", "accept-language", "cache-control", "content-length", "content-type",
	"cookie", "dnt", "if-modified-since", "if-none-match", "origin", "pragma", "priority", "referer",
	"sec-ch-ua", "sec-ch-ua-mobile", "sec-ch-ua-platform", "sec-fetch-dest", "sec-fetch-mode",
	"sec-fetch-site", "sec-fetch-user", "sec-gpc", "upgrade-insecure-requests", "user-agent",
	"authorization", "x-requested-with", "access-control-request-method", "access-control-request-headers",
}

// TestBrowserFieldNamesAllocateNothing pins that the names browsers send
// get their canonical form without a string made per request, in the
// HTTP/1.1 parser (in lower case too) and in HTTP/2's streams.
func TestBrowserFieldNamesAllocateNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	p := newHeadParser()
	st := &h2stream{}
	for _, name := range browserFieldNames {
		want := http.CanonicalHeaderKey(name)
		for _, k := range []string{name, want} {
			if got, _ := p.canonicalKey(k); got != want {
				t.Errorf("HTTP/1.1 %q: %q, want %q", k, got, want)
			}
			if n := testing.AllocsPerRun(10, func() { p.canonicalKey(k) }); n != 0 {
				t.Errorf("HTTP/1.1 %q: %v allocations", k, n)
			}
		}
		if got := st.canonicalKey(name); got != want {
			t.Errorf("HTTP/2 %q: %q, want %q", name, got, want)
		}
		if n := testing.AllocsPerRun(10, func() { st.canonicalKey(name) }); n != 0 {
			t.Errorf("HTTP/2 %q: %v allocations", name, n)
		}
	}
}

// TestQueuedRequestKeepsHeadTimeout: a request that waited in a server's
// queue and then goes out on a pooled connection gets the whole response
// head timeout from when it went out, not from when it arrived (the
// clock reading the backend client is given is the slot's, not the
// request's start).
func TestQueuedRequestKeepsHeadTimeout(t *testing.T) {
	const headTimeout = 600 * time.Millisecond
	holding, release := make(chan struct{}), make(chan struct{})
	addr, _ := rawBackend(t, func(n int, c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			switch req.URL.Path {
			case "/realms/test/hold":
				close(holding)
				<-release // holds the server's one slot
			case "/realms/test/late":
				time.Sleep(headTimeout / 2) // answered within the timeout from when it was sent
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	pool, err := backend.NewPool([]backend.Spec{{Name: "kc1", Addr: addr, MaxConn: 1}}, backend.PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Options{Pool: pool, Router: BalancerRouter{Selector: &balancer.RoundRobin{}}, Policy: pathpolicy.New(pathpolicy.Options{}),
		MaxIdlePerServer: 2, ServerTimeout: headTimeout, QueueTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	front, _ := startH1(t, ServerOptions{Handler: h})
	get := func(path string) string {
		resp, err := http.Get("http://" + front + path)
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		return resp.Status
	}
	held := make(chan string, 1)
	go func() { held <- get("/realms/test/hold") }()
	<-holding
	// The late request takes the held one's connection from the pool
	// once it is answered and the slot is free.
	late := make(chan string, 1)
	go func() { late <- get("/realms/test/late") }()
	for pool.Lookup("kc1").Queued() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(headTimeout) // the late request queues longer than the timeout
	close(release)
	if got := <-held; got != "200 OK" {
		t.Errorf("held request: %s", got)
	}
	if got := <-late; got != "200 OK" {
		t.Errorf("request that waited in the queue, then answered within the head timeout: %s, want 200 OK", got)
	}
}

// TestPeerOfFollowsRemoteAddr: the connection's parsed peer stands in
// for parsing RemoteAddr only while the request still carries that
// RemoteAddr; a request whose RemoteAddr changed (a wrapping Handler)
// gets its own, and so does its forwarded client string.
func TestPeerOfFollowsRemoteAddr(t *testing.T) {
	sc := &reqScratch{peer: newPeerInfo("[::ffff:192.0.2.7]:4711")}
	r := &http.Request{RemoteAddr: "[::ffff:192.0.2.7]:4711"}
	if got := sc.peerOf(r); got.Addr().Unmap() != netip.MustParseAddr("192.0.2.7") || got.Port() != 4711 {
		t.Fatalf("peerOf = %v", got)
	}
	if got := sc.clientString(netip.MustParseAddr("192.0.2.7")); got != "192.0.2.7" {
		t.Fatalf("clientString = %q", got)
	}
	r.RemoteAddr = "198.51.100.9:80"
	if got := sc.peerOf(r); got != netip.MustParseAddrPort("198.51.100.9:80") {
		t.Fatalf("peerOf after RemoteAddr changed = %v, want the request's own", got)
	}
	if got := sc.clientString(netip.MustParseAddr("198.51.100.9")); got != "198.51.100.9" {
		t.Fatalf("clientString for another address = %q", got)
	}
	var none *reqScratch
	if got := none.peerOf(r); got != netip.MustParseAddrPort("198.51.100.9:80") {
		t.Fatalf("peerOf without scratch = %v", got)
	}
}

// TestRequestHopFieldsPerRequest sends requests with and without
// hop-by-hop fields one after another on one client connection, over
// HTTP/1.1 and HTTP/2: the backend never sees a hop-by-hop field or one
// Connection named, and sees the others (whether a head had hop-by-hop
// fields is noted per request, and the Handler looks only then).
func TestRequestHopFieldsPerRequest(t *testing.T) {
	seen := make(chan http.Header, 1)
	addr, _ := rawBackend(t, func(n int, c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			seen <- req.Header
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	h := oneBackend(t, addr, 1, nil)
	type field struct{ k, v string }
	reqs := [][]field{
		{{"Connection", "X-Secret"}, {"X-Secret", "1"}, {"X-Kept", "a"}},
		{{"X-Kept", "b"}},
		{{"Keep-Alive", "timeout=5"}, {"Proxy-Connection", "keep-alive"}, {"X-Kept", "c"}},
		{{"X-Kept", "d"}},
	}
	gone := []string{"Connection", "X-Secret", "Keep-Alive", "Proxy-Connection"}
	check := func(proto string, i int, got http.Header) {
		t.Helper()
		for _, k := range gone {
			if v, ok := got[k]; ok {
				t.Errorf("%s request %d: %s: %q reached the backend", proto, i, k, v)
			}
		}
		if want := reqs[i][len(reqs[i])-1].v; got.Get("X-Kept") != want {
			t.Errorf("%s request %d: X-Kept %q, want %q", proto, i, got.Get("X-Kept"), want)
		}
	}
	front, _ := startH1(t, ServerOptions{Handler: h})
	c, err := net.Dial("tcp", front)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for round := range 2 {
		for i, fs := range reqs {
			head := "GET /realms/test/x HTTP/1.1\r\nHost: sso.example.com\r\n"
			for _, f := range fs {
				head += f.k + ": " + f.v + "\r\n"
			}
			io.WriteString(c, head+"\r\n")
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("round %d request %d: %v", round, i, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			check("HTTP/1.1", i, <-seen)
		}
	}
	// HTTP/2 refuses connection-specific fields; the hop-by-hop fields
	// it allows are Te (trailers) and Proxy-Authorization.
	conn, _, _ := h2pipe(t, h)
	defer conn.Close()
	hc := newH2Client(t, conn)
	gone = []string{"Te", "Proxy-Authorization"}
	reqs = [][]field{
		{{"te", "trailers"}, {"proxy-authorization", "Basic eA=="}, {"x-kept", "a"}},
		{{"x-kept", "b"}},
	}
	for i := range 2 * len(reqs) {
		id := uint32(2*i + 1)
		fs := []string{":method", "GET", ":scheme", "https", ":authority", "sso.example.com", ":path", "/realms/test/x"}
		for _, f := range reqs[i%len(reqs)] {
			fs = append(fs, f.k, f.v)
		}
		blk := hc.block(fs...)
		hc.send(func(fr *http2.Framer) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndStream: true, EndHeaders: true})
		})
		if res := hc.read(id); res.status != "200" {
			t.Fatalf("HTTP/2 request %d: %+v", i, res)
		}
		check("HTTP/2", i%len(reqs), <-seen)
	}
}

// TestUpgradeRefusedAfterPlainRequests: an upgrade request that follows
// requests without hop-by-hop fields on the same connection is still
// answered 501 (the Handler looks for Upgrade only in heads that had a
// hop-by-hop field, which is noted per request), whether or not
// Connection names it.
func TestUpgradeRefusedAfterPlainRequests(t *testing.T) {
	addr, _ := rawBackend(t, func(n int, c net.Conn, br *bufio.Reader) {
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	front, _ := startH1(t, ServerOptions{Handler: oneBackend(t, addr, 1, nil)})
	for _, upgrade := range []string{"Connection: Upgrade\r\nUpgrade: websocket\r\n", "Upgrade: websocket\r\n"} {
		c, br := dialClient(t, front)
		for i, extra := range []string{"", "X-Plain: 1\r\n", upgrade} {
			io.WriteString(c, "GET /realms/test/x HTTP/1.1\r\nHost: sso.example.com\r\n"+extra+"\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%q request %d: %v", upgrade, i, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			want := http.StatusOK
			if extra == upgrade {
				want = http.StatusNotImplemented
			}
			if resp.StatusCode != want {
				t.Errorf("%q request %d: status %d, want %d", upgrade, i, resp.StatusCode, want)
			}
		}
	}
}
