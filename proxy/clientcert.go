package proxy

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// CertHeader selects the headers through which a client certificate that
// kclb verified in the TLS handshake reaches Keycloak, one per
// x509cert-lookup provider. The zero value is CertRFC9440.
type CertHeader uint8

const (
	// CertRFC9440 sets Client-Cert (the leaf) and Client-Cert-Chain (the
	// other certificates the client sent), as RFC 8941 byte sequences
	// of the DER (RFC 9440).
	CertRFC9440 CertHeader = iota
	// CertHAProxy sets SSL_CLIENT_CERT and CERT_CHAIN_0, CERT_CHAIN_1...
	// to the base64 DER, as HAProxy's ssl_c_der,base64.
	CertHAProxy
	// CertNginx sets ssl-client-cert to the URL-encoded PEM (nginx's
	// $ssl_client_escaped_cert) and ssl-client-verify to SUCCESS.
	CertNginx
	// CertEnvoy sets x-forwarded-client-cert to
	// Hash=<sha256 hex>;Cert="<URL-encoded PEM>";Chain="<URL-encoded PEM>".
	CertEnvoy
)

// setClientCert readies the client-certificate headers of a request that
// arrived over TLS: whoever sent it, copies sent by the client are
// removed, since on a connection kclb terminates only kclb saw the
// certificate; then, if crypto/tls verified the client's certificate
// (st.VerifiedChains), the headers of format describe it. An unverified
// certificate is never forwarded.
func setClientCert(h http.Header, st *tls.ConnectionState, format CertHeader, stripped bool) {
	if !stripped {
		for k := range h {
			if clientCertHeader(k) {
				delete(h, k)
			}
		}
	}
	if st == nil || len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return
	}
	certs := st.PeerCertificates
	switch format {
	case CertHAProxy:
		h["SSL_CLIENT_CERT"] = []string{base64.StdEncoding.EncodeToString(certs[0].Raw)}
		for i, c := range certs[1:] {
			h["CERT_CHAIN_"+strconv.Itoa(i)] = []string{base64.StdEncoding.EncodeToString(c.Raw)}
		}
	case CertNginx:
		h["Ssl-Client-Cert"] = []string{escapedPEM(certs[0].Raw)}
		h["Ssl-Client-Verify"] = []string{"SUCCESS"}
	case CertEnvoy:
		sum := sha256.Sum256(certs[0].Raw)
		var chain strings.Builder
		for _, c := range certs {
			chain.WriteString(escapedPEM(c.Raw))
		}
		h["X-Forwarded-Client-Cert"] = []string{"Hash=" + hex.EncodeToString(sum[:]) +
			`;Cert="` + escapedPEM(certs[0].Raw) + `";Chain="` + chain.String() + `"`}
	default:
		h["Client-Cert"] = []string{byteSequence(certs[0].Raw)}
		if len(certs) > 1 {
			items := make([]string, 0, len(certs)-1)
			for _, c := range certs[1:] {
				items = append(items, byteSequence(c.Raw))
			}
			h["Client-Cert-Chain"] = []string{strings.Join(items, ", ")}
		}
	}
}

// byteSequence is der as an RFC 8941 byte sequence: ":base64:".
func byteSequence(der []byte) string {
	return ":" + base64.StdEncoding.EncodeToString(der) + ":"
}

// escapedPEM is der as a PEM block, query-escaped so that it fits in a
// header value (newlines %0A, '+' %2B, spaces '+'), which Java's
// URLDecoder, used by Keycloak's nginx and envoy lookups, reverses.
func escapedPEM(der []byte) string {
	return url.QueryEscape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
}
