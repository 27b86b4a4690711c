//go:build linux

package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dialClient connects to addr with a 10 s deadline, closed when the test
// ends.
func dialClient(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// tcpPair returns both ends of a loopback TCP connection, closed when
// the test ends.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

// heldCount serves the requests of each step on one connection, closes
// it, shuts the server down (which returns once every connection has
// closed) and returns how many responses the idle wait wrote (sendHeld).
func heldCount(t *testing.T, useTLS bool, steps []string) (int64, []string) {
	t.Helper()
	o := ServerOptions{KeepAlive: 30 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/leave" {
			io.WriteString(w, "left") // the body stays unread
			return
		}
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, "ok "+r.URL.Path+" "+string(b))
	})}
	if useTLS {
		o.TLS = &tls.Config{Certificates: []tls.Certificate{testCert(t)}}
	}
	addr, srv := startH1(t, o)
	var c net.Conn
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if useTLS {
		c = tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	var bodies []string
	for _, step := range steps {
		if _, err := io.WriteString(c, step); err != nil {
			t.Fatal(err)
		}
		for range strings.Count(step, "HTTP/1.1\r\n") {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("after %q: %v", step, err)
			}
			b, _ := io.ReadAll(resp.Body)
			bodies = append(bodies, string(b))
		}
	}
	c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	return srv.heldSends.Load(), bodies
}

// TestH1HeldResponses pins where a response is written by the wait for
// the next request instead of at once (issue 16: the read(2) that finds
// nothing after each response is a fifth of a request's system calls):
// on a plain keep-alive connection, for bodiless requests and for bodies
// the handler read; never for a response that closes the connection, a body
// left unread or pipelined requests (also after them); over TLS too,
// where the held bytes are the response's records. Every response must
// arrive whole either way.
func TestH1HeldResponses(t *testing.T) {
	get := func(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: a\r\n\r\n" }
	post := "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
	closing := "GET /c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
	leave := "POST /leave HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
	cases := []struct {
		name  string
		tls   bool
		steps []string
		held  int64
		want  []string
	}{
		{"keep-alive", false, []string{get("/1"), get("/2"), get("/3")}, 3, []string{"ok /1 ", "ok /2 ", "ok /3 "}},
		{"body read", false, []string{post, get("/2")}, 2, []string{"ok /p hello", "ok /2 "}},
		{"close", false, []string{get("/1"), closing}, 1, []string{"ok /1 ", "ok /c "}},
		{"body left", false, []string{leave, get("/2")}, 1, []string{"left", "ok /2 "}},
		{"pipelined", false, []string{get("/1") + get("/2"), get("/3"), get("/4")}, 0, []string{"ok /1 ", "ok /2 ", "ok /3 ", "ok /4 "}},
		{"tls", true, []string{get("/1"), get("/2"), post}, 3, []string{"ok /1 ", "ok /2 ", "ok /p hello"}},
		{"tls close", true, []string{get("/1"), closing}, 1, []string{"ok /1 ", "ok /c "}},
		{"tls pipelined", true, []string{get("/1") + get("/2"), get("/3")}, 0, []string{"ok /1 ", "ok /2 ", "ok /3 "}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			held, bodies := heldCount(t, tc.tls, tc.steps)
			if held != tc.held {
				t.Errorf("responses written by the idle wait: %d, want %d", held, tc.held)
			}
			if strings.Join(bodies, "|") != strings.Join(tc.want, "|") {
				t.Errorf("bodies %q, want %q", bodies, tc.want)
			}
		})
	}
}

// TestH1RequestSentWhileServed sends the next request while the last one
// is still being served, waiting for its backend, on a connection that
// had not pipelined: the bytes are there, and the backend's wait has
// seen them, before the wait that would notice them begins, the case a
// held response gives up (holdForWait). The second response must still
// come, within the first part of the idle wait (one restack) rather than
// at the end of the keep-alive time (30 s here, longer than the client
// waits), and the connection must then read before it waits: the same
// sequence again costs no second restack.
func TestH1RequestSentWhileServed(t *testing.T) {
	setIdleRestack(t, 50*time.Millisecond)
	for _, useTLS := range []bool{false, true} {
		name := "plain"
		if useTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) { requestSentWhileServed(t, useTLS) })
	}
}

func requestSentWhileServed(t *testing.T, useTLS bool) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	started, sent := make(chan struct{}), make(chan struct{})
	o := ServerOptions{KeepAlive: 30 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/first" {
			started <- struct{}{}
			<-sent // the second request is in the connection
			// A backend round trip, as a proxied request has: the
			// poller runs while the handler waits for it.
			bc, err := net.Dial("tcp", echo.Addr().String())
			if err == nil {
				io.WriteString(bc, "x")
				bc.Read(make([]byte, 1))
				bc.Close()
			}
		}
		io.WriteString(w, "ok "+r.URL.Path)
	})}
	if useTLS {
		o.TLS = &tls.Config{Certificates: []tls.Certificate{testCert(t)}}
	}
	addr, srv := startH1(t, o)
	var c net.Conn
	c, br := dialClient(t, addr)
	if useTLS {
		c = tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		br = bufio.NewReader(c)
	}
	read := func(want string) {
		t.Helper()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("waiting for %q: %v", want, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != want {
			t.Fatalf("body %q, want %q", b, want)
		}
	}
	io.WriteString(c, "GET /warm HTTP/1.1\r\nHost: a\r\n\r\n")
	read("ok /warm")
	for round := range 2 {
		io.WriteString(c, "GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
		<-started
		io.WriteString(c, "GET /second HTTP/1.1\r\nHost: a\r\n\r\n")
		close(sent)
		start := time.Now()
		read("ok /first")
		read("ok /second")
		t.Logf("round %d: second response %v after the first began", round, time.Since(start))
		sent = make(chan struct{})
		if n := srv.restacks.Load(); n > 1 {
			t.Fatalf("round %d: %d restacks, want at most 1: the connection kept waiting before reading", round, n)
		}
	}
	io.WriteString(c, "GET /third HTTP/1.1\r\nHost: a\r\n\r\n")
	read("ok /third")
}

// TestH1HeldWriteFullSocket writes a held response on a connection whose
// send buffer is full: what the descriptor cannot take at once must be
// written by the connection's Write, which waits, so all of it arrives.
func TestH1HeldWriteFullSocket(t *testing.T) {
	client, sc := tcpPair(t)
	rc, err := sc.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	// Fill the socket: raw writes until the kernel takes no more.
	filled := 0
	chunk := bytes.Repeat([]byte{'f'}, 64<<10)
	rc.Control(func(fd uintptr) {
		for {
			n, err := syscall.Write(int(fd), chunk)
			if err != nil {
				return
			}
			filled += n
		}
	})
	payload := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	c := &h1conn{nc: sc}
	done := make(chan error, 1)
	go func() {
		rc.Control(func(fd uintptr) {
			c.out = h1out{c: c, fd: int(fd), raw: true}
		})
		n, err := c.out.Write(payload)
		if err == nil && n != len(payload) {
			err = io.ErrShortWrite
		}
		done <- err
	}()
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(io.LimitReader(client, int64(filled+len(payload))))
	if err != nil {
		select {
		case werr := <-done:
			t.Fatalf("read %d of %d bytes (%d filler): %v; held write: %v", len(got), filled+len(payload), filled, err, werr)
		default:
		}
		t.Fatalf("read %d of %d bytes (%d filler): %v; held write still blocked", len(got), filled+len(payload), filled, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("held write: %v", err)
	}
	if len(got) != filled+len(payload) || !bytes.Equal(got[filled:], payload) {
		t.Fatalf("read %d bytes, want %d filler and the payload", len(got), filled+len(payload))
	}
}

// TestHeldConnAllocatesNothing: holding a TLS response's records and
// writing them later allocates nothing in steady state (the buffer is
// pooled), so TLS keeps 0 allocations per proxied request.
func TestHeldConnAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	client, sc := tcpPair(t)
	go io.Copy(io.Discard, client)
	h := newHeldConn(&h1conn{}, sc)
	if h == nil {
		t.Fatal("no heldConn for a TCP connection")
	}
	record := bytes.Repeat([]byte{'r'}, 1500)
	cycle := func() {
		h.hold = true
		h.Write(record)
		h.Write(record)
		h.hold = false
		if err := h.writeHeld(-1); err != nil {
			t.Fatal(err)
		}
	}
	for range 10 {
		cycle()
	}
	if n := testing.AllocsPerRun(100, cycle); n != 0 {
		t.Errorf("%v allocations per held response, want 0", n)
	}
}

// TestH1HalfCloseAfterRequest: a client that sends its request and then
// shuts its side down (its FIN may come before the idle wait begins, the
// case a held response gives up) gets the whole response, and the
// connection then ends, within the first part of the idle wait rather
// than at the end of the keep-alive time (30 s, longer than the client
// waits); a second connection after it is served as usual.
func TestH1HalfCloseAfterRequest(t *testing.T) {
	setIdleRestack(t, 50*time.Millisecond)
	addr, _ := startH1(t, ServerOptions{KeepAlive: 30 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok "+r.URL.Path)
	})})
	for _, path := range []string{"/1", "/2"} {
		c, br := dialClient(t, addr)
		io.WriteString(c, "GET /warm HTTP/1.1\r\nHost: a\r\n\r\n")
		if resp, err := http.ReadResponse(br, nil); err != nil {
			t.Fatal(err)
		} else {
			io.ReadAll(resp.Body)
		}
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: a\r\n\r\n")
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "ok "+path {
			t.Fatalf("%s: body %q", path, b)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("%s: after the response: %v, want EOF (the server closed)", path, err)
		}
	}
}
