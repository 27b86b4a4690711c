package tlsconf

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// BenchmarkHandshake measures a full (non-resumed) handshake over loopback
// TCP, client and server work together, per key type, version and client
// key exchange (Go's default offers hybrid X25519MLKEM768 first). The
// server writes one byte after its handshake and the client reads it, so an
// iteration includes all of the server's handshake work.
func BenchmarkHandshake(b *testing.B) {
	keys := []KeyType{KeyECDSAP256, KeyRSA2048}
	variants := []struct {
		name    string
		version uint16
		curves  []tls.CurveID // client key shares; nil: Go's default (hybrid PQ first)
	}{
		{name: "TLS1.3", version: tls.VersionTLS13},
		{name: "TLS1.3-X25519", version: tls.VersionTLS13, curves: []tls.CurveID{tls.X25519}},
		{name: "TLS1.2", version: tls.VersionTLS12},
	}
	for _, k := range keys {
		for _, v := range variants {
			b.Run(k.String()+"/"+v.name, func(b *testing.B) {
				benchHandshake(b, k, v.version, v.curves)
			})
		}
	}
}

func benchHandshake(b *testing.B, k KeyType, version uint16, curves []tls.CurveID) {
	p := genPair(b, b.TempDir(), SelfSigned{Hosts: []string{"bench.test"}, Key: k})
	s := newStore(b, []Pair{p}, Options{HTTP2: true})
	cfg := s.TLSConfig()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			c := tls.Server(raw, cfg)
			raw.SetDeadline(time.Now().Add(10 * time.Second))
			if c.Handshake() == nil {
				c.Write([]byte{1})
			}
			raw.Close()
		}
	})
	defer func() {
		ln.Close()
		wg.Wait()
	}()

	ccfg := &tls.Config{
		ServerName:         "bench.test",
		InsecureSkipVerify: true,
		MinVersion:         version,
		MaxVersion:         version,
		NextProtos:         []string{"h2", "http/1.1"},
		CurvePreferences:   curves,
	}
	addr := ln.Addr().String()
	buf := make([]byte, 1)
	ctx := context.Background()
	b.ReportAllocs()
	defer cpuPerOp(b)()
	for b.Loop() {
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		c := tls.Client(raw, ccfg)
		if err := c.HandshakeContext(ctx); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		raw.Close()
	}
}

// BenchmarkGetCertificate measures the selection hook alone.
func BenchmarkGetCertificate(b *testing.B) {
	dir := b.TempDir()
	pairs := []Pair{
		genPair(b, dir, SelfSigned{Hosts: []string{"default.test"}}),
		genPair(b, dir, SelfSigned{Hosts: []string{"a.test"}}),
		genPair(b, dir, SelfSigned{Hosts: []string{"*.wild.test"}}),
	}
	get := newStore(b, pairs, Options{}).TLSConfig().GetCertificate
	for _, sni := range []string{"a.test", "x.wild.test", "unknown.test"} {
		b.Run(sni, func(b *testing.B) {
			hello := &tls.ClientHelloInfo{ServerName: sni}
			b.ReportAllocs()
			for b.Loop() {
				get(hello)
			}
		})
	}
}

// BenchmarkResumeAcrossPair measures what ShareSessionTickets saves a
// client that moves to the other instance of a pair: a TLS 1.3
// handshake (X25519) on instance B resuming a session begun on A (same
// secret) and a message echoed, against BenchmarkHandshake's full
// handshakes of the same key type.
func BenchmarkResumeAcrossPair(b *testing.B) {
	for _, k := range []KeyType{KeyECDSAP256, KeyRSA2048} {
		b.Run(k.String(), func(b *testing.B) {
			p := genPair(b, b.TempDir(), SelfSigned{Hosts: []string{"bench.test"}, Key: k})
			secret := []byte("0123456789abcdef0123456789abcdef")
			var addrs []string
			for range 2 {
				cfg := newStore(b, []Pair{p}, Options{}).TLSConfig()
				if err := ShareSessionTickets(cfg, secret, nil); err != nil {
					b.Fatal(err)
				}
				addrs = append(addrs, startEchoServer(b, cfg))
			}
			ccfg := clientConfig("bench.test")
			ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
			ccfg.CurvePreferences = []tls.CurveID{tls.X25519} // as the full handshakes' -X25519 rows
			buf := make([]byte, 1)
			dial := func(addr string) bool {
				raw, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				c := tls.Client(raw, ccfg)
				c.Write(buf)
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
				c.Close()
				return c.ConnectionState().DidResume
			}
			dial(addrs[0])
			b.ReportAllocs()
			defer cpuPerOp(b)()
			for b.Loop() {
				if !dial(addrs[1]) {
					b.Fatal("not resumed")
				}
			}
		})
	}
}
