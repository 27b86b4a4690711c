package tlsconf

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// ocspPKI is a CA, a server certificate naming an OCSP responder, and
// what signs responses for it.
type ocspPKI struct {
	ca, leaf *x509.Certificate
	caKey    crypto.Signer
	pair     Pair
}

func newOCSPPKI(t testing.TB, dir, responder string) *ocspPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "OCSP Test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(0x1001), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, OCSPServer: []string{responder}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})...)
	if err := os.WriteFile(certFile, chain, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &ocspPKI{ca: ca, leaf: leaf, caKey: caKey, pair: Pair{CertFile: certFile, KeyFile: keyFile}}
}

// response is a signed OCSP response for the leaf.
func (p *ocspPKI) response(t testing.TB, status int, this, next time.Time) []byte {
	t.Helper()
	der, err := ocsp.CreateResponse(p.ca, p.ca, ocsp.Response{Status: status, SerialNumber: p.leaf.SerialNumber,
		ThisUpdate: this, NextUpdate: next, RevokedAt: this}, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

// syncBuffer is a log sink safe for the stapler and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// stapled returns the staple a handshake for localhost gets now.
func stapled(t *testing.T, s *Store) []byte {
	t.Helper()
	c, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	return c.OCSPStaple
}

// TestStaplerLifecycle pins issue 14, item 4 with a fake responder and a
// fake clock: a good response is fetched and stapled without a
// handshake waiting; it is refreshed half way to nextUpdate; a failing
// responder keeps the last good staple (with a warning) until its
// nextUpdate, after which nothing is stapled and a stale warning is
// logged; a revoked answer removes the staple at once; a reload of the
// same files keeps the staple.
func TestStaplerLifecycle(t *testing.T) {
	var answer atomic.Pointer[[]byte] // nil: the responder fails
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		if _, err := ocsp.ParseRequest(body); err != nil || r.Method != http.MethodPost {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		a := answer.Load()
		if a == nil {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/ocsp-response")
		w.Write(*a)
	}))
	defer srv.Close()
	dir := t.TempDir()
	p := newOCSPPKI(t, dir, srv.URL)
	t0 := time.Now().Truncate(time.Minute)
	clock := &fakeClock{now: t0}
	s := newStore(t, []Pair{p.pair}, Options{OCSPStapling: true, Now: clock.Now})
	var logs syncBuffer
	st := NewStapler(func() *Store { return s }, StaplerOptions{Now: clock.Now, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := context.Background()

	if got := stapled(t, s); got != nil {
		t.Fatal("a staple before any fetch")
	}
	good := p.response(t, ocsp.Good, t0, t0.Add(4*time.Hour))
	answer.Store(&good)
	if wait := st.round(ctx); wait <= 0 || wait > 2*time.Hour {
		t.Errorf("next round in %v, want at most 2h (half way to nextUpdate)", wait)
	}
	if !bytes.Equal(stapled(t, s), good) {
		t.Fatal("the good response is not stapled")
	}
	if info := s.Certificates()[0]; !info.OCSPThisUpdate.Equal(t0) || !info.OCSPNextUpdate.Equal(t0.Add(4*time.Hour)) {
		t.Errorf("CertInfo OCSP %v..%v", info.OCSPThisUpdate, info.OCSPNextUpdate)
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
	clock.Set(t0.Add(2*time.Hour - time.Second))
	st.round(ctx) // not due: no fetch
	if n := hits.Load(); n != 1 {
		t.Fatalf("a fetch before the refresh time (%d)", n)
	}

	// Half way: the responder is down; the staple stays, retried later.
	answer.Store(nil)
	clock.Set(t0.Add(2 * time.Hour))
	st.round(ctx)
	if !bytes.Equal(stapled(t, s), good) {
		t.Fatal("a failed refresh dropped the last good staple")
	}
	if !strings.Contains(logs.String(), "OCSP fetch failed; keeping the last good staple") {
		t.Errorf("no warning for the failed fetch:\n%s", logs.String())
	}
	// A reload of the same files keeps serving it.
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stapled(t, s), good) {
		t.Fatal("a reload lost the staple")
	}

	// Past nextUpdate with the responder still down: stale, none served.
	clock.Set(t0.Add(4*time.Hour + time.Second))
	st.round(ctx)
	if got := stapled(t, s); got != nil {
		t.Fatal("an expired response is still stapled")
	}
	if !strings.Contains(logs.String(), "OCSP staple missing or stale") {
		t.Errorf("no stale warning:\n%s", logs.String())
	}

	// The responder is back: stapled again at the next round.
	fresh := p.response(t, ocsp.Good, t0.Add(4*time.Hour), t0.Add(8*time.Hour))
	answer.Store(&fresh)
	clock.Set(t0.Add(4*time.Hour + 11*time.Minute))
	st.round(ctx)
	if !bytes.Equal(stapled(t, s), fresh) {
		t.Fatal("the fresh response is not stapled")
	}

	// Revoked: no staple at once, whatever was there.
	revoked := p.response(t, ocsp.Revoked, t0.Add(6*time.Hour), t0.Add(10*time.Hour))
	answer.Store(&revoked)
	clock.Set(t0.Add(6 * time.Hour))
	st.round(ctx)
	if got := stapled(t, s); got != nil {
		t.Fatal("a good staple survived a revoked answer")
	}
}

// TestOCSPFile pins ocsp_file: the file's response is stapled without
// any fetch, a response for another certificate is refused at load
// naming the file, and an expired one is loaded but not served.
func TestOCSPFile(t *testing.T) {
	dir := t.TempDir()
	p := newOCSPPKI(t, dir, "http://192.0.2.1/never")
	now := time.Now()
	file := filepath.Join(dir, "resp.der")
	good := p.response(t, ocsp.Good, now.Add(-time.Minute), now.Add(time.Hour))
	if err := os.WriteFile(file, good, 0o600); err != nil {
		t.Fatal(err)
	}
	pair := p.pair
	pair.OCSPFile = file
	s := newStore(t, []Pair{pair}, Options{})
	if !bytes.Equal(stapled(t, s), good) {
		t.Fatal("ocsp_file response not stapled")
	}

	other := newOCSPPKI(t, t.TempDir(), "http://192.0.2.1/never")
	if err := os.WriteFile(file, other.response(t, ocsp.Good, now, now.Add(time.Hour)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewStore([]Pair{pair}, Options{}); err == nil || !strings.Contains(err.Error(), file) {
		t.Fatalf("a response signed by another CA: %v, want an error naming %s", err, file)
	}

	if err := os.WriteFile(file, p.response(t, ocsp.Good, now.Add(-2*time.Hour), now.Add(-time.Hour)), 0o600); err != nil {
		t.Fatal(err)
	}
	s = newStore(t, []Pair{pair}, Options{})
	if got := stapled(t, s); got != nil {
		t.Fatal("an expired ocsp_file response is stapled")
	}
}

// FuzzOCSPResponse feeds arbitrary bytes as a responder's answer or an
// ocsp_file: verification never panics, and whatever it accepts is a
// good response for the slot's certificate.
func FuzzOCSPResponse(f *testing.F) {
	p := newOCSPPKI(f, f.TempDir(), "http://192.0.2.1/")
	now := time.Now()
	f.Add(p.response(f, ocsp.Good, now, now.Add(time.Hour)))
	f.Add(p.response(f, ocsp.Revoked, now, now.Add(time.Hour)))
	f.Add([]byte{0x30, 0x03, 0x0a, 0x01, 0x06})
	f.Add([]byte("garbage"))
	c, err := loadPair(p.pair, now)
	if err != nil {
		f.Fatal(err)
	}
	sl, err := newSlot(c, p.pair, now)
	if err != nil || sl == nil {
		f.Fatalf("slot: %v", err)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		resp, err := sl.verify(der, now)
		if err == nil && (resp.Status != ocsp.Good || resp.SerialNumber.Cmp(p.leaf.SerialNumber) != 0) {
			t.Fatalf("accepted status %d for serial %v", resp.Status, resp.SerialNumber)
		}
	})
}
