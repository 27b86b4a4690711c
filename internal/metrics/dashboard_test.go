package metrics

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kclb/kclb/affinity"
	"github.com/kclb/kclb/internal/accesslog"
	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/balancer"
	"github.com/kclb/kclb/proxy"
)

// exportedNames returns every metric name a fully configured Metrics
// exports (VRRP, affinity, certificates, reloads and traffic included),
// histograms with their _bucket, _sum and _count series.
func exportedNames(t *testing.T) map[string]bool {
	t.Helper()
	pool, _ := backend.NewPool([]backend.Spec{{Name: "kc1", Addr: "a:1"}}, backend.PoolOptions{})
	aff, err := affinity.New(affinity.Options{Secret: []byte("0123456789abcdef0123456789abcdef")}, balancer.LeastRequest{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Options{
		Pool: pool, Version: "test",
		Proxy:    func() proxy.Stats { return proxy.Stats{} },
		Conns:    func() proxy.ConnCounts { return proxy.ConnCounts{} },
		Affinity: func() *affinity.Affinity { return aff },
		VRRP: func() []VRRP {
			return []VRRP{{Instance: "VI_1", State: "master", States: []string{"backup", "master"}}}
		},
		AdminUnauthorized: func() uint64 { return 0 },
		Certificates:      func() []Certificate { return []Certificate{{File: "c.pem", Name: "x", NotAfter: time.Now()}} },
		Reloads:           func() Reloads { return Reloads{} },
		ConfigHash:        func() string { return "h" },
	})
	if err != nil {
		t.Fatal(err)
	}
	m.Registry().MustRegister(NewPairCollector(func() Pair {
		return Pair{Parts: []string{"vrrp"}, Dropped: map[string]uint64{"bad_mac": 0}}
	}))
	kc1 := pool.Lookup("kc1")
	m.Request(kc1, accesslog.Record{Status: 200, Connect: time.Millisecond, UpstreamHeader: time.Millisecond})
	m.ObserveCheck(kc1, time.Millisecond, true)
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range fams {
		n := f.GetName()
		names[n] = true
		if f.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[n+s] = true
			}
		}
	}
	return names
}

// TestGrafanaDashboardUsesExportedMetrics reads every PromQL expression
// of the shipped dashboards and checks that each metric it names is one
// kclb exports (issue 15, item 4).
func TestGrafanaDashboardUsesExportedMetrics(t *testing.T) {
	exported := exportedNames(t)
	files, _ := filepath.Glob("../../deploy/grafana-*.json")
	if len(files) == 0 {
		t.Fatal("no deploy/grafana-*.json dashboard")
	}
	metricName := regexp.MustCompile(`\b(?:kclb|go|process)_[a-z0-9_]+\b`)
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var exprs []string
		collectExprs(doc, &exprs)
		if len(exprs) < 10 {
			t.Fatalf("%s: only %d expressions", file, len(exprs))
		}
		used := map[string]bool{}
		for _, e := range exprs {
			for _, n := range metricName.FindAllString(e, -1) {
				used[n] = true
				if !exported[n] {
					t.Errorf("%s: %q uses %s, which kclb does not export", file, e, n)
				}
			}
		}
		for _, must := range []string{"kclb_server_response_seconds_bucket", "kclb_certificate_not_after_seconds", "kclb_reloads_total", "kclb_config_info"} {
			if !used[must] {
				t.Errorf("%s does not chart %s", file, must)
			}
		}
	}
}

// collectExprs appends every "expr" and "query" string below v.
func collectExprs(v any, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if s, ok := c.(string); ok && (k == "expr" || k == "definition") && strings.TrimSpace(s) != "" {
				*out = append(*out, s)
				continue
			}
			collectExprs(c, out)
		}
	case []any:
		for _, c := range x {
			collectExprs(c, out)
		}
	}
}
