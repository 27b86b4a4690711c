//go:build !linux

package proxy

import "bufio"

// alive reports whether the idle connection c may be reused. Without a
// non-blocking peek a closed connection is found only when it is used.
func (c *upConn) alive() bool { return true }

// peek is unused outside Linux.
func (c *upConn) peek(uintptr) bool { return true }

// awaitResponse returns a pooled reader for the response: outside Linux
// the wait holds it.
func (c *upConn) awaitResponse() *bufio.Reader {
	br := c.u.readers.Get().(*bufio.Reader)
	br.Reset(c)
	return br
}

func (c *upConn) awaitReadable(uintptr) bool { return true }

func (c *upConn) rawRead(p []byte) (int, error) { return c.nc.Read(p) }
