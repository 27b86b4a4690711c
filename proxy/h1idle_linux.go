package proxy

import "syscall"

// idleWait is true where an idle connection can wait for its client
// without a read buffer.
const idleWait = true

// waitReadable waits until the client sent something, closed the
// connection or the read deadline passed, without reading.
func (c *h1conn) waitReadable() error { return c.rawc.Read(c.readableFn) }

// readable is the syscall.RawConn callback of waitReadable: a
// non-blocking peek that sees EAGAIN means wait for readiness (the poller
// was reset before the callback, so no edge is missed).
func (c *h1conn) readable(fd uintptr) bool {
	_, err := recvPeek(int(fd), c.peekBuf[:])
	return err != syscall.EAGAIN
}
