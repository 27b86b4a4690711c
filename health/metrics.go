package health

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// ClusterSample is one vendor_cluster_size sample from Keycloak's /metrics:
// the number of members the node sees in its cluster.
type ClusterSample struct {
	// Cluster is the "cluster" label (Infinispan's cluster name).
	Cluster string
	// Node is the "node" label: the node's JGroups name, which Keycloak
	// uses as the AUTH_SESSION_ID route.
	Node string
	// Size is the number of members the node sees.
	Size int
}

// metricClusterSize is the metric that carries the cluster view size.
const metricClusterSize = "vendor_cluster_size"

// maxMetricLine bounds one line of the exposition; longer lines fail the
// parse instead of growing a buffer.
const maxMetricLine = 64 << 10

// ErrNoClusterSize is returned by ParseClusterSize when the exposition has
// no vendor_cluster_size sample (cluster metrics disabled, or a
// non-clustered node).
var ErrNoClusterSize = errors.New("health: no vendor_cluster_size in metrics")

// ParseClusterSize reads Prometheus text exposition from r and returns the
// first vendor_cluster_size sample. It stops reading at that sample. It
// returns ErrNoClusterSize when there is none, and an error when the
// sample's labels or value are malformed.
func ParseClusterSize(r io.Reader) (ClusterSample, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxMetricLine)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, metricClusterSize)
		if !ok || rest == "" || (rest[0] != '{' && rest[0] != ' ' && rest[0] != '\t') {
			continue
		}
		return parseSample(rest)
	}
	if err := sc.Err(); err != nil {
		return ClusterSample{}, fmt.Errorf("health: read metrics: %w", err)
	}
	return ClusterSample{}, ErrNoClusterSize
}

// parseSample parses `{labels} value [timestamp]` after the metric name.
func parseSample(rest string) (ClusterSample, error) {
	var cs ClusterSample
	if rest[0] == '{' {
		labels, tail, err := parseLabels(rest[1:])
		if err != nil {
			return ClusterSample{}, fmt.Errorf("health: %s labels: %w", metricClusterSize, err)
		}
		cs.Cluster, cs.Node = labels["cluster"], labels["node"]
		rest = tail
	}
	fields := strings.Fields(rest)
	if len(fields) < 1 || len(fields) > 2 {
		return ClusterSample{}, fmt.Errorf("health: %s: want value [timestamp], got %q", metricClusterSize, clip(rest))
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return ClusterSample{}, fmt.Errorf("health: %s value: %w", metricClusterSize, err)
	}
	if math.IsNaN(v) || v < 0 || v > 1<<20 || v != math.Trunc(v) {
		return ClusterSample{}, fmt.Errorf("health: %s value %q is not a member count", metricClusterSize, clip(fields[0]))
	}
	cs.Size = int(v)
	return cs, nil
}

// parseLabels parses `name="value",...}` and returns the labels and the
// text after the closing brace. Values use the exposition escapes \\, \"
// and \n.
func parseLabels(s string) (map[string]string, string, error) {
	labels := make(map[string]string, 2)
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return nil, "", errors.New("unterminated label set")
		}
		if s[0] == '}' {
			return labels, s[1:], nil
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, "", errors.New("label without '='")
		}
		name := strings.TrimSpace(s[:eq])
		if !validLabelName(name) {
			return nil, "", fmt.Errorf("invalid label name %q", clip(name))
		}
		s = strings.TrimLeft(s[eq+1:], " \t")
		if s == "" || s[0] != '"' {
			return nil, "", fmt.Errorf("label %q: value not quoted", name)
		}
		var val strings.Builder
		i := 1
		for ; i < len(s) && s[i] != '"'; i++ {
			c := s[i]
			if c == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					c = '\n'
				default:
					c = s[i]
				}
			}
			val.WriteByte(c)
		}
		if i >= len(s) {
			return nil, "", fmt.Errorf("label %q: unterminated value", name)
		}
		labels[name] = val.String()
		s = strings.TrimLeft(s[i+1:], " \t")
		if strings.HasPrefix(s, ",") {
			s = s[1:]
		} else if !strings.HasPrefix(s, "}") {
			return nil, "", fmt.Errorf("label %q: want ',' or '}'", name)
		}
	}
}

func validLabelName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
