package reliability

import (
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/kcsim"
	"github.com/kclb/kclb/internal/kcsim/kcsimtest"
)

// kcsimSpecs returns backend specs for the nodes of c, with routes.
func kcsimSpecs(c *kcsimtest.Cluster) []backend.Spec {
	var specs []backend.Spec
	for _, n := range c.Nodes() {
		specs = append(specs, backend.Spec{Addr: n.Traffic.String(), Route: n.Node.Name()})
	}
	return specs
}

// echoVia sends req with c and decodes kcsim's /echo answer.
func echoVia(t *testing.T, c *http.Client, req *http.Request) kcsim.EchoResponse {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: status %d: %s", req.URL, resp.StatusCode, b)
	}
	var e kcsim.EchoResponse
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("echo body %q: %v", b, err)
	}
	return e
}

// forged are forwarding and tracing headers a client must not be able
// to set.
var forged = map[string]string{
	"X-Forwarded-For":    "203.0.113.66",
	"X-Forwarded-Proto":  "https",
	"X-Forwarded-Host":   "evil.example",
	"X-Forwarded-Port":   "8443",
	"X-Forwarded-Prefix": "/evil",
	"X-Forwarded-Server": "evil",
	"X-Original-Url":     "/admin/",
	"X-Original-Host":    "evil.example",
	"Forwarded":          "for=203.0.113.66;proto=https;host=evil.example",
	"X-Real-Ip":          "203.0.113.66",
	"Traceparent":        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	"Tracestate":         "evil=1",
	"Baggage":            "user=admin",
	"B3":                 "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1",
	"X-B3-Traceid":       "80f198ee56343ba864fe8b2a57d3eff7",
	"Uber-Trace-Id":      "1:2:3:1",
}

// TestForgedForwardingHeaders sends forged forwarding and tracing
// headers over HTTP/1.1 and HTTP/2 from an untrusted peer, and from a
// trusted one. There is no counter: stripping is unconditional for
// untrusted peers, so the assertion is on what the backend received.
func TestForgedForwardingHeaders(t *testing.T) {
	cluster := kcsimtest.StartCluster(t, 1, kcsim.Options{})
	untrusted := startLB(t, lbOptions{backends: kcsimSpecs(cluster)})
	trusted := startLB(t, lbOptions{backends: kcsimSpecs(cluster), trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	tests := []struct {
		name    string
		l       *lb
		h2      bool
		trusted bool
	}{
		{"untrusted http/1.1", untrusted, false, false},
		{"untrusted h2", untrusted, true, false},
		{"trusted http/1.1", trusted, false, true},
		{"trusted h2", trusted, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			url, proto := tc.l.url("/echo"), "http"
			if tc.h2 {
				url, proto = tc.l.surl("/echo"), "https"
			}
			req, _ := http.NewRequest("GET", url, nil)
			for k, v := range forged {
				req.Header.Set(k, v)
			}
			req.Header.Set("X-Request-Id", "bad id with spaces")
			if !tc.h2 && !tc.trusted {
				// Naming kclb's own headers as hop-by-hop must not remove
				// them (HTTP/2 has no Connection header).
				req.Header.Set("Connection", "X-Forwarded-For, X-Forwarded-Proto, Forwarded, X-Request-Id")
			}
			e := echoVia(t, tc.l.client(t, tc.h2), req)
			got := http.Header(e.Header)
			if tc.trusted {
				if v := got.Get("X-Forwarded-For"); v != "203.0.113.66, 127.0.0.1" {
					t.Errorf("trusted X-Forwarded-For %q, want the chain extended", v)
				}
				if v := got.Get("X-Forwarded-Proto"); v != "https" {
					t.Errorf("trusted X-Forwarded-Proto %q, want the peer's value", v)
				}
				if got.Get("Traceparent") == "" {
					t.Errorf("trusted peer's traceparent was dropped")
				}
				return
			}
			if v := got.Get("X-Forwarded-For"); v != "127.0.0.1" {
				t.Errorf("X-Forwarded-For %q, want 127.0.0.1", v)
			}
			if v := got.Get("X-Forwarded-Proto"); v != proto {
				t.Errorf("X-Forwarded-Proto %q, want %q", v, proto)
			}
			if v := got.Get("X-Forwarded-Host"); v == "evil.example" {
				t.Errorf("X-Forwarded-Host kept the forged value")
			}
			for k := range forged {
				switch k {
				case "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port":
					if strings.Contains(got.Get(k), "evil") || strings.Contains(got.Get(k), "203.0.113") || got.Get(k) == "8443" {
						t.Errorf("%s carries the forged value %q", k, got.Get(k))
					}
				default:
					if v := got.Values(k); len(v) != 0 {
						t.Errorf("forged %s reached the backend: %q", k, v)
					}
				}
			}
			if v := got.Get("X-Request-Id"); v == "bad id with spaces" || len(v) != 32 {
				t.Errorf("X-Request-Id %q, want a fresh 32-hex id", v)
			}
		})
	}
}

// blockedPaths are encodings of /admin, /metrics and /health with the
// status a client outside the admin networks must get: 403 for /admin
// (whatever the encoding), the blocked status (404) for the others, 400
// for paths that cannot be canonicalised.
var blockedPaths = []struct {
	target string
	status int
}{
	{"/admin/", 403},
	{"/admin", 403},
	{"/ADMIN/", 403},
	{"/Admin/master/console/", 403},
	{"/%61dmin/", 403},
	{"/%2561dmin/", 403},
	{"/admin%2F", 403},
	{"/admin%2fmaster", 403},
	{"//admin/", 403},
	{"/./admin/", 403},
	{"/realms/../admin/", 403},
	{"/realms/%2e%2e/admin/", 403},
	{"/realms/%2E%2E%2Fadmin%2F", 403},
	{"/realms/..;/admin/", 403},
	{"/admin;jsessionid=1/", 403},
	{"/admin\\master", 403},
	{"/realms/%252e%252e/admin/", 403},
	{"/metrics", 404},
	{"/METRICS", 404},
	{"/metrics/", 404},
	{"/%6detrics", 404},
	{"//metrics", 404},
	{"/metrics;x", 404},
	{"/realms/master/../../metrics", 404},
	{"/health", 404},
	{"/health/ready", 404},
	{"/Health/Live", 404},
	{"/realms/../health/live", 404},
	{"/health;x/ready", 404},
	{"/%68ealth/started", 404},
	{"/resources/..%2f..%2fhealth", 400},
	{"/%2e%2e/admin/", 400},
	{"/admin%00/", 400},
	{"/%zz", 400},
}

// TestPathPolicyEncodingsHTTP1 sends every encoding as a raw HTTP/1.1
// request target (no client normalisation), also in absolute form and
// with odd Host headers.
func TestPathPolicyEncodingsHTTP1(t *testing.T) {
	rec := startRecorder(t)
	l := startLB(t, lbOptions{backends: []backend.Spec{{Addr: rec.addr}}})
	for _, host := range []string{"localhost", "localhost:443", "localhost.", "LOCALHOST.:80"} {
		for _, form := range []string{"origin", "absolute"} {
			for _, tc := range blockedPaths {
				target := tc.target
				if form == "absolute" {
					target = "http://" + host + tc.target
				}
				before := l.h.Stats()
				res := rawHTTP(t, l.addr, "GET "+target+" HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n", 5*time.Second)
				after := l.h.Stats()
				if got := res.status(); got != tc.status {
					t.Errorf("%s %s (Host %s): status %d, want %d", form, tc.target, host, got, tc.status)
				}
				// Every refusal is counted: by the path policy, or (for a
				// target net/http cannot parse) by ConnStats.Rejected.
				if after.Blocked-before.Blocked != 1 && res.status() != 400 {
					t.Errorf("%s %s: Stats.Blocked +%d, want +1", form, tc.target, after.Blocked-before.Blocked)
				}
			}
		}
	}
	if n := rec.n.Load(); n != 0 {
		t.Errorf("backend got %d requests, want none", n)
	}
	st := l.h.Stats()
	t.Logf("path policy over HTTP/1.1: %d requests, %d blocked by the policy; connections %+v", len(blockedPaths)*8, st.Blocked, l.conns.Counts())
}

// TestPathPolicyEncodingsHTTP2 sends the same :path values over HTTP/2
// with raw frames.
func TestPathPolicyEncodingsHTTP2(t *testing.T) {
	rec := startRecorder(t)
	l := startLB(t, lbOptions{backends: []backend.Spec{{Addr: rec.addr}}})
	c := dialH2(t, l, 0)
	for _, authority := range []string{"localhost", "localhost:443", "localhost."} {
		for _, tc := range blockedPaths {
			block := c.block(":method", "GET", ":scheme", "https", ":authority", authority, ":path", tc.target)
			res := c.wait(c.send(block, true), 5*time.Second)
			if res.closed || res.goaway {
				t.Fatalf("%s: connection lost: %+v", tc.target, res)
			}
			// net/http may refuse an unparsable :path itself (400 or a
			// stream reset) before the policy sees it.
			if res.status != tc.status && !(tc.status == 400 && res.reset) {
				t.Errorf("%s (authority %s): %+v, want status %d", tc.target, authority, res, tc.status)
			}
		}
	}
	if n := rec.n.Load(); n != 0 {
		t.Errorf("backend got %d requests, want none", n)
	}
	t.Logf("path policy over HTTP/2: %d requests, %d blocked by the policy", len(blockedPaths)*3, l.h.Stats().Blocked)
}
