//go:build !linux

package vrrp

import (
	"errors"
	"net/netip"
	"runtime"
)

// openPlatform is only implemented on Linux.
func openPlatform(*Options) (*platform, error) {
	return nil, errors.New("vrrp: not supported on " + runtime.GOOS)
}

// RemoveVIPs is only implemented on Linux.
func RemoveVIPs(string, []netip.Prefix) ([]netip.Prefix, error) {
	return nil, errors.New("vrrp: not supported on " + runtime.GOOS)
}
