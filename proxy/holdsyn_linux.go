package proxy

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// holdSYN is a classic BPF socket filter that drops TCP segments with SYN
// set and ACK clear (a new connection request) and keeps every other
// one. On a TCP socket the filter sees the segment from its TCP header
// on, so byte 13 holds the flags.
var holdSYN = []unix.SockFilter{
	{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 13},
	{Code: unix.BPF_ALU | unix.BPF_AND | unix.BPF_K, K: 0x12}, // SYN|ACK
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 0x02, Jt: 0, Jf: 1},
	{Code: unix.BPF_RET | unix.BPF_K, K: 0},          // a bare SYN: drop
	{Code: unix.BPF_RET | unix.BPF_K, K: 0xffffffff}, // anything else: keep
}

// DropSYNs makes the TCP listener ln drop new connection requests while
// on, instead of accepting them: their SYN is discarded,
// not answered, so the client's kernel sends it again (after 1 s) rather
// than failing. Handshakes already under way complete and are accepted;
// accepted connections are not affected. A planned VRRP handover holds
// new connections on the old Master once its clients drained, so none
// can start there in the moment before the VIP moves (the new Master
// would reset it); the retried SYN then reaches the new Master.
// ln must be a listener with a file descriptor (*net.TCPListener, or
// what Listen returns).
func DropSYNs(ln net.Listener, on bool) error {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return fmt.Errorf("proxy: hold new connections: %T has no socket", ln)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("proxy: hold new connections: %w", err)
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if on {
			serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
				&unix.SockFprog{Len: uint16(len(holdSYN)), Filter: &holdSYN[0]})
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0)
		if errors.Is(serr, unix.ENOENT) { // no filter attached: nothing to release
			serr = nil
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("proxy: hold new connections (%v) on %s: %w", on, ln.Addr(), err)
	}
	return nil
}

// AcceptQueue returns how many connections have completed their handshake
// on the TCP listener ln and wait to be accepted (TCP_INFO's unacked
// field on a listening socket).
func AcceptQueue(ln net.Listener) (int, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return 0, fmt.Errorf("proxy: accept queue: %T has no socket", ln)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("proxy: accept queue: %w", err)
	}
	var n int
	var serr error
	err = rc.Control(func(fd uintptr) {
		var info *unix.TCPInfo
		info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if serr == nil {
			n = int(info.Unacked)
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return 0, fmt.Errorf("proxy: accept queue of %s: %w", ln.Addr(), err)
	}
	return n, nil
}

// detachFilter removes the socket filter c inherited from its listener,
// if any.
func detachFilter(c net.Conn) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	if rc, err := sc.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0) // ENOENT: it had none
		})
	}
}
