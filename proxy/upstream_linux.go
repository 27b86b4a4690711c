package proxy

import (
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
