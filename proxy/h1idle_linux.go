package proxy

import (
	"io"
	"os"
	"syscall"
	"unsafe"
)

// idleWait is true where an idle connection can wait for its client
// without a read buffer.
const idleWait = true

// idleRead waits until the client sends its next request, closes the
// connection or the read deadline passes, holding no buffer while it
// waits: the pooled read buffer is taken for each read attempt and given
// back when the attempt finds nothing (EAGAIN), so an idle connection
// costs its goroutine and its state only. It costs the system calls of a
// plain read (one when bytes are there, one more per wait), not a peek
// and a read.
func (c *h1conn) idleRead() error {
	c.idleErr = nil
	if err := c.rawc.Read(c.readableFn); err != nil {
		if c.buf == nil {
			c.getBuffers()
		}
		return err
	}
	return c.idleErr
}

// readable is the syscall.RawConn callback of idleRead: one read(2)
// into the buffer, taken for the attempt. EAGAIN means wait for
// readiness (the poller was reset before the first call, so no edge is
// missed) and the buffer goes back to its pool meanwhile.
func (c *h1conn) readable(fd uintptr) bool {
	if c.buf == nil {
		c.getBuffers()
	}
	for {
		n, _, errno := syscall.Syscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.buf[c.w])), uintptr(len(c.buf)-c.w))
		switch {
		case errno == syscall.EINTR:
			continue
		case errno == syscall.EAGAIN:
			c.putBuffers()
			return false
		case errno != 0:
			c.idleErr = os.NewSyscallError("read", errno)
		case n == 0:
			c.idleErr = io.EOF
		default:
			c.w += int(n)
		}
		return true
	}
}
