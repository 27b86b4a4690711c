//go:build linux

package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingListener counts the writes made on the connections it accepted
// through their Write method (the TCP connection under crypto/tls).
type countingListener struct {
	net.Listener
	writes atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{TCPConn: c.(*net.TCPConn), n: &l.writes}, nil
}

// countingConn is a TCP connection that counts its Write calls; its
// descriptor stays reachable (SyscallConn), as kclb's server needs.
type countingConn struct {
	*net.TCPConn
	n *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.TCPConn.Write(p)
}

// TestTLSClosingResponseOneWrite: a response that closes its TLS
// connection (Connection: close, the path of a new connection per
// request) leaves with the close_notify alert in one write(2), not the
// response and then the alert. Handshake flights are counted apart:
// one server write in TLS 1.3, two in TLS 1.2.
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
			cl := &countingListener{Listener: ln}
			srv := NewServer(ServerOptions{KeepAlive: 30 * time.Second,
				TLS:     &tls.Config{Certificates: []tls.Certificate{testCert(t)}, DynamicRecordSizingDisabled: true},
				Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })})
			done := make(chan struct{})
			go func() { defer close(done); srv.Serve(cl) }()
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
			if got := cl.writes.Load() - tc.handshake; got != 1 {
				t.Errorf("the response and the close alert took %d writes, want 1", got)
			}
		})
	}
}
