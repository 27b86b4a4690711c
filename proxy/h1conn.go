package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// This file is kclb's own HTTP/1.1 server for the public listeners, the
// default behind Server (ServerOptions.StdlibHTTP1 selects net/http's
// instead). Each client connection is served by one goroutine and
// nothing else: no background read per request, no goroutine per
// response. The request head is parsed in place (h1head.go), the
// request, its header map, its body reader and the ResponseWriter belong
// to the connection and are reused by every request on it, and the
// response head and a small body leave in one write.
//
// Because nothing reads from the client while a request is being
// forwarded, a client that goes away is noticed when its response is
// written (as HAProxy does without abortonclose), not while kclb waits
// for the backend.

// h1conn is one client connection of a Server.
type h1conn struct {
	s      *Server
	nc     net.Conn // the accepted connection, or its *tls.Conn
	sock   rawSock  // nc's reads and writes (sockio_linux.go: raw on a plain one)
	entry  *connEntry
	remote string
	peer   *peerInfo // remote parsed, for every request's scratch
	tls    *tls.ConnectionState
	start  time.Time

	// state is stateNew until the first request, then stateActive or
	// stateIdle (waiting for the next request, closable by Shutdown).
	state atomic.Int32

	bufp *[]byte // the pooled read buffer
	buf  []byte  // read buffer (*bufp, or a larger one): buf[r:w] is unread
	r, w int
	// pinned is set while a request is served: its head, which its
	// strings share, is in buf and must not be overwritten.
	pinned bool
	hend   int   // while pinned: where the head ends in buf
	rerr   error // sticky read error

	bw *bufio.Writer
	// out is what bw writes to: the connection, or while idleRead sends
	// a held response, its descriptor directly (sendFirst).
	out  h1out
	rawc syscall.RawConn // for waiting without a buffer; nil for TLS
	// sendFirst is set while bw holds a whole response that idleRead
	// writes before it waits for the next request (h1idle_linux.go):
	// the wait then needs no read(2) that finds nothing. pipelined is
	// set once the client sent a request before its previous answer
	// was written; such a connection always reads before it waits.
	sendFirst bool
	pipelined bool
	// tcp is the connection under a TLS one, which holds a response's
	// records for the idle wait (h1tlsheld_linux.go); nil for plain.
	tcp  *heldConn
	held int64 // responses sent by sendHeld, for Server.heldSends
	// heldWait is set from a held response's send until the next read
	// of the connection; idleFirst while idleRead has not read yet.
	heldWait  bool
	idleFirst bool
	// readableFn is c.readable, bound once; idleErr is its result.
	readableFn func(uintptr) bool
	idleErr    error
	// st is the state of the request being served, taken from h1States
	// for each request and given back while the connection is idle.
	st *h1state

	served int // requests served

	// idleUntil is when an idle keep-alive connection is closed; restack
	// is set while its idle wait first ends at idleRestack (see
	// restackAfter); moved tells run that the connection continues on a
	// new goroutine, resumed tells readRequest that it is already idle.
	idleUntil time.Time
	// wdl is the write deadline armWrite set last, rdl the read
	// deadline setReadDeadline set last.
	wdl     time.Time
	rdl     time.Time
	restack bool
	moved   bool
	resumed bool
}

// idleRestack is how long an idle keep-alive connection waits on the
// goroutine that served its last request. A goroutine keeps the stack it
// grew while forwarding (4 KiB or more; the runtime shrinks it only in
// a collection, which a proxy that allocates nothing seldom runs), so a
// connection still idle after idleRestack moves its wait to a new
// goroutine, which starts with a small stack: idle connections cost
// about 2 KiB of stack instead (BenchmarkH1IdleConn). A variable for the
// tests.
var idleRestack = 250 * time.Millisecond

// h1state is what a connection needs to serve a request and not while it
// waits for the next one: the parser, the request with its header map,
// its body reader, the ResponseWriter and the Handler's scratch (about
// 4 KiB). Idle keep-alive connections hand it back to h1States, so it
// costs once per request in flight, not once per connection.
type h1state struct {
	p    headParser
	req  http.Request
	body h1body
	resp h1response
	// scratch is lent to the Handler for each request (scratch.go).
	scratch reqScratch
	// head is a copy of a request head that was all the read buffer
	// held: the request's strings share it, so the connection can give
	// the read buffer back while the request is served (readRequest).
	head []byte
}

// maxKeptHead bounds the head copy a pooled state keeps.
const maxKeptHead = 8 << 10

// h1States pools h1state across the connections of every Server (a
// state holds nothing of the connection that last used it).
var h1States = sync.Pool{New: func() any {
	st := &h1state{p: *newHeadParser()}
	st.resp.hdr = make(http.Header, 16)
	return st
}}

// getState takes a request state for c.
func (c *h1conn) getState() {
	c.st = h1States.Get().(*h1state)
	c.st.resp.c = c
}

// putState gives c's request state back: the last request is over and
// nothing of it is referenced any more.
func (c *h1conn) putState() {
	st := c.st
	if st == nil {
		return
	}
	c.st = nil
	if cap(st.head) > maxKeptHead {
		st.head = nil
	}
	st.req = http.Request{}
	st.body = h1body{}
	st.resp.c, st.resp.req, st.resp.werr = nil, nil, nil
	h1States.Put(st)
}

// Connection states for Shutdown.
const (
	stateNew int32 = iota
	stateActive
	stateIdle
	stateClosed
)

// h1 buffer sizes.
const (
	h1ReadBuf  = 4 << 10
	h1WriteBuf = 8 << 10
	// maxDrain is how much of a request body the handler left unread is
	// discarded to keep the connection (net/http's value).
	maxDrain = 256 << 10
	// lingerTime bounds the wait for the client to read a final error
	// response before the connection is closed.
	lingerTime = 500 * time.Millisecond
)

var errLineLong = errors.New("proxy: line too long")

func (s *Server) newConn(nc net.Conn) *h1conn {
	// remote is set in serve: a PROXY-protocol connection reads its
	// header in RemoteAddr, which must not hold up the accept loop.
	return &h1conn{s: s, nc: nc, start: time.Now()}
}

// serve runs the connection until it closes.
func (c *h1conn) serve() {
	s := c.s
	c.remote = c.nc.RemoteAddr().String()
	c.peer = newPeerInfo(c.remote)
	if s.o.TLS != nil {
		under := c.nc
		if h := newHeldConn(c, c.nc); h != nil {
			c.tcp, under = h, h
		}
		tc := tls.Server(under, s.tlsConf)
		c.nc = tc
		c.register()
		tc.SetDeadline(time.Now().Add(s.o.HeaderTimeout))
		err := tc.HandshakeContext(s.baseCtx)
		if err != nil {
			s.handshakes.Add(-1)
			s.o.ErrorLog.Debug("TLS handshake failed", "remote", c.remote, "err", err)
			c.close(false)
			return
		}
		tc.SetDeadline(time.Time{})
		st := tc.ConnectionState()
		if st.NegotiatedProtocol == "h2" && s.h2 != nil {
			c.handoff()
			s.handshakes.Add(-1)
			return
		}
		if st.NegotiatedProtocol == "h2" {
			c.serveOwnH2(&st) // h2conn.go
			return
		}
		s.handshakes.Add(-1)
		c.tls = &st
	} else {
		c.register()
	}
	c.setup()
	// The requests are served on a goroutine of their own: it starts
	// with a small stack, which the TLS handshake (and the frames above
	// it here) would otherwise have grown for the connection's life.
	go c.run() // owned by c.s like serve: Close closes nc, Shutdown waits for it
}

// run serves requests until the connection closes or moves to a new
// goroutine (restackAfter), which then runs it.
func (c *h1conn) run() {
	linger := c.loop()
	if c.moved {
		c.moved = false
		go c.run() // owned by c.s like serve: Close closes nc, Shutdown waits for it
		return
	}
	c.close(linger)
}

// restackAfter reports whether the idle wait that ended with err ends on
// this goroutine only: the first part of the wait (idleRestack) passed
// with nothing received, and the rest of the keep-alive time is waited
// for on a new goroutine (see idleRestack). Shutdown may close the
// connection meanwhile; the new goroutine then sees the error.
func (c *h1conn) restackAfter(err error) bool {
	if !c.restack {
		return false
	}
	c.restack = false
	if !errors.Is(err, os.ErrDeadlineExceeded) || c.w != 0 || c.state.Load() != stateIdle || !time.Now().Before(c.idleUntil) {
		return false
	}
	c.rerr = nil // a deadline does not end a connection (nor a TLS one)
	c.setReadDeadline(c.idleUntil)
	c.moved, c.resumed = true, true
	c.s.restacks.Add(1)
	return true
}

// register makes the connection known to Shutdown and ConnStats.
func (c *h1conn) register() {
	s := c.s
	if s.o.Conns != nil {
		c.entry = s.o.Conns.track(c.nc)
	}
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
}

// handoff passes an HTTP/2 connection to the net/http server.
func (c *h1conn) handoff() {
	s := c.s
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	if !s.h2.put(c.nc) {
		c.nc.Close()
		if s.o.Conns != nil {
			s.o.Conns.connState(c.nc, http.StateClosed)
		}
	}
}

func (c *h1conn) setup() {
	if sc, ok := c.nc.(syscall.Conn); ok && idleWait {
		c.rawc, _ = sc.SyscallConn()
		c.readableFn = c.readable
	}
	c.sock.init(c.nc, c.rawc)
	c.getBuffers()
}

// getBuffers takes the read buffer from the server's pool.
func (c *h1conn) getBuffers() {
	c.bufp = c.s.readBufs.Get().(*[]byte)
	c.buf, c.r, c.w = *c.bufp, 0, 0
}

// putBuffers gives the (empty) read buffer back to the pool.
func (c *h1conn) putBuffers() {
	if c.bufp != nil {
		c.s.readBufs.Put(c.bufp)
	}
	c.bufp, c.buf = nil, nil
}

// writer returns the write buffer, taking it from the server's pool on
// the first write of a response: a request waiting for its backend holds
// none.
func (c *h1conn) writer() *bufio.Writer {
	if c.bw == nil {
		c.bw = c.s.writeBufs.Get().(*bufio.Writer)
		c.out.c = c
		c.bw.Reset(&c.out)
	}
	return c.bw
}

// releaseWriter gives the write buffer back once all it held was
// written (a response held back for a pipelined request keeps it).
func (c *h1conn) releaseWriter() {
	if c.bw != nil && c.bw.Buffered() == 0 {
		c.bw.Reset(nil)
		c.s.writeBufs.Put(c.bw)
		c.bw = nil
	}
}

// close ends the connection; with linger it first lets the client read
// what was written (closing with unread input would reset it).
func (c *h1conn) close(linger bool) {
	s := c.s
	if c.bw != nil {
		c.bw.Flush()
	}
	if linger {
		c.lingerClose()
	}
	c.nc.Close()
	c.putState()
	if c.held > 0 {
		s.heldSends.Add(c.held)
	}
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.state.Store(stateClosed)
	if s.o.Conns != nil {
		s.o.Conns.connState(c.nc, http.StateClosed)
	}
	if c.bw != nil {
		c.bw.Reset(nil)
		s.writeBufs.Put(c.bw)
		c.bw = nil
	}
	if c.bufp != nil {
		s.readBufs.Put(c.bufp)
		c.bufp = nil
	}
	c.buf = nil
}

type closeWriter interface{ CloseWrite() error }

func (c *h1conn) lingerClose() {
	cw, ok := c.nc.(closeWriter)
	if !ok {
		return
	}
	if cw.CloseWrite() != nil {
		return
	}
	c.nc.SetReadDeadline(time.Now().Add(lingerTime))
	var scratch [512]byte
	for total := 0; total < maxDrain; {
		n, err := c.nc.Read(scratch[:])
		total += n
		if err != nil {
			return
		}
	}
}

// loop serves requests until the connection must close. It returns
// whether to linger before closing.
func (c *h1conn) loop() bool {
	s := c.s
	for {
		r, herr, t0, ok := c.readRequest()
		if !ok {
			return false
		}
		if herr != nil {
			return c.refuseHead(herr)
		}
		c.state.Store(stateActive)
		if c.entry != nil {
			c.entry.served.Store(true)
			c.entry.pending.Store(false)
		}
		if s.o.ClientTimeout > 0 && r.Body != http.NoBody {
			// Only a body is read while the request is served: a
			// bodiless request leaves the deadline to the next read,
			// which sets its own (readRequest).
			c.setReadDeadline(t0.Add(s.o.ClientTimeout))
		}
		c.armWrite(t0)
		c.st.scratch.start = t0
		w := &c.st.resp
		w.reset(r)
		if ev, ok := r.Header["Expect"]; ok && len(ev) > 0 && ev[0] != "" {
			if !headerHasToken(ev[0], "100-continue") {
				w.hdr["Connection"] = connCloseVals
				w.hdr["Content-Length"] = zeroVals
				w.WriteHeader(http.StatusExpectationFailed)
				w.finish()
				return c.st.body.err != io.EOF
			}
			if r.ProtoMinor >= 1 && r.ContentLength != 0 {
				c.st.body.cont = true
			}
		}
		if c.callHandler(w, r) {
			// The handler aborted the response (the backend failed mid-body):
			// the client must see a broken stream, not a complete one.
			if c.bw != nil {
				c.bw.Flush()
			}
			return false
		}
		w.finish()
		c.releaseWriter()
		c.served++
		if w.werr != nil {
			return false
		}
		// Keep-alive off (SetKeepAlives) is decided when the head is
		// written (commit): a response that did not say close keeps its
		// connection, so a client sending its next request on it is not
		// reset; CloseIdle ends such connections once they are idle.
		keep := !w.reqClose && !w.closeAfter && !s.closing.Load()
		if !c.st.body.done() && (c.st.body.err != nil || !keep || !c.drainBody()) {
			// Input is left unread: let the client read the response
			// before the close resets the connection.
			return true
		}
		if !keep {
			return false
		}
	}
}

// callHandler runs the handler; it reports whether the handler aborted
// with a panic (http.ErrAbortHandler, or a bug, which is logged like
// net/http does).
func (c *h1conn) callHandler(w *h1response, r *http.Request) (aborted bool) {
	defer func() {
		if v := recover(); v != nil {
			aborted = true
			if v != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				c.s.o.ErrorLog.Error("panic serving request", "remote", c.remote, "panic", fmt.Sprint(v), "stack", string(buf))
			}
		}
	}()
	c.s.o.Handler.ServeHTTP(w, r)
	return false
}

// drainBody discards what the handler left of the request body, up to
// maxDrain; it reports whether the body ended so the connection can be
// reused.
func (c *h1conn) drainBody() bool {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	total := 0
	for total < maxDrain {
		n, err := c.st.body.Read(*bp)
		total += n
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
	return false
}

// readRequest waits for and parses the next request head. ok is false
// when the connection must close without an answer (the client closed
// it, or a timeout passed); herr is a head to refuse. t0 is when the
// head began.
func (c *h1conn) readRequest() (r *http.Request, herr *headError, t0 time.Time, ok bool) {
	s := c.s
	// The previous request is over: its head may be overwritten. Unread
	// bytes (a pipelined request) move to the front, into the pooled
	// buffer if a body read had to move to another one.
	c.pinned = false
	if c.bufp == nil {
		// The last request was bodiless and gave the buffer back; the
		// reads below take one again.
	} else if pb := *c.bufp; len(c.buf) <= len(pb) && &c.buf[0] != &pb[0] && c.w-c.r <= len(pb) {
		n := copy(pb, c.buf[c.r:c.w])
		c.buf, c.r, c.w = pb, 0, n
	} else if c.r > 0 {
		n := copy(c.buf, c.buf[c.r:c.w])
		c.r, c.w = 0, n
	}
	if c.served == 0 {
		c.setReadDeadline(c.start.Add(s.o.HeaderTimeout))
	}
	if c.w == 0 {
		if c.resumed {
			// Moved to this goroutine (restackAfter): already idle, its
			// deadline set to the end of the keep-alive time.
			c.resumed = false
		} else if c.served > 0 {
			// A held response goes out first: the connection turns idle
			// once it has (idleRead), so Shutdown cannot close it unsent.
			if !c.sendFirst && !c.state.CompareAndSwap(stateActive, stateIdle) {
				return nil, nil, t0, false
			}
			now := time.Now()
			c.idleUntil = now.Add(s.o.KeepAlive)
			c.restack = idleRestack > 0 && s.o.KeepAlive > 2*idleRestack
			if c.restack {
				// The wait is cut at about idleRestack (restackAfter):
				// a deadline set for an earlier request, between half
				// of it and all of it away, serves, which spares a
				// timer change on most requests of a busy connection.
				if c.rdl.Before(now.Add(idleRestack/2)) || c.rdl.After(now.Add(idleRestack)) {
					c.setReadDeadline(now.Add(idleRestack))
				}
			} else {
				c.setReadDeadline(c.idleUntil)
			}
			c.putState()
		}
		if len(c.buf) > h1ReadBuf {
			// A large head grew the buffer: do not keep it while idle.
			c.buf = *c.bufp
		}
		if c.bufp == nil && (c.served == 0 || c.rawc == nil || c.bw != nil && !c.sendFirst) {
			c.getBuffers() // fill reads into it
		}
		if c.served > 0 && c.rawc != nil && (c.bw == nil || c.sendFirst) {
			// An idle plain connection holds no buffer while it waits
			// for the client (h1idle_linux.go): the goroutine's stack and
			// the connection's state are all it costs.
			if err := c.idleRead(); err != nil {
				c.restackAfter(err)
				return nil, nil, t0, false
			}
		} else if c.served > 0 && c.tls != nil && c.bw == nil {
			// An idle TLS connection holds no buffer of kclb's either.
			if err := c.idleReadTLS(); err != nil {
				c.restackAfter(err)
				return nil, nil, t0, false
			}
		} else if err := c.fill(); err != nil {
			c.restackAfter(err)
			return nil, nil, t0, false
		}
		c.restack = false
		if c.served > 0 {
			// A TLS connection whose held response is still held (the
			// next request was already decrypted) never turned idle.
			held := c.sendFirst
			c.sendFirst = false
			if !c.state.CompareAndSwap(stateIdle, stateActive) && !(held && c.state.Load() == stateActive) {
				return nil, nil, t0, false // Shutdown closed it
			}
		}
	}
	t0 = time.Now()
	if c.entry != nil {
		c.entry.pending.Store(true)
	}
	// The header timeout matters only if the head is not all here yet:
	// it is set before the first read that waits for more of it.
	headDL := c.served == 0
	var provisional time.Time // the header timeout while an earlier deadline stands in
	limit := s.o.MaxHeaderBytes + 4096
	scan := 0
	for {
		end, next := headEnd(c.buf[c.r:c.w], scan)
		if end >= 0 {
			if c.st == nil {
				c.getState()
			}
			// The request's strings share the read buffer, which is not
			// overwritten until the next request (pinned): no copy.
			// Unless the head is all the buffer holds: then they share a
			// copy in the state, and a bodiless request gives the buffer
			// back while it is served (a proxied request waits for its
			// backend meanwhile; a thousand of them hold 4 MiB less).
			var head string
			alone := c.r+end == c.w
			if alone {
				c.st.head = append(c.st.head[:0], c.buf[c.r:c.w]...)
				head = unsafe.String(unsafe.SliceData(c.st.head), end)
			} else {
				head = unsafe.String(&c.buf[c.r], end)
				c.pinned = true
			}
			c.r += end
			c.hend = c.r
			// Requests carry no context (Context returns Background): one
			// that is never canceled, since nothing watches the client
			// while a request is forwarded (see the file comment), and a
			// context without Done costs the backend client nothing.
			r = &c.st.req
			*r = http.Request{}
			if herr = c.st.p.parse(r, head); herr != nil {
				return nil, herr, t0, true
			}
			r.RemoteAddr = c.remote
			c.st.scratch.peer, c.st.scratch.hopFree = c.peer, !c.st.p.hop
			r.TLS = c.tls
			c.st.body.reset(c, r)
			if r.ContentLength == 0 {
				r.Body = http.NoBody
				if alone {
					c.r, c.w = 0, 0
					c.putBuffers()
				}
			} else {
				r.Body = &c.st.body
			}
			return r, nil, t0, true
		}
		scan = next
		if c.w-c.r >= limit {
			return nil, errHeadTooLarge, t0, true
		}
		if !headDL {
			// A deadline already set that comes first (the idle wait's,
			// idleRestack away) stands in for the header timeout, which
			// spares two timer changes per request on TLS connections,
			// whose idle read takes one byte: when it passes before the
			// header timeout, the header timeout is set and the read
			// goes on.
			headDL = true
			hd := t0.Add(s.o.HeaderTimeout)
			if c.rdl.IsZero() || c.rdl.After(hd) {
				c.setReadDeadline(hd)
			} else {
				provisional = hd
			}
		}
		if err := c.fillMax(limit); err != nil {
			if !provisional.IsZero() && isTimeout(err) && time.Now().Before(provisional) {
				c.rerr = nil
				c.setReadDeadline(provisional)
				provisional = time.Time{}
				continue
			}
			return nil, nil, t0, false
		}
	}
}

// armWrite makes sure the write deadline is at least WriteTimeout after
// now. It is set WriteTimeout plus a sixteenth ahead and only moved when
// less than WriteTimeout is left, so a keep-alive connection moves it
// about once every WriteTimeout/16 instead of on every request (a timer
// change per request): a response may take up to 1/16 longer than
// WriteTimeout before its write fails.
func (c *h1conn) armWrite(now time.Time) {
	wt := c.s.o.WriteTimeout
	if c.wdl.Sub(now) >= wt {
		return
	}
	c.wdl = now.Add(wt + wt/16)
	c.nc.SetWriteDeadline(c.wdl)
}

// setReadDeadline sets the connection's read deadline and remembers it.
func (c *h1conn) setReadDeadline(t time.Time) {
	c.rdl = t
	c.nc.SetReadDeadline(t)
}

// refuseHead answers a head net/http's server would refuse and reports
// whether to linger.
func (c *h1conn) refuseHead(e *headError) bool {
	body := fmt.Sprint(e.code) + " " + http.StatusText(e.code)
	if e.code == http.StatusNotImplemented {
		body = "Unsupported transfer encoding"
	}
	c.armWrite(time.Now())
	bw := c.writer()
	bw.Write(appendStatusLine(bw.AvailableBuffer(), e.code, false))
	bw.WriteString("Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: ")
	bw.Write(appendInt(bw.AvailableBuffer(), int64(len(body))))
	bw.WriteString("\r\n\r\n")
	bw.WriteString(body)
	bw.Flush()
	c.s.o.ErrorLog.Debug("refused request head", "remote", c.remote, "err", e)
	return e.code == http.StatusRequestHeaderFieldsTooLarge
}

// idleReadTLS waits for the next request of an idle TLS connection
// without the read buffer: it reads one byte, which makes crypto/tls
// decrypt the record that carries it and keep the rest, then takes the
// buffer (empty, as readRequest leaves it) and puts the byte in it; the
// next fill reads the rest of the record without a system call. It
// keeps the first read error like fill.
func (c *h1conn) idleReadTLS() error {
	if c.rerr != nil {
		return c.rerr
	}
	c.putBuffers()
	var first [1]byte
	n, err := c.nc.Read(first[:])
	c.getBuffers()
	if n > 0 {
		c.buf[0] = first[0]
		c.w = 1
	}
	return c.readDone(n, err)
}

// readDone keeps err, the result of a read that gave n bytes, as the
// connection's read error, and returns it unless bytes came with it (the
// next read returns it then).
func (c *h1conn) readDone(n int, err error) error {
	if err == nil {
		return nil
	}
	c.rerr = err
	if n > 0 {
		return nil
	}
	return err
}

// fill reads more bytes into the buffer (at least one), growing it up to
// the default size. It keeps the first read error.
func (c *h1conn) fill() error { return c.fillMax(0) }

// fillMax is fill with a buffer that may grow up to max bytes.
func (c *h1conn) fillMax(max int) error {
	if c.rerr != nil {
		return c.rerr
	}
	if c.w == len(c.buf) {
		// While a request is served its head (buf[:hend]), which its
		// strings share, stays where it is.
		lo := 0
		if c.pinned {
			lo = c.hend
		}
		if c.r > lo {
			n := copy(c.buf[lo:], c.buf[c.r:c.w])
			c.r, c.w = lo, lo+n
		}
		if c.w == len(c.buf) {
			// Still full: move to a new buffer, larger if the unread
			// bytes fill this one (the old one stays with the head).
			size := len(c.buf)
			if c.w-c.r >= size {
				if size >= max {
					return errLineLong
				}
				size = min(2*size, max)
			}
			nb := make([]byte, size)
			n := copy(nb, c.buf[c.r:c.w])
			c.buf, c.r, c.w, c.hend = nb, 0, n, 0
		}
	}
	if c.bw != nil && c.bw.Buffered() > 0 {
		// A response held back for a pipelined request goes out
		// before waiting for more input.
		if err := c.bw.Flush(); err != nil {
			c.rerr = err
			return err
		}
	}
	n, err := c.sock.Read(c.buf[c.w:])
	c.w += n
	return c.readDone(n, err)
}

// Body reading helpers (h1body).

func (c *h1conn) buffered() int { return c.w - c.r }

func (c *h1conn) lineBuffered() bool {
	return indexByteFrom(c.buf[:c.w], '\n', c.r) >= 0
}

// sendContinue writes the 100 Continue a body read owes the client.
func (c *h1conn) sendContinue(b *h1body) error {
	b.cont = false
	if c.st.resp.committed {
		return nil
	}
	bw := c.writer()
	bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	err := bw.Flush()
	c.releaseWriter()
	return err
}

// readBody reads body bytes into p: buffered ones first, else directly
// from the connection.
func (c *h1conn) readBody(p []byte, b *h1body) (int, error) {
	if c.r < c.w {
		n := copy(p, c.buf[c.r:c.w])
		c.r += n
		return n, nil
	}
	if c.rerr != nil {
		return 0, c.rerr
	}
	if b.cont {
		if err := c.sendContinue(b); err != nil {
			return 0, err
		}
	}
	n, err := c.sock.Read(p)
	if err != nil {
		c.rerr = err
	}
	return n, err
}

// peekN returns the next n buffered bytes, reading as needed.
func (c *h1conn) peekN(n int, b *h1body) ([]byte, error) {
	for c.w-c.r < n {
		if b.cont {
			if err := c.sendContinue(b); err != nil {
				return nil, err
			}
		}
		if err := c.fillMax(maxChunkLine + 8); err != nil {
			return nil, err
		}
	}
	return c.buf[c.r : c.r+n], nil
}

func (c *h1conn) discard(n int) { c.r += n }

// readLine consumes and returns the next line with its LF; errLineLong
// if none ends within max bytes. The slice is valid until the next read.
func (c *h1conn) readLine(max int, b *h1body) ([]byte, error) {
	from := c.r
	for {
		if i := indexByteFrom(c.buf[:c.w], '\n', from); i >= 0 {
			if i+1-c.r > max {
				return nil, errLineLong
			}
			line := c.buf[c.r : i+1]
			c.r = i + 1
			return line, nil
		}
		if c.w-c.r >= max {
			return nil, errLineLong
		}
		from = c.w - c.r
		if b.cont {
			if err := c.sendContinue(b); err != nil {
				return nil, err
			}
		}
		if err := c.fillMax(max + 8); err != nil {
			return nil, err
		}
		from += c.r
	}
}

// headerHasToken reports whether the comma-separated list v holds token
// (ASCII case-insensitive).
func headerHasToken(v, token string) bool {
	for len(v) > 0 {
		var part string
		i := 0
		for i < len(v) && v[i] != ',' {
			i++
		}
		part, v = v[:i], v[min(i+1, len(v)):]
		if asciiEqualFold(trimOWS(part), token) {
			return true
		}
	}
	return false
}

var (
	connCloseVals = []string{"close"}
	zeroVals      = []string{"0"}
)

// handoffListener hands HTTP/2 connections, already past their TLS
// handshake, to the net/http server that serves them.
type handoffListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newHandoffListener() *handoffListener {
	return &handoffListener{addr: handoffAddr{}, ch: make(chan net.Conn), done: make(chan struct{})}
}

// Accept implements net.Listener.
func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr implements net.Listener.
func (l *handoffListener) Addr() net.Addr { return l.addr }

// put passes c to Accept; false once the listener is closed.
func (l *handoffListener) put(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

type handoffAddr struct{}

func (handoffAddr) Network() string { return "tcp" }
func (handoffAddr) String() string  { return "h2-handoff" }

// discardLogger is the default ErrorLog of a Server.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// isTimeout reports whether err is a deadline that passed.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// h1out is the writer behind a connection's write buffer: the
// connection, or its descriptor fd while raw is set (sendHeld).
type h1out struct {
	c   *h1conn
	fd  int
	raw bool
}

// Write implements io.Writer.
func (o *h1out) Write(p []byte) (int, error) {
	if !o.raw {
		return o.c.sock.Write(p)
	}
	return o.rawWrite(p)
}
