//go:build !linux

package vrrp

import (
	"errors"
	"runtime"
)

// openPlatform is only implemented on Linux.
func openPlatform(*Options) (*platform, error) {
	return nil, errors.New("vrrp: not supported on " + runtime.GOOS)
}
