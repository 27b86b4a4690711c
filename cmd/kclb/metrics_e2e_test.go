package main

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// TestMetricsObservabilityThroughBinary pins the series of issue 15,
// item 4 through the real binary: per-server response, connect and queue
// time histograms and bytes after traffic, the certificate's not-after,
// reloads by result, the hash of the configuration in force, and a
// promlint-clean exposition.
func TestMetricsObservabilityThroughBinary(t *testing.T) {
	a := newAdminEnv(t, adminOptions{tcp: true, nodes: 2, extra: echoPaths})
	base := "http://" + a.tcp
	const requests = 5
	body := strings.Repeat("b", 300)
	for range requests {
		resp, err := a.client(false).Post(a.url("/echo"), "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	good, _ := os.ReadFile(a.cfgPath)
	mustCLI(t, "reload", "-s", a.socket)
	os.WriteFile(a.cfgPath, append(append([]byte{}, good...), "\n[timeouts]\nconnect = \"soon\"\n"...), 0o600)
	if _, _, code := cli(t, "reload", "-s", a.socket); code != 1 {
		t.Fatalf("invalid reload exit %d", code)
	}

	f := scrapeMetrics(t, base)
	sum := sha256.Sum256(good)
	certPEM, _ := os.ReadFile(a.certFile)
	blk, _ := pem.Decode(certPEM)
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		metric  string
		labels  map[string]string
		want    float64
		atLeast bool
	}{
		{"kclb_server_response_seconds", nil, requests, false},
		{"kclb_server_queue_seconds", nil, requests, false},
		{"kclb_server_connect_seconds", nil, 1, true},
		{"kclb_server_bytes_in_total", nil, requests * 300, false},
		{"kclb_server_bytes_out_total", nil, requests * 300, true},
		{"kclb_reloads_total", map[string]string{"result": "ok"}, 1, false},
		{"kclb_reloads_total", map[string]string{"result": "failed"}, 1, false},
		{"kclb_config_info", map[string]string{"hash": hex.EncodeToString(sum[:])}, 1, false},
		{"kclb_certificate_not_after_seconds", map[string]string{"file": a.certFile, "name": "localhost"}, float64(leaf.NotAfter.Unix()), false},
	} {
		got := metricValue(t, f, tc.metric, tc.labels)
		if got != tc.want && !(tc.atLeast && got >= tc.want) {
			t.Errorf("%s%v = %v, want %v", tc.metric, tc.labels, got, tc.want)
		}
	}

	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	problems, err := promlint.New(resp.Body).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}
