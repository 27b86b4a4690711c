package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// setIdleRestack sets idleRestack for one test.
func setIdleRestack(t *testing.T, d time.Duration) {
	old := idleRestack
	idleRestack = d
	t.Cleanup(func() { idleRestack = old })
}

// waitRestacks waits until srv moved n idle connections to a new
// goroutine (or fails after 5 s).
func waitRestacks(t *testing.T, srv *Server, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for srv.restacks.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("restacks = %d, want %d", srv.restacks.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// testCert returns a self-signed certificate for 127.0.0.1.
func testCert(t *testing.T) tls.Certificate {
	ts := httptest.NewUnstartedServer(nil)
	ts.StartTLS()
	defer ts.Close()
	return ts.TLS.Certificates[0]
}

// TestH1IdleRestack pins the idle restack (issue 16: idle connections
// ≤ 8 KiB): a keep-alive connection idle for longer than idleRestack
// moves its wait to a new goroutine once per idle period, is served
// there like before, and is still closed only at the end of the
// keep-alive time, not at the end of the first part of its wait; over
// TLS too.
func TestH1IdleRestack(t *testing.T) {
	setIdleRestack(t, 20*time.Millisecond)
	const keepAlive = 400 * time.Millisecond
	cert := testCert(t)
	for _, useTLS := range []bool{false, true} {
		name := "plain"
		o := ServerOptions{KeepAlive: keepAlive, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "ok")
		})}
		if useTLS {
			name = "tls"
			o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}
		}
		t.Run(name, func(t *testing.T) {
			addr, srv := startH1(t, o)
			var c net.Conn
			var err error
			if useTLS {
				c, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
			} else {
				c, err = net.Dial("tcp", addr)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			get := func(i int) time.Time {
				t.Helper()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				b, _ := io.ReadAll(resp.Body)
				if string(b) != "ok" {
					t.Fatalf("request %d: body %q", i, b)
				}
				return time.Now()
			}
			get(1)
			waitRestacks(t, srv, 1)
			get(2) // served on the new goroutine
			last := get(3)
			waitRestacks(t, srv, 2)
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("after the keep-alive time: %v, want EOF", err)
			}
			if idle := time.Since(last); idle < keepAlive {
				t.Errorf("closed after %v idle, want at least the keep-alive time %v", idle, keepAlive)
			}
			if n := srv.restacks.Load(); n != 2 {
				t.Errorf("restacks = %d for 2 idle periods, want 2", n)
			}
		})
	}
}

// TestH1ShutdownWhileRestacking: Shutdown while idle connections move to
// new goroutines closes every one of them and returns (no connection is
// lost between two goroutines, none is served after it was closed).
func TestH1ShutdownWhileRestacking(t *testing.T) {
	setIdleRestack(t, time.Millisecond)
	addr, srv := startH1(t, ServerOptions{KeepAlive: time.Minute, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})})
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	ready := make(chan struct{}, n)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			br := bufio.NewReader(c)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				errs <- err
				ready <- struct{}{}
				return
			}
			io.ReadAll(resp.Body)
			ready <- struct{}{}
			if _, err := br.ReadByte(); err != io.EOF {
				errs <- err
			}
		}()
	}
	for range n {
		<-ready
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("client: %v", err)
	}
	if srv.restacks.Load() == 0 {
		t.Log("no connection was moving when Shutdown ran")
	}
}

// TestH1HeadTimeoutOnKeepAlive pins the header timeout of a keep-alive
// connection's later requests, which is armed only when the head is not
// all in (issue 16: fewer timer changes per request): a second head that
// stalls halfway, sent alone after the first response or pipelined
// behind the first request, is closed at the header timeout, not at the
// end of the keep-alive time.
func TestH1HeadTimeoutOnKeepAlive(t *testing.T) {
	setIdleRestack(t, 0) // the idle wait's deadline is the keep-alive time
	const headerTimeout = 200 * time.Millisecond
	addr, _ := startH1(t, ServerOptions{HeaderTimeout: headerTimeout, KeepAlive: time.Minute, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})})
	const first = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	const partial = "GET /second HTTP/1.1\r\nHost: a\r\nX-Slow: "
	for _, pipelined := range []bool{false, true} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		// The first request's head has a deadline of its own (from
		// the accept): the stall comes in a later one.
		io.WriteString(c, first)
		if pipelined {
			io.WriteString(c, first+partial)
		}
		for range 1 + btoi(pipelined) {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("pipelined=%v: request: %v", pipelined, err)
			}
			io.ReadAll(resp.Body)
		}
		start := time.Now()
		if !pipelined {
			io.WriteString(c, partial)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("pipelined=%v: stalled second head: %v, want EOF at the header timeout", pipelined, err)
		}
		t.Logf("pipelined=%v: closed after %v", pipelined, time.Since(start))
		if d := time.Since(start); d < headerTimeout/2 {
			t.Errorf("pipelined=%v: closed after %v, before the header timeout %v", pipelined, d, headerTimeout)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestH1TLSIdleRead pins the idle wait of a TLS connection without
// kclb's read buffer (issue 16: idle HTTPS connections): a head that
// arrives after the idle wait in several TLS records, one whose first
// record holds a single byte, and two pipelined heads in one record are
// all served, in order.
func TestH1TLSIdleRead(t *testing.T) {
	setIdleRestack(t, 0)
	addr, _ := startH1(t, ServerOptions{
		TLS: &tls.Config{Certificates: []tls.Certificate{testCert(t)}, NextProtos: []string{"http/1.1"}},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, r.URL.Path)
		}),
	})
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	expect := func(paths ...string) {
		t.Helper()
		for _, p := range paths {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			b, _ := io.ReadAll(resp.Body)
			if string(b) != p {
				t.Fatalf("response %q, want %q", b, p)
			}
		}
	}
	io.WriteString(c, "GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
	expect("/first")
	// Each Write is a TLS record of its own.
	for _, part := range []string{"G", "ET /split HTTP/1.1\r\n", "Host: a\r\n", "\r\n"} {
		io.WriteString(c, part)
	}
	expect("/split")
	io.WriteString(c, "GET /p1 HTTP/1.1\r\nHost: a\r\n\r\nGET /p2 HTTP/1.1\r\nHost: a\r\n\r\n")
	expect("/p1", "/p2")
}

// TestH1HeadTimeoutUnderIdleDeadline pins the header timeout of a
// keep-alive connection's later heads while the idle wait's deadline
// (idleRestack away) is still set, over plain TCP and TLS (where the
// idle read takes one byte, so every head goes on to the loop that
// reads the rest): a head that stalls past that deadline but not past
// the header timeout is served; one that stalls for good is closed at
// the header timeout, not at the idle deadline.
func TestH1HeadTimeoutUnderIdleDeadline(t *testing.T) {
	setIdleRestack(t, 100*time.Millisecond)
	const headerTimeout = 700 * time.Millisecond
	for _, useTLS := range []bool{false, true} {
		o := ServerOptions{HeaderTimeout: headerTimeout, KeepAlive: time.Minute, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, r.URL.Path)
		})}
		if useTLS {
			o.TLS = &tls.Config{Certificates: []tls.Certificate{testCert(t)}, NextProtos: []string{"http/1.1"}}
		}
		addr, _ := startH1(t, o)
		dial := func() net.Conn {
			if useTLS {
				c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		get := func(c net.Conn, br *bufio.Reader, path string) {
			io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: a\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("tls=%v: %s: %v", useTLS, path, err)
			}
			body, _ := io.ReadAll(resp.Body)
			if string(body) != path {
				t.Fatalf("tls=%v: %s answered %q", useTLS, path, body)
			}
		}

		// A slow head: half of it, a pause longer than the idle
		// deadline, the rest.
		c := dial()
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		get(c, br, "/first")
		io.WriteString(c, "GET /slow HTTP/1.1\r\n")
		time.Sleep(3 * idleRestack) // the client's pause: the stimulus
		io.WriteString(c, "Host: a\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("tls=%v: head paused %v (header timeout %v): %v", useTLS, 3*idleRestack, headerTimeout, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if string(body) != "/slow" {
			t.Fatalf("tls=%v: slow head answered %q", useTLS, body)
		}
		get(c, br, "/after")

		// A stalled head is closed at the header timeout.
		c2 := dial()
		defer c2.Close()
		c2.SetDeadline(time.Now().Add(10 * time.Second))
		br2 := bufio.NewReader(c2)
		get(c2, br2, "/first")
		start := time.Now()
		io.WriteString(c2, "GET /stalled HTTP/1.1\r\n")
		if _, err := br2.ReadByte(); err == nil {
			t.Fatalf("tls=%v: stalled head answered", useTLS)
		}
		if d := time.Since(start); d < headerTimeout-idleRestack || d > headerTimeout+2*time.Second {
			t.Errorf("tls=%v: stalled head closed after %v, want about the header timeout %v", useTLS, d, headerTimeout)
		}
	}
}
