package main

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/config"
)

// TestPairResumesSessionsAcrossInstances: the two instances of a pair
// seal session tickets with keys derived from pair.secret_file, so a
// client whose VIP moved from A to B resumes its TLS session on B instead
// of a full handshake (two real kclb binaries on loopback).
func TestPairResumesSessionsAcrossInstances(t *testing.T) {
	p := newPairEnv(t, "", nil)
	cfgB, err := config.Load(p.cfgB)
	if err != nil {
		t.Fatal(err)
	}
	httpsB := ""
	for _, l := range cfgB.Listeners {
		if l.TLS {
			httpsB = l.Bind
		}
	}
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			cfg := &tls.Config{RootCAs: p.a.roots, ServerName: "localhost", MinVersion: version, MaxVersion: version,
				NextProtos: []string{"http/1.1"}, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
			// get sends one request over a new connection (reading the
			// answer delivers a TLS 1.3 ticket) and reports whether its
			// handshake resumed a session.
			get := func(addr string) bool {
				t.Helper()
				c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				io.WriteString(c, "GET /realms/test/.well-known/openid-configuration HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
				b, _ := io.ReadAll(c)
				if len(b) < 12 || string(b[:12]) != "HTTP/1.1 200" {
					t.Fatalf("answer from %s: %.80q", addr, b)
				}
				return c.ConnectionState().DidResume
			}
			if get(p.a.httpsAddr) {
				t.Fatal("the first handshake with A resumed")
			}
			if !get(httpsB) {
				t.Error("B did not resume the session begun on A")
			}
			if !get(p.a.httpsAddr) {
				t.Error("A did not resume the session B renewed")
			}
		})
	}
}
