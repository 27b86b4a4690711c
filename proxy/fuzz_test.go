package proxy

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

// FuzzForwardRules feeds arbitrary header names, values and Host
// headers from an untrusted peer through the forwarded-header rules:
// exactly one family reaches the backend, carrying only kclb's own
// values, and no hop-by-hop header survives.
func FuzzForwardRules(f *testing.F) {
	f.Add("X-Forwarded-For", "203.0.113.1", "kc.example:443", false)
	f.Add("x-forwarded-host", "evil", "kc.example.", true)
	f.Add("Forwarded", "for=1.2.3.4;proto=https", "[::1]:8443", true)
	f.Add("X-Real-IP", "1.2.3.4", "", false)
	f.Add("Connection", "X-Forwarded-For, close", "a:b:c", false)
	f.Add("X-B3-TraceId", "1", "kc.example:", true)
	f.Add("Traceparent", "00-1-2-01", "KC.EXAMPLE.:80", false)
	f.Add("SSL_CLIENT_CERT", "-----BEGIN CERTIFICATE-----", "kc.example", false)
	f.Add("Client-Cert-Chain", ":AAAA:", "kc.example", true)
	f.Fuzz(func(t *testing.T, name, value, host string, rfc bool) {
		family := XForwarded
		if rfc {
			family = Forwarded
		}
		rules := forwardRules{family: family, trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
		r := &http.Request{Header: http.Header{http.CanonicalHeaderKey(name): {value}}, Host: host}
		client := netip.MustParseAddr("192.0.2.7")
		rules.prepare(r, client, true, nil)
		want := "X-Forwarded-For"
		if family == Forwarded {
			want = "Forwarded"
		}
		if len(r.Header[want]) != 1 {
			t.Fatalf("%s missing after prepare: %q", want, r.Header)
		}
		for k, vv := range r.Header {
			switch {
			case k == "Forwarded":
				if family != Forwarded || len(vv) != 1 || !strings.HasPrefix(vv[0], "for=192.0.2.7;proto=https;host=") {
					t.Fatalf("Forwarded %q with family %v", vv, family)
				}
			case k == "X-Forwarded-For":
				if family != XForwarded || len(vv) != 1 || vv[0] != "192.0.2.7" {
					t.Fatalf("X-Forwarded-For %q", vv)
				}
			case k == "X-Forwarded-Proto":
				if vv[0] != "https" {
					t.Fatalf("X-Forwarded-Proto %q", vv)
				}
			case k == "X-Forwarded-Host", k == "X-Forwarded-Port":
				if family != XForwarded || len(vv) != 1 {
					t.Fatalf("%s %q", k, vv)
				}
			case untrustedHeader(k):
				t.Fatalf("untrusted header %s: %q survived", k, vv)
			}
			for _, h := range hopByHop {
				if k == h {
					t.Fatalf("hop-by-hop header %s survived", k)
				}
			}
		}
	})
}
