package proxy

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestSetClientCertFormats pins issue 14, item 1 (backend.client_cert_header):
// each format carries the verified leaf's DER where Keycloak's lookup
// provider of that name reads it, client-sent copies of every family are
// removed first, and a certificate crypto/tls did not verify is never
// forwarded.
func TestSetClientCertFormats(t *testing.T) {
	leaf := &x509.Certificate{Raw: []byte("leaf-der+/=")}
	inter := &x509.Certificate{Raw: []byte("inter-der")}
	verified := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf, inter}, VerifiedChains: [][]*x509.Certificate{{leaf, inter}}}
	unverified := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}
	b64 := base64.StdEncoding.EncodeToString
	pemOf := func(der []byte) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	}
	sum := sha256.Sum256(leaf.Raw)
	forged := func() http.Header {
		return http.Header{
			"Client-Cert": {":Zm9v:"}, "Ssl_client_cert": {"x"}, "SSL_CLIENT_CERT": {"x"}, "Cert_chain_0": {"x"},
			"X-Forwarded-Client-Cert": {"x"}, "Ssl-Client-Verify": {"SUCCESS"}, "Accept": {"*/*"},
		}
	}
	for _, tc := range []struct {
		name   string
		format CertHeader
		want   map[string]string
	}{
		{"rfc9440", CertRFC9440, map[string]string{"Client-Cert": ":" + b64(leaf.Raw) + ":", "Client-Cert-Chain": ":" + b64(inter.Raw) + ":"}},
		{"haproxy", CertHAProxy, map[string]string{"SSL_CLIENT_CERT": b64(leaf.Raw), "CERT_CHAIN_0": b64(inter.Raw)}},
		{"nginx", CertNginx, map[string]string{"Ssl-Client-Cert": url.QueryEscape(pemOf(leaf.Raw)), "Ssl-Client-Verify": "SUCCESS"}},
		{"envoy", CertEnvoy, map[string]string{"X-Forwarded-Client-Cert": "Hash=" + hex.EncodeToString(sum[:]) +
			`;Cert="` + url.QueryEscape(pemOf(leaf.Raw)) + `";Chain="` + url.QueryEscape(pemOf(leaf.Raw)) + url.QueryEscape(pemOf(inter.Raw)) + `"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := forged()
			setClientCert(h, verified, tc.format, false)
			want := map[string]string{"Accept": "*/*"}
			for k, v := range tc.want {
				want[k] = v
			}
			if len(h) != len(want) {
				t.Errorf("headers %v, want exactly %v", h, want)
			}
			for k, v := range want {
				if got := h[k]; len(got) != 1 || got[0] != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			h = forged()
			setClientCert(h, unverified, tc.format, false)
			if len(h) != 1 {
				t.Errorf("unverified certificate: headers %v, want only Accept", h)
			}
		})
	}
	// The escaped PEM has no byte a header value cannot hold, and a '+'
	// of the base64 is escaped, since Java's URLDecoder reads '+' as the
	// space (of BEGIN CERTIFICATE).
	if e := escapedPEM([]byte{0xfb, 0xef}); strings.ContainsAny(e, "\r\n /=") || !strings.Contains(e, "%2B") {
		t.Errorf("escapedPEM left raw bytes: %q", e)
	}
}
