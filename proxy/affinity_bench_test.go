package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/kclb/kclb/affinity"
	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/balancer"
	"github.com/kclb/kclb/internal/pathpolicy"
)

// BenchmarkProxyRouting compares the forwarding path with plain
// balancing and with Keycloak affinity (a client that carries a valid
// KC_ROUTE and an AUTH_SESSION_ID), over real loopback sockets: the cost
// of affinity relative to the whole request.
func BenchmarkProxyRouting(b *testing.B) {
	for _, tc := range []struct {
		name     string
		affinity bool
	}{{"balancer", false}, {"affinity", true}} {
		b.Run(tc.name, func(b *testing.B) {
			addrs := []string{benchBackend(b), benchBackend(b), benchBackend(b)}
			var specs []backend.Spec
			for i, a := range addrs {
				specs = append(specs, backend.Spec{Name: "kc" + string(rune('1'+i)), Addr: a, Route: "node" + string(rune('1'+i))})
			}
			pool, _ := backend.NewPool(specs, backend.PoolOptions{})
			var router Router = BalancerRouter{Selector: &balancer.RoundRobin{}}
			if tc.affinity {
				a, err := affinity.New(affinity.Options{Secret: []byte("0123456789abcdef0123456789abcdef"), AuthSessionRoute: true, Learn: true}, &balancer.RoundRobin{})
				if err != nil {
					b.Fatal(err)
				}
				router = affinity.Router{A: a}
			}
			h, err := New(Options{Pool: pool, Router: router, Policy: pathpolicy.New(pathpolicy.Options{}),
				Security: NewSecurityHeaders("max-age=31536000", "nosniff", "no-referrer", "SAMEORIGIN")})
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
			br := bufio.NewReaderSize(conn, 64<<10)
			do := func(req string) *http.Response {
				if _, err := io.WriteString(conn, req); err != nil {
					b.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
				return resp
			}
			head := "GET /realms/test/hello HTTP/1.1\r\nHost: sso.example.com\r\nUser-Agent: bench\r\n"
			cookie := "Cookie: AUTH_SESSION_ID=NWUxNjFlMDAtZDQyNi00ZWE2LTk4ZTktNTJlYjk4NDRlMmQ3LkhTNTEyc2ln.node2; KC_RESTART=eyJhbGciOiJIUzI1NiJ9"
			if tc.affinity {
				// Get a KC_ROUTE from the first response.
				resp := do(head + cookie + "\r\n\r\n")
				for _, c := range resp.Cookies() {
					if c.Name == "KC_ROUTE" {
						cookie += "; KC_ROUTE=" + c.Value
					}
				}
				if !strings.Contains(cookie, "KC_ROUTE=") {
					b.Fatal("no KC_ROUTE issued")
				}
			}
			req := head + cookie + "\r\n\r\n"
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				do(req)
			}
		})
	}
}
