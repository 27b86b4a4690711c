//go:build !linux

package proxy

import (
	"context"
	"fmt"
	"net"
)

// Listen opens a TCP listener on addr. freebind is only supported on
// Linux and is ignored elsewhere.
func Listen(ctx context.Context, addr string, freebind bool) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("proxy: listen on %s: %w", addr, err)
	}
	return ln, nil
}
