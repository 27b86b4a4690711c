package proxy

import (
	"net/netip"
	"strings"
)

// This file holds kclb's edge rules as small functions over plain values
// (strings, numbers), so that every front end applies exactly the same
// rules: the net/http servers built by NewServer (HTTP/1 and HTTP/2) and
// any purpose-built HTTP/1.1 server. None of them allocates.
//
//	validMethod        request method is an RFC 9110 token
//	validTarget        request target has no SP, CTL, '#' or non-ASCII byte
//	validAuthority     Host / :authority is a reg-name or IP literal, optional port
//	hostRule           what to do about a missing Host
//	framingRule        HTTP/1.0 with Transfer-Encoding: 400 and close
//	upgradeRule        Upgrade other than h2c: 501
//	clientCertHeader   client-certificate header names (stripped from untrusted peers)
//	untrustedHeader    every header name stripped from untrusted peers
//	trailerAllowed     trailer names that may be forwarded at all

// isTchar reports whether c is an RFC 9110 tchar.
func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// validMethod reports whether m is a non-empty RFC 9110 token, so that
// writing it into an HTTP/1.1 request line cannot add a target or a
// version (issue 12, item 1).
func validMethod(m string) bool { return isToken(m) }

// isToken reports whether s is a non-empty RFC 9110 token: the check of
// every parser in the package (request line, header and trailer names,
// response heads).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return false
		}
	}
	return true
}

// validTarget reports whether a request target (origin or absolute form,
// as sent by the client) can be written into an HTTP/1.1 request line
// unchanged: non-empty, no SP, no control byte, no '#' (a fragment is
// never sent) and only ASCII (RFC 3986 has no other bytes; clients
// percent-encode them). Issue 12, item 1.
func validTarget(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	return true
}

// maxAuthority bounds a Host or :authority value: a DNS name is at most
// 253 bytes, plus a port.
const maxAuthority = 261

// validAuthority reports whether a is an RFC 3986 authority without
// userinfo: a reg-name (unreserved, pct-encoded, sub-delims), an IPv4
// address or a bracketed IPv6 literal without zone, followed by an
// optional ":port" of 1 to 5 digits. Such a value never needs escaping
// in X-Forwarded-Host and holds neither '"' nor '\', so it can be quoted
// in Forwarded. Issue 12, item 2.
func validAuthority(a string) bool {
	if a == "" || len(a) > maxAuthority {
		return false
	}
	host, port := a, ""
	if a[0] == '[' {
		end := strings.IndexByte(a, ']')
		if end < 0 {
			return false
		}
		ip, err := netip.ParseAddr(a[1:end])
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return false
		}
		rest := a[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return false
			}
			port = rest[1:]
			if !validPort(port) {
				return false
			}
		}
		return true
	}
	if i := strings.LastIndexByte(a, ':'); i >= 0 {
		host, port = a[:i], a[i+1:]
		if !validPort(port) {
			return false
		}
	}
	if host == "" {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			continue
		}
		switch c {
		case '-', '.', '_', '~', // unreserved
			'!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=': // sub-delims
			continue
		case '%':
			if i+2 < len(host) && isHex(host[i+1]) && isHex(host[i+2]) {
				i += 2
				continue
			}
		}
		return false
	}
	return true
}

func validPort(p string) bool {
	if p == "" || len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n <= 65535
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// hostAction is hostRule's verdict.
type hostAction uint8

const (
	hostKeep   hostAction = iota // the request's own Host is used
	hostPublic                   // use the configured public host name
	hostReject                   // answer 400
)

// hostRule decides what to do about a request's Host (for HTTP/2 the
// :authority, else the host header) given the protocol version and the
// configured public host name: a present Host must be a valid authority;
// an absent or empty one is 400 on HTTP/1.1 (RFC 9112 3.2) and on HTTP/1.0
// and HTTP/2 is replaced by public, or 400 when none is configured. kclb
// never makes one up from a backend address (issue 12, item 3).
func hostRule(major, minor int, host, public string) hostAction {
	if host != "" {
		if validAuthority(host) {
			return hostKeep
		}
		return hostReject
	}
	if (major == 1 && minor >= 1) || public == "" {
		return hostReject
	}
	return hostPublic
}

// framingAction is framingRule's verdict.
type framingAction uint8

const (
	framingOK          framingAction = iota
	framingCloseAfter                // serve, then close the connection (RFC 9112 6.1)
	framingRejectClose               // answer 400 and close the connection
)

// framingRule decides about an HTTP/1 request's message framing from
// its version and whether it carried Transfer-Encoding: HTTP/1.0 does
// not define Transfer-Encoding, so such a request is faulty framing
// (RFC 9112 6.1): 400 and close (issue 12, item 7). On HTTP/1.1 the
// connection is closed after the response, since a Content-Length may
// have come with it. A server that cannot see Transfer-Encoding on
// HTTP/1.0 (net/http removes it) passes te = false and closes every
// HTTP/1.0 connection after its response instead (closeHTTP10).
func framingRule(major, minor int, te bool) framingAction {
	if major != 1 || !te {
		return framingOK
	}
	if minor == 0 {
		return framingRejectClose
	}
	return framingCloseAfter
}

// closeHTTP10 reports whether a server that cannot see a request's
// Transfer-Encoding must close the connection after the response to it:
// every HTTP/1.0 request, since its framing cannot be checked.
func closeHTTP10(major, minor int) bool { return major == 1 && minor == 0 }

// upgradeRule reports whether a request whose Upgrade header is v must
// be refused with 501: kclb does not pass protocol switches (WebSocket)
// through. An offer of h2c alone is ignored (the header is dropped), as
// RFC 9110 7.8 allows. Empty means no Upgrade header.
func upgradeRule(v string) bool {
	for tok := range strings.SplitSeq(v, ",") {
		if tok = strings.TrimSpace(tok); tok != "" && !strings.EqualFold(tok, "h2c") {
			return true
		}
	}
	return false
}

// foldEq compares a header-name byte with a lower-case pattern byte,
// treating '_' as '-' (Keycloak's haproxy and apache providers use
// underscores).
func foldEq(c, p byte) bool {
	if 'A' <= c && c <= 'Z' {
		c += 'a' - 'A'
	} else if c == '_' {
		c = '-'
	}
	return c == p
}

// hasNamePrefix reports whether name starts with the lower-case prefix p
// under foldEq.
func hasNamePrefix(name, p string) bool {
	if len(name) < len(p) {
		return false
	}
	for i := 0; i < len(p); i++ {
		if !foldEq(name[i], p[i]) {
			return false
		}
	}
	return true
}

// clientCertPrefixes are the name prefixes (lower case, '-' for '_') of
// the headers through which a TLS-terminating proxy hands a client
// certificate to Keycloak's x509cert-lookup providers: haproxy
// (SSL_CLIENT_CERT, CERT_CHAIN_n), apache (SSL_CLIENT_CERT,
// SSL_CLIENT_CERT_CHAIN_n), nginx (ssl-client-cert, ssl-client-verify),
// envoy (x-forwarded-client-cert), traefik (X-Forwarded-Tls-Client-Cert),
// RFC 9440 (Client-Cert, Client-Cert-Chain) and the customary
// X-Client-Cert, X-SSL-Client-Cert and X-SSL-* names.
var clientCertPrefixes = []string{
	"ssl-client-", "cert-chain", "client-cert", "x-client-cert", "x-ssl-",
	"x-forwarded-client-cert", "x-forwarded-tls-client-cert",
}

// clientCertHeader reports whether name is a client-certificate header
// that only a trusted proxy may send (issue 12, item 5).
func clientCertHeader(name string) bool {
	for _, p := range clientCertPrefixes {
		if hasNamePrefix(name, p) {
			return true
		}
	}
	return false
}

// untrustedExact are removed from requests of untrusted peers (Keycloak's
// HAProxy guide strips the same set on ingress).
var untrustedExact = []string{
	"forwarded", "x-real-ip", "traceparent", "tracestate", "baggage", "b3",
	"uber-trace-id", "x-ot-span-context",
}

// untrustedPrefixes are header-name prefixes removed from untrusted peers.
var untrustedPrefixes = []string{"x-forwarded-", "x-original-", "x-b3-"}

// untrustedHeader reports whether a header named name is removed from
// the requests of untrusted peers: forwarding, tracing and
// client-certificate headers.
func untrustedHeader(name string) bool {
	for _, p := range untrustedPrefixes {
		if hasNamePrefix(name, p) {
			return true
		}
	}
	for _, e := range untrustedExact {
		if len(name) == len(e) && hasNamePrefix(name, e) {
			return true
		}
	}
	return clientCertHeader(name)
}

// hopByHopName reports whether name is a connection-specific header
// (RFC 9110 7.6.1) or one kclb treats so.
func hopByHopName(name string) bool {
	for _, k := range hopByHop {
		if len(name) == len(k) && strings.EqualFold(name, k) {
			return true
		}
	}
	return false
}

// framingTrailer are fields that must never arrive as a trailer: they
// frame, route, authenticate or describe the message (RFC 9110 6.5.1).
var framingTrailer = []string{
	"content-length", "content-type", "content-encoding", "content-range",
	"host", "authorization", "cookie", "set-cookie", "x-request-id",
	"strict-transport-security", "x-frame-options", "content-security-policy",
	"x-content-type-options", "referrer-policy", "location", "cache-control",
}

// trailerAllowed reports whether a trailer field named name may be
// forwarded when trailers are forwarded at all: never a hop-by-hop,
// forwarding, tracing, client-certificate, framing or security header
// (issue 12, item 7), so that `Trailer: X-Forwarded-For` cannot smuggle a
// value past the header rules to a backend that merges trailers.
func trailerAllowed(name string) bool {
	if name == "" || hopByHopName(name) || untrustedHeader(name) {
		return false
	}
	for _, e := range framingTrailer {
		if len(name) == len(e) && hasNamePrefix(name, e) {
			return false
		}
	}
	return true
}
