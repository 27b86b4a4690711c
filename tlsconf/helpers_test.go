package tlsconf

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// genPair writes a self-signed pair into dir and returns its file names.
func genPair(tb testing.TB, dir string, o SelfSigned) Pair {
	tb.Helper()
	c, k, err := o.Write(dir)
	if err != nil {
		tb.Fatalf("generate %v: %v", o.Hosts, err)
	}
	return Pair{CertFile: c, KeyFile: k}
}

// leafDER returns the DER bytes of the first CERTIFICATE block in a PEM file.
func leafDER(tb testing.TB, certFile string) []byte {
	tb.Helper()
	data, err := os.ReadFile(certFile)
	if err != nil {
		tb.Fatal(err)
	}
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			tb.Fatalf("%s: no PEM CERTIFICATE block", certFile)
		}
		if block.Type == "CERTIFICATE" {
			return block.Bytes
		}
	}
}

// newStore calls NewStore and fails the test on error.
func newStore(tb testing.TB, pairs []Pair, opts Options) *Store {
	tb.Helper()
	s, err := NewStore(pairs, opts)
	if err != nil {
		tb.Fatalf("NewStore: %v", err)
	}
	return s
}

// echoServer is a loopback TLS server that completes the handshake and then
// echoes everything it reads.
type echoServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex // guards conns
	conns map[net.Conn]struct{}
}

// startEchoServer serves cfg on 127.0.0.1 until the test ends.
func startEchoServer(tb testing.TB, cfg *tls.Config) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &echoServer{ln: ln, conns: make(map[net.Conn]struct{})}
	srv.wg.Add(1)
	go srv.acceptLoop(cfg)
	tb.Cleanup(func() {
		ln.Close()
		srv.mu.Lock()
		for c := range srv.conns {
			c.Close()
		}
		srv.mu.Unlock()
		srv.wg.Wait()
	})
	return ln.Addr().String()
}

func (srv *echoServer) acceptLoop(cfg *tls.Config) {
	defer srv.wg.Done()
	for {
		raw, err := srv.ln.Accept()
		if err != nil {
			return
		}
		srv.mu.Lock()
		srv.conns[raw] = struct{}{}
		srv.mu.Unlock()
		srv.wg.Add(1)
		go func() {
			defer srv.wg.Done()
			defer func() {
				srv.mu.Lock()
				delete(srv.conns, raw)
				srv.mu.Unlock()
				raw.Close()
			}()
			c := tls.Server(raw, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := c.HandshakeContext(ctx); err != nil {
				return
			}
			io.Copy(c, c)
		}()
	}
}

// clientConfig returns a client configuration that accepts any server
// certificate; tests compare the presented certificate themselves.
func clientConfig(serverName string) *tls.Config {
	return &tls.Config{ServerName: serverName, InsecureSkipVerify: true}
}

// dialTLS connects to addr and completes a handshake with cfg.
func dialTLS(tb testing.TB, addr string, cfg *tls.Config) (*tls.Conn, error) {
	tb.Helper()
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	tb.Cleanup(func() { c.Close() })
	return c, nil
}

// handshake connects, completes a handshake and returns the state.
func handshake(tb testing.TB, addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	tb.Helper()
	c, err := dialTLS(tb, addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.ConnectionState(), nil
}

// peerDER returns the DER of the leaf the server presented.
func peerDER(tb testing.TB, st tls.ConnectionState) []byte {
	tb.Helper()
	if len(st.PeerCertificates) == 0 {
		tb.Fatal("server presented no certificate")
	}
	return st.PeerCertificates[0].Raw
}

// echo writes msg on c and expects it back.
func echo(tb testing.TB, c *tls.Conn, msg string) {
	tb.Helper()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		tb.Fatal(err)
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		tb.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		tb.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, []byte(msg)) {
		tb.Fatalf("echo = %q, want %q", got, msg)
	}
}

// certPool returns a pool holding the certificates of certFile.
func certPool(tb testing.TB, certFile string) *x509.CertPool {
	tb.Helper()
	data, err := os.ReadFile(certFile)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		tb.Fatalf("%s: no certificates", certFile)
	}
	return pool
}

// derOf returns the DER of the first PEM block in data, or nil.
func derOf(data []byte) []byte {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil
	}
	return block.Bytes
}
