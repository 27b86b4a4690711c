package proxy

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2stream is one request stream of an h2conn: the request handed to the
// Handler, its body as it arrives, and the ResponseWriter. Streams are
// pooled by the Server and reused once their Handler has returned.
type h2stream struct {
	c  *h2conn
	id uint32

	req     http.Request
	url     url.URL
	hdr     http.Header
	body    h2body
	resp    h2response
	scratch reqScratch
	keybuf  [64]byte
	// runFn is st.run as a value made once: a go statement on it
	// allocates nothing per stream, as go st.run() does.
	runFn func()
	// status, when not 0, is answered without running the Handler (431
	// for a header list over the limit).
	status int

	// Guarded by c.mu.
	sendWindow int64 // what the client lets this stream send
	recvWindow int64 // what the client may still send
	unacked    int64 // body bytes read and not yet credited to recvWindow
	declared   int64 // the request's content-length, -1 if none
	received   int64 // body bytes received
	recvDone   bool  // END_STREAM received (or the stream is aborted)
	resetSent  bool  // reset, by either side: nothing more is sent
	err        error // why writes fail (reset, connection closed)
	wtimer     *time.Timer
	wtimedOut  bool
	// closing is set when the response's END_STREAM is queued while
	// the stream is open: it no longer counts against the limit
	// (h2conn.closing).
	closing  bool
	trailers []hpack.HeaderField // received, for the Handler at the end of the body
	cont     bool                // a 100 Continue is owed when the Handler first waits for the body
}

var errStreamReset = errors.New("proxy: HTTP/2 stream reset")

// newH2Stream returns a stream for id from the pool.
func (s *Server) newH2Stream(c *h2conn, id uint32) *h2stream {
	st, _ := s.h2streams.Get().(*h2stream)
	if st == nil {
		// Small maps (one group of eight) until a stream has more
		// fields: clearing one for the next stream touches one group.
		st = &h2stream{hdr: make(http.Header)}
		st.resp.hdr = make(http.Header)
		st.body.st = st
		st.resp.st = st
		st.runFn = st.run
	}
	st.c, st.id = c, id
	st.status = 0
	st.declared, st.received, st.unacked = -1, 0, 0
	st.recvDone, st.resetSent, st.err, st.wtimedOut, st.closing = false, false, nil, false, false
	st.trailers = nil
	st.cont = false
	st.body.reset()
	return st
}

// putH2Stream gives a finished stream back to the pool.
func (s *Server) putH2Stream(st *h2stream) {
	if st.wtimer != nil {
		if !st.wtimer.Stop() {
			st.body.fired = true
		}
		st.wtimer = nil
	}
	st.body.stopTimer()
	if st.body.fired {
		// A timer's function may still run on this stream: it is not
		// reused.
		return
	}
	clear(st.hdr)
	clear(st.resp.hdr)
	st.req = http.Request{}
	st.url = url.URL{}
	st.c = nil
	if cap(st.body.buf) > 64<<10 {
		st.body.buf = nil
	}
	s.h2streams.Put(st)
}

// build fills the stream's request from a HEADERS frame (RFC 9113 8.3),
// with net/http's rules: it returns a code to reset the stream with, or 0.
func (st *h2stream) build(f *h2block) http2.ErrCode {
	st.scratch.hopFree = false // until the fields are seen
	var method, scheme, authority, path string
	for _, hf := range f.PseudoFields() {
		switch hf.Name {
		case ":method":
			method = hf.Value
		case ":scheme":
			scheme = hf.Value
		case ":authority":
			authority = hf.Value
		case ":path":
			path = hf.Value
		default:
			// :protocol (extended CONNECT is not offered) or :status.
			return http2.ErrCodeProtocol
		}
	}
	if f.Truncated {
		st.status = http.StatusRequestHeaderFieldsTooLarge
		st.req.Method = method
		return 0
	}
	if !isToken(method) {
		return http2.ErrCodeProtocol
	}
	connect := method == http.MethodConnect
	if connect {
		if scheme != "" || path != "" || authority == "" {
			return http2.ErrCodeProtocol
		}
	} else if scheme == "" || path == "" {
		return http2.ErrCodeProtocol
	}
	hdr := st.hdr
	cookies := 0
	hop := false // a hop-by-hop field HTTP/2 allows (te: trailers, Trailer, Proxy-Authorization)
	for _, hf := range f.RegularFields() {
		switch hf.Name {
		case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
			// Connection-specific fields make a request malformed (8.2.2).
			return http2.ErrCodeProtocol
		case "te":
			if hf.Value != "trailers" {
				return http2.ErrCodeProtocol
			}
		case "cookie":
			cookies++
		}
		k := st.canonicalKey(hf.Name)
		hop = hop || seenBit(k) == seenHop
		hdr[k] = append(hdr[k], hf.Value)
	}
	st.scratch.hopFree = !hop
	if cookies > 1 {
		// Cookie crumbs are joined for HTTP/1.1 (8.2.3).
		hdr["Cookie"] = []string{strings.Join(hdr["Cookie"], "; ")}
	}
	if authority == "" {
		if hv := hdr["Host"]; len(hv) > 0 {
			authority = hv[0]
		}
	}
	delete(hdr, "Host")
	if cl, ok := hdr["Content-Length"]; ok {
		for _, v := range cl[1:] {
			if v != cl[0] {
				return http2.ErrCodeProtocol
			}
		}
		n, err := strconv.ParseUint(cl[0], 10, 63)
		if err != nil {
			return http2.ErrCodeProtocol
		}
		st.declared = int64(n)
		if len(cl) > 1 {
			hdr["Content-Length"] = cl[:1]
		}
	}
	if f.StreamEnded() && st.declared > 0 {
		return http2.ErrCodeProtocol
	}
	if ev := hdr["Expect"]; len(ev) > 0 && !f.StreamEnded() && headerHasToken(ev[0], "100-continue") {
		st.cont = true
	}
	r := &st.req
	*r = *st.c.tmpl
	r.Method = method
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
	r.Header = hdr
	r.Host = authority
	r.RemoteAddr = st.c.remote
	st.scratch.peer = st.c.peer
	r.TLS = st.c.tls
	r.RequestURI = path
	switch {
	case connect:
		st.url = url.URL{Host: authority}
		r.URL = &st.url
		r.RequestURI = authority
	case path[0] == '/' && plainPath(pathPart(path)):
		p, q, hasQ := strings.Cut(path, "?")
		st.url = url.URL{Path: p, RawQuery: q, ForceQuery: hasQ && q == ""}
		r.URL = &st.url
	default:
		u, err := url.ParseRequestURI(path)
		if err != nil {
			return http2.ErrCodeProtocol
		}
		st.url = *u
		r.URL = &st.url
	}
	switch {
	case f.StreamEnded():
		r.ContentLength = 0
		r.Body = http.NoBody
	default:
		r.ContentLength = st.declared
		r.Body = &st.body
	}
	if tv, ok := hdr["Trailer"]; ok {
		for _, v := range tv {
			for _, k := range strings.Split(v, ",") {
				k = http.CanonicalHeaderKey(trimOWS(k))
				if k == "" || !httpguts.ValidTrailerHeader(k) {
					continue
				}
				if r.Trailer == nil {
					r.Trailer = make(http.Header)
				}
				r.Trailer[k] = nil
			}
		}
	}
	return 0
}

// pathPart is the path of an origin-form target, without its query.
func pathPart(target string) string {
	if i := strings.IndexByte(target, '?'); i >= 0 {
		return target[:i]
	}
	return target
}

// canonicalKey turns an HTTP/2 field name (lower case, checked by the
// Framer) into net/http's canonical form; the common names cost no
// allocation.
func (st *h2stream) canonicalKey(name string) string {
	if len(name) > len(st.keybuf) {
		return http.CanonicalHeaderKey(name)
	}
	b := st.keybuf[:len(name)]
	upper := true
	for i := 0; i < len(name); i++ {
		ch := name[i]
		if upper && 'a' <= ch && ch <= 'z' {
			ch -= 'a' - 'A'
		}
		b[i] = ch
		upper = ch == '-'
	}
	if s, ok := commonHeaderNames[string(b)]; ok {
		return s
	}
	return string(b)
}

// setTrailers keeps the request's trailer fields (under c.mu) until the
// Handler reads the end of the body, which puts them in the request's
// Trailer: only the Handler's goroutine touches the request.
func (st *h2stream) setTrailers(fields []hpack.HeaderField) {
	st.trailers = append(st.trailers[:0], fields...)
}

// applyTrailers puts the trailers the request declared into its
// Trailer; the Handler's goroutine calls it at the end of the body.
func (st *h2stream) applyTrailers(fields []hpack.HeaderField) {
	tr := st.req.Trailer
	if tr == nil {
		return
	}
	for _, hf := range fields {
		k := st.canonicalKey(hf.Name)
		if _, ok := tr[k]; ok {
			tr[k] = append(tr[k], hf.Value)
		}
	}
}

// endRecvLocked marks the request body complete.
func (st *h2stream) endRecvLocked(err error) {
	st.recvDone = true
	if st.body.err == nil {
		if err == nil {
			err = io.EOF
		}
		st.body.err = err
	}
}

// abortLocked fails the stream's body reads and response writes.
func (st *h2stream) abortLocked(err error) {
	if st.err == nil {
		st.err = err
	}
	if !st.recvDone {
		st.recvDone = true
		st.body.err = err
	}
}

// run serves the stream with the Handler.
func (st *h2stream) run() {
	c := st.c
	w := &st.resp
	w.reset(&st.req)
	if st.callHandler(w, &st.req) {
		c.mu.Lock()
		c.resetLocked(st.id, http2.ErrCodeInternal)
		c.mu.Unlock()
	} else {
		w.finish()
	}
	if f := h2AfterFinish.Load(); f != nil {
		(*f)()
	}
	c.streamDone(st)
}

// h2AfterFinish, when set, runs between a stream's response and its
// streamDone (a hook for the tests).
var h2AfterFinish atomic.Pointer[func()]

// answer writes the stream's own error status without the Handler.
func (st *h2stream) answer() {
	w := &st.resp
	w.reset(&st.req)
	writeError(w, st.status)
	w.finish()
	st.c.streamDone(st)
}

// callHandler runs the Handler; it reports whether it panicked.
func (st *h2stream) callHandler(w *h2response, r *http.Request) (aborted bool) {
	defer func() {
		if v := recover(); v != nil {
			aborted = true
			if v != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				st.c.s.o.ErrorLog.Error("panic serving request", "remote", st.c.remote, "panic", fmt.Sprint(v), "stack", string(buf))
			}
		}
	}()
	st.c.s.o.Handler.ServeHTTP(w, r)
	return false
}

// h2body is a request body as DATA frames deliver it. buf[off:] is
// unread; buf, off, err and the deadline state are guarded by c.mu.
type h2body struct {
	st       *h2stream
	buf      []byte
	off      int
	err      error // io.EOF after END_STREAM, or why the stream ended
	timer    *time.Timer
	timedOut bool
	gen      int  // distinguishes deadlines, so a stale timer is ignored
	fired    bool // a timer fired or may be firing: the stream is not pooled
}

func (b *h2body) reset() {
	b.buf, b.off, b.err, b.timedOut = b.buf[:0], 0, nil, false
}

func (b *h2body) stopTimer() {
	if b.timer != nil {
		if !b.timer.Stop() {
			b.fired = true
		}
		b.timer = nil
	}
}

// Read implements io.Reader.
func (b *h2body) Read(p []byte) (int, error) {
	c := b.st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if b.st.cont && b.off == len(b.buf) && b.err == nil {
		// The client waits for a 100 before it sends the body (RFC 9110
		// 10.1.1); not once the Handler has answered.
		b.st.cont = false
		if !b.st.resp.committed && b.st.writableLocked() == nil {
			c.writeHeadersLocked(b.st.id, http.StatusContinue, nil, false, -1, false, nil)
		}
	}
	for b.off == len(b.buf) && b.err == nil && !b.timedOut {
		c.cond.Wait()
	}
	if b.off < len(b.buf) {
		n := copy(p, b.buf[b.off:])
		b.off += n
		if b.off == len(b.buf) {
			b.buf, b.off = b.buf[:0], 0
		}
		b.st.creditLocked(int64(n))
		return n, nil
	}
	if b.timedOut {
		return 0, os.ErrDeadlineExceeded
	}
	if b.err == io.EOF && b.st.trailers != nil {
		tr := b.st.trailers
		b.st.trailers = nil
		c.mu.Unlock()
		b.st.applyTrailers(tr)
		c.mu.Lock()
	}
	return 0, b.err
}

// Close implements io.Closer.
func (b *h2body) Close() error { return nil }

// inBuffer reports whether the whole body has arrived (the Handler does
// not count such a body as a client waiting for its body).
func (b *h2body) inBuffer() bool {
	c := b.st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	return b.st.recvDone && b.err == io.EOF
}

// setDeadline bounds body reads.
func (b *h2body) setDeadline(t time.Time) {
	c := b.st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	b.stopTimer()
	b.gen++
	b.timedOut = false
	if t.IsZero() {
		return
	}
	d := time.Until(t)
	if d <= 0 {
		b.timedOut = true
		c.cond.Broadcast()
		return
	}
	gen := b.gen
	b.timer = time.AfterFunc(d, func() {
		c.mu.Lock()
		if b.gen == gen {
			b.timedOut = true
			c.cond.Broadcast()
		}
		c.mu.Unlock()
	})
}

// creditLocked gives n body bytes the Handler read back to the stream's
// and the connection's receive windows.
func (st *h2stream) creditLocked(n int64) {
	c := st.c
	c.creditLocked(n)
	if st.recvDone || st.resetSent || c.closed {
		return
	}
	st.unacked += n
	if st.unacked >= h2StreamWindow/4 {
		c.fw.WriteWindowUpdate(st.id, uint32(st.unacked))
		st.recvWindow += st.unacked
		st.unacked = 0
	}
}

// h2response is the http.ResponseWriter (and http.Flusher) of a stream.
// The HEADERS frame waits until the body starts (or the end), and a body
// up to h2Pending bytes is held back, so that a small response leaves as
// HEADERS and one DATA frame ending the stream, queued together.
type h2response struct {
	st  *h2stream
	req *http.Request
	hdr http.Header

	status      int
	wroteHeader bool
	ended       bool // END_STREAM queued
	respBody
	spareHeader
	list h2list // the listed fields (adoptList)
}

// h2Pending is how much body is held back before HEADERS go out.
const h2Pending = 16 << 10

func (w *h2response) reset(r *http.Request) {
	w.req = r
	w.status = 0
	w.wroteHeader, w.committed, w.ended, w.noBody = false, false, false, false
	w.head = r.Method == http.MethodHead
	w.declared, w.written = -1, 0
	w.pend = w.pend[:0]
	w.werr = nil
	w.list = h2list{fields: w.list.fields[:0]}
}

// requestScratch lends the Handler the stream's scratch memory.
func (w *h2response) requestScratch() *reqScratch { return &w.st.scratch }

// Header implements http.ResponseWriter.
func (w *h2response) Header() http.Header { return w.hdr }

func (w *h2response) adoptHeader(h http.Header, vals []string) (http.Header, []string) {
	return w.swap(&w.hdr, h, vals)
}

func (w *h2response) adoptList(list []respField, declared int64, date bool) []respField {
	old := w.list.fields[:0]
	w.list = h2list{fields: list, cl: declared >= 0, date: date}
	w.declared = declared
	return old
}

// SetReadDeadline bounds reading the request body
// (http.ResponseController).
func (w *h2response) SetReadDeadline(t time.Time) error {
	w.st.body.setDeadline(t)
	return nil
}

// WriteHeader implements http.ResponseWriter. Informational codes are
// sent at once and the final status may follow.
func (w *h2response) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("proxy: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 {
		if code != http.StatusSwitchingProtocols {
			w.writeInformational(code)
		}
		return
	}
	w.wroteHeader = true
	w.status = code
	w.noBody = w.head || code == http.StatusNoContent || code == http.StatusNotModified
	w.declare(w.hdr)
}

func (w *h2response) writeInformational(code int) {
	c := w.st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := w.st.writableLocked(); err != nil {
		return
	}
	c.writeHeadersLocked(w.st.id, code, w.hdr, false, -1, false, nil)
}

// Write implements http.ResponseWriter.
func (w *h2response) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if n, done, err := w.take(p, h2Pending); done {
		return n, err
	}
	if !w.committed {
		if err := w.commit(false); err != nil {
			return 0, err
		}
	}
	end := w.declared >= 0 && w.written == w.declared && !w.hasTrailers()
	if err := w.writeData(p, end); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush implements http.Flusher.
func (w *h2response) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit(false)
	}
}

// FlushError is Flush reporting the write error (http.ResponseController).
func (w *h2response) FlushError() error {
	w.Flush()
	return w.werr
}

// hasTrailers reports whether the Handler announced or set trailers.
func (w *h2response) hasTrailers() bool {
	if _, ok := w.hdr["Trailer"]; ok {
		return true
	}
	for k := range w.hdr {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return true
		}
	}
	return false
}

// commit queues HEADERS and the held-back body; with last, the response
// ends with them.
func (w *h2response) commit(last bool) error {
	st, c := w.st, w.st.c
	w.committed = true
	trailers := last && w.hasTrailers()
	cl := w.declared
	if last && cl < 0 && !w.noBody {
		cl = int64(len(w.pend))
	}
	c.mu.Lock()
	if err := st.writableLocked(); err != nil {
		c.mu.Unlock()
		w.werr = err
		return err
	}
	bodyless := w.noBody || len(w.pend) == 0 && (last || w.declared == 0)
	endOnHeaders := bodyless && !trailers && (last || w.declared == 0 || w.noBody)
	c.writeHeadersLocked(st.id, w.status, w.hdr, endOnHeaders, cl, true, &w.list)
	if endOnHeaders {
		w.endedLocked()
	}
	c.mu.Unlock()
	if len(w.pend) > 0 && !w.noBody {
		end := last && !trailers || w.declared >= 0 && w.written == w.declared && !w.hasTrailers()
		err := w.writeData(w.pend, end)
		w.pend = w.pend[:0]
		if err != nil {
			return err
		}
	}
	return nil
}

// finish ends the response after the Handler returned.
func (w *h2response) finish() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.werr != nil {
		return w.werr
	}
	if !w.committed {
		if err := w.commit(true); err != nil {
			return err
		}
	}
	if w.ended {
		return nil
	}
	st, c := w.st, w.st.c
	if w.declared >= 0 && w.written < w.declared && !w.noBody {
		// The Handler wrote less than it declared: the client must see
		// a broken stream.
		c.mu.Lock()
		c.resetLocked(st.id, http2.ErrCodeInternal)
		c.mu.Unlock()
		return io.ErrUnexpectedEOF
	}
	if !w.hasTrailers() {
		return w.writeData(nil, true)
	}
	tr := make(http.Header)
	for _, k := range w.hdr["Trailer"] {
		for _, name := range strings.Split(k, ",") {
			name = http.CanonicalHeaderKey(trimOWS(name))
			if v, ok := w.hdr[name]; ok {
				tr[name] = v
			}
		}
	}
	for k, v := range w.hdr {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			tr[http.CanonicalHeaderKey(name)] = v
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := st.writableLocked(); err != nil {
		return err
	}
	c.writeHeadersLocked(st.id, 0, tr, true, -1, false, nil)
	w.endedLocked()
	return nil
}

// endedLocked records that the response's END_STREAM is queued. An open
// stream then closes on the client's side as soon as the frame arrives,
// and the client may open another in its place: from now on it does not
// count against MaxConcurrentStreams, although its goroutine may still
// be finishing (its request at the backend is over: END_STREAM follows
// the end of the backend's response).
func (w *h2response) endedLocked() {
	w.ended = true
	st := w.st
	if c := st.c; c.streams[st.id] == st && !st.closing {
		st.closing = true
		c.closing++
	}
}

// writeData queues p in DATA frames as the flow-control windows allow;
// end sets END_STREAM on the last one.
func (w *h2response) writeData(p []byte, end bool) error {
	st, c := w.st, w.st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if err := st.writableLocked(); err != nil {
			w.werr = err
			return err
		}
		if len(c.out) > h2MaxOut {
			st.waitLocked()
			continue
		}
		n := min(len(p), c.maxFrame, int(min(st.sendWindow, c.sendConn)))
		if len(p) > 0 && n <= 0 {
			st.waitLocked()
			continue
		}
		last := end && n == len(p)
		if n > 0 || last {
			c.fw.WriteData(st.id, last, p[:n])
		}
		st.sendWindow -= int64(n)
		c.sendConn -= int64(n)
		p = p[n:]
		if last {
			w.endedLocked()
			return nil
		}
		if len(p) == 0 {
			return nil
		}
	}
}

// writableLocked returns why the stream can no longer send, or nil.
func (st *h2stream) writableLocked() error {
	c := st.c
	switch {
	case st.err != nil:
		return st.err
	case st.resetSent:
		return errStreamReset
	case c.closed:
		return errH2Closed
	case st.wtimedOut:
		return os.ErrDeadlineExceeded
	}
	return nil
}

// waitLocked waits for a window update or the output to drain, at most
// until the write timeout from the stream's start.
func (st *h2stream) waitLocked() {
	c := st.c
	if st.wtimer == nil {
		st.wtimer = time.AfterFunc(c.s.o.WriteTimeout, func() {
			c.mu.Lock()
			st.wtimedOut = true
			c.cond.Broadcast()
			c.mu.Unlock()
		})
	}
	c.cond.Wait()
}

// h2Skip reports whether HTTP/2 does not carry a response field (8.2.2).
func h2Skip(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade":
		return true
	}
	return strings.HasPrefix(k, http.TrailerPrefix)
}

// writeHeadersLocked queues a HEADERS frame (and CONTINUATIONs) for a
// response head (status != 0) or trailers (status 0). cl, if not
// negative, is sent as content-length when the header has none; date
// adds a date field when the header has none.
func (c *h2conn) writeHeadersLocked(id uint32, status int, h http.Header, end bool, cl int64, date bool, l *h2list) {
	enc := c.henc
	enc.begin()
	if status != 0 {
		enc.status(status, &enc.statusName)
	}
	for k, vv := range h {
		e := c.nameEntry(k)
		if e.skip {
			continue
		}
		for _, v := range vv {
			if httpguts.ValidHeaderFieldValue(v) {
				c.encodeField(e, v)
			}
		}
	}
	hasCL, hasDate := false, false
	if l != nil {
		// Names and values fastHead checked, none hop-by-hop.
		for _, f := range l.fields {
			c.encodeField(c.nameEntry(f.k), f.v)
		}
		hasCL, hasDate = l.cl, l.date
	}
	if status != 0 {
		if _, ok := h["Content-Length"]; !ok && !hasCL && cl >= 0 {
			var b [20]byte
			n := &enc.lengthName
			digits := strconv.AppendInt(b[:0], cl, 10)
			v := n.owned(string(digits))
			if v == "" {
				v = string(digits)
			}
			enc.field(n, v, false)
		}
		if _, ok := h["Date"]; !ok && !hasDate && date {
			enc.field(&enc.dateName, c.dateString(), false)
		}
	}
	block := enc.buf
	first := true
	for first || len(block) > 0 {
		n := min(len(block), c.maxFrame)
		frag := block[:n]
		block = block[n:]
		if first {
			c.fw.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndStream: end, EndHeaders: len(block) == 0})
			first = false
		} else {
			c.fw.WriteContinuation(id, len(block) == 0, frag)
		}
	}
}

// encodeField adds the field of name e with value v to the block.
func (c *h2conn) encodeField(e *h2name, v string) {
	enc := c.henc
	// The compression table keeps what it indexes, but header strings
	// may share memory the next response overwrites (the backend head
	// arena): indexed values are copies the connection owns. Cookies and
	// long values are never indexed.
	if e.lower == "set-cookie" || len(v) > h2MaxIndexed {
		enc.field(e, v, true)
		return
	}
	if o := e.owned(v); o != "" {
		v = o
	} else {
		v = c.intern(v)
	}
	enc.field(e, v, false)
}

// h2list is the listed part of a response head (listAdopter): fields
// written besides the header map's, and whether they hold the
// Content-Length and the Date.
type h2list struct {
	fields   []respField
	cl, date bool
}

// h2name is what a connection knows of a response header name: its
// HTTP/2 (lower-case) form, whether it is left out, and the last values
// it indexed (copies the connection owns) with their table ids (h2enc).
type h2name struct {
	lower  string
	recent [h2Recent]h2value
	slot   uint8 // the entry of recent to replace next
	static uint8 // the name's index in HPACK's static table, 0 if none
	skip   bool
}

// nameEntry returns the entry for header name k, cached per connection;
// nothing in it shares k's memory.
func (c *h2conn) nameEntry(k string) *h2name {
	if e, ok := c.names[k]; ok {
		return e
	}
	e := &h2name{lower: strings.ToLower(k), skip: h2Skip(k)}
	if e.lower == k {
		e.lower = strings.Clone(k)
	}
	e.static = h2StaticNames[e.lower]
	if c.names == nil || len(c.names) >= h2MaxInterned {
		c.names = make(map[string]*h2name)
	}
	c.names[strings.Clone(k)] = e
	return e
}

// intern returns a copy of v that nothing else writes to, cached per
// connection.
func (c *h2conn) intern(v string) string {
	if s, ok := c.values[v]; ok {
		return s
	}
	s := strings.Clone(v)
	if c.values == nil || len(c.values) >= h2MaxInterned {
		c.values = make(map[string]string)
	}
	c.values[s] = s
	return s
}

// Interning bounds: values longer than h2MaxIndexed are sent without
// indexing; each cache holds up to h2MaxInterned strings (then starts
// over).
const (
	h2MaxIndexed  = 256
	h2MaxInterned = 256
)

// dateString is the Date field for now, formatted once a second.
func (c *h2conn) dateString() string {
	now := time.Now()
	if sec := now.Unix(); sec != c.dateSec {
		c.dateSec = sec
		now.UTC().AppendFormat(c.date[:0], http.TimeFormat)
		c.dateStr = string(c.date[:])
	}
	return c.dateStr
}

// statusString is the decimal form of a status code.
func statusString(code int) string {
	if code >= 100 && code < 600 {
		if s := statusStrings[code]; s != "" {
			return s
		}
	}
	return strconv.Itoa(code)
}

var statusStrings = func() (t [600]string) {
	for i := 100; i < 600; i++ {
		t[i] = strconv.Itoa(i)
	}
	return t
}()
