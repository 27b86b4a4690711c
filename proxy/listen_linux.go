package proxy

import (
	"context"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Listen opens a TCP listener on addr. With freebind, IP_FREEBIND lets it
// bind an address the host does not hold yet (a VRRP virtual IP held by
// the peer), so a Backup stays hot and never rebinds at takeover.
//
// The socket is plain TCP, not Multipath TCP (which Go 1.24 and later
// listen with by default where the kernel has it): a planned handover
// attaches a socket filter to the listener (DropSYNs), and the kernel
// refuses SO_ATTACH_FILTER on an MPTCP socket.
//
// Accepted connections have no TCP keep-alive probes, like HAProxy's
// client side by default: kclb's own timeouts end idle and stalled
// clients, and Go's default (probes after 15 s) costs four setsockopt(2)
// calls per connection. A listener inherited in a binary upgrade
// (net.FileListener) keeps Go's default, which no API can change.
func Listen(ctx context.Context, addr string, freebind bool) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	lc.SetMultipathTCP(false)
	if freebind {
		lc.Control = func(network, address string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
				if serr == nil && network == "tcp6" {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
				}
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("proxy: listen on %s: %w", addr, err)
	}
	return ln, nil
}
