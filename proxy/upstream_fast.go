package proxy

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/net/http/httpguts"
)

// This file is the upstream's allocation-lean response path: the common
// response head (HTTP/1.x, a 3-digit status other than 101, plain header
// lines, a Content-Length or no body) is parsed in place from the read
// buffer into a Response, header map and body that belong to the backend
// connection and are reused by its next exchange. Everything else (chunked
// or close-delimited bodies, obs-folds, malformed heads, heads larger than
// the read buffer) goes to http.ReadResponse as before, which also
// produces the errors.
//
// Because the Response and its header are reused, the connection goes
// back to the pool only when the body is closed (not at its end, as
// upBody does): the Handler copies the header before it closes the body.

// The value slots of an upFast: upFieldVals for the fields' first
// values, then upCookieVals for Set-Cookie values, which one slice
// covers with room for an append (the KC_ROUTE cookie affinity adds),
// so a response with Keycloak's session cookies allocates nothing.
const (
	upFieldVals  = 24
	upCookieVals = 8
)

// upFast is the reusable per-connection response state.
type upFast struct {
	resp http.Response
	hdr  http.Header
	vals []string
	body upFastBody
	// seen holds the seenBits of the head's field names.
	seen uint16

	// list holds the head's fields in order. When listed, the fields
	// the Router does not edit are there and not in hdr (the Handler
	// asked for it: upConn.wantList), and cl and date say what the
	// h1response needs to know of them.
	list   []respField
	listed bool
	cl     int64 // the Content-Length, -1 if none
	date   bool  // the head has a Date

	nvals, ncookies int // slots of vals taken (add)
}

// respField is one field of a response head: its canonical name and one
// value.
type respField struct{ k, v string }

// upMaxFields bounds the fields of a head fastHead takes; a head with
// more goes to http.ReadResponse.
const upMaxFields = 64

// add appends v to hdr's values of key: Set-Cookie values share the tail
// of vals (Keycloak sets several, and kclb may add KC_ROUTE: room to
// append in place), the first value of other names a slot each. Beyond
// the slots a value is allocated.
func (f *upFast) add(key, v string) {
	if key == "Set-Cookie" && f.ncookies < upCookieVals {
		i := upFieldVals + f.ncookies
		f.vals[i] = v
		f.ncookies++
		f.hdr[key] = f.vals[upFieldVals : i+1 : upFieldVals+upCookieVals]
		return
	}
	if vv := f.hdr[key]; vv != nil {
		f.hdr[key] = append(vv, v)
		return
	}
	if f.nvals == upFieldVals {
		f.hdr[key] = []string{v}
		return
	}
	vv := f.vals[f.nvals : f.nvals+1 : f.nvals+1]
	f.nvals++
	vv[0] = v
	f.hdr[key] = vv
}

// put sets key's values, in hdr if the head is not listed or key is in
// the Router's scope, else as fields of the list.
func (f *upFast) put(u *upstream, key string, vv []string) {
	if !f.listed || u.inScope(key) {
		f.hdr[key] = vv
		return
	}
	for _, v := range vv {
		f.list = append(f.list, respField{key, v})
	}
}

// toMap moves a listed head's fields into hdr, for a ResponseWriter that
// cannot take the list.
func (f *upFast) toMap() {
	if !f.listed {
		return
	}
	for _, fl := range f.list {
		f.add(fl.k, fl.v)
	}
	f.list, f.listed = f.list[:0], false
}

// inScope reports whether the Router edits the response field k
// (ResponseFielder).
func (u *upstream) inScope(k string) bool {
	for _, s := range u.opts.scope {
		if s == k {
			return true
		}
	}
	return false
}

// upFastBody is the body of a response parsed by fastHead: Content-Length
// bytes from the read buffer. It releases the connection on Close after
// the end (pooled if reusable) and closes it on Close before the end or
// on a read error. Close may be called concurrently with Read.
type upFastBody struct {
	u        *upstream
	c        *upConn
	br       *bufio.Reader
	stop     func() bool
	reusable bool
	remain   int64
	state    atomic.Int32
	// idle, when positive, bounds every wait for more body bytes (a read
	// deadline on the backend connection), so the Handler needs no timer.
	idle time.Duration
}

// setIdleTimeout makes d bound every wait for more body bytes.
func (b *upFastBody) setIdleTimeout(d time.Duration) { b.idle = d }

// Body states beyond upBody's: the end was read and the connection is
// released.
const bodyReleased int32 = bodyClosed + 1

func (b *upFastBody) Read(p []byte) (int, error) {
	switch b.state.Load() {
	case bodyEOF, bodyReleased:
		return 0, io.EOF
	case bodyClosed:
		return 0, errBodyClosed
	}
	if b.remain == 0 {
		b.state.CompareAndSwap(bodyOpen, bodyEOF)
		return 0, io.EOF
	}
	if int64(len(p)) > b.remain {
		p = p[:b.remain]
	}
	if b.idle > 0 && b.br.Buffered() == 0 {
		b.c.setReadDeadline(time.Now().Add(b.idle))
		if b.c.aborted.Load() {
			b.c.abort()
		}
	}
	n, err := b.br.Read(p)
	b.remain -= int64(n)
	if b.remain == 0 {
		// A deadline a wait above set stays, like the head's: the next
		// exchange's headDeadline moves it.
		b.state.CompareAndSwap(bodyOpen, bodyEOF)
		return n, io.EOF
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if b.state.CompareAndSwap(bodyOpen, bodyClosed) {
			b.br.Reset(nil)
			b.u.readers.Put(b.br)
			b.stop()
			b.c.close()
		}
		return n, err
	}
	return n, nil
}

// Close implements io.Closer.
func (b *upFastBody) Close() error {
	if b.state.CompareAndSwap(bodyOpen, bodyClosed) {
		// Before the end: the rest is never read; a Read may be running,
		// so the reader is left to the collector.
		b.stop()
		b.c.close()
		return nil
	}
	if b.state.CompareAndSwap(bodyEOF, bodyReleased) {
		reusable := b.reusable && b.br.Buffered() == 0
		b.br.Reset(nil)
		b.u.readers.Put(b.br)
		b.u.release(b.c, b.stop, reusable)
	}
	return nil
}

// idleTimeouter is implemented by response bodies that bound their reads
// themselves.
type idleTimeouter interface{ setIdleTimeout(time.Duration) }

// fastHead parses the response head buffered in br if it is a common one.
// ok is false when it is not (or not complete within the buffer), and br
// is then untouched for http.ReadResponse. The strings of the Response
// share a copy of the head: in *arena when arena is not nil (no
// allocation; the caller's memory, see roundTrip), else a new string.
func (u *upstream) fastHead(c *upConn, br *bufio.Reader, r *http.Request, arena *[]byte) (resp *http.Response, ok bool) {
	if _, err := br.Peek(1); err != nil {
		return nil, false
	}
	end := -1
	scan := 0
	for {
		buf, _ := br.Peek(br.Buffered())
		end, scan = headEnd(buf, scan)
		if end >= 0 {
			break
		}
		if br.Buffered() >= br.Size() || int64(br.Buffered()) >= u.opts.MaxResponseHeaderBytes {
			return nil, false
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			return nil, false
		}
	}
	if int64(end) > u.opts.MaxResponseHeaderBytes {
		return nil, false
	}
	raw, _ := br.Peek(end)
	// The status line decides before anything is allocated.
	if len(raw) < 13 || string(raw[:7]) != "HTTP/1." || (raw[7] != '0' && raw[7] != '1') || raw[8] != ' ' {
		return nil, false
	}
	code := 0
	for _, d := range raw[9:12] {
		if d < '0' || d > '9' {
			return nil, false
		}
		code = code*10 + int(d-'0')
	}
	if code < 100 || code == http.StatusSwitchingProtocols || (raw[12] != ' ' && raw[12] != '\r' && raw[12] != '\n') {
		return nil, false
	}
	if c.fast == nil {
		c.fast = &upFast{hdr: make(http.Header), vals: make([]string, upFieldVals+upCookieVals)}
	}
	f := c.fast
	var head string
	if arena != nil {
		*arena = append((*arena)[:0], raw...)
		head = unsafe.String(unsafe.SliceData(*arena), len(raw))
	} else {
		head = string(raw)
	}
	line, rest := nextLine(head)
	if len(line) > 12 && line[12] != ' ' {
		return nil, false // a CR inside the status line (ReadResponse refuses it)
	}
	if rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
		return nil, false // a first field line that would continue the status line
	}
	// Pass 1: the fields in order, checked, with what the framing
	// depends on noted as they go by rather than looked up afterwards.
	var te, hasCL, conn, pragma, noCache, hasCC, date bool
	var seen uint16
	var clv string
	list := f.list[:0]
	for {
		var l string
		l, rest = nextLine(rest)
		if l == "" {
			break
		}
		if rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
			return nil, false // obs-fold
		}
		k, v, found := strings.Cut(trimOWS(l), ":")
		token, canonical := tokenForm(k)
		if !found || !token || !validValue(v) || len(list) == upMaxFields {
			return nil, false
		}
		key := k
		if !canonical {
			key = responseKey(k)
		}
		v = trimLeftOWS(v)
		switch key {
		case "Transfer-Encoding":
			te = true
		case "Content-Length":
			if hasCL {
				return nil, false // net/http's rules for repeated lengths
			}
			hasCL, clv = true, v
		case "Connection":
			conn = true
			seen |= seenHop
		case "Pragma":
			if !pragma { // the first value decides
				pragma, noCache = true, v == "no-cache"
			}
		case "Cache-Control":
			hasCC = true
		case "Date":
			date = true
		default:
			seen |= seenBit(key)
		}
		list = append(list, respField{key, v})
	}
	f.list = list
	if te {
		return nil, false
	}
	bodyless := r.Method == http.MethodHead || code < 200 || code == http.StatusNoContent || code == http.StatusNotModified
	length := int64(0)
	if r.Method == http.MethodHead {
		length = -1
	}
	f.cl = -1
	if hasCL {
		n, valid := parseLength(textprotoTrim(clv))
		if !valid {
			return nil, false
		}
		length, f.cl = n, n
	} else if !bodyless {
		return nil, false // delimited by the close
	}
	// Pass 2: the header map. Listed, it holds only the fields the
	// Router edits (u.opts.scope) and the list the others; a head with a
	// hop-by-hop field, or a 1xx, is all in the map.
	f.listed = c.wantList && code >= 200 && seen&seenHop == 0
	f.seen, f.date = seen, date
	clear(f.hdr)
	f.nvals, f.ncookies = 0, 0
	if f.listed {
		n := 0
		for _, fl := range list {
			if u.inScope(fl.k) {
				f.add(fl.k, fl.v)
				continue
			}
			list[n] = fl
			n++
		}
		f.list = list[:n]
	} else {
		for _, fl := range list {
			f.add(fl.k, fl.v)
		}
	}
	if noCache && !hasCC {
		f.put(u, "Cache-Control", noCacheVals)
	}
	major, minor := 1, int(raw[7]-'0')
	closing := minor == 0
	if conn {
		cv := f.hdr["Connection"]
		closing = closing && !httpguts.HeaderValuesContainsToken(cv, "keep-alive")
		if httpguts.HeaderValuesContainsToken(cv, "close") {
			closing = true
			if minor == 1 {
				delete(f.hdr, "Connection") // as net/http does, on HTTP/1.1 only
			}
		}
	}
	br.Discard(end)
	status := line[9:]
	f.resp = http.Response{
		Status: status, StatusCode: code, Proto: line[:8], ProtoMajor: major, ProtoMinor: minor,
		Header: f.hdr, ContentLength: length, Close: closing, Request: r,
	}
	if bodyless {
		f.resp.ContentLength = length
		if code < 200 || code == http.StatusNoContent || code == http.StatusNotModified {
			f.resp.ContentLength = 0
		}
		length = 0
	}
	f.body = upFastBody{u: u, c: c, br: br, remain: length}
	f.resp.Body = &f.body
	return &f.resp, true
}

// parseLength parses a Content-Length value as net/http does: decimal
// digits only, below 2^63.
func parseLength(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// textprotoTrim trims ASCII white space as textproto.TrimString does.
// responseKey is net/http's canonical form of the field name k (a
// token). A name already canonical is k itself, and the names servers
// spell otherwise (Keycloak's X-XSS-Protection, WWW-Authenticate, lower
// case) come from responseNames: neither allocates, where
// http.CanonicalHeaderKey makes a string of every name it changes.
func responseKey(k string) string {
	var buf [48]byte
	if len(k) > len(buf) {
		return http.CanonicalHeaderKey(k)
	}
	b := buf[:len(k)]
	if canonicalInto(b, k) {
		return k
	}
	if s, ok := responseNames[string(b)]; ok {
		return s
	}
	return http.CanonicalHeaderKey(k)
}

// responseNames interns the canonical names of the response fields
// Keycloak and common servers send.
var responseNames = func() map[string]string {
	m := make(map[string]string)
	for _, k := range []string{
		"Accept-Ranges", "Access-Control-Allow-Credentials", "Access-Control-Allow-Headers",
		"Access-Control-Allow-Methods", "Access-Control-Allow-Origin", "Access-Control-Expose-Headers",
		"Access-Control-Max-Age", "Age", "Alt-Svc", "Cache-Control", "Connection", "Content-Disposition",
		"Content-Encoding", "Content-Language", "Content-Length", "Content-Range", "Content-Security-Policy",
		"Content-Security-Policy-Report-Only", "Content-Type", "Date", "Etag", "Expires", "Keep-Alive",
		"Last-Modified", "Link", "Location", "Pragma", "Referrer-Policy", "Retry-After", "Server",
		"Set-Cookie", "Strict-Transport-Security", "Trailer", "Transfer-Encoding", "Upgrade", "Vary",
		"Www-Authenticate", "X-Content-Type-Options", "X-Frame-Options", "X-Powered-By", "X-Robots-Tag",
		"X-Xss-Protection",
	} {
		m[k] = k
	}
	return m
}()

func textprotoTrim(s string) string {
	for len(s) > 0 && isASCIISpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isASCIISpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

func isASCIISpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }
