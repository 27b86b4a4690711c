//go:build !linux

package proxy

import (
	"errors"
	"net"
)

// DropSYNs needs a Linux socket filter; elsewhere it fails.
func DropSYNs(ln net.Listener, on bool) error {
	if !on {
		return nil
	}
	return errors.New("proxy: holding new connections needs Linux")
}

// AcceptQueue needs Linux's TCP_INFO on a listener; elsewhere it fails.
func AcceptQueue(ln net.Listener) (int, error) {
	return 0, errors.New("proxy: the accept queue length needs Linux")
}

// detachFilter has nothing to detach: DropSYNs attaches no filter here.
func detachFilter(net.Conn) {}
