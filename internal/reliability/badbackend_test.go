package reliability

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/backend"
)

// rawBackend is a loopback TCP server that reads one request head per
// connection and lets a script write whatever bytes it likes back.
type rawBackend struct {
	addr  string
	open  atomic.Int64 // connections open now
	total atomic.Int64 // connections accepted
}

// startRawBackend serves script on every connection; script owns the
// connection until it returns, then the connection is closed. Every
// connection is closed by t.Cleanup.
func startRawBackend(t testing.TB, script func(c *net.TCPConn, br *bufio.Reader)) *rawBackend {
	t.Helper()
	rb := &rawBackend{}
	rb.addr = serveConns(t, func(c net.Conn) {
		rb.open.Add(1)
		rb.total.Add(1)
		defer rb.open.Add(-1)
		br := bufio.NewReader(c)
		if _, err := readHead(br); err != nil {
			return
		}
		script(c.(*net.TCPConn), br)
	})
	return rb
}

// serveConns accepts connections on a loopback port and runs handle on
// each in its own goroutine, closing the connection when handle returns.
// t.Cleanup closes the listener and every connection and waits for the
// handlers. It returns the listener's address.
func serveConns(t testing.TB, handle func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex // guards conns
	conns := map[net.Conn]bool{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					c.Close()
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
				}()
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// writeThen returns a script that writes resp, or resets the connection
// after it when reset is set, or else answers every further request on
// the connection with resp too (keep-alive).
func writeThen(resp string, reset bool) func(*net.TCPConn, *bufio.Reader) {
	return func(c *net.TCPConn, br *bufio.Reader) {
		for range 100 {
			if _, err := io.WriteString(c, resp); err != nil {
				return
			}
			if reset {
				c.SetLinger(0)
				return
			}
			if _, err := readHead(br); err != nil {
				return
			}
		}
	}
}

// resetNow closes the connection with a RST before any response byte.
func resetNow(c *net.TCPConn, _ *bufio.Reader) { c.SetLinger(0) }

// trickle sends a chunked response that never ends, one chunk every
// 10 ms, until writing fails.
func trickle(c *net.TCPConn, _ *bufio.Reader) {
	io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
	for range 3000 { // 30 s at most
		if _, err := io.WriteString(c, "6\r\nchunk\n\r\n"); err != nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stall sends the head and a little of the body, then nothing (until
// the proxy gives up and closes, or 30 s pass).
func stall(c *net.TCPConn, br *bufio.Reader) {
	io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nok")
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	io.Copy(io.Discard, br)
}

// bigHeader answers 200 with one header of n bytes.
func bigHeader(n int) string {
	return "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", n) + "\r\nContent-Length: 2\r\n\r\nok"
}

// errReader fails every Read with err.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestBadBackends(t *testing.T) {
	tests := []struct {
		name   string
		script func(*net.TCPConn, *bufio.Reader)
		status int    // status the client sees
		body   string // body the client reads completely (when status 200 and !broken)
		broken bool   // the client's stream must end in an error
		fails  bool   // the server's error counter must grow
		stat   func(before, after uint64) bool
	}{
		{name: "CR in header value", script: writeThen("HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 2\r\n\r\nok", false), status: 502, fails: true},
		{name: "NUL in header value", script: writeThen("HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok", false), status: 502, fails: true},
		{name: "invalid status line", script: writeThen("HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok", false), status: 502, fails: true},
		{name: "not HTTP", script: writeThen("SSH-2.0-OpenSSH_9.6\r\n", false), status: 502, fails: true},
		{name: "content-length shorter than body", script: writeThen("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nSet-Cookie: smuggled=1\r\nContent-Length: 0\r\n\r\n", false), status: 200, body: "ok"},
		{name: "content-length longer than body", script: writeThen("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nok", true), status: 200, broken: true, fails: true},
		{name: "reset before first byte", script: resetNow, status: 502, fails: true},
		{name: "reset after part of body", script: writeThen("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("x", 4096), true), status: 200, broken: true, fails: true},
		{name: "broken chunked body", script: writeThen("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n", false), status: 200, broken: true, fails: true},
		{name: "response that never ends", script: trickle, status: 200, broken: true},
		{name: "stall after headers", script: stall, status: 200, broken: true, fails: true},
		{name: "100 KiB header", script: writeThen(bigHeader(100<<10), false), status: 200, body: "ok"},
		{name: "2 MiB header", script: writeThen(bigHeader(2<<20), false), status: 502, fails: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rb := startRawBackend(t, tc.script)
			l := startLB(t, lbOptions{backends: []backend.Spec{{Addr: rb.addr}}})
			c := l.client(t, false)
			start := time.Now()
			resp, err := c.Get(l.url("/raw"))
			if err != nil {
				// Nothing had reached the client when the backend failed:
				// the connection is aborted without a response.
				if !tc.broken {
					t.Fatalf("request: %v", err)
				}
				resp = &http.Response{StatusCode: tc.status, Body: io.NopCloser(errReader{err}), Header: http.Header{}}
			}
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			elapsed := time.Since(start)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.broken && rerr == nil {
				t.Errorf("stream ended cleanly after %d bytes, want an error", len(body))
			}
			if !tc.broken && rerr != nil {
				t.Errorf("reading the body: %v", rerr)
			}
			if tc.body != "" && string(body) != tc.body {
				t.Errorf("body %q, want %q", body, tc.body)
			}
			for k, vv := range resp.Header {
				for _, v := range vv {
					if strings.ContainsAny(k+v, "\r\n\x00") {
						t.Errorf("header %q: %q carries CR, LF or NUL", k, v)
					}
				}
			}
			if resp.Header.Get("Set-Cookie") != "" && strings.Contains(resp.Header.Get("Set-Cookie"), "smuggled") {
				t.Errorf("bytes after Content-Length became a response header")
			}
			// A second request must get a clean answer too (no desync on a
			// reused backend connection).
			if tc.body != "" {
				resp2, err := c.Get(l.url("/raw"))
				if err != nil {
					t.Fatal(err)
				}
				b2, _ := io.ReadAll(resp2.Body)
				resp2.Body.Close()
				if resp2.StatusCode != 200 || string(b2) != tc.body {
					t.Errorf("second request: %d %q", resp2.StatusCode, b2)
				}
			}
			s := l.pool.Servers()[0]
			if errs := s.Counters().Errors; tc.fails != (errs > 0) {
				t.Errorf("server error count %d, want failing=%v", errs, tc.fails)
			}
			c.Transport.(*http.Transport).CloseIdleConnections()
			l.idle(t)
			l.h.Close()
			waitFor(t, 5*time.Second, "backend connections to close", func() bool { return rb.open.Load() == 0 })
			st := l.h.Stats()
			t.Logf("%v: status %d, %d body bytes, read error %v; stats %+v; backend conns %d",
				elapsed.Round(time.Millisecond), resp.StatusCode, len(body), rerr, st, rb.total.Load())
		})
	}
}
