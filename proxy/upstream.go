package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// upstream is kclb's HTTP/1.1 client for backend servers, used by the
// Handler instead of net/http's Transport. It keeps, per backend address,
// a LIFO stack of idle keep-alive connections and runs every exchange on
// the calling goroutine: the request is written, then the response head
// is read, and the connection goes back to the stack when the caller
// reads the response body to a clean end. No goroutine runs per
// connection or per request.
//
// A request whose body may not fit the socket buffers (a known length
// above BufferSize, or an unknown length) is the exception: while the
// calling goroutine sends the body, a short-lived goroutine reads the
// response head, so an answer the backend gives before it has read the
// whole body (a 413, then a close, as servers do when a body exceeds
// their limit) is returned instead of the write error its close causes;
// the rest of the body is then not sent and the connection is not reused.
//
// A failure that leaves the backend's answer unknown is wrapped with
// errNoResponse when it happened on a new connection before any byte of
// a response arrived (reset or closed after the connect): the one sign,
// besides a failed connect, that the node itself is unreachable.
//
// A request that fails on a reused connection before the backend
// answered a byte is tried once more on a new connection when nothing of
// its body was consumed (and, once the request was written, only for
// idempotent methods): that is how a bodiless idempotent request (most
// of Keycloak's traffic) meets a connection the backend closed while it
// was idle. Any other request cannot be sent again once written, so the
// pooled connection it takes is first checked with a non-blocking peek
// (one system call) and skipped if the backend closed it.
//
// An upstream is safe for concurrent use.
type upstream struct {
	opts   upstreamOptions
	dialer net.Dialer

	// pools maps a backend address (host:port) to its *hostPool.
	pools sync.Map

	// janitor closes idle connections older than IdleTimeout; it is
	// armed while any connection is idle.
	janitor *time.Timer
	armed   atomic.Bool

	readers, writers sync.Pool
	heads            sync.Pool // *[]byte: bodiless request heads (exchangeHead)
}

// upstreamOptions configures an upstream. Zero fields take the defaults
// named.
type upstreamOptions struct {
	// ConnectTimeout bounds dialing a backend. Default 5 s.
	ConnectTimeout time.Duration
	// HeaderTimeout bounds the wait for the response head after the
	// request was written, and every write of a request body. Default
	// 50 s.
	HeaderTimeout time.Duration
	// IdleTimeout closes connections idle for longer. Default 90 s.
	IdleTimeout time.Duration
	// MaxIdlePerServer bounds the idle connections kept per address.
	// Default 512.
	MaxIdlePerServer int
	// MaxResponseHeaderBytes bounds the bytes of a response head (each
	// 1xx head gets the same allowance). Default 1 MiB.
	MaxResponseHeaderBytes int64
	// BufferSize is the size of the pooled read and write buffers.
	// Default 16 KiB.
	BufferSize int
	// now returns the current time; tests replace it. Default time.Now.
	now func() time.Time
	// scope names the response fields the Handler's Router edits
	// (ResponseFielder): a listed head keeps them in its header map.
	scope []string
}

// max1xx bounds the informational responses skipped before the final one.
const max1xx = 5

// errHeaderLimit is returned by an upConn read once the response head
// has used its byte allowance.
var errHeaderLimit = errors.New("proxy: response header byte limit reached")

// errBodyClosed is returned by reads from a response body after Close or
// after a failed read.
var errBodyClosed = errors.New("proxy: read on closed response body")

// aLongTimeAgo is a deadline in the past: setting it fails pending I/O.
var aLongTimeAgo = time.Unix(1, 0)

// errNoResponse wraps the error of an exchange on a new connection that
// the backend reset or closed before sending any byte of a response. It
// is the only exchange failure that says the node is unreachable (the
// proxy counts it, like a failed connect, against the server's health).
var errNoResponse = errors.New("connection failed before any response byte")

// errEarlyResponse is returned by writes of a request body once the
// backend's final response head arrived: the rest is not sent.
var errEarlyResponse = errors.New("proxy: backend answered before the request body was sent")

func newUpstream(o upstreamOptions) *upstream {
	setDefault(&o.ConnectTimeout, DefaultConnectTimeout)
	setDefault(&o.HeaderTimeout, DefaultServerTimeout)
	setDefault(&o.IdleTimeout, DefaultIdleTimeout)
	setDefault(&o.MaxIdlePerServer, DefaultMaxIdlePerServer)
	setDefault(&o.MaxResponseHeaderBytes, DefaultMaxResponseHeaderBytes)
	setDefault(&o.BufferSize, 16<<10)
	if o.now == nil {
		o.now = time.Now
	}
	u := &upstream{
		opts:   o,
		dialer: net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second},
	}
	size := o.BufferSize
	u.readers.New = func() any { return bufio.NewReaderSize(nil, size) }
	u.heads.New = func() any { b := make([]byte, 0, 4<<10); return &b }
	u.writers.New = func() any { return bufio.NewWriterSize(nil, size) }
	u.janitor = time.AfterFunc(time.Hour, u.prune)
	u.janitor.Stop()
	return u
}

// hostPool holds the idle connections to one backend address.
type hostPool struct {
	addr string

	mu   sync.Mutex // guards idle
	idle []*upConn  // a stack: the most recently used connection last
}

// upConn is one connection to a backend. Its fields other than nc are
// used only by the goroutine that owns the connection (the one running
// an exchange or reading its response body), or under hostPool.mu while
// the connection is idle.
type upConn struct {
	nc     net.Conn
	rc     syscall.RawConn // for the stale-connection peek; nil if unavailable
	sock   rawSock         // nc's reads and writes (sockio_linux.go)
	hp     *hostPool
	idleAt time.Time
	reused bool // an earlier exchange on it completed

	nread     int64 // bytes read in the current exchange
	limit     int64 // bytes the response head may still read; <0: no limit
	limitHit  bool  // the response head ran into limit
	writeTime time.Duration
	werr      error // the first failed write of the current exchange

	// While a body streams, the head reader owns nread, limit and
	// limitHit; it reads r's response from br, reports on headc (made on
	// first use) and sets early when a final head arrived, which stops
	// further body writes. headFn is c.readHeadAsync, bound once, so that
	// starting the reader allocates nothing.
	early  atomic.Bool
	headc  chan headResult
	headFn func()
	u      *upstream
	br     *bufio.Reader
	r      *http.Request

	// fast is the reusable response state of fastHead (upstream_fast.go),
	// made on first use.
	fast *upFast
	// wantList asks fastHead for a listed final head (upFast.listed):
	// set per request by roundTrip, as is began, the request's start
	// (zero if unknown or the connection is new).
	wantList bool
	began    time.Time
	// rdl is the read deadline last set by its owner (setReadDeadline;
	// abort's, from another goroutine, is not recorded: an aborted
	// connection is closed). The response-head deadline stays set after
	// a response read from the buffer alone, so most requests change no
	// timer (headDeadline).
	rdl time.Time
	// aborted is set by abort; a body read that moves the read deadline
	// checks it afterwards so that it cannot undo an abort.
	aborted atomic.Bool

	abortFn func()             // c.abort, bound once
	peekFn  func(uintptr) bool // c.peek, bound once
	peekBuf [1]byte
	peekOK  bool // result of the last peek: open and nothing to read

	// While awaitResponse waits, rawFD is the socket its reader reads
	// with read(2) (-1 otherwise), awaitFn is c.awaitReadable, bound
	// once, and awaitBR the reader taken for the current attempt.
	// pendErr is an error a raw read met, returned by the next Read.
	rawFD  int
	unsent []byte // a request head the wait's first callback writes (exchangeHead)
	// headBuf is the pooled buffer unsent was written into; the wait
	// gives it back (releaseHead) as soon as the head is all sent, so a
	// request waiting for its backend holds no 4 KiB head buffer.
	headBuf *[]byte
	// readAfterSend makes that callback read right after the write, as
	// a wait without a head to send does: set for a connection idle
	// longer than quietIdle, where the backend may have written (a 408,
	// a close) before the wait began, so no new readiness would come.
	readAfterSend bool
	awaitFn       func(uintptr) bool
	awaitBR       *bufio.Reader
	pendErr       error
}

// Read reads from the connection, enforcing the response-head limit and
// counting bytes.
func (c *upConn) Read(p []byte) (int, error) {
	if err := c.pendErr; err != nil {
		c.pendErr = nil
		return 0, err
	}
	if c.limit >= 0 {
		if c.limit == 0 {
			c.limitHit = true
			return 0, errHeaderLimit
		}
		if int64(len(p)) > c.limit {
			p = p[:c.limit]
		}
	}
	var n int
	var err error
	if c.rawFD >= 0 {
		n, err = c.rawRead(p)
	} else {
		n, err = c.sock.Read(p)
	}
	c.nread += int64(n)
	if c.limit >= 0 {
		c.limit -= int64(n)
	}
	return n, err
}

// Write writes to the connection, refreshing the write deadline first
// while a request body is being sent. Once the backend's answer arrived
// (early is set) it fails with errEarlyResponse: the deadline is set
// before early is read, and the head reader sets early before it moves
// the deadline into the past, so a write never outlives the answer.
func (c *upConn) Write(p []byte) (int, error) {
	if c.writeTime > 0 {
		c.nc.SetWriteDeadline(time.Now().Add(c.writeTime))
		if c.early.Load() {
			c.werr = errEarlyResponse
			return 0, errEarlyResponse
		}
	}
	n, err := c.sock.Write(p)
	if err != nil && c.werr == nil {
		c.werr = err
	}
	return n, err
}

// headResult is what the head reader of a streaming exchange found.
type headResult struct {
	resp *http.Response
	err  error
}

// abort fails the connection's pending and future I/O; it runs when the
// request's context is done.
func (c *upConn) abort() {
	c.aborted.Store(true)
	c.nc.SetDeadline(aLongTimeAgo)
}

func (c *upConn) close() { c.nc.Close() }

// setReadDeadline sets the connection's read deadline and records it.
func (c *upConn) setReadDeadline(t time.Time) {
	c.rdl = t
	c.nc.SetReadDeadline(t)
}

// RoundTrip implements http.RoundTripper. It sends r to r.URL.Host over
// HTTP/1.1 (r.Host, if set, names the Host header) and returns the
// response, whose Body must be closed. Dial failures are returned as the
// dialer's *net.OpError (Op "dial").
func (u *upstream) RoundTrip(r *http.Request) (*http.Response, error) {
	return u.roundTrip(r, nil, nil, nil, false, time.Time{})
}

// roundTrip is RoundTrip; when hints is not nil, every 103 (Early Hints)
// the backend sends before its final response is passed on to it
// (sendEarlyHints). When dialed is not nil, the time spent opening
// connections is added to it (the access log's connect time). When head
// is not nil, the strings of a response head parsed in place share the
// memory of *head (grown as needed) instead of a new string: the caller
// owns it until it no longer uses the response's header, status or any
// string taken from them (fastHead). With list, a common final head may
// come listed (upFast.listed): its header map holds only the fields in
// the scope, and the caller writes the others from the list. now, if
// not zero, is when the request began, which a pooled connection's
// checks and head deadline take instead of reading the clock.
func (u *upstream) roundTrip(r *http.Request, hints http.ResponseWriter, dialed *time.Duration, head *[]byte, list bool, now time.Time) (*http.Response, error) {
	if r.URL == nil || r.URL.Host == "" {
		return nil, errors.New("proxy: upstream request without a host")
	}
	if r.URL.Scheme != "http" && r.URL.Scheme != "" {
		return nil, fmt.Errorf("proxy: upstream speaks plain HTTP only, not %q", r.URL.Scheme)
	}
	ctx := r.Context()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("proxy: request to %s: %w", r.URL.Host, err)
	}
	hp := u.pool(r.URL.Host)
	// A request the retry below can send again needs no check before a
	// pooled connection is reused.
	check := !idempotent(r.Method) || (r.Body != nil && r.Body != http.NoBody)
	for attempt := 0; ; attempt++ {
		var c *upConn
		if attempt == 0 {
			c = u.get(hp, check, now)
		}
		if c != nil {
			c.began = now // pooled: no dial came between the request's start and its head
		} else {
			var t0 time.Time
			if dialed != nil {
				t0 = time.Now()
			}
			var err error
			c, err = u.dial(ctx, hp)
			if dialed != nil {
				*dialed += time.Since(t0)
			}
			if err != nil {
				return nil, err
			}
		}
		c.wantList = list
		resp, retry, err := u.exchange(ctx, c, r, hints, head)
		if err == nil {
			return resp, nil
		}
		if !retry || attempt > 0 || ctx.Err() != nil {
			return nil, err
		}
	}
}

// CloseIdleConnections closes every idle connection. Connections in use
// are pooled again when their exchange completes cleanly.
func (u *upstream) CloseIdleConnections() {
	u.janitor.Stop()
	u.armed.Store(false)
	u.pools.Range(func(_, v any) bool {
		hp := v.(*hostPool)
		hp.mu.Lock()
		idle := hp.idle
		hp.idle = nil
		hp.mu.Unlock()
		for _, c := range idle {
			c.close()
		}
		return true
	})
}

func (u *upstream) pool(addr string) *hostPool {
	if v, ok := u.pools.Load(addr); ok {
		return v.(*hostPool)
	}
	v, _ := u.pools.LoadOrStore(addr, &hostPool{addr: addr})
	return v.(*hostPool)
}

// get pops the most recently used idle connection that is not expired
// and, if check is set, not closed by the backend; or returns nil. now
// is the caller's recent reading of the clock, if it has one.
func (u *upstream) get(hp *hostPool, check bool, now time.Time) *upConn {
	for {
		hp.mu.Lock()
		n := len(hp.idle)
		if n == 0 {
			hp.mu.Unlock()
			return nil
		}
		c := hp.idle[n-1]
		hp.idle[n-1] = nil
		hp.idle = hp.idle[:n-1]
		hp.mu.Unlock()
		if now.IsZero() {
			now = u.opts.now()
		}
		idle := now.Sub(c.idleAt)
		if check && !c.rdl.IsZero() && !time.Now().Before(c.rdl) {
			// The head deadline kept from its last exchange passed while
			// it was idle: cleared, or the check's read would fail on it.
			c.setReadDeadline(time.Time{})
		}
		if idle > u.opts.IdleTimeout || (check && !c.alive()) {
			c.close()
			continue
		}
		c.readAfterSend = idle > quietIdle
		return c
	}
}

// put makes c idle, or closes it when its pool is full.
func (u *upstream) put(c *upConn) {
	c.idleAt = u.opts.now()
	c.reused = true
	hp := c.hp
	hp.mu.Lock()
	if len(hp.idle) >= u.opts.MaxIdlePerServer {
		hp.mu.Unlock()
		c.close()
		return
	}
	hp.idle = append(hp.idle, c)
	hp.mu.Unlock()
	if !u.armed.Load() && u.armed.CompareAndSwap(false, true) {
		u.janitor.Reset(u.opts.IdleTimeout)
	}
}

// prune closes the idle connections older than IdleTimeout and re-arms
// the janitor while any remain.
func (u *upstream) prune() {
	u.armed.Store(false)
	now := u.opts.now()
	remain := false
	var expired []*upConn
	u.pools.Range(func(_, v any) bool {
		hp := v.(*hostPool)
		hp.mu.Lock()
		i := 0 // the stack is ordered by idleAt, oldest first
		for i < len(hp.idle) && now.Sub(hp.idle[i].idleAt) > u.opts.IdleTimeout {
			i++
		}
		if i > 0 {
			expired = append(expired, hp.idle[:i]...)
			n := copy(hp.idle, hp.idle[i:])
			clear(hp.idle[n:])
			hp.idle = hp.idle[:n]
		}
		remain = remain || len(hp.idle) > 0
		hp.mu.Unlock()
		return true
	})
	for _, c := range expired {
		c.close()
	}
	if remain && u.armed.CompareAndSwap(false, true) {
		u.janitor.Reset(u.opts.IdleTimeout / 2)
	}
}

func (u *upstream) dial(ctx context.Context, hp *hostPool) (*upConn, error) {
	// The dial runs on a goroutine of its own, waited for here: the
	// resolver and connect path is deep, and the request's goroutine
	// would keep the stack it grew (twice the 4 KiB forwarding needs)
	// for as long as its client connection lives.
	type dialed struct {
		nc  net.Conn
		err error
	}
	done := make(chan dialed, 1)
	go func() {
		nc, err := u.dialer.DialContext(ctx, "tcp", hp.addr)
		done <- dialed{nc, err}
	}()
	d := <-done
	nc, err := d.nc, d.err
	if err != nil {
		return nil, err
	}
	c := &upConn{nc: nc, hp: hp, limit: -1, rawFD: -1}
	if sc, ok := nc.(syscall.Conn); ok {
		c.rc, _ = sc.SyscallConn()
	}
	c.sock.init(nc, c.rc)
	c.awaitFn = c.awaitReadable
	c.abortFn = c.abort
	c.peekFn = c.peek
	c.headFn = c.readHeadAsync
	c.u = u
	return c, nil
}

// exchange sends r over c and reads the response head. On failure c is
// closed, and retry reports whether r may be sent again on a new
// connection.
func (u *upstream) exchange(ctx context.Context, c *upConn, r *http.Request, hints http.ResponseWriter, head *[]byte) (resp *http.Response, retry bool, err error) {
	stop := afterFunc(ctx, c.abortFn)
	c.werr, c.nread, c.limitHit, c.pendErr = nil, 0, false, nil
	c.early.Store(false)
	hasBody := r.Body != nil && r.Body != http.NoBody
	if hasBody && (r.ContentLength <= 0 || r.ContentLength > int64(u.opts.BufferSize)) {
		// A length of 0 with a body is unknown, as in Request.Write.
		return u.exchangeStreaming(ctx, c, r, stop)
	}
	if !hasBody {
		hb := u.heads.Get().(*[]byte)
		b, ok := appendHead((*hb)[:0], r)
		*hb = b
		if ok {
			c.headBuf = hb
			return u.exchangeHead(ctx, c, r, hints, head, stop, b)
		}
		u.heads.Put(hb)
	}
	if hasBody {
		c.writeTime = u.opts.HeaderTimeout
	}
	bw := u.writers.Get().(*bufio.Writer)
	bw.Reset(c)
	err = r.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	u.writers.Put(bw)
	if hasBody {
		c.writeTime = 0
		if err == nil {
			err = c.nc.SetWriteDeadline(time.Time{})
		}
	}
	if err != nil {
		retry, err = u.failed(ctx, c, r, stop, err, nil)
		return nil, retry, err
	}

	u.headDeadline(ctx, c, time.Time{})
	c.limit = u.opts.MaxResponseHeaderBytes // what the wait reads is the head's
	return u.awaitHead(ctx, c, r, hints, head, stop, c.awaitResponse())
}

// quietIdle is how long a pooled connection may have been idle for its
// wait to skip the read after sending the head (readAfterSend): a
// backend writes on an idle connection only once its own idle timeout
// ends it, seconds later.
const quietIdle = 500 * time.Millisecond

// releaseHead gives the pooled request-head buffer back once nothing
// of it is left to send.
func (c *upConn) releaseHead() {
	if c.headBuf != nil {
		c.unsent = nil
		c.u.heads.Put(c.headBuf)
		c.headBuf = nil
	}
}

// exchangeHead is exchange for a bodiless request whose head appendHead
// wrote to b. The head is sent by the wait for the response itself
// (awaitResponse, on Linux): the first call of its read callback writes
// it, so the read that would only find nothing yet (EAGAIN) before the
// goroutine parks is not made; the answer cannot come before the
// request, so no readiness is missed. Whatever that write leaves (a
// full socket buffer, another platform) is written as usual and then
// waited for. b is in c.headBuf, which the wait gives back once b is all
// sent (releaseHead), or else exchangeHead once the head is sent or
// failed: before the response is read, since a response without a
// body releases c to the pool, where another exchange may take it.
func (u *upstream) exchangeHead(ctx context.Context, c *upConn, r *http.Request, hints http.ResponseWriter, head *[]byte, stop func() bool, b []byte) (*http.Response, bool, error) {
	u.headDeadline(ctx, c, c.began)
	c.limit = u.opts.MaxResponseHeaderBytes
	c.unsent = b
	br := c.awaitResponse()
	if c.werr == nil && len(c.unsent) > 0 {
		_, err := c.Write(c.unsent)
		c.releaseHead()
		if err == nil {
			br.Reset(nil)
			u.readers.Put(br)
			br = c.awaitResponse()
		}
	}
	c.releaseHead()
	if err := c.werr; err != nil {
		br.Reset(nil)
		u.readers.Put(br)
		retry, err := u.failed(ctx, c, r, stop, err, nil)
		return nil, retry, err
	}
	return u.awaitHead(ctx, c, r, hints, head, stop, br)
}

// awaitHead reads the response head of r from br, the reader
// awaitResponse returned once the request was sent.
func (u *upstream) awaitHead(ctx context.Context, c *upConn, r *http.Request, hints http.ResponseWriter, head *[]byte, stop func() bool, br *bufio.Reader) (resp *http.Response, retry bool, err error) {
	resp, err = u.readHead(c, br, r, hints, head)
	if err == nil {
		if fb, ok := resp.Body.(*upFastBody); !ok || fb.remain > int64(br.Buffered()) {
			// The body needs reads of its own: no head deadline over
			// them (a fast body sets one per wait, an upBody has its
			// timer). A body all in the buffer keeps it.
			c.setReadDeadline(time.Time{})
		}
		if cerr := ctx.Err(); cerr != nil {
			// The abort may have run before the deadline was cleared.
			err = cerr
		}
	}
	if err != nil {
		br.Reset(nil)
		u.readers.Put(br)
		retry, err = u.failed(ctx, c, r, stop, nil, err)
		return nil, retry, err
	}
	if resp.StatusCode == http.StatusRequestTimeout && c.readAfterSend && idempotent(r.Method) && (r.Body == nil || r.Body == http.NoBody) {
		// A connection idle for a while answered at once with a 408:
		// the backend ended it for idleness as the request went out
		// (nginx, Apache and Jetty write a 408 when they do). That is a
		// connection closed while idle, not an answer to r, which may
		// go again on a new connection.
		br.Reset(nil)
		u.readers.Put(br)
		stop()
		c.close()
		return nil, true, fmt.Errorf("proxy: read response from %s: %w", c.hp.addr, errStale408)
	}
	return u.started(c, r, resp, br, stop, true), false, nil
}

// errStale408 is a 408 read on a connection that had been idle: the
// backend closing it for idleness (awaitHead).
var errStale408 = errors.New("408 on a connection idle until the request (closed for idleness)")

// exchangeStreaming is exchange for a request whose body may not fit the
// socket buffers: the head is read on another goroutine while the body
// is sent, so an early answer is seen at once and ends the upload. The
// goroutine has ended when exchangeStreaming returns. 103 (Early Hints)
// are not passed on here: the client's ResponseWriter is not written
// while its request body is being read.
func (u *upstream) exchangeStreaming(ctx context.Context, c *upConn, r *http.Request, stop func() bool) (*http.Response, bool, error) {
	if c.headc == nil {
		c.headc = make(chan headResult, 1)
	}
	if !c.rdl.IsZero() {
		// A head deadline kept from the last exchange must not cut the
		// head reader's wait while the body is still being sent.
		c.setReadDeadline(time.Time{})
	}
	br := u.readers.Get().(*bufio.Reader)
	br.Reset(c)
	c.br, c.r = br, r
	go c.headFn()

	c.writeTime = u.opts.HeaderTimeout
	bw := u.writers.Get().(*bufio.Writer)
	bw.Reset(c)
	werr := r.Write(bw)
	if werr == nil {
		werr = bw.Flush()
	}
	bw.Reset(nil)
	u.writers.Put(bw)
	c.writeTime = 0

	var ne net.Error
	switch {
	case werr == nil:
		// The response-head timeout starts now, as on the plain path.
		u.headDeadline(ctx, c, time.Time{})
	case c.early.Load():
		// The head is in: the reader is done or about to be.
	case c.werr == nil, errors.As(c.werr, &ne) && ne.Timeout():
		// The client's body failed, or the backend stopped reading for
		// the whole timeout without answering: stop waiting.
		c.setReadDeadline(aLongTimeAgo)
	default:
		// The connection failed (the backend reset or closed it): an
		// answer it sent before is still readable, and anything else
		// fails at once. The deadline is only a backstop.
		u.headDeadline(ctx, c, time.Time{})
	}
	res := <-c.headc
	c.nc.SetWriteDeadline(time.Time{})
	rerr := res.err
	if rerr == nil {
		c.setReadDeadline(time.Time{})
		if cerr := ctx.Err(); cerr != nil {
			rerr = cerr
		}
	}
	if rerr != nil {
		br.Reset(nil)
		u.readers.Put(br)
		retry, err := u.failed(ctx, c, r, stop, werr, rerr)
		return nil, retry, err
	}
	// An answer that came before the whole body was sent leaves the
	// connection's framing unknown: it is closed after the response.
	return u.started(c, r, res.resp, br, stop, werr == nil), false, nil
}

// headDeadline starts the wait for the response head. A context abort
// that ran before is repeated, since the new deadline replaced its own.
func (u *upstream) headDeadline(ctx context.Context, c *upConn, now time.Time) {
	// At least HeaderTimeout from now and at most a sixteenth more: a
	// deadline kept from an earlier exchange in that range serves, so a
	// busy connection changes its timer about once every HeaderTimeout/16
	// (as the client side's armWrite), not on every request. now is the
	// caller's recent reading of the clock, if it has one.
	ht := u.opts.HeaderTimeout
	if now.IsZero() {
		now = time.Now()
	}
	if want := now.Add(ht); c.rdl.Before(want) || c.rdl.After(want.Add(ht/16)) {
		c.setReadDeadline(want.Add(ht / 16))
	}
	if ctx.Err() != nil {
		c.abort()
	}
}

// readHeadAsync is the head reader of exchangeStreaming.
func (c *upConn) readHeadAsync() {
	resp, err := c.u.readHead(c, c.br, c.r, nil, nil)
	c.br, c.r = nil, nil
	if err == nil {
		c.early.Store(true)
		c.nc.SetWriteDeadline(aLongTimeAgo) // fails a write blocked on a backend that stopped reading
	}
	c.headc <- headResult{resp: resp, err: err}
}

// readHead reads the final response head from br, skipping up to max1xx
// informational responses, each within MaxResponseHeaderBytes; 103s go
// to hints when it is not nil (sendEarlyHints).
func (u *upstream) readHead(c *upConn, br *bufio.Reader, r *http.Request, hints http.ResponseWriter, head *[]byte) (*http.Response, error) {
	defer func() { c.limit = -1 }()
	for n1xx := 0; ; n1xx++ {
		if n1xx > 0 || c.limit < 0 {
			// The first head's allowance may have been set before
			// awaitResponse read its first bytes.
			c.limit = u.opts.MaxResponseHeaderBytes
		}
		resp, ok := u.fastHead(c, br, r, head)
		if !ok {
			var err error
			if resp, err = http.ReadResponse(br, r); err != nil {
				return nil, err
			}
		}
		code := resp.StatusCode
		if code >= 200 || code == http.StatusSwitchingProtocols {
			return resp, nil
		}
		if code < 100 || n1xx == max1xx {
			return nil, fmt.Errorf("unexpected status %d", code)
		}
		if code == http.StatusEarlyHints && hints != nil {
			sendEarlyHints(hints, resp.Header)
		}
	}
}

// failed ends an exchange that got no response: c is closed, and it
// returns the error to report and whether r may be sent again on a new
// connection. werr is the error that ended the request write (nil if it
// was written), rerr the one that ended the wait for the head (nil if
// none was waited for).
func (u *upstream) failed(ctx context.Context, c *upConn, r *http.Request, stop func() bool, werr, rerr error) (bool, error) {
	stop()
	c.close()
	addr := c.hp.addr
	if cerr := ctx.Err(); cerr != nil {
		if werr != nil && rerr == nil {
			return false, fmt.Errorf("proxy: write request to %s: %w", addr, cerr)
		}
		return false, fmt.Errorf("proxy: read response from %s: %w", addr, cerr)
	}
	if c.limitHit {
		return false, fmt.Errorf("proxy: response headers from %s exceed %d bytes", addr, u.opts.MaxResponseHeaderBytes)
	}
	// Nothing came back and the connection broke: on a new connection
	// that says the node is unreachable; on a reused one the backend may
	// just have closed it while idle, and r may go again.
	broken := func(err error) bool {
		return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
			errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
	}
	connWrite := werr != nil && c.werr != nil && !errors.Is(c.werr, errEarlyResponse)
	if connWrite && (rerr == nil || c.nread == 0) {
		// The write failed on the connection, and no answer was read.
		var ne net.Error
		if !c.reused && c.nread == 0 && !(errors.As(werr, &ne) && ne.Timeout()) {
			return false, fmt.Errorf("proxy: write request to %s: %w: %w", addr, errNoResponse, werr)
		}
		return c.reused && !bodyConsumed(r), fmt.Errorf("proxy: write request to %s: %w", addr, werr)
	}
	if werr != nil && rerr == nil {
		return false, fmt.Errorf("proxy: write request to %s: %w", addr, werr)
	}
	if c.nread == 0 && broken(rerr) {
		if !c.reused {
			return false, fmt.Errorf("proxy: read response from %s: %w: %w", addr, errNoResponse, rerr)
		}
		return !bodyConsumed(r) && idempotent(r.Method), fmt.Errorf("proxy: read response from %s: %w", addr, rerr)
	}
	if werr != nil && c.werr == nil {
		// The client's body failed and the wait for an answer was cut
		// short: report the body's error.
		return false, fmt.Errorf("proxy: write request to %s: %w", addr, werr)
	}
	return false, fmt.Errorf("proxy: read response from %s: %w", addr, rerr)
}

// started hands out the response whose head was read from br: the body
// keeps c until it is read to the end or closed. reusable is false when
// the request was not completely written.
func (u *upstream) started(c *upConn, r *http.Request, resp *http.Response, br *bufio.Reader, stop func() bool, reusable bool) *http.Response {
	reusable = reusable && !resp.Close && !r.Close
	if fb, ok := resp.Body.(*upFastBody); ok {
		fb.stop, fb.reusable = stop, reusable
		return resp
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		stop()
		resp.Body = &switchedBody{br: br, c: c}
		return resp
	}
	if resp.Body == http.NoBody {
		reusable = reusable && br.Buffered() == 0
		br.Reset(nil)
		u.readers.Put(br)
		u.release(c, stop, reusable)
		return resp
	}
	resp.Body = &upBody{rc: resp.Body, u: u, c: c, br: br, stop: stop, reusable: reusable}
	return resp
}

// afterFunc is context.AfterFunc, free for a context that is never done.
func afterFunc(ctx context.Context, f func()) (stop func() bool) {
	if ctx.Done() == nil {
		return neverStarted
	}
	return context.AfterFunc(ctx, f)
}

// neverStarted is the stop function of an AfterFunc that cannot run.
func neverStarted() bool { return true }

// release ends an exchange on c: the connection is pooled if reusable
// and its context abort did not start, closed otherwise.
func (u *upstream) release(c *upConn, stop func() bool, reusable bool) {
	if stop() && reusable {
		u.put(c)
		return
	}
	c.close()
}

// bodyConsumed reports whether any byte of r's body may have been read,
// so that r cannot be sent again.
func bodyConsumed(r *http.Request) bool {
	switch b := r.Body.(type) {
	case nil:
		return false
	case *retryBody:
		return b.read.Load()
	}
	return r.Body != http.NoBody
}

// Body states.
const (
	bodyOpen int32 = iota
	bodyEOF
	bodyClosed
)

// upBody is a response body that gives its connection back to the pool
// at a clean end and closes it on Close before the end or on an error.
// Close may be called concurrently with Read (it fails the read).
type upBody struct {
	rc       io.ReadCloser // ReadResponse's body; its Close is never called (it would drain)
	u        *upstream
	c        *upConn
	br       *bufio.Reader
	stop     func() bool
	reusable bool
	state    atomic.Int32
}

func (b *upBody) Read(p []byte) (int, error) {
	switch b.state.Load() {
	case bodyEOF:
		return 0, io.EOF
	case bodyClosed:
		return 0, errBodyClosed
	}
	n, err := b.rc.Read(p)
	if err == nil {
		return n, nil
	}
	eof := err == io.EOF
	next := bodyClosed
	if eof {
		next = bodyEOF
	}
	if b.state.CompareAndSwap(bodyOpen, next) {
		// Only this goroutine reads: the buffer can be reused.
		reusable := eof && b.reusable && b.br.Buffered() == 0
		b.br.Reset(nil)
		b.u.readers.Put(b.br)
		b.u.release(b.c, b.stop, reusable)
	}
	return n, err
}

// Close implements io.Closer. Before the end of the body it closes the
// connection; after, it does nothing.
func (b *upBody) Close() error {
	if b.state.CompareAndSwap(bodyOpen, bodyClosed) {
		b.stop()
		b.c.close()
	}
	return nil
}

// switchedBody is the body of a 101 response: the connection itself,
// never pooled again.
type switchedBody struct {
	br *bufio.Reader
	c  *upConn
}

func (b *switchedBody) Read(p []byte) (int, error)  { return b.br.Read(p) }
func (b *switchedBody) Write(p []byte) (int, error) { return b.c.nc.Write(p) }
func (b *switchedBody) Close() error                { return b.c.nc.Close() }
