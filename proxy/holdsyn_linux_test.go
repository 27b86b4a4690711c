package proxy

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
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
