package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
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

// TestRawSockIO: a socket's raw reads and writes in RawConn callbacks
// (rawSock, for plain client connections and backend connections, and
// heldConn's under crypto/tls) behave as net.Conn's: a read deadline is
// a timeout named "read", bytes and the peer's end arrive, a write
// larger than the socket buffers waits for the reader and goes out
// whole, and a write deadline is a timeout named "write".
func TestRawSockIO(t *testing.T) {
	for _, name := range []string{"rawSock", "heldConn"} {
		t.Run(name, func(t *testing.T) {
			peer, server := tcpPair(t)
			var rw io.ReadWriter
			if name == "heldConn" {
				h := newHeldConn(nil, server)
				if h == nil {
					t.Fatal("no descriptor under a TCP connection")
				}
				rw = h
			} else {
				s := &rawSock{}
				s.init(server, nil)
				if s.rc == nil {
					t.Fatal("no descriptor under a TCP connection")
				}
				rw = s
			}
			rawSockIO(t, peer, server, rw)
		})
	}
}

func rawSockIO(t *testing.T, peer, server net.Conn, rw io.ReadWriter) {
	buf := make([]byte, 64)
	server.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := rw.Read(buf)
	var oe *net.OpError
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("read past its deadline: %v", err)
	}
	server.SetReadDeadline(time.Time{})
	peer.Write([]byte("ping"))
	if n, err := rw.Read(buf); err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}

	big := bytes.Repeat([]byte("k"), 8<<20)
	got := make(chan int, 1)
	go func() {
		n, _ := io.Copy(io.Discard, io.LimitReader(peer, int64(len(big))))
		got <- int(n)
	}()
	if n, err := rw.Write(big); n != len(big) || err != nil {
		t.Fatalf("write of 8 MiB: %d, %v", n, err)
	}
	if n := <-got; n != len(big) {
		t.Fatalf("peer read %d of %d bytes", n, len(big))
	}

	server.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
	n, err := rw.Write(big) // nobody reads now
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &oe) || oe.Op != "write" || n >= len(big) {
		t.Fatalf("write past its deadline: %d, %v", n, err)
	}

	peer.Close()
	for {
		if _, err = rw.Read(buf); err != nil {
			break
		}
	}
	if err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after the peer closed: %v", err)
	}
}
