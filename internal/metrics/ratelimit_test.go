package metrics

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kclb/kclb/internal/proxyproto"
	"github.com/kclb/kclb/internal/ratelimit"
)

// TestRateLimitCollector: every rule's refusals and table bound are
// exported under its name (issue 14, item 3: counted per rule).
func TestRateLimitCollector(t *testing.T) {
	now := time.Now()
	l, err := ratelimit.New(ratelimit.Options{Start: now, Entries: 64, Rules: []ratelimit.Rule{
		{Name: "login", Paths: []string{"/realms/*/login-actions"}, Limit: 1, Per: time.Minute},
		{Name: "token", Paths: []string{"/realms/*/protocol/openid-connect/token"}, Limit: 1, Per: time.Minute},
	}})
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr("192.0.2.1")
	for range 3 {
		l.Check("/realms/x/login-actions/authenticate", "POST", a, now)
	}
	got := gatherRateLimits(t, NewRateLimitCollector(l.Stats))
	want := "kclb_rate_limit_table_entries{rule=login} 64\nkclb_rate_limit_table_entries{rule=token} 64\n" +
		"kclb_rate_limited_requests_total{rule=login} 2\nkclb_rate_limited_requests_total{rule=token} 0\n"
	if got != want {
		t.Fatalf("exported:\n%s\nwant:\n%s", got, want)
	}
	var none *ratelimit.Limiter
	if got := gatherRateLimits(t, NewRateLimitCollector(none.Stats)); got != "" {
		t.Fatalf("no limiter exports:\n%s", got)
	}
}

// gatherRateLimits registers c alone and returns its series, one
// "name{rule=R} value" line each, sorted.
func gatherRateLimits(t *testing.T, c prometheus.Collector) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			fmt.Fprintf(&b, "%s{rule=%s} %g\n", mf.GetName(), m.GetLabel()[0].GetValue(), v)
		}
	}
	return b.String()
}

// TestProxyProtocolCollector: the PROXY listeners' refusals by reason.
func TestProxyProtocolCollector(t *testing.T) {
	var c proxyproto.Counters
	c.Untrusted.Add(2)
	c.BadHeader.Add(1)
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewProxyProtocolCollector(&c))
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 {
		t.Fatalf("%d families, %v", len(mfs), err)
	}
	got := map[string]float64{}
	for _, m := range mfs[0].GetMetric() {
		got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
	}
	if got["untrusted"] != 2 || got["bad_header"] != 1 {
		t.Fatalf("exported %v", got)
	}
}
