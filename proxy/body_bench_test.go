package proxy

import (
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/balancer"
	"github.com/kclb/kclb/internal/pathpolicy"
)

// benchTokenPost is a Keycloak token request with its small form body.
var benchTokenPost = []byte("POST /realms/test/protocol/openid-connect/token HTTP/1.1\r\nHost: sso.example.com\r\nUser-Agent: bench\r\n" +
	"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 55\r\n\r\n" +
	"grant_type=password&client_id=app&username=u&password=p")

// BenchmarkProxyTokenPost measures a small POST through kclb's HTTP/1.1
// server and backend client, with the body read before a server slot is
// taken (the default, issue 12 item 6) and streamed as before
// (BodyBufferBytes < 0).
func BenchmarkProxyTokenPost(b *testing.B) {
	addr := benchBackend(b)
	for _, mode := range []struct {
		name  string
		bound int64
	}{{"body=buffered", 0}, {"body=streamed", -1}} {
		b.Run(mode.name, func(b *testing.B) {
			pool, err := backend.NewPool([]backend.Spec{{Name: "kc1", Addr: addr}}, backend.PoolOptions{})
			if err != nil {
				b.Fatal(err)
			}
			h, err := New(Options{Pool: pool, Router: BalancerRouter{Selector: balancer.LeastRequest{}},
				Policy: pathpolicy.New(pathpolicy.Options{}), BodyBufferBytes: mode.bound})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(h.Close)
			c := newBenchClient(b, benchFront(b, h, false))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.conn.Write(benchTokenPost); err != nil {
					b.Fatal(err)
				}
				resp, err := http.ReadResponse(c.br, nil)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatal(fmt.Errorf("status %d", resp.StatusCode))
				}
			}
		})
	}
}
