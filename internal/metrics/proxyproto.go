package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kclb/kclb/internal/proxyproto"
)

var dProxyRefused = desc("kclb_proxy_protocol_refused_total",
	"Connections PROXY-protocol listeners closed: untrusted (not from proxy_protocol_from), bad_header (missing, malformed or late header).", "reason")

// proxyProtoCollector exports the PROXY listeners' refusal counters.
type proxyProtoCollector struct{ c *proxyproto.Counters }

// NewProxyProtocolCollector returns a collector of c (shared by every
// PROXY-protocol listener), for Registry().Register.
func NewProxyProtocolCollector(c *proxyproto.Counters) prometheus.Collector {
	return &proxyProtoCollector{c: c}
}

// Describe implements prometheus.Collector.
func (p *proxyProtoCollector) Describe(ch chan<- *prometheus.Desc) { ch <- dProxyRefused }

// Collect implements prometheus.Collector.
func (p *proxyProtoCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(dProxyRefused, prometheus.CounterValue, float64(p.c.Untrusted.Load()), "untrusted")
	ch <- prometheus.MustNewConstMetric(dProxyRefused, prometheus.CounterValue, float64(p.c.BadHeader.Load()), "bad_header")
}
