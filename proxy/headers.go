package proxy

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strings"
)

// forwardRules strips client-supplied forwarding and tracing headers
// from untrusted peers and sets exactly one forwarded-header family.
type forwardRules struct {
	family  HeaderFamily
	trusted []netip.Prefix
	// certs is the client-certificate header family (setClientCert).
	certs CertHeader
}

func (f *forwardRules) isTrusted(a netip.Addr) bool {
	for _, p := range f.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// prepare readies r's headers for the backend: hop-by-hop headers, and
// those the client named in Connection, are removed first, so that a
// client cannot make kclb drop its own X-Forwarded-* or Forwarded by
// naming them there; then apply sets the forwarded family.
// sc, if not nil, lends the memory for the values.
func (f *forwardRules) prepare(r *http.Request, client netip.Addr, secure bool, sc *reqScratch) {
	if sc == nil || !sc.hopFree {
		removeHopByHop(r.Header)
	}
	f.apply(r, client, secure, sc)
	if secure {
		// apply already removed an untrusted peer's certificate headers.
		setClientCert(r.Header, r.TLS, f.certs, !f.isTrusted(client))
	}
}

// apply rewrites r's forwarding headers for a request from client (the
// TCP peer) on a listener that is secure or not.
func (f *forwardRules) apply(r *http.Request, client netip.Addr, secure bool, sc *reqScratch) {
	h := r.Header
	trusted := len(f.trusted) > 0 && f.isTrusted(client)
	if !trusted {
		// Forwarding, tracing and client-certificate headers
		// (untrustedHeader); one pass, whatever the spelling.
		for k := range h {
			if untrustedHeader(k) {
				delete(h, k)
			}
		}
	}
	proto := "http"
	if secure {
		proto = "https"
	}
	host, port := splitHost(r.Host, secure)
	switch f.family {
	case Forwarded:
		elem := "for=" + forwardedNode(client) + ";proto=" + proto + ";host=" + quoteIfNeeded(host+":"+port)
		if prior := h.Values("Forwarded"); trusted && len(prior) > 0 {
			elem = strings.Join(prior, ", ") + ", " + elem
		}
		h["Forwarded"] = []string{elem}
		// Exactly one family reaches Keycloak.
		for k := range h {
			if strings.HasPrefix(k, "X-Forwarded-") {
				delete(h, k)
			}
		}
	default:
		xff := sc.clientString(client)
		if prior := h.Values("X-Forwarded-For"); trusted && len(prior) > 0 {
			xff = strings.Join(prior, ", ") + ", " + xff
		}
		// One backing array for the four values: one allocation, or
		// none with a scratch.
		var vals *[4]string
		if sc != nil {
			vals = &sc.fwd
		} else {
			vals = new([4]string)
		}
		*vals = [4]string{xff, proto, host, port}
		h["X-Forwarded-For"] = vals[0:1:1]
		if !trusted || h.Get("X-Forwarded-Proto") == "" {
			h["X-Forwarded-Proto"] = vals[1:2:2]
			h["X-Forwarded-Host"] = vals[2:3:3]
			h["X-Forwarded-Port"] = vals[3:4:4]
		}
		delete(h, "Forwarded")
	}
}

// splitHost splits a Host header into host and port, supplying the
// scheme's default port. A trailing dot on the name is dropped.
func splitHost(hostport string, secure bool) (string, string) {
	host, port := hostport, ""
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.HasSuffix(hostport, "]") {
		host, port = hostport[:i], hostport[i+1:]
	}
	host = strings.TrimSuffix(host, ".")
	if port == "" {
		port = "80"
		if secure {
			port = "443"
		}
	}
	return host, port
}

func forwardedNode(a netip.Addr) string {
	if a.Is6() {
		return `"[` + a.String() + `]"`
	}
	return a.String()
}

// quoteIfNeeded makes s a Forwarded parameter value: a token as it is,
// anything else as a quoted-string. s is a validated authority
// (validAuthority), so it holds neither '"' nor '\'.
func quoteIfNeeded(s string) string {
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return `"` + s + `"`
		}
	}
	return s
}

// hopByHop are connection-specific headers never forwarded (RFC 9110
// 7.6.1).
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// The response field names fastHead notes as they go by (upFast.seen),
// so that the Handler does not look for what the backend did not send.
const (
	seenHop  uint16 = 1 << iota // a hop-by-hop name (hopByHop)
	seenCSP                     // Content-Security-Policy
	seenHSTS                    // Strict-Transport-Security
	seenXCTO                    // X-Content-Type-Options
	seenRP                      // Referrer-Policy
	seenXFO                     // X-Frame-Options

	// seenUnknown is the absent set of a header nothing is known of.
	seenUnknown uint16 = 0
	// seenAll has every bit.
	seenAll = seenHop | seenCSP | seenHSTS | seenXCTO | seenRP | seenXFO
)

// seenBit is the bit fastHead notes for the canonical name k, or 0.
func seenBit(k string) uint16 {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return seenHop
	case "Content-Security-Policy":
		return seenCSP
	case "Strict-Transport-Security":
		return seenHSTS
	case "X-Content-Type-Options":
		return seenXCTO
	case "Referrer-Policy":
		return seenRP
	case "X-Frame-Options":
		return seenXFO
	}
	return 0
}

// removeHopByHop deletes hop-by-hop headers and those named in
// Connection.
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				delete(h, http.CanonicalHeaderKey(name))
			}
		}
	}
	for _, k := range hopByHop {
		delete(h, k)
	}
}

// maxRequestIDLen bounds a client-supplied X-Request-ID that is
// propagated.
const maxRequestIDLen = 128

// requestID keeps a well-formed X-Request-ID or replaces it with a new
// random one (in sc's memory when sc is not nil).
func requestID(r *http.Request, sc *reqScratch) {
	if v := r.Header["X-Request-Id"]; len(v) == 1 && validRequestID(v[0]) {
		return
	}
	// 128 bits from the runtime's ChaCha8 generator (math/rand/v2, seeded
	// from the system's randomness): an ID must be unique and not
	// guessable from others, and this costs no system call.
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	if sc == nil {
		r.Header["X-Request-Id"] = []string{hex.EncodeToString(b[:])}
		return
	}
	hex.Encode(sc.id[:], b[:])
	sc.idVals[0] = sc.idString()
	r.Header["X-Request-Id"] = sc.idVals[:1:1]
}

func validRequestID(s string) bool {
	if s == "" || len(s) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// SecurityHeader is a response header kclb adds when the backend did not
// set it.
type SecurityHeader struct {
	// Name is the canonical header name.
	Name string
	// Value is added verbatim.
	Value string
	// Framing marks headers that control framing; they are never added to
	// frame-exempt pages.
	Framing bool
	// TLSOnly marks headers added to HTTPS responses only
	// (Strict-Transport-Security, RFC 6797 7.2).
	TLSOnly bool

	// vals is the shared, read-only value slice (capacity 1, so an
	// append by anyone copies it).
	vals []string
	// bit is Name's seenBit (0 if it has none or was not computed).
	bit uint16
}

// NewSecurityHeaders builds the list kclb adds by default, skipping empty
// values (an empty value disables that header).
func NewSecurityHeaders(hsts, contentTypeOptions, referrerPolicy, frameOptions string) []SecurityHeader {
	var out []SecurityHeader
	add := func(name, v string, framing, tlsOnly bool) {
		if v != "" {
			name = http.CanonicalHeaderKey(name)
			out = append(out, SecurityHeader{Name: name, Value: v, Framing: framing, TLSOnly: tlsOnly, vals: []string{v}, bit: seenBit(name)})
		}
	}
	add("Strict-Transport-Security", hsts, false, true)
	add("X-Content-Type-Options", contentTypeOptions, false, false)
	add("Referrer-Policy", referrerPolicy, false, false)
	add("X-Frame-Options", frameOptions, true, false)
	return out
}

// addSecurityHeaders adds each header that h lacks. Framing headers are
// skipped on exempt pages, and X-Frame-Options is also skipped when the
// backend's CSP already decides framing (frame-ancestors); TLS-only
// headers (HSTS) are added to responses on a secure connection only.
// absent holds seenBits of names h is known not to have: those are not
// looked up (seenUnknown when nothing is known).
func addSecurityHeaders(h http.Header, list []SecurityHeader, exempt, secure bool, absent uint16) {
	for i := range list {
		sh := &list[i]
		if sh.TLSOnly && !secure {
			continue
		}
		if absent&sh.bit == 0 {
			if _, ok := h[sh.Name]; ok {
				continue
			}
		}
		if sh.Framing && (exempt || (absent&seenCSP == 0 && cspHasFrameAncestors(h))) {
			continue
		}
		if sh.vals == nil {
			h[sh.Name] = []string{sh.Value}
			continue
		}
		h[sh.Name] = sh.vals
	}
}

func cspHasFrameAncestors(h http.Header) bool {
	for _, v := range h["Content-Security-Policy"] {
		if strings.Contains(v, "frame-ancestors") {
			return true
		}
	}
	return false
}

func frameExempt(path string, exempt []string) bool {
	for _, e := range exempt {
		if strings.Contains(path, e) {
			return true
		}
	}
	return false
}
