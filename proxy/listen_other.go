//go:build !linux

package proxy

import (
	"context"
	"fmt"
	"net"
)

// Listen opens a plain TCP listener on addr (not Multipath TCP, as on
// Linux). freebind is only supported on Linux and is ignored elsewhere.
func Listen(ctx context.Context, addr string, freebind bool) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1} // no keep-alive probes, as on Linux
	lc.SetMultipathTCP(false)             // the same socket as on Linux
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("proxy: listen on %s: %w", addr, err)
	}
	return ln, nil
}
