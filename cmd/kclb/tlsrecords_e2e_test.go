package main

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordConn is a client's TCP connection that keeps every byte it read,
// so a test can split the server's side of the conversation into TLS
// records.
type recordConn struct {
	net.Conn
	mu  sync.Mutex
	got bytes.Buffer
}

func (c *recordConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.got.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

// records returns the length of each TLS record the server sent.
func (c *recordConn) records(t *testing.T) []int {
	t.Helper()
	c.mu.Lock()
	b := bytes.Clone(c.got.Bytes())
	c.mu.Unlock()
	var out []int
	for len(b) > 0 {
		if len(b) < 5 {
			t.Fatalf("%d bytes after the last whole record", len(b))
		}
		n := int(binary.BigEndian.Uint16(b[3:5]))
		if len(b) < 5+n {
			t.Fatalf("record of %d bytes cut at %d", n, len(b)-5)
		}
		out = append(out, n)
		b = b[5+n:]
	}
	return out
}

// TestHTTPSResponseInOneRecord: kclb writes a response of a few KiB on a
// new TLS connection as one record, as HAProxy and nginx do (16 KiB
// records), not cut into records of one TCP segment (crypto/tls's dynamic
// record sizing, which costs a write(2) per record on the first responses
// of every connection). Both protocol versions; the connection closes
// after the answer (Connection: close), the path of a new connection per
// request.
func TestHTTPSResponseInOneRecord(t *testing.T) {
	e := newEnv(t, envOptions{nodes: 1})
	const path = "/resources/kcsim/login/keycloak.v2/css/styles.css" // 2048 bytes
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			nc, err := net.DialTimeout("tcp", e.httpsAddr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			rc := &recordConn{Conn: nc}
			c := tls.Client(rc, &tls.Config{RootCAs: e.roots, ServerName: "localhost", MinVersion: version, MaxVersion: version,
				NextProtos: []string{"http/1.1"}})
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if err := c.Handshake(); err != nil {
				t.Fatal(err)
			}
			io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
			b, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			head, body, ok := strings.Cut(string(b), "\r\n\r\n")
			if !ok || !strings.HasPrefix(head, "HTTP/1.1 200") || len(body) != 2048 {
				t.Fatalf("answer: %.120q (body %d bytes)", b, len(body))
			}
			recs := rc.records(t)
			largest := 0
			for _, n := range recs {
				largest = max(largest, n)
			}
			if largest < len(b) {
				t.Errorf("the %d-byte response came in records of at most %d bytes (all records: %v)", len(b), largest, recs)
			}
		})
	}
}
