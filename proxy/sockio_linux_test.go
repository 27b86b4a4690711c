package proxy

import (
	"syscall"
	"testing"
)

// TestSockReadWrite: sockWrite and sockRead carry bytes over a socket
// (sendto/recvfrom) and over a pipe (the read/write fallback), report
// EAGAIN on an empty non-blocking socket, and a write to a socket whose
// peer is gone is EPIPE, not a signal.
func TestSockReadWrite(t *testing.T) {
	sp, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	var pp [2]int
	if err := syscall.Pipe2(pp[:], syscall.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(sp[0])
	defer syscall.Close(pp[0])
	defer syscall.Close(pp[1])
	for _, c := range []struct {
		name string
		w, r int
	}{{"socket", sp[0], sp[1]}, {"pipe", pp[1], pp[0]}} {
		buf := make([]byte, 16)
		if _, errno := sockRead(c.r, buf); errno != syscall.EAGAIN {
			t.Errorf("%s: read of nothing: %v, want EAGAIN", c.name, errno)
		}
		if n, err := sockWrite(c.w, []byte("hello")); n != 5 || err != nil {
			t.Fatalf("%s: write: %d, %v", c.name, n, err)
		}
		n, errno := sockRead(c.r, buf)
		if errno != 0 || string(buf[:n]) != "hello" {
			t.Errorf("%s: read %q, %v; want hello", c.name, buf[:n], errno)
		}
	}
	syscall.Close(sp[1])
	if _, err := sockWrite(sp[0], []byte("x")); err != syscall.EPIPE {
		t.Errorf("write to a closed peer: %v, want EPIPE", err)
	}
}
