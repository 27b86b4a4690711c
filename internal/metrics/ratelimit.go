package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kclb/kclb/internal/ratelimit"
)

var (
	dRateLimited = desc("kclb_rate_limited_requests_total", "Requests answered 429 by each [[rate_limit]] rule.", "rule")
	dRateEntries = desc("kclb_rate_limit_table_entries", "Fixed number of client keys each [[rate_limit]] rule remembers (its memory bound).", "rule")
)

// rateLimitCollector exports the rate limiter's per-rule counters, read
// at scrape time.
type rateLimitCollector struct{ stats func() []ratelimit.RuleStats }

// NewRateLimitCollector returns a collector of the rules that stats
// returns (the limiter in force; nil or empty when there is none), for
// Registry().Register.
func NewRateLimitCollector(stats func() []ratelimit.RuleStats) prometheus.Collector {
	return &rateLimitCollector{stats: stats}
}

// Describe implements prometheus.Collector.
func (c *rateLimitCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- dRateLimited
	ch <- dRateEntries
}

// Collect implements prometheus.Collector.
func (c *rateLimitCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.stats() {
		ch <- prometheus.MustNewConstMetric(dRateLimited, prometheus.CounterValue, float64(s.Limited), s.Name)
		ch <- prometheus.MustNewConstMetric(dRateEntries, prometheus.GaugeValue, float64(s.Entries), s.Name)
	}
}
