package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// alive reports whether the idle connection c is still open with nothing
// to read: a non-blocking peek sees EAGAIN. End of stream (the backend
// closed it), an error or unexpected bytes all make it unusable.
func (c *upConn) alive() bool {
	if c.rc == nil {
		return true
	}
	c.peekOK = false
	if err := c.rc.Read(c.peekFn); err != nil {
		return false
	}
	return c.peekOK
}

// peek is the syscall.RawConn callback of alive.
func (c *upConn) peek(fd uintptr) bool {
	_, err := recvPeek(int(fd), c.peekBuf[:])
	c.peekOK = err == syscall.EAGAIN
	return true
}

func recvPeek(fd int, p []byte) (int, error) {
	n, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// awaitResponse waits, holding no read buffer, until the backend's
// answer begins (or the connection fails, or the read deadline passes)
// and returns a pooled reader for it. A request waiting for Keycloak
// thus costs no 16 KiB reader: with a thousand requests in flight that
// is 16 MiB. The first bytes are read by the same read(2) that would
// have read them anyway (one attempt before the wait, one after), into
// a reader taken for each attempt and given back when it finds nothing.
// Whatever ends the wait other than bytes is met again by the reader's
// next Read, so the response head is read and fails exactly as before.
func (c *upConn) awaitResponse() *bufio.Reader {
	if c.rc != nil {
		c.rc.Read(c.awaitFn) // its error is the next Read's again
	}
	br := c.awaitBR
	c.awaitBR = nil
	if br == nil {
		br = c.u.readers.Get().(*bufio.Reader)
		br.Reset(c)
	}
	return br
}

// awaitReadable is the syscall.RawConn callback of awaitResponse. A
// request head waiting in c.unsent is written first; the callback then
// waits for the answer (false) without reading, unless the head did not
// all go out (the rest is left in c.unsent, or the error in c.werr, for
// exchangeHead) or the connection was idle long enough for the backend
// to have written first (readAfterSend).
func (c *upConn) awaitReadable(fd uintptr) bool {
	if len(c.unsent) > 0 {
		if !c.sendUnsent(int(fd)) {
			return true
		}
		c.releaseHead() // all sent: the wait holds no head buffer
		if !c.readAfterSend {
			return false
		}
	}
	br := c.u.readers.Get().(*bufio.Reader)
	br.Reset(c)
	c.rawFD = int(fd)
	_, err := br.Peek(1) // its error is cleared: br stays usable
	c.rawFD = -1
	if err == errWouldBlock {
		br.Reset(nil)
		c.u.readers.Put(br)
		return false
	}
	c.awaitBR = br
	return true
}

// sendUnsent writes c.unsent on fd without blocking and reports whether
// all of it went out. What a full socket buffer leaves stays in
// c.unsent; a failed write is kept in c.werr.
func (c *upConn) sendUnsent(fd int) bool {
	n, err := sockWriteAll(fd, c.unsent)
	c.unsent = c.unsent[n:]
	if err != nil && err != syscall.EAGAIN {
		c.werr = &net.OpError{Op: "write", Net: "tcp", Source: c.nc.LocalAddr(), Addr: c.nc.RemoteAddr(), Err: os.NewSyscallError("write", err)}
	}
	return err == nil
}

// errWouldBlock is what a raw read returns when nothing is there yet.
var errWouldBlock = errors.New("proxy: no bytes yet")

// errRawEnded is what a raw read returns when the read failed or met
// the end: the error itself is kept in pendErr for the next Read.
var errRawEnded = errors.New("proxy: raw read ended")

// rawRead is one read(2) on rawFD for awaitReadable.
func (c *upConn) rawRead(p []byte) (int, error) {
	for {
		n, errno := sockRead(c.rawFD, p)
		switch {
		case errno == syscall.EINTR:
			continue
		case errno == syscall.EAGAIN:
			return 0, errWouldBlock
		case errno != 0:
			c.pendErr = &net.OpError{Op: "read", Net: "tcp", Source: c.nc.LocalAddr(), Addr: c.nc.RemoteAddr(), Err: os.NewSyscallError("read", errno)}
			return 0, errRawEnded
		case n == 0:
			c.pendErr = io.EOF
			return 0, errRawEnded
		}
		return int(n), nil
	}
}
