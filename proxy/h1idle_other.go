//go:build !linux

package proxy

import "net"

// idleWait is false: outside Linux an idle connection keeps its buffers.
const idleWait = false

func (c *h1conn) idleRead() error { return nil }

func (c *h1conn) readable(uintptr) bool { return true }

func (c *h1conn) holdForWait(*h1response) bool { return false }

func (c *h1conn) holdForClose(*h1response) bool { return false }

func (o *h1out) rawWrite(p []byte) (int, error) { return o.c.nc.Write(p) }

// heldConn is the TCP connection under a TLS one; outside Linux it holds
// nothing.
type heldConn struct{ net.Conn }

func newHeldConn(*h1conn, net.Conn) *heldConn { return nil }
