package proxy

import (
	"io"
	"net"
	"os"
	"syscall"
)

// idleWait is true where an idle connection can wait for its client
// without a read buffer.
const idleWait = true

// idleRead waits until the client sends its next request, closes the
// connection or the read deadline passes, holding no buffer while it
// waits: the pooled read buffer is taken for each read attempt and given
// back when the attempt finds nothing (EAGAIN), so an idle connection
// costs its goroutine and its state only. A response held for it
// (sendFirst) is written first and the wait needs no read that finds
// nothing: one read(2) per request. Otherwise it costs the system calls
// of a plain read (one when bytes are there, one more per wait).
func (c *h1conn) idleRead() error {
	c.idleErr, c.idleFirst = nil, true
	if err := c.rawc.Read(c.readableFn); err != nil {
		// A response still held (the wait could not begin) is written
		// when the connection closes.
		c.sendFirst = false
		if c.buf == nil {
			c.getBuffers()
		}
		return err
	}
	return c.idleErr
}

// readable is the syscall.RawConn callback of idleRead: the held
// response if there is one, then one read(2) per call into the buffer,
// taken for the attempt. EAGAIN means wait for readiness (the poller was
// reset before the first call, so no edge is missed) and the buffer goes
// back to its pool meanwhile.
func (c *h1conn) readable(fd uintptr) bool {
	first := c.idleFirst
	c.idleFirst = false
	if c.sendFirst {
		return !c.sendHeld(fd) // waits unless it failed (idleErr)
	}
	if c.buf == nil {
		c.getBuffers()
	}
	for {
		n, errno := sockRead(int(fd), c.buf[c.w:])
		switch {
		case errno == syscall.EINTR:
			continue
		case errno == syscall.EAGAIN:
			c.heldWait = false
			c.putBuffers()
			return false
		case errno != 0:
			c.idleErr = os.NewSyscallError("read", errno)
		case n == 0:
			c.idleErr = io.EOF
		default:
			c.w += int(n)
		}
		if first && c.heldWait {
			// The wait after a held response ended at its deadline and
			// bytes were there all along: the client sent them while
			// its last request was served. It reads before it waits
			// from now on.
			c.pipelined = true
		}
		c.heldWait = false
		return true
	}
}

// holdForWait reports whether the response w finished, whole in the
// write buffer, is left there for idleRead to write before it waits for
// the next request (sendFirst). A read(2) issued just after a response
// almost always finds nothing (the client has not read the answer yet),
// and that read is one system call in five of a proxied request; the
// wait that follows a write needs none.
//
// The wait begins where a read would have: the poller forgets what it
// saw before the wait began. Bytes the client sent while the request was
// being served (pipelining, which browsers and Keycloak's clients do not
// do) are then noticed when the first part of the idle wait passes
// (idleRestack, at most 250 ms) instead of at once, and the connection
// reads before every wait from then on. So it is done only where that
// bound holds, on keep-alive responses to requests whose body is read.
// Over TLS the response's records are held, encrypted, by the connection
// under crypto/tls (heldConn) for the same wait.
func (c *h1conn) holdForWait(w *h1response) bool {
	if c.rawc == nil && c.tcp == nil || c.pipelined || w.closeAfter || w.reqClose || c.s.closing.Load() || !c.st.body.done() {
		return false
	}
	if idleRestack <= 0 || c.s.o.KeepAlive <= 2*idleRestack {
		return false
	}
	if c.tcp != nil {
		// Encrypted now, written by the idle wait (heldConn).
		if err := c.holdTLS(); err != nil {
			w.werr = err
			return true
		}
	}
	c.sendFirst = true
	return true
}

// sendHeld is the first step of readable when a response is held
// (sendFirst): it writes the response on fd and turns the connection
// idle. It reports whether readable should wait without reading.
func (c *h1conn) sendHeld(fd uintptr) bool {
	c.sendFirst = false
	c.out.fd, c.out.raw = int(fd), true
	err := c.bw.Flush()
	c.out.raw = false
	c.releaseWriter()
	if err != nil {
		c.idleErr = err
		return false
	}
	c.held++
	c.heldWait = true
	if !c.state.CompareAndSwap(stateActive, stateIdle) {
		c.idleErr = net.ErrClosed
		return false
	}
	return true
}

// rawWrite writes p on fd without blocking: what a full socket buffer
// leaves is written by the connection's Write, which waits for it.
func (o *h1out) rawWrite(p []byte) (int, error) {
	n, err := sockWriteAll(o.fd, p)
	switch {
	case err == syscall.EAGAIN:
		m, err := o.c.nc.Write(p[n:])
		return n + m, err
	case err != nil:
		return n, &net.OpError{Op: "write", Net: "tcp", Source: o.c.nc.LocalAddr(), Addr: o.c.nc.RemoteAddr(), Err: os.NewSyscallError("write", err)}
	}
	return n, nil
}
