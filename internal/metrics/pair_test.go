package metrics

import (
	"reflect"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// TestPairCollector: peer up, drift per part and drops by reason, promlint clean.
func TestPairCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewPairCollector(func() Pair {
		return Pair{Up: true, Parts: []string{"paths", "vrrp"}, Drift: []string{"vrrp"},
			Dropped: map[string]uint64{"bad_mac": 3, "replay": 0}}
	}))
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "{" + l.GetValue() + "}"
			}
			got[key] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{"kclb_pair_peer_up": 1, "kclb_pair_config_drift{paths}": 0, "kclb_pair_config_drift{vrrp}": 1,
		"kclb_pair_messages_dropped_total{bad_mac}": 3, "kclb_pair_messages_dropped_total{replay}": 0}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("exported %v\nwant %v", got, want)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil || len(problems) > 0 {
		t.Fatalf("promlint: %v %v", problems, err)
	}
}
