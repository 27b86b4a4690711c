package proxy

import (
	"bytes"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// This file holds the request-head parser of kclb's own HTTP/1.1 server
// (h1conn.go). It fills an *http.Request the same way net/http's server
// would (http.ReadRequest plus the checks net/http's server adds before
// calling a handler), so the Handler and its rules see no difference, but
// it reuses the header map, the value slices and the URL of its
// connection instead of allocating them per request. FuzzH1Head compares
// the two parsers on the same bytes.

// headParser parses request heads for one connection. Its header map,
// value arena and URL are reused by every request on that connection, so
// nothing of a request may be kept after the response to it is written.
type headParser struct {
	hdr  http.Header
	vals []string // backing store for single-value header slices
	url  url.URL
	keys [128]byte // scratch space for canonicalising header names
	// spaceName is set when a field name held a space: net/http's
	// parser keeps such a field and its server refuses the request only
	// after the version and Host checks.
	spaceName bool
	// sawTE is set when the head carried Transfer-Encoding (which the
	// request's fields do not show on HTTP/1.0, like net/http).
	sawTE bool
	// hop is set when the head has a hop-by-hop field (seenHop), which
	// the Handler removes; without one it need not look.
	hop bool
}

// maxArenaVals bounds the value arena a connection keeps.
const maxArenaVals = 256

func newHeadParser() *headParser {
	return &headParser{hdr: make(http.Header), vals: make([]string, 32)}
}

// chunkedTE is the TransferEncoding of every chunked request; nobody
// writes to it.
var chunkedTE = []string{"chunked"}

// headError is a refused request head: the status to answer with and
// what was wrong (for debug logs only).
type headError struct {
	code   int
	reason string
}

func (e *headError) Error() string { return "proxy: bad request head: " + e.reason }

func badHead(reason string) *headError {
	return &headError{code: http.StatusBadRequest, reason: reason}
}

// Preallocated errors for the common refusals, so a flood of bad heads
// costs no allocation.
var (
	errHeadLine       = badHead("malformed request line")
	errHeadMethod     = badHead("invalid method")
	errHeadVersion    = badHead("malformed HTTP version")
	errHeadTarget     = badHead("invalid request target")
	errHeadField      = badHead("malformed header line")
	errHeadFold       = badHead("header block starts with white space")
	errHeadHosts      = badHead("too many Host headers")
	errHeadNoHost     = badHead("missing required Host header")
	errHeadBadHost    = badHead("malformed Host header")
	errHeadLength     = badHead("invalid Content-Length")
	errHeadLengths    = badHead("conflicting Content-Length headers")
	errHeadTrailer    = badHead("bad trailer key")
	errHeadTE         = &headError{code: http.StatusNotImplemented, reason: "unsupported transfer encoding"}
	errHeadProto      = &headError{code: http.StatusHTTPVersionNotSupported, reason: "unsupported protocol version"}
	errHeadTooLarge   = &headError{code: http.StatusRequestHeaderFieldsTooLarge, reason: "request head too large"}
	errHeadH2Preface  = &headError{code: http.StatusHTTPVersionNotSupported, reason: "HTTP/2 preface on an HTTP/1 connection"}
	errHeadEmptyValue = badHead("empty header name")
	errHeadTE10       = badHead("Transfer-Encoding on HTTP/1.0") // framingRule
)

// nextLine splits s after its first LF and returns the line without its
// line ending (LF or CRLF; a bare LF is accepted as net/http does).
func nextLine(s string) (line, rest string) {
	i := strings.IndexByte(s, '\n')
	if i < 0 {
		return s, ""
	}
	line, rest = s[:i], s[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

// headEnd returns the length of the request head at the start of b (up
// to and including the blank line that ends it), or -1 if b holds no
// complete head. from is where the previous call stopped looking (0 at
// first), so that a head arriving byte by byte is scanned once; the
// returned next is the value to pass next time.
func headEnd(b []byte, from int) (end, next int) {
	start := from
	for {
		i := indexByteFrom(b, '\n', start)
		if i < 0 {
			return -1, start
		}
		line := b[start:i]
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			return i + 1, i + 1
		}
		start = i + 1
	}
}

// indexByteFrom is the index of the first c in b at or after from, or -1.
func indexByteFrom(b []byte, c byte, from int) int {
	if from >= len(b) {
		return -1
	}
	if i := bytes.IndexByte(b[from:], c); i >= 0 {
		return from + i
	}
	return -1
}

// parse fills r from head, a complete request head (request line, header
// lines and the blank line). r must have been reset by the caller; parse
// sets Method, RequestURI, Proto, ProtoMajor, ProtoMinor, URL, Header,
// Host, Close, ContentLength, TransferEncoding and Trailer. It returns a
// *headError for heads net/http's server would refuse.
func (p *headParser) parse(r *http.Request, head string) *headError {
	clear(p.hdr)
	p.sawTE, p.spaceName, p.hop = false, false, false
	p.url = url.URL{}
	nvals := 0

	line, rest := nextLine(head)
	method, rest1, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest1, " ")
	if !ok1 || !ok2 {
		return errHeadLine
	}
	if !validMethod(method) {
		return errHeadMethod
	}
	major, minor, ok := http.ParseHTTPVersion(proto)
	if !ok {
		return errHeadVersion
	}
	r.Method, r.RequestURI, r.Proto, r.ProtoMajor, r.ProtoMinor = method, target, proto, major, minor
	if err := p.parseTarget(r, method, target); err != nil {
		return err
	}

	// Header lines.
	hdr := p.hdr
	if rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
		return errHeadFold
	}
	for {
		line, rest = nextLine(rest)
		if line == "" {
			break
		}
		kv := trimOWS(line)
		if rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
			// obs-fold: continuation lines are joined with one space
			// (RFC 9112 5.2, as net/textproto does). Rare: allocates.
			var b strings.Builder
			b.WriteString(kv)
			for rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
				var cont string
				cont, rest = nextLine(trimLeftOWS(rest))
				b.WriteByte(' ')
				b.WriteString(trimOWS(cont))
			}
			kv = b.String()
		}
		k, v, ok := strings.Cut(kv, ":")
		if !ok {
			return errHeadField
		}
		if k == "" {
			return errHeadEmptyValue
		}
		key, ok := p.canonicalKey(k)
		if !ok {
			if !spacedToken(k) {
				return errHeadField
			}
			key, p.spaceName = k, true
		}
		p.hop = p.hop || seenBit(key) == seenHop
		if !validValue(v) {
			return errHeadField
		}
		v = trimLeftOWS(v)
		if vv := hdr[key]; vv != nil {
			hdr[key] = append(vv, v)
			continue
		}
		if nvals == len(p.vals) {
			// More fields than the arena holds: give this request
			// fresh slices, and the next ones a larger arena.
			if len(p.vals) < maxArenaVals {
				p.vals = make([]string, min(2*len(p.vals), maxArenaVals))
				nvals = 0
			} else {
				hdr[key] = []string{v}
				continue
			}
		}
		vv := p.vals[nvals : nvals+1 : nvals+1]
		nvals++
		vv[0] = v
		hdr[key] = vv
	}
	r.Header = hdr
	return p.finish(r)
}

// parseTarget sets r.URL (and r.Host for absolute-form targets) from the
// request target, like url.ParseRequestURI. The origin-form targets that
// need no unescaping are parsed without allocating.
func (p *headParser) parseTarget(r *http.Request, method, target string) *headError {
	for i := 0; i < len(target); i++ {
		if c := target[i]; c < ' ' || c == 0x7f {
			return errHeadTarget
		}
	}
	u := &p.url
	if target != "" && target[0] == '/' && method != "CONNECT" {
		path, query, hasQuery := strings.Cut(target, "?")
		if plainPath(path) {
			u.Path = path
			u.RawQuery = query
			u.ForceQuery = hasQuery && query == ""
			r.URL = u
			return nil
		}
	}
	raw := target
	justAuthority := method == "CONNECT" && !strings.HasPrefix(target, "/")
	if justAuthority {
		raw = "http://" + target
	}
	parsed, err := url.ParseRequestURI(raw)
	if err != nil {
		return errHeadTarget
	}
	if justAuthority {
		parsed.Scheme = ""
	}
	*u = *parsed
	r.URL = u
	return nil
}

// plainPath reports whether path holds only bytes that url.URL keeps as
// they are (no percent-escapes, nothing EscapedPath would escape), so
// that Path is path itself and RawPath stays empty.
func plainPath(path string) bool {
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			continue
		}
		switch c {
		case '-', '_', '.', '~', '$', '&', '+', ',', '/', ':', ';', '=', '@':
			continue
		}
		return false
	}
	return true
}

// finish applies what net/http's ReadRequest and server do after the
// header lines: Host, connection persistence, message framing (RFC 9112
// 6), trailers and the version and Host checks.
func (p *headParser) finish(r *http.Request) *headError {
	hdr := p.hdr
	hosts, haveHost := hdr["Host"]
	if len(hosts) > 1 {
		return errHeadHosts
	}
	r.Host = r.URL.Host
	if r.Host == "" && len(hosts) == 1 {
		r.Host = hosts[0]
	}
	// fixPragmaCacheControl: HTTP/1.0 caches' Pragma: no-cache.
	if pr, ok := hdr["Pragma"]; ok && len(pr) > 0 && pr[0] == "no-cache" {
		if _, ok := hdr["Cache-Control"]; !ok {
			hdr["Cache-Control"] = noCacheVals
		}
	}
	r.Close = shouldCloseRequest(r.ProtoMajor, r.ProtoMinor, hdr)

	// Transfer-Encoding: only a single "chunked", and only on HTTP/1.1;
	// HTTP/1.0 does not define it and net/http ignores it there.
	chunked := false
	if te, ok := hdr["Transfer-Encoding"]; ok {
		p.sawTE = true
		if framingRule(r.ProtoMajor, r.ProtoMinor, true) == framingRejectClose {
			return errHeadTE10 // faulty framing (RFC 9112 6.1): 400 and close
		}
		delete(hdr, "Transfer-Encoding")
		// net/http's transfer rules read version 0.0 as 1.1.
		if r.ProtoMajor > 1 || (r.ProtoMajor == 1 && r.ProtoMinor >= 1) || (r.ProtoMajor == 0 && r.ProtoMinor == 0) {
			if len(te) != 1 || !asciiEqualFold(te[0], "chunked") {
				return errHeadTE
			}
			chunked = true
		}
	}

	// Content-Length: equal duplicates collapse, others are refused.
	cls := hdr["Content-Length"]
	if len(cls) > 1 {
		first := textproto.TrimString(cls[0])
		for _, cl := range cls[1:] {
			if textproto.TrimString(cl) != first {
				return errHeadLengths
			}
		}
		cls = cls[:1:1]
		cls[0] = first
		hdr["Content-Length"] = cls
	}
	var n int64
	if len(cls) > 0 {
		cl := textproto.TrimString(cls[0])
		if cl == "" {
			return errHeadLength
		}
		u, err := strconv.ParseUint(cl, 10, 63)
		if err != nil {
			return errHeadLength
		}
		n = int64(u)
	}
	switch {
	case chunked:
		// RFC 9112 6.3: Transfer-Encoding overrides Content-Length,
		// which must not be forwarded (a valid one was still required).
		delete(hdr, "Content-Length")
		r.ContentLength = -1
		r.TransferEncoding = chunkedTE
	case len(cls) > 0:
		r.ContentLength = n
	default:
		delete(hdr, "Content-Length")
		r.ContentLength = 0
	}

	// Trailer: only meaningful with chunked framing.
	if tv, ok := hdr["Trailer"]; ok && chunked {
		delete(hdr, "Trailer")
		var trailer http.Header
		for _, v := range tv {
			for name := range strings.SplitSeq(v, ",") {
				if name = textproto.TrimString(name); name == "" {
					continue
				}
				key := http.CanonicalHeaderKey(name)
				switch key {
				case "Transfer-Encoding", "Trailer", "Content-Length":
					return errHeadTrailer
				}
				if trailer == nil {
					trailer = make(http.Header)
				}
				trailer[key] = nil
			}
		}
		r.Trailer = trailer
	}

	if r.ProtoMajor != 1 {
		if r.ProtoMajor == 2 && r.ProtoMinor == 0 && r.Method == "PRI" && r.RequestURI == "*" {
			return errHeadH2Preface
		}
		return errHeadProto
	}
	if r.ProtoMinor >= 1 && (!haveHost || len(hosts) == 0) && r.Method != "CONNECT" {
		return errHeadNoHost
	}
	if len(hosts) == 1 && !httpguts.ValidHostHeader(hosts[0]) {
		return errHeadBadHost
	}
	if p.spaceName {
		return errHeadField
	}
	delete(hdr, "Host")
	return nil
}

var noCacheVals = []string{"no-cache"}

// shouldCloseRequest reports whether the connection ends after this
// request: HTTP/1.0 without keep-alive, or Connection: close.
func shouldCloseRequest(major, minor int, h http.Header) bool {
	if major < 1 {
		return true
	}
	conv := h["Connection"]
	hasClose := httpguts.HeaderValuesContainsToken(conv, "close")
	if major == 1 && minor == 0 {
		return hasClose || !httpguts.HeaderValuesContainsToken(conv, "keep-alive")
	}
	return hasClose
}

// canonicalKey returns the canonical form of the header name k, and
// false if k is not a token. Canonical names and the common
// non-canonical spellings cost no allocation.
func (p *headParser) canonicalKey(k string) (string, bool) {
	token, canonical := tokenForm(k)
	if !token {
		return "", false
	}
	if canonical {
		return k, true
	}
	if len(k) > len(p.keys) {
		return http.CanonicalHeaderKey(k), true
	}
	b := p.keys[:len(k)]
	canonicalInto(b, k)
	if s, ok := commonHeaderNames[string(b)]; ok {
		return s, true
	}
	return string(b), true
}

// Byte classes of tokenForm.
const (
	classTchar = 1 << iota // an RFC 9110 tchar
	classLower             // a to z
	classUpper             // A to Z
)

// byteClass holds the classes of every byte.
var byteClass = func() (t [256]uint8) {
	for c := range 256 {
		if isTchar(byte(c)) {
			t[c] |= classTchar
		}
		if 'a' <= c && c <= 'z' {
			t[c] |= classLower
		}
		if 'A' <= c && c <= 'Z' {
			t[c] |= classUpper
		}
	}
	return t
}()

// tokenForm reports whether k is a non-empty token, and whether it is in
// net/http's canonical form (upper case at the start and after each
// hyphen, lower case elsewhere), in one pass that writes nothing.
func tokenForm(k string) (token, canonical bool) {
	if k == "" {
		return false, false
	}
	// want is the class a letter must not have: lower case where upper
	// case belongs, and the other way round.
	want := uint8(classLower)
	var all, bad uint8 = classTchar, 0
	for i := 0; i < len(k); i++ {
		c := byteClass[k[i]]
		all &= c
		bad |= c & want
		want = classUpper
		if k[i] == '-' {
			want = classLower
		}
	}
	return all != 0, bad == 0
}

// canonicalInto writes the canonical form of the token k into b (as long
// as k): upper case at the start and after each hyphen, lower case
// elsewhere. It reports whether that is k itself.
func canonicalInto(b []byte, k string) bool {
	upper, same := true, true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		same = same && c == k[i]
		b[i] = c
		upper = c == '-'
	}
	return same
}

// commonHeaderNames interns the canonical names clients send in lower
// case most often (HTTP/2-minded clients and scripts).
var commonHeaderNames = func() map[string]string {
	m := make(map[string]string)
	for _, k := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control",
		"Connection", "Content-Length", "Content-Type", "Cookie", "Host", "If-Modified-Since",
		"If-None-Match", "Origin", "Pragma", "Referer", "Transfer-Encoding", "User-Agent",
		"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Port", "X-Forwarded-Proto",
		"X-Request-Id", "X-Requested-With", "Upgrade", "Te", "Trailer", "Expect", "Keep-Alive",
		"Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site", "Priority", "Dnt",
		"Sec-Fetch-User", "Sec-Ch-Ua", "Sec-Ch-Ua-Mobile", "Sec-Ch-Ua-Platform", "Sec-Gpc",
		"Upgrade-Insecure-Requests", "Access-Control-Request-Method", "Access-Control-Request-Headers",
		"Range", "If-Range", "If-Match", "If-Unmodified-Since", "Content-Encoding", "Forwarded", "Via",
		"Traceparent", "Tracestate", "Baggage",
	} {
		m[k] = k
	}
	return m
}()

// spacedToken reports whether k is made of token bytes and spaces.
func spacedToken(k string) bool {
	for i := 0; i < len(k); i++ {
		if c := k[i]; c != ' ' && !isTchar(c) {
			return false
		}
	}
	return true
}

// validValueByte reports whether c may appear in a field value: VCHAR,
// obs-text, SP or HTAB (RFC 9110 5.5).
// validValue reports whether every byte of a field value is one
// validValueByte allows. Eight bytes at a time: a word with no byte
// below 0x20 and none equal to 0x7f is valid as it is (a tab, the one
// control byte allowed, sends its word to the byte loop).
func validValue(v string) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(v); i += 8 {
		x := uint64(v[i]) | uint64(v[i+1])<<8 | uint64(v[i+2])<<16 | uint64(v[i+3])<<24 |
			uint64(v[i+4])<<32 | uint64(v[i+5])<<40 | uint64(v[i+6])<<48 | uint64(v[i+7])<<56
		below := (x - 0x20*ones) &^ x & highs
		del := x ^ 0x7f*ones
		del = (del - ones) &^ del & highs
		if below|del == 0 {
			continue
		}
		for j := i; j < i+8; j++ {
			if !validValueByte(v[j]) {
				return false
			}
		}
	}
	for ; i < len(v); i++ {
		if !validValueByte(v[i]) {
			return false
		}
	}
	return true
}

func validValueByte(c byte) bool {
	return c == '\t' || (c >= ' ' && c != 0x7f)
}

// trimLeftOWS is s without its leading spaces and tabs (a loop the
// compiler inlines: strings.TrimLeft builds a set per call).
func trimLeftOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	return s
}

// trimOWS trims SP and HTAB at both ends of s.
func trimOWS(s string) string {
	i, j := 0, len(s)
	for i < j && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	for j > i && (s[j-1] == ' ' || s[j-1] == '\t') {
		j--
	}
	return s[i:j]
}

// asciiEqualFold reports whether s equals the lower-case ASCII t, ignoring
// ASCII case only (so no Unicode folding can make "chunked" out of other
// bytes).
func asciiEqualFold(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != t[i] {
			return false
		}
	}
	return true
}
