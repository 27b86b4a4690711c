package proxy

import (
	"testing"
	"time"

	"github.com/kclb/kclb/internal/ratelimit"
)

// BenchmarkH1ProxyRateLimited is BenchmarkH1Proxy on kclb's own server
// and client with two [[rate_limit]] rules, one of which counts every
// request (a rate it never reaches): the limiter's share of the request
// path, to compare with BenchmarkH1Proxy's first case (issue 14, item 3:
// no allocation for a known client).
func BenchmarkH1ProxyRateLimited(b *testing.B) {
	addr := rawBenchBackend(b)
	lim, err := ratelimit.New(ratelimit.Options{Rules: []ratelimit.Rule{
		{Name: "login", Paths: []string{"/realms/*/login-actions/authenticate"}, Methods: []string{"POST"}, Limit: 20, Per: time.Minute, Burst: 10},
		{Name: "all", Paths: []string{"/realms/*/hello"}, Limit: 1 << 30, Per: time.Second, Burst: 1_000_000},
	}})
	if err != nil {
		b.Fatal(err)
	}
	h := newBenchHandler(b, addr, false)
	h.opts.RateLimit = lim
	c := newRawBenchClient(b, benchFront(b, h, false))
	b.ReportAllocs()
	done := reportCPU(b)
	for b.Loop() {
		if err := c.do(benchRequest); err != nil {
			b.Fatal(err)
		}
	}
	done()
	if st := lim.Stats(); st[1].Limited != 0 {
		b.Fatalf("%d requests limited", st[1].Limited)
	}
}
