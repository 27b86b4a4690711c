//go:build !linux

package proxy

// alive reports whether the idle connection c may be reused. Without a
// non-blocking peek a closed connection is found only when it is used.
func (c *upConn) alive() bool { return true }

// peek is unused outside Linux.
func (c *upConn) peek(uintptr) bool { return true }
