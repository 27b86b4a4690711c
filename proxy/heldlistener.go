package proxy

import (
	"net"
	"sync/atomic"
)

// HeldListener is a listening socket whose new connections a planned
// handover holds (DropSYNs). The kernel copies a listener's socket
// filter into each connection it creates, so a handshake that completes
// while the listener is held yields a connection carrying it; Accept
// removes it from such connections. Use NewHeldListener.
type HeldListener struct {
	net.Listener // the socket itself (a *net.TCPListener)
	// mayCarry is set from Hold(true) until a Hold(false) finds the
	// accept queue empty: until then an accepted connection may have
	// been created with the filter.
	mayCarry atomic.Bool
}

// NewHeldListener wraps ln, which must be the socket itself (what Listen
// returns, or a *net.TCPListener), not a wrapper.
func NewHeldListener(ln net.Listener) *HeldListener { return &HeldListener{Listener: ln} }

// Hold holds (on) or releases new connections on the socket (DropSYNs).
func (l *HeldListener) Hold(on bool) error {
	if on {
		l.mayCarry.Store(true)
	}
	err := DropSYNs(l.Listener, on)
	if !on && err == nil {
		if n, qerr := AcceptQueue(l.Listener); qerr == nil && n == 0 {
			l.mayCarry.Store(false)
		}
	}
	return err
}

// Accept accepts the next connection and, while it may carry the filter
// of a hold, detaches it.
func (l *HeldListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil && l.mayCarry.Load() {
		detachFilter(c) // a connection without one is left as it is
	}
	return c, err
}
