package proxy

import (
	"context"
	"net"
	"syscall"
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
	if proto := sockoptInt(t, ln.(*net.TCPListener), unix.SOL_SOCKET, unix.SO_PROTOCOL); proto != unix.IPPROTO_TCP {
		t.Fatalf("listener protocol %d, want IPPROTO_TCP (%d; MPTCP is %d)", proto, unix.IPPROTO_TCP, unix.IPPROTO_MPTCP)
	}
}

// TestListenNoKeepAliveProbes: connections accepted on a public listener
// have no TCP keep-alive, as HAProxy's client side by default (no
// clitcpka): kclb's own timeouts end idle and stalled clients, and Go's
// default would cost four setsockopt(2) calls per accepted connection.
func TestListenNoKeepAliveProbes(t *testing.T) {
	ln, err := Listen(context.Background(), "127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if sockoptInt(t, sc.(*net.TCPConn), unix.SOL_SOCKET, unix.SO_KEEPALIVE) != 0 {
		t.Fatal("an accepted connection has SO_KEEPALIVE set")
	}
}

// sockoptInt reads an integer socket option of sc's descriptor.
func sockoptInt(t *testing.T, sc syscall.Conn, level, opt int) int {
	t.Helper()
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var serr error
	if err := rc.Control(func(fd uintptr) { v, serr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return v
}
