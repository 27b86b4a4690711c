//go:build !linux

package proxy

// idleWait is false: outside Linux an idle connection keeps its buffers.
const idleWait = false

func (c *h1conn) idleRead() error { return nil }

func (c *h1conn) readable(uintptr) bool { return true }
