package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kclb/kclb/backend"
	"github.com/kclb/kclb/balancer"
	"github.com/kclb/kclb/pathpolicy"
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

// BenchmarkProxyKeepAlive measures the whole forwarding path over real
// loopback sockets: a keep-alive client, kclb's handler in an http.Server,
// and a keep-alive backend.
func BenchmarkProxyKeepAlive(b *testing.B) {
	addr := benchBackend(b)
	pool, _ := backend.NewPool([]backend.Spec{{Name: "kc1", Addr: addr}}, backend.PoolOptions{})
	h, err := New(Options{
		Pool:     pool,
		Router:   BalancerRouter{Selector: balancer.LeastRequest{}},
		Policy:   pathpolicy.New(pathpolicy.Options{}),
		Security: NewSecurityHeaders("max-age=31536000", "nosniff", "no-referrer", "SAMEORIGIN"),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := NewServer(ServerOptions{Handler: h})
	go srv.Serve(ln)
	defer srv.Close()

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	req := []byte("GET /realms/test/hello HTTP/1.1\r\nHost: sso.example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	br := bufio.NewReaderSize(conn, 64<<10)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatal(fmt.Sprint("status ", resp.StatusCode))
		}
	}
}
