package proxy

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestDropSYNs: while held, a new connection's SYN goes
// unanswered (the dial times out, it is not refused), a connection
// accepted before keeps working, and a dial started during the hold
// succeeds once it ends (the client's kernel retries the SYN).
func TestDropSYNs(t *testing.T) {
	ln, err := Listen(context.Background(), "127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	before, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	server := <-accepted
	defer server.Close()

	if err := DropSYNs(ln, true); err != nil {
		t.Fatal(err)
	}
	_, err = net.DialTimeout("tcp", ln.Addr().String(), 300*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("dial while held: %v, want a timeout (the SYN dropped, not refused)", err)
	}
	if _, err := before.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := server.Read(b); err != nil {
		t.Fatalf("a connection accepted before the hold: %v", err)
	}
	if n, err := AcceptQueue(ln); err != nil || n != 0 {
		t.Fatalf("accept queue while held: %d, %v", n, err)
	}

	done := make(chan error, 1)
	go func() {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	// The dial's first SYN is dropped; release the hold before its retry.
	time.Sleep(100 * time.Millisecond) // lets the first SYN arrive while held; nothing signals it
	if err := DropSYNs(ln, false); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("a dial begun while held, after the hold: %v", err)
	}
	if err := DropSYNs(ln, false); err != nil {
		t.Fatalf("releasing twice: %v", err)
	}
}

// TestHeldListenerDetachesInherited: a connection the kernel creates
// while its listener carries a filter inherits that filter; accepted
// through a HeldListener that is or was just held, it has none. The
// hold's own filter lets no new handshake through, so the test puts a
// keep-everything filter on the held socket in its place, as if a
// handshake had completed under the hold.
func TestHeldListenerDetachesInherited(t *testing.T) {
	for _, tc := range []struct {
		name string
		hold bool
		want int // filter instructions on the accepted connection
	}{
		{name: "never held", hold: false, want: 1},
		{name: "held", hold: true, want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := Listen(context.Background(), "127.0.0.1:0", false)
			if err != nil {
				t.Fatal(err)
			}
			hl := NewHeldListener(ln)
			defer hl.Close()
			if tc.hold {
				if err := hl.Hold(true); err != nil {
					t.Fatal(err)
				}
			}
			keep := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0xffffffff}}
			onSocket(t, ln.(syscall.Conn), func(fd int) error {
				return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
					&unix.SockFprog{Len: uint16(len(keep)), Filter: &keep[0]})
			})
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := hl.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var n int
			onSocket(t, s.(syscall.Conn), func(fd int) error {
				// SO_GET_FILTER with no room returns the program's length
				// in instructions (0: no filter).
				var l uint32
				_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_GET_FILTER, 0, uintptr(unsafe.Pointer(&l)), 0)
				n = int(l)
				if e != 0 {
					return e
				}
				return nil
			})
			if n != tc.want {
				t.Fatalf("accepted connection carries a %d-instruction filter, want %d", n, tc.want)
			}
		})
	}
}

// onSocket runs fn on the file descriptor behind c.
func onSocket(t *testing.T, c syscall.Conn, fn func(fd int) error) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		t.Fatal(err)
	}
	if ferr != nil {
		t.Fatal(ferr)
	}
}
