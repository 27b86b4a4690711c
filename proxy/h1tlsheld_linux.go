package proxy

import (
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// heldConn is the TCP connection under a TLS client connection of kclb's
// HTTP/1.1 server. It lets the last records of a keep-alive response
// wait, encrypted, for the idle wait that follows (holdForWait), which
// writes them in its first callback and so begins without a read(2)
// that finds nothing, as a plain connection's does (sendHeld).
type heldConn struct {
	net.Conn
	c  *h1conn
	rc syscall.RawConn
	// hold is set while the response's last flush goes through
	// crypto/tls: its records are kept in held instead of written.
	hold bool
	// held is guarded by mu (Server.Close may write the close alert
	// meanwhile); pending is set while it holds records.
	mu      sync.Mutex
	held    []byte
	heldp   *[]byte // held's pooled buffer
	pending atomic.Bool
	// heldWait is set from the held records' send until the next read;
	// first is set until a wait's first callback; sendErr is what the
	// send callback met.
	heldWait bool
	first    bool
	sendErr  error
	sendFn   func(uintptr) bool
	// sock is the socket's own reads and writes (sockRead, sockWrite).
	sock rawSock
}

// heldBufs pools the buffers of held records.
var heldBufs = sync.Pool{New: func() any { b := make([]byte, 0, h1WriteBuf+1024); return &b }}

// newHeldConn wraps nc for c, or returns nil where nc has no descriptor.
func newHeldConn(c *h1conn, nc net.Conn) *heldConn {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	h := &heldConn{Conn: nc, c: c, rc: rc}
	h.sendFn = h.send
	h.sock.init(nc, rc)
	return h
}

// Write implements net.Conn: records are kept while hold is set; held
// ones go first otherwise.
func (h *heldConn) Write(p []byte) (int, error) {
	if h.hold {
		h.mu.Lock()
		if h.heldp == nil {
			h.heldp = heldBufs.Get().(*[]byte)
			h.held = (*h.heldp)[:0]
		}
		h.held = append(h.held, p...)
		h.pending.Store(true)
		h.mu.Unlock()
		return len(p), nil
	}
	if h.pending.Load() {
		// The held records and p leave in one write: the close alert
		// after a response that closes the connection (holdForClose).
		h.mu.Lock()
		h.held = append(h.held, p...)
		h.mu.Unlock()
		if err := h.writeHeld(-1); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return h.sock.Write(p)
}

// Close implements net.Conn.
func (h *heldConn) Close() error {
	h.mu.Lock()
	h.dropHeld()
	h.mu.Unlock()
	return h.Conn.Close()
}

// dropHeld gives the held buffer back; h.mu is held.
func (h *heldConn) dropHeld() {
	h.pending.Store(false)
	if h.heldp != nil {
		if cap(h.held) <= 2*(h1WriteBuf+1024) {
			*h.heldp = h.held[:0]
			heldBufs.Put(h.heldp)
		}
		h.heldp, h.held = nil, nil
	}
}

// writeHeld writes the held records, on fd without blocking when fd is
// not -1 (what the socket cannot take then goes through the connection's
// Write, which waits).
func (h *heldConn) writeHeld(fd int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.held
	var err error
	if fd >= 0 {
		n, werr := sockWriteAll(fd, p)
		p = p[n:]
		if werr != nil && werr != syscall.EAGAIN {
			err = &net.OpError{Op: "write", Net: "tcp", Source: h.LocalAddr(), Addr: h.RemoteAddr(), Err: os.NewSyscallError("write", werr)}
			p = nil
		}
	}
	if len(p) > 0 {
		_, err = h.sock.Write(p)
	}
	h.dropHeld()
	return err
}

// Read implements net.Conn. With records held it writes them and waits
// for the client without a read that finds nothing, then reads; after
// such a wait ended at its deadline, its first read tells whether the
// client had sent bytes all along: bytes at the first attempt were sent
// while the last request was served, and the connection reads before it
// waits from then on (pipelined).
func (h *heldConn) Read(p []byte) (int, error) {
	if !h.hold && h.pending.Load() {
		h.first, h.sendErr = true, nil
		err := h.rc.Read(h.sendFn)
		if h.sendErr != nil {
			return 0, h.sendErr
		}
		if err != nil {
			return 0, err
		}
		h.heldWait = false // woken by bytes that came after the wait began
	} else if h.heldWait && len(p) > 0 {
		h.heldWait = false
		n, err := h.sock.Read(p)
		if n > 0 && h.sock.tries == 1 {
			h.c.pipelined = true
		}
		return n, err
	}
	return h.sock.Read(p)
}

// send is the RawConn callback of Read with records held: the first
// call writes them and turns the connection idle, then waits; the next
// one (readiness) ends the wait.
func (h *heldConn) send(fd uintptr) bool {
	if !h.first {
		return true
	}
	h.first = false
	if err := h.writeHeld(int(fd)); err != nil {
		h.sendErr = err
		return true
	}
	h.c.held++
	h.heldWait = true
	if !h.c.state.CompareAndSwap(stateActive, stateIdle) {
		h.sendErr = net.ErrClosed
		return true
	}
	return false
}

// holdForClose reports whether the response w, whole in the write
// buffer of a TLS connection that closes after it, was kept by c.tcp, so
// that it leaves with the close_notify alert (crypto/tls writes it on
// Close) in one write(2) instead of two. Only a response whose body fits
// the write buffer is held: the alert is written under crypto/tls's 5 s
// deadline for it, not WriteTimeout, and a socket buffer takes a small
// response at once, while the tail of a large one may wait for a slow
// client.
func (c *h1conn) holdForClose(w *h1response) bool {
	if c.tcp == nil || w.written >= h1WriteBuf || !(w.closeAfter || w.reqClose || c.s.closing.Load()) {
		return false
	}
	if err := c.holdTLS(); err != nil {
		w.werr = err
	}
	return true
}

// holdTLS flushes the write buffer of a TLS connection with its records
// held by c.tcp (holdForWait).
func (c *h1conn) holdTLS() error {
	c.tcp.hold = true
	err := c.bw.Flush()
	c.tcp.hold = false
	return err
}
