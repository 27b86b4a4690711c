package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/backend"
)

// Early answers and the errors that say a node is unreachable (issue 18,
// item 2, "Nine uploads take the whole cluster down").

const answer413 = "HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large"

// TestUpstreamEarlyResponse: a backend that answers a large body before
// reading it gets its answer to the caller, whether it then closes with
// the body unread (a reset), keeps the connection open without reading,
// or reads and discards the body; a chunked body of unknown length too.
func TestUpstreamEarlyResponse(t *testing.T) {
	tests := []struct {
		name  string
		after func(br *bufio.Reader, done <-chan struct{})
		size  int64 // -1: chunked
	}{
		{name: "close with the body unread", after: func(*bufio.Reader, <-chan struct{}) {}, size: 4 << 20},
		{name: "close, chunked body", after: func(*bufio.Reader, <-chan struct{}) {}, size: -1},
		// Only the early answer can end the exchange before the write
		// timeout while the backend holds the connection unread.
		{name: "neither read nor close", after: func(_ *bufio.Reader, done <-chan struct{}) { <-done }, size: 4 << 20},
		{name: "read and discard", after: func(br *bufio.Reader, _ <-chan struct{}) { io.Copy(io.Discard, br) }, size: 4 << 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan struct{})
			addr, _ := rawBackend(t, func(_ int, c net.Conn, br *bufio.Reader) {
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				io.WriteString(c, answer413)
				tc.after(br, done)
			})
			t.Cleanup(func() { close(done) }) // runs before rawBackend's cleanup
			u := newTestUpstream(t, upstreamOptions{HeaderTimeout: 20 * time.Second})
			var body io.Reader = bytes.NewReader(make([]byte, 4<<20))
			if tc.size < 0 {
				body = io.MultiReader(body) // hides the length: chunked
			}
			code, got, err := roundTrip(t, u, http.MethodPost, addr, "/upload", body)
			if err != nil || code != 413 || got != "too large" {
				t.Fatalf("got %d %q %v, want the backend's 413", code, got, err)
			}
			if n := idleCount(u, addr); n != 0 {
				t.Errorf("%d idle connections after an early answer, want 0", n)
			}
		})
	}
}

// TestUpstreamLargeBodyKeepsAlive: the concurrent head reader does not
// cost the connection when the backend reads the whole body first.
func TestUpstreamLargeBodyKeepsAlive(t *testing.T) {
	bodies := make(chan string, 8)
	addr, accepted := rawBackend(t, func(_ int, c net.Conn, br *bufio.Reader) { serveOK(br, c, 0, bodies) })
	u := newTestUpstream(t, upstreamOptions{})
	big := strings.Repeat("x", 1<<20)
	for i := range 4 {
		var body io.Reader = strings.NewReader(big)
		if i%2 == 1 {
			body = io.MultiReader(body)
		}
		code, got, err := roundTrip(t, u, http.MethodPost, addr, "/", body)
		if err != nil || code != 200 || got != "ok" {
			t.Fatalf("request %d: %d %q %v", i, code, got, err)
		}
		if b := <-bodies; b != big {
			t.Fatalf("request %d: backend got %d bytes, want %d", i, len(b), len(big))
		}
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("%d connections for 4 sequential large POSTs, want 1", n)
	}
}

// failingReader returns n zero bytes, then err.
type failingReader struct {
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, f.err
	}
	k := min(len(p), f.n)
	clear(p[:k])
	f.n -= k
	return k, nil
}

// TestUpstreamUnreachableErrors: only a connection reset or closed before
// any response byte on a new connection is marked errNoResponse (and so
// counts against the node); timeouts, client body failures and resets
// on reused connections are not.
func TestUpstreamUnreachableErrors(t *testing.T) {
	clientErr := errors.New("client went away")
	tests := []struct {
		name   string
		serve  func(n int, c net.Conn, br *bufio.Reader)
		reuse  bool // send a first request to pool a connection
		method string
		body   func() io.Reader
		want   bool // errNoResponse
	}{
		{name: "reset before any byte", want: true, method: http.MethodGet, serve: func(_ int, c net.Conn, br *bufio.Reader) {
			http.ReadRequest(br)
			c.(*net.TCPConn).SetLinger(0)
		}},
		{name: "closed before any byte", want: true, method: http.MethodGet, serve: func(_ int, c net.Conn, br *bufio.Reader) {
			http.ReadRequest(br)
		}},
		{name: "reset during a large upload", want: true, method: http.MethodPost,
			body: func() io.Reader { return bytes.NewReader(make([]byte, 8<<20)) },
			serve: func(_ int, c net.Conn, br *bufio.Reader) {
				http.ReadRequest(br)
				c.(*net.TCPConn).SetLinger(0)
			}},
		{name: "reset on a reused connection", reuse: true, method: http.MethodPost,
			body: func() io.Reader { return strings.NewReader("a=b") },
			serve: func(n int, c net.Conn, br *bufio.Reader) {
				serveOK(br, c, 1, nil)
				http.ReadRequest(br)
				c.(*net.TCPConn).SetLinger(0)
			}},
		{name: "response timeout", method: http.MethodGet, serve: func(_ int, c net.Conn, br *bufio.Reader) {
			http.ReadRequest(br)
			io.Copy(io.Discard, br)
		}},
		{name: "client body fails mid-upload", method: http.MethodPost,
			body: func() io.Reader { return &failingReader{n: 1 << 20, err: clientErr} },
			serve: func(_ int, c net.Conn, br *bufio.Reader) {
				http.ReadRequest(br)
				io.Copy(io.Discard, br)
			}},
		{name: "garbage answer", method: http.MethodGet, serve: func(_ int, c net.Conn, br *bufio.Reader) {
			http.ReadRequest(br)
			io.WriteString(c, "SSH-2.0-OpenSSH\r\n\r\n")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := rawBackend(t, tc.serve)
			u := newTestUpstream(t, upstreamOptions{HeaderTimeout: 200 * time.Millisecond})
			if tc.reuse {
				if _, _, err := roundTrip(t, u, http.MethodGet, addr, "/", nil); err != nil {
					t.Fatal(err)
				}
			}
			var body io.Reader
			if tc.body != nil {
				body = tc.body()
			}
			_, _, err := roundTrip(t, u, tc.method, addr, "/", body)
			if err == nil {
				t.Fatal("no error")
			}
			if got := errors.Is(err, errNoResponse); got != tc.want {
				t.Errorf("errNoResponse %v, want %v (err %v)", got, tc.want, err)
			}
			if got := unreachable(err); got != tc.want {
				t.Errorf("unreachable %v, want %v (err %v)", got, tc.want, err)
			}
		})
	}
}

// TestHandlerEarlyAnswersDoNotEject pins issue 18, item 2 at the
// handler: nine 4 MiB POSTs to three nodes that answer 413 early and
// close reach the client as nine 413s, nine response timeouts as 504s,
// and no node leaves rotation.
func TestHandlerEarlyAnswersDoNotEject(t *testing.T) {
	var addrs []string
	for range 3 {
		addr, _ := rawBackend(t, func(_ int, c net.Conn, br *bufio.Reader) {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.ContentLength > 1<<20 {
				io.WriteString(c, answer413)
				return
			}
			io.Copy(io.Discard, br) // a slow endpoint: never answers
		})
		addrs = append(addrs, addr)
	}
	p := newTestProxy(t, addrs, func(o *Options) { o.ServerTimeout = 100 * time.Millisecond })
	for i := range 9 {
		c, err := net.Dial("tcp", hostOf(p.front))
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			io.WriteString(c, "POST /realms/test/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 4194304\r\n\r\n")
			c.Write(make([]byte, 4<<20))
		}()
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		<-done
		if err != nil || resp.StatusCode != 413 {
			t.Fatalf("upload %d: %v %v, want 413", i, resp, err)
		}
	}
	for i := range 9 {
		resp, err := http.Get(p.front.URL + "/realms/test/slow")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusGatewayTimeout {
			t.Fatalf("slow GET %d: status %d, want 504", i, resp.StatusCode)
		}
	}
	for _, s := range p.pool.Servers() {
		if s.Health() != backend.HealthUp {
			t.Errorf("%s: health %v (%s), want up", s.Name(), s.Health(), s.Detail().Reason)
		}
	}
	if st := p.h.Stats(); st.BadGateway != 0 || st.Timeouts != 9 {
		t.Errorf("stats %+v, want no 502 and nine 504", st)
	}
}
