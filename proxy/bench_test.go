package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/balancer"
	"github.com/kclb/kclb/internal/pathpolicy"
)

// benchBody is the size of Keycloak-like small JSON responses.
var benchBody = strings.Repeat("x", 955)

func benchBackend(b *testing.B) string {
	b.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Cache-Control"] = []string{"no-store, must-revalidate, max-age=0"}
		h["Content-Length"] = []string{"955"}
		io.WriteString(w, benchBody)
	}))
	b.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// newBenchHandler returns a Handler forwarding to the backend at addr with
// the security headers set, over net/http's Transport when stdlib is true
// and kclb's upstream client otherwise.
func newBenchHandler(tb testing.TB, addr string, stdlib bool) *Handler {
	tb.Helper()
	pool, err := backend.NewPool([]backend.Spec{{Name: "kc1", Addr: addr}}, backend.PoolOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	h, err := New(Options{
		Pool:            pool,
		Router:          BalancerRouter{Selector: balancer.LeastRequest{}},
		Policy:          pathpolicy.New(pathpolicy.Options{}),
		Security:        NewSecurityHeaders("max-age=31536000", "nosniff", "no-referrer", "SAMEORIGIN"),
		StdlibTransport: stdlib,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(h.Close)
	return h
}

// benchFront serves h on a loopback listener and returns its address:
// with net/http's HTTP/1.1 server when stdlib is true, kclb's otherwise.
func benchFront(b testing.TB, h *Handler, stdlib bool) string {
	b.Helper()
	addr, _ := benchServer(b, h, stdlib)
	return addr
}

// benchServer is benchFront that also returns the Server.
func benchServer(b testing.TB, h *Handler, stdlib bool) (string, *Server) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := NewServer(ServerOptions{Handler: h, StdlibHTTP1: stdlib})
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), srv
}

var benchRequest = []byte("GET /realms/test/hello HTTP/1.1\r\nHost: sso.example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")

// benchClient is one keep-alive client connection.
type benchClient struct {
	conn net.Conn
	br   *bufio.Reader
}

func newBenchClient(b *testing.B, addr string) *benchClient {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return &benchClient{conn: conn, br: bufio.NewReaderSize(conn, 64<<10)}
}

// do sends one request and reads the whole response.
func (c *benchClient) do() error {
	if _, err := c.conn.Write(benchRequest); err != nil {
		return err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// benchTransports are the client-side servers and backend clients the
// benchmarks compare.
var benchTransports = []struct {
	name           string
	stdlibServer   bool
	stdlibUpstream bool
}{
	{name: "server=kclb/transport=upstream"},
	{name: "server=stdlib/transport=upstream", stdlibServer: true},
	{name: "server=stdlib/transport=stdlib", stdlibServer: true, stdlibUpstream: true},
}

// BenchmarkProxyKeepAlive measures the whole forwarding path over real
// loopback sockets: a keep-alive client, kclb's handler in an http.Server,
// and a keep-alive backend.
func BenchmarkProxyKeepAlive(b *testing.B) {
	addr := benchBackend(b)
	for _, tr := range benchTransports {
		b.Run(tr.name, func(b *testing.B) {
			c := newBenchClient(b, benchFront(b, newBenchHandler(b, addr, tr.stdlibUpstream), tr.stdlibServer))
			b.ReportAllocs()
			done := reportCPU(b)
			for b.Loop() {
				if err := c.do(); err != nil {
					b.Fatal(err)
				}
			}
			done()
		})
	}
}

// BenchmarkProxyKeepAliveParallel is BenchmarkProxyKeepAlive with 16
// keep-alive client connections per CPU (32 on two cores) in flight.
func BenchmarkProxyKeepAliveParallel(b *testing.B) {
	addr := benchBackend(b)
	for _, tr := range benchTransports {
		b.Run(tr.name, func(b *testing.B) {
			front := benchFront(b, newBenchHandler(b, addr, tr.stdlibUpstream), tr.stdlibServer)
			var mu sync.Mutex // serialises dialing and b.Cleanup
			b.ReportAllocs()
			b.SetParallelism(16)
			b.ResetTimer()
			done := reportCPU(b)
			defer done()
			b.RunParallel(func(pb *testing.PB) {
				mu.Lock()
				c := newBenchClient(b, front)
				mu.Unlock()
				for pb.Next() {
					if err := c.do(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
