package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// This file is kclb's own HTTP/2 server for the public TLS listeners
// (RFC 9113), the default behind Server when HTTP/2 is on
// (ServerOptions.StdlibHTTP2 selects net/http's instead). Frames are read
// and written with x/net/http2's Framer and hpack; the connection state
// and the stream states are kclb's.
//
// A connection costs one goroutine that reads frames (the one that
// accepted it) and one that writes them; each stream runs the Handler on
// a goroutine of its own while the request is forwarded, since the
// Handler blocks on the backend. Handlers and the reader append their
// frames to one output buffer under the connection's lock, and the
// writer sends whatever has gathered in one write: responses of streams
// that finish while a write is in progress leave together, instead of
// one TLS record and system call per frame.
//
// A stream's request gets a context that is never canceled, as on
// kclb's HTTP/1.1 server: a stream the client resets keeps its
// forwarded request (it ends with the backend's response, keeping the
// backend connection reusable) and its response is dropped. Handlers
// running, not streams open, count against MaxConcurrentStreams, so a
// client that resets every stream it opens (rapid reset, CVE-2023-44487)
// never has more requests at the backend than the limit.

// h2 limits and sizes.
const (
	// h2StreamWindow is the receive window advertised per stream, and
	// h2ConnWindow for the connection: request bodies beyond them wait
	// for the Handler to read.
	h2StreamWindow = 1 << 20
	h2ConnWindow   = 1 << 20
	// h2MaxOut bounds the bytes queued for the client: Handlers wait
	// beyond it.
	h2MaxOut = 256 << 10
	// h2MaxControl bounds the control frames the client provokes (PING
	// and SETTINGS acknowledgements, resets) queued and not yet taken by
	// the writer: beyond it the client sends them faster than it reads
	// and the connection is closed (about 3,800 PING acknowledgements).
	h2MaxControl = 64 << 10
	// h2MaxJunk is how many frames that carry nothing (empty DATA,
	// PRIORITY, unknown types, WINDOW_UPDATE on closed streams) a
	// connection may send between two requests.
	h2MaxJunk = 10000
	// h2Coalesce is the output below which the writer yields once
	// before writing, so that frames of other streams join the write.
	h2Coalesce = 16 << 10

	// h2DrainWait bounds the wait for the ack of a graceful shutdown's
	// PING before the final GOAWAY goes out anyway (drain).
	h2DrainWait = time.Second
	// h2ReadBuf is the frame reader's buffer.
	h2ReadBuf = 16 << 10
)

var errH2Closed = errors.New("proxy: HTTP/2 connection closed")

// h2DrainPing is the payload of a graceful shutdown's PING (drain).
var h2DrainPing = [8]byte{'k', 'c', 'l', 'b', 'd', 'r', 'a', 'n'}

// h2conn is one HTTP/2 client connection of a Server.
type h2conn struct {
	s      *Server
	nc     net.Conn // the *tls.Conn
	tls    *tls.ConnectionState
	remote string
	peer   *peerInfo // remote parsed, for every stream's scratch
	entry  *connEntry
	ctx    context.Context // never canceled; every request's context
	start  time.Time

	// Reader state (the serving goroutine only).
	br       *bufio.Reader
	fr       *http2.Framer
	hb       *h2block // the header block being read
	maxID    uint32   // highest client stream id seen
	junk     int      // frames without effect since the last request
	recvConn int64    // connection receive window left

	mu   sync.Mutex // guards the fields below and every stream's shared state
	cond sync.Cond  // on mu: windows opened, output drained, streams ended, closed
	wake sync.Cond  // on mu: the writer has work
	// out holds encoded frames to send; spare is the buffer the writer
	// sent last, reused for the next batch.
	out, spare []byte
	fw         *http2.Framer // writes into out
	henc       *h2enc
	streams    map[uint32]*h2stream // streams not yet closed in both directions
	running    int                  // Handlers running
	closing    int                  // streams whose END_STREAM is queued and not yet removed (endedLocked)
	sendConn   int64                // connection send window
	initWindow int64                // the client's SETTINGS_INITIAL_WINDOW_SIZE
	maxFrame   int                  // the client's SETTINGS_MAX_FRAME_SIZE
	unackedIn  int64                // bytes Handlers consumed not yet credited to the connection window
	started    bool                 // the server's SETTINGS written: other frames may follow (RFC 9113 3.4)
	drainWant  bool                 // drain was called before started: it runs once SETTINGS is out
	goneAway   bool                 // the final GOAWAY sent: no new streams
	draining   bool                 // the first GOAWAY and PING of a graceful shutdown sent, not yet the final one
	drainAt    time.Time            // when draining began
	closed     bool                 // the connection is closing: writes fail
	werr       error                // the first write error
	ctlOut     int                  // control-frame bytes in out (h2MaxControl)
	idleSet    bool                 // the read deadline is the idle timeout
	lastDL     time.Time            // when the write deadline was last set

	tmpl    *http.Request      // carries ctx; copied into every request
	names   map[string]*h2name // response header names, bounded
	values  map[string]string  // interned response header values, bounded
	date    [len(http.TimeFormat)]byte
	dateStr string
	dateSec int64

	handlers sync.WaitGroup // the streams' Handler goroutines
	writer   chan struct{}  // closed when the writer exits
}

// serveOwnH2 serves a connection whose TLS handshake chose h2 with
// kclb's HTTP/2 server, on the goroutine that accepted it.
func (c *h1conn) serveOwnH2(st *tls.ConnectionState) {
	s := c.s
	h := newH2Conn(s, c.nc, st, c.remote, c.entry, c.start)
	// Known to Shutdown as an HTTP/2 connection before it stops being
	// an HTTP/1 one, so that it is never in neither set.
	s.trackH2(h, true)
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.handshakes.Add(-1)
	h.serve()
}

// newH2Conn returns the HTTP/2 connection state for nc (which has read
// nothing of the client preface yet).
func newH2Conn(s *Server, nc net.Conn, st *tls.ConnectionState, remote string, entry *connEntry, start time.Time) *h2conn {
	h := &h2conn{
		s: s, nc: nc, tls: st, remote: remote, peer: newPeerInfo(remote), entry: entry, start: start,
		ctx:        context.WithoutCancel(s.baseCtx),
		streams:    make(map[uint32]*h2stream),
		sendConn:   65535,
		initWindow: 65535,
		maxFrame:   16384,
		recvConn:   65535,
		writer:     make(chan struct{}),
	}
	h.cond.L = &h.mu
	h.wake.L = &h.mu
	// Set before the connection is tracked: Shutdown may reach it at once.
	h.fw = http2.NewFramer((*h2out)(h), nil)
	h.henc = newH2Enc()
	h.tmpl = (&http.Request{}).WithContext(h.ctx)
	return h
}

// serve runs the connection until it closes.
func (c *h2conn) serve() {
	s := c.s
	go c.writeLoop() // owned by c: it exits once closed is set and out is sent
	c.readLoop()
	c.shut()
	c.handlers.Wait()
	<-c.writer
	c.nc.Close()
	s.trackH2(c, false)
	if s.o.Conns != nil {
		s.o.Conns.connState(c.nc, http.StateClosed)
	}
}

// h2out appends the Framer's frames to the connection's output buffer;
// the caller holds mu.
type h2out h2conn

func (o *h2out) Write(p []byte) (int, error) {
	c := (*h2conn)(o)
	if len(c.out) == 0 {
		c.wake.Signal()
	}
	c.out = append(c.out, p...)
	return len(p), nil
}

// writeLoop sends the output buffer whenever it holds frames, until the
// connection closes.
func (c *h2conn) writeLoop() {
	defer close(c.writer)
	c.mu.Lock()
	for {
		for len(c.out) == 0 && !c.closed {
			c.wake.Wait()
		}
		if len(c.out) == 0 || c.werr != nil {
			c.mu.Unlock()
			return
		}
		if !c.closed && len(c.out) < h2Coalesce {
			// Let the Handlers that are runnable now (their backend
			// answered too) add their frames: one write for all.
			c.mu.Unlock()
			runtime.Gosched()
			c.mu.Lock()
		}
		buf := c.out
		c.out = c.spare[:0]
		c.ctlOut = 0
		c.cond.Broadcast() // Handlers waiting for room may queue the next batch
		now := time.Now()
		if now.Sub(c.lastDL) > time.Second {
			c.lastDL = now
			c.nc.SetWriteDeadline(now.Add(c.s.o.WriteTimeout))
		}
		closing := c.closed
		c.mu.Unlock()
		if closing {
			// Last words (GOAWAY, final responses): do not wait long.
			c.nc.SetWriteDeadline(time.Now().Add(lingerTime))
		}
		_, err := c.nc.Write(buf)
		c.mu.Lock()
		if cap(buf) <= 4*h2MaxOut {
			c.spare = buf[:0]
		} else {
			c.spare = nil
		}
		if err != nil {
			c.werr = err
			c.closed = true
			c.out = c.out[:0]
			c.nc.Close() // ends the reader too
		}
		c.cond.Broadcast()
	}
}

// shut marks the connection closed: Handlers' writes fail from now on and
// the writer exits once the output is sent.
func (c *h2conn) shut() {
	c.mu.Lock()
	c.closed = true
	for _, st := range c.streams {
		st.abortLocked(errH2Closed)
	}
	c.wake.Signal()
	c.cond.Broadcast()
	c.mu.Unlock()
}

// readLoop reads the preface and then frames until the connection ends.
func (c *h2conn) readLoop() {
	s := c.s
	c.br = bufio.NewReaderSize(c.nc, h2ReadBuf)
	c.nc.SetReadDeadline(c.start.Add(s.o.HeaderTimeout))
	var pre [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(c.br, pre[:]); err != nil || string(pre[:]) != http2.ClientPreface {
		s.o.ErrorLog.Debug("HTTP/2 preface missing", "remote", c.remote, "err", err)
		return
	}
	c.fr = http2.NewFramer(nil, c.br)
	c.fr.SetReuseFrames()
	c.fr.MaxHeaderListSize = uint32(s.o.MaxHeaderBytes)
	c.hb = newH2Block(uint32(s.o.MaxHeaderBytes))
	c.mu.Lock()
	c.fw.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: uint32(s.o.MaxConcurrentStreams)},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2StreamWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: uint32(s.o.MaxHeaderBytes)},
	)
	c.fw.WriteWindowUpdate(0, h2ConnWindow-65535)
	c.recvConn = h2ConnWindow
	c.setIdleLocked()
	c.started = true
	if c.drainWant || s.closing.Load() {
		c.mu.Unlock()
		c.drain()
		c.mu.Lock()
	}
	c.mu.Unlock()
	for {
		f, err := c.fr.ReadFrame()
		if err == nil {
			err = c.handleFrame(f)
		}
		if err == nil {
			continue
		}
		var se http2.StreamError
		if errors.As(err, &se) {
			// A malformed or refused stream: it is reset, the connection
			// goes on. (h2block decoded the whole header block, so the
			// header compression state is intact.)
			c.mu.Lock()
			if se.StreamID > c.maxID && se.StreamID%2 == 1 {
				c.maxID = se.StreamID
			}
			c.resetLocked(se.StreamID, se.Code)
			c.mu.Unlock()
			c.s.o.ErrorLog.Debug("HTTP/2 stream reset", "remote", c.remote, "err", err)
			continue
		}
		c.readFailed(err)
		return
	}
}

// readFailed ends the connection after a read or protocol error: a
// GOAWAY with the code for protocol errors, nothing for I/O errors.
func (c *h2conn) readFailed(err error) {
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &ce):
		c.goAway(http2.ErrCode(ce))
		c.s.o.ErrorLog.Debug("HTTP/2 connection error", "remote", c.remote, "err", err, "detail", c.fr.ErrorDetail())
		return
	case errors.Is(err, http2.ErrFrameTooLarge):
		c.goAway(http2.ErrCodeFrameSize)
		return
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		// The keep-alive timeout with no stream open, or drain.
		c.goAway(http2.ErrCodeNo)
		return
	}
	c.s.o.ErrorLog.Debug("HTTP/2 connection ended", "remote", c.remote, "err", err)
}

// goAway sends GOAWAY with code (the last stream id is the highest the
// client opened) and marks the connection closed.
func (c *h2conn) goAway(code http2.ErrCode) {
	c.mu.Lock()
	if !c.closed {
		c.fw.WriteGoAway(c.maxID, code, nil)
		c.goneAway = true
	}
	c.mu.Unlock()
	c.shut()
}

// connErr is a connection error of code with a reason for the debug log.
type connErr struct {
	code   http2.ErrCode
	reason string
}

func (e connErr) Error() string { return "proxy: HTTP/2 " + e.code.String() + ": " + e.reason }

// As lets errors.As see a connErr as an http2.ConnectionError.
func (e connErr) As(target any) bool {
	if p, ok := target.(*http2.ConnectionError); ok {
		*p = http2.ConnectionError(e.code)
		return true
	}
	return false
}

// handleFrame acts on one frame; an error ends the connection (or, for
// an http2.StreamError, the stream).
func (c *h2conn) handleFrame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.HeadersFrame:
		c.hb.start(f)
		return c.headerFragment(f.HeaderBlockFragment(), f.HeadersEnded())
	case *http2.ContinuationFrame:
		// The Framer lets through only the CONTINUATION frames of the
		// block being read.
		return c.headerFragment(f.HeaderBlockFragment(), f.HeadersEnded())
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.SettingsFrame:
		return c.onSettings(f)
	case *http2.PingFrame:
		if f.StreamID != 0 {
			return connErr{http2.ErrCodeProtocol, "PING on a stream"}
		}
		if f.IsAck() {
			if f.Data != h2DrainPing || !c.drainAcked() {
				return c.junkFrame()
			}
			return nil
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.ctlOut > h2MaxControl {
			return connErr{http2.ErrCodeEnhanceYourCalm, "PING flood"}
		}
		c.fw.WritePing(true, f.Data)
		c.ctlOut += 17
		return nil
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.RSTStreamFrame:
		c.mu.Lock()
		defer c.mu.Unlock()
		if f.StreamID > c.maxID {
			return connErr{http2.ErrCodeProtocol, "RST_STREAM on an idle stream"}
		}
		if st := c.streams[f.StreamID]; st != nil {
			st.abortLocked(errStreamReset)
			st.resetSent = true // the client reset it: never answer it
			c.removeLocked(st)
		}
		return nil
	case *http2.GoAwayFrame:
		// The client stops opening streams; the ones open finish.
		c.mu.Lock()
		c.goneAway = true
		idle := c.running == 0
		c.mu.Unlock()
		if idle {
			c.shut()
			return io.EOF
		}
		return nil
	case *http2.PushPromiseFrame:
		return connErr{http2.ErrCodeProtocol, "PUSH_PROMISE from a client"}
	case *http2.PriorityFrame:
		if f.StreamID == f.StreamDep {
			return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol}
		}
		return c.junkFrame()
	default:
		// Unknown and ignored frame types (PRIORITY_UPDATE and others).
		return c.junkFrame()
	}
}

// headerFragment decodes one fragment of a header block; the complete
// block opens a stream or ends one with trailers.
func (c *h2conn) headerFragment(frag []byte, last bool) error {
	done, err := c.hb.add(frag, last)
	if !done {
		return err
	}
	return c.onHeaders(c.hb)
}

// junkFrame counts a frame that did nothing.
func (c *h2conn) junkFrame() error {
	c.junk++
	if c.junk > h2MaxJunk {
		return connErr{http2.ErrCodeEnhanceYourCalm, "too many frames without effect"}
	}
	return nil
}

func (c *h2conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return c.junkFrame()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctlOut > h2MaxControl {
		return connErr{http2.ErrCodeEnhanceYourCalm, "SETTINGS flood"}
	}
	err := f.ForeachSetting(func(set http2.Setting) error {
		if err := set.Valid(); err != nil {
			return err
		}
		switch set.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(set.Val) - c.initWindow
			c.initWindow = int64(set.Val)
			for _, st := range c.streams {
				st.sendWindow += delta
				if st.sendWindow > 1<<31-1 {
					return connErr{http2.ErrCodeFlowControl, "window over 2^31-1"}
				}
			}
			c.cond.Broadcast()
		case http2.SettingMaxFrameSize:
			c.maxFrame = int(set.Val)
		case http2.SettingHeaderTableSize:
			c.henc.setLimit(set.Val)
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.fw.WriteSettingsAck()
	c.ctlOut += 9
	return nil
}

func (c *h2conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.StreamID == 0 {
		c.sendConn += int64(f.Increment)
		if c.sendConn > 1<<31-1 {
			return connErr{http2.ErrCodeFlowControl, "connection window over 2^31-1"}
		}
		c.cond.Broadcast()
		return nil
	}
	if f.StreamID > c.maxID {
		return connErr{http2.ErrCodeProtocol, "WINDOW_UPDATE on an idle stream"}
	}
	st := c.streams[f.StreamID]
	if st == nil {
		return c.junkFrame()
	}
	st.sendWindow += int64(f.Increment)
	if st.sendWindow > 1<<31-1 {
		c.resetLocked(f.StreamID, http2.ErrCodeFlowControl)
		return nil
	}
	c.cond.Broadcast()
	return nil
}

func (c *h2conn) onData(f *http2.DataFrame) error {
	id := f.StreamID
	n := int64(f.Length) // padding counts against flow control
	c.mu.Lock()
	defer c.mu.Unlock()
	if id > c.maxID || id%2 == 0 {
		return connErr{http2.ErrCodeProtocol, "DATA on an idle stream"}
	}
	c.recvConn -= n
	if c.recvConn < 0 {
		return connErr{http2.ErrCodeFlowControl, "connection window exceeded"}
	}
	st := c.streams[id]
	if st == nil || st.recvDone {
		// A stream already closed or reset: give the connection window
		// back; the stream gets a reset if it is not one we reset.
		c.creditLocked(n)
		if n == 0 {
			if err := c.junkFrame(); err != nil {
				return err
			}
		}
		if st != nil && !st.resetSent {
			c.resetLocked(id, http2.ErrCodeStreamClosed)
		}
		return nil
	}
	st.recvWindow -= n
	if st.recvWindow < 0 {
		c.creditLocked(n)
		c.resetLocked(id, http2.ErrCodeFlowControl)
		return nil
	}
	data := f.Data()
	if pad := n - int64(len(data)); pad > 0 {
		c.creditLocked(pad)
		st.recvWindow += pad
	}
	if len(data) == 0 && !f.StreamEnded() {
		if err := c.junkFrame(); err != nil {
			return err
		}
	}
	st.received += int64(len(data))
	if st.declared >= 0 && st.received > st.declared {
		c.creditLocked(int64(len(data)))
		c.resetLocked(id, http2.ErrCodeProtocol)
		return nil
	}
	st.body.buf = append(st.body.buf, data...)
	if f.StreamEnded() {
		if st.declared >= 0 && st.received != st.declared {
			c.resetLocked(id, http2.ErrCodeProtocol)
			return nil
		}
		st.endRecvLocked(nil)
	}
	c.cond.Broadcast()
	return nil
}

// creditLocked gives n consumed bytes back to the connection's receive
// window, in WINDOW_UPDATEs of at least a quarter of it.
func (c *h2conn) creditLocked(n int64) {
	c.unackedIn += n
	if c.unackedIn >= h2ConnWindow/4 && !c.closed {
		c.fw.WriteWindowUpdate(0, uint32(c.unackedIn))
		c.recvConn += c.unackedIn
		c.unackedIn = 0
	}
}

// resetLocked sends RST_STREAM for id and forgets the stream.
func (c *h2conn) resetLocked(id uint32, code http2.ErrCode) {
	if st := c.streams[id]; st != nil {
		if st.resetSent {
			return
		}
		st.resetSent = true
		st.abortLocked(errStreamReset)
		c.removeLocked(st)
	}
	if c.closed {
		return
	}
	if c.ctlOut > h2MaxControl {
		// The client provokes resets and does not read them.
		c.overflowLocked()
		return
	}
	c.fw.WriteRSTStream(id, code)
	c.ctlOut += 13
}

// overflowLocked closes a connection whose client sends frames that need
// an answer faster than it reads the answers.
func (c *h2conn) overflowLocked() {
	c.closed = true
	for _, st := range c.streams {
		st.abortLocked(errH2Closed)
	}
	c.out = c.out[:0]
	c.nc.Close()
	c.wake.Signal()
	c.cond.Broadcast()
}

// removeLocked forgets a stream closed in both directions (or reset),
// giving back the connection window its unread body held.
func (c *h2conn) removeLocked(st *h2stream) {
	if c.streams[st.id] != st {
		return
	}
	delete(c.streams, st.id)
	if st.closing {
		st.closing = false
		c.closing--
	}
	if n := int64(len(st.body.buf) - st.body.off); n > 0 {
		st.body.off = len(st.body.buf)
		c.creditLocked(n)
	}
	c.cond.Broadcast()
}

// setIdleLocked makes the read deadline the keep-alive timeout when no
// Handler runs, and clears it otherwise.
func (c *h2conn) setIdleLocked() {
	idle := c.running == 0
	if idle == c.idleSet {
		return
	}
	c.idleSet = idle
	if idle {
		c.nc.SetReadDeadline(time.Now().Add(c.s.o.KeepAlive))
	} else {
		c.nc.SetReadDeadline(time.Time{})
	}
}

// onHeaders opens a stream, or takes a stream's trailers.
func (c *h2conn) onHeaders(f *h2block) error {
	id := f.StreamID
	c.mu.Lock()
	if id%2 == 0 {
		c.mu.Unlock()
		return connErr{http2.ErrCodeProtocol, "HEADERS on an even stream"}
	}
	if id <= c.maxID {
		defer c.mu.Unlock()
		st := c.streams[id]
		if st == nil {
			// A stream that ended or was reset: frames the client sent
			// before it learnt that are ignored (RFC 9113 5.1).
			return c.junkFrame()
		}
		if st.recvDone {
			return connErr{http2.ErrCodeStreamClosed, "HEADERS after END_STREAM"}
		}
		if !f.StreamEnded() {
			return connErr{http2.ErrCodeProtocol, "trailers without END_STREAM"}
		}
		if f.Truncated || len(f.PseudoFields()) > 0 {
			c.resetLocked(id, http2.ErrCodeProtocol)
			return nil
		}
		st.setTrailers(f.RegularFields())
		if st.declared >= 0 && st.received != st.declared {
			c.resetLocked(id, http2.ErrCodeProtocol)
			return nil
		}
		st.endRecvLocked(nil)
		c.cond.Broadcast()
		return nil
	}
	c.maxID = id
	if c.goneAway || c.closed {
		// Streams after GOAWAY are ignored (RFC 9113 6.8).
		c.mu.Unlock()
		return nil
	}
	if len(c.streams)-c.closing >= c.s.o.MaxConcurrentStreams || c.running-c.closing >= c.s.o.MaxConcurrentStreams {
		// Over the limit, or every Handler is still busy with streams
		// the client reset: refused, the client may retry it. A client
		// that does not read the resets is closed (resetLocked).
		// Streams whose END_STREAM is queued do not count: the client
		// counts them closed once it is read.
		c.mu.Unlock()
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeRefusedStream}
	}
	c.mu.Unlock()
	c.junk = 0
	st := c.s.newH2Stream(c, id)
	code := st.build(f)
	if code != 0 {
		c.s.putH2Stream(st)
		return http2.StreamError{StreamID: id, Code: code}
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.s.putH2Stream(st)
		return nil
	}
	st.sendWindow = c.initWindow
	st.recvWindow = h2StreamWindow
	c.streams[id] = st
	c.running++
	c.setIdleLocked()
	if f.StreamEnded() {
		st.endRecvLocked(nil)
	}
	c.mu.Unlock()
	if st.status != 0 {
		// Refused before the Handler (431): answered by the connection.
		c.handlers.Add(1)
		go st.answer() // owned by c: serveH2 waits for it
		return nil
	}
	if c.entry != nil {
		c.entry.served.Store(true)
	}
	c.handlers.Add(1)
	go st.runFn() // st.run, owned by c: serveH2 waits for it
	return nil
}

// streamDone is called when a stream's Handler has returned and its
// response is complete.
func (c *h2conn) streamDone(st *h2stream) {
	c.mu.Lock()
	if !st.recvDone && !st.resetSent {
		// The Handler did not read the whole body: tell the client to
		// stop sending it (RFC 9113 8.1).
		c.resetLocked(st.id, http2.ErrCodeNo)
	}
	c.removeLocked(st)
	c.running--
	last := c.running == 0
	closeNow := last && c.goneAway && !c.closed
	// The last stream with keep-alive off or the server shutting down:
	// the connection drains (drain), closing after the client has had
	// the time to stop opening streams.
	startDrain := last && !c.goneAway && !c.draining && !c.closed && (c.s.noKeepAlive.Load() || c.s.closing.Load())
	if last && !c.closed {
		c.setIdleLocked()
	}
	c.mu.Unlock()
	if closeNow {
		c.shut()
		c.nc.SetReadDeadline(time.Now()) // wakes the reader
	}
	if startDrain {
		c.drain()
	}
	c.s.putH2Stream(st)
	c.handlers.Done()
}

// drain shuts the connection down gracefully (RFC 9113 6.8), in two
// steps: a GOAWAY naming the highest possible stream and a PING, so the
// streams a client opens before it reads that GOAWAY are still served;
// then, once the client has answered the PING (or h2DrainWait has
// passed, checked on every call), the final GOAWAY naming the last
// stream opened. The connection closes when the final GOAWAY is sent
// and its Handlers are done. Shutdown and CloseIdle call it, and a
// stream ending with keep-alive off. Before the client preface has
// arrived it only marks the connection, and readLoop begins the drain
// right after the server's SETTINGS. It reports whether the connection
// is closed or closing.
func (c *h2conn) drain() bool {
	c.mu.Lock()
	switch {
	case c.closed || c.goneAway:
	case !c.started:
		// The client preface has not arrived: nothing but SETTINGS
		// may go first, so the GOAWAY waits for it (readLoop).
		c.drainWant = true
	case !c.draining:
		c.draining = true
		c.drainAt = time.Now()
		c.fw.WriteGoAway(1<<31-1, http2.ErrCodeNo, nil)
		c.fw.WritePing(false, h2DrainPing)
	case time.Since(c.drainAt) >= h2DrainWait:
		c.finalGoAwayLocked()
	}
	return c.endIfDone()
}

// drainAcked takes the client's ack of drain's PING: the client has read
// the first GOAWAY, so the final one goes out. It reports false for an
// ack of a PING never sent.
func (c *h2conn) drainAcked() bool {
	c.mu.Lock()
	if !c.draining {
		c.mu.Unlock()
		return false
	}
	c.finalGoAwayLocked()
	c.endIfDone()
	return true
}

// finalGoAwayLocked sends the GOAWAY that names the last stream served:
// streams after it are ignored from now on.
func (c *h2conn) finalGoAwayLocked() {
	c.fw.WriteGoAway(c.maxID, http2.ErrCodeNo, nil)
	c.goneAway = true
	c.draining = false
}

// endIfDone unlocks mu and closes the connection if its final GOAWAY is
// sent and no Handler runs; it reports whether the connection is closed.
func (c *h2conn) endIfDone() bool {
	done := c.closed || c.goneAway && c.running == 0
	shut := done && !c.closed
	c.mu.Unlock()
	if shut {
		c.shut()
		c.nc.SetReadDeadline(time.Now()) // wakes the reader
	}
	return done
}

// trackH2 adds or removes an HTTP/2 connection of s.
func (s *Server) trackH2(c *h2conn, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		s.h2conns[c] = struct{}{}
	} else {
		delete(s.h2conns, c)
	}
}
