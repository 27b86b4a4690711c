package metrics

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	dPairUp = desc("kclb_pair_peer_up",
		"1 when the last exchange with the pair's other instance ([pair] peer) succeeded, 0 when it failed.")
	dPairDrift = desc("kclb_pair_config_drift",
		"1 when this part of the configuration (servers, affinity_key, vrrp, paths, headers) differs from the peer's, 0 when it matches.", "part")
	dPairDropped = desc("kclb_pair_messages_dropped_total",
		"Pair messages refused: malformed, bad_mac (wrong key), replay, stale (timestamp outside the window), reflected (this instance's own name).", "reason")
)

// Pair is the pair channel's state, for NewPairCollector.
type Pair struct {
	// Up is true when the last exchange with the peer succeeded.
	Up bool
	// Parts are every fingerprint part; Drift those that differ.
	Parts, Drift []string
	// Dropped counts refused messages by reason (every reason present).
	Dropped map[string]uint64
}

// pairCollector exports the pair channel's state at scrape time.
type pairCollector struct{ f func() Pair }

// NewPairCollector returns a collector of the pair state f returns, for
// Registry().Register.
func NewPairCollector(f func() Pair) prometheus.Collector { return &pairCollector{f: f} }

// Describe implements prometheus.Collector.
func (p *pairCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- dPairUp
	ch <- dPairDrift
	ch <- dPairDropped
}

// Collect implements prometheus.Collector.
func (p *pairCollector) Collect(ch chan<- prometheus.Metric) {
	st := p.f()
	ch <- prometheus.MustNewConstMetric(dPairUp, prometheus.GaugeValue, b2f(st.Up))
	for _, part := range st.Parts {
		ch <- prometheus.MustNewConstMetric(dPairDrift, prometheus.GaugeValue, b2f(slices.Contains(st.Drift, part)), part)
	}
	for reason, n := range st.Dropped {
		ch <- prometheus.MustNewConstMetric(dPairDropped, prometheus.CounterValue, float64(n), reason)
	}
}
