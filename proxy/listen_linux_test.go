package proxy

import (
	"context"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// TestListenIsPlainTCP: kclb's public listeners are plain TCP sockets,
// not Multipath TCP (Go's default listener where the kernel has MPTCP),
// so that a socket filter can be attached to them during a handover.
func TestListenIsPlainTCP(t *testing.T) {
	ln, err := Listen(context.Background(), "127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var proto int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		proto, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL)
	}); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	if proto != unix.IPPROTO_TCP {
		t.Fatalf("listener protocol %d, want IPPROTO_TCP (%d; MPTCP is %d)", proto, unix.IPPROTO_TCP, unix.IPPROTO_MPTCP)
	}
}
