//go:build linux

package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// dataSegmentsIn is the number of TCP segments with data that c has
// received (TCP_INFO): on loopback, one per write(2) of the peer's.
func dataSegmentsIn(t *testing.T, c *net.TCPConn) int64 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	var gerr error
	if err := rc.Control(func(fd uintptr) { info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return int64(info.Data_segs_in)
}

// TestTLSClosingResponseOneWrite: a response that closes its TLS
// connection (Connection: close, the path of a new connection per
// request) leaves with the close_notify alert in one write(2), not the
// response and then the alert: the client counts the server's data
// segments. Handshake flights are counted apart: one in TLS 1.3, two in
// TLS 1.2.
func TestTLSClosingResponseOneWrite(t *testing.T) {
	body := strings.Repeat("k", 2000)
	for _, tc := range []struct {
		version   uint16
		handshake int64
	}{{tls.VersionTLS13, 1}, {tls.VersionTLS12, 2}} {
		t.Run(tls.VersionName(tc.version), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := NewServer(ServerOptions{KeepAlive: 30 * time.Second,
				TLS:     &tls.Config{Certificates: []tls.Certificate{testCert(t)}, DynamicRecordSizingDisabled: true},
				Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })})
			done := make(chan struct{})
			go func() { defer close(done); srv.Serve(ln) }()
			t.Cleanup(func() { srv.Close(); <-done })

			nc, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			c := tls.Client(nc, &tls.Config{InsecureSkipVerify: true, MinVersion: tc.version, MaxVersion: tc.version})
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
			b, err := io.ReadAll(c) // ends at the close_notify alert
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(string(b), body) || !strings.Contains(string(b), "Connection: close") {
				t.Fatalf("answer: %.200q", b)
			}
			if got := dataSegmentsIn(t, nc.(*net.TCPConn)) - tc.handshake; got != 1 {
				t.Errorf("the response and the close alert took %d writes, want 1", got)
			}
		})
	}
}
