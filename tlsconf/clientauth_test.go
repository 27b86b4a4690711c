package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestClientCAsLoadAndReload pins issue 14, item 1: the client CA files
// load with the certificates, a file without a certificate is refused
// naming it, and a Reload that fails keeps the CA in force.
func TestClientCAsLoadAndReload(t *testing.T) {
	dir := t.TempDir()
	server := genPair(t, dir, SelfSigned{Hosts: []string{"localhost"}})
	caDir := filepath.Join(dir, "ca")
	if err := os.Mkdir(caDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ca := genPair(t, caDir, SelfSigned{Hosts: []string{"client-ca"}})

	bad := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(bad, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewStore([]Pair{server}, Options{ClientCAFiles: []string{bad}}); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("NewStore with a CA file without certificates: %v, want an error naming %s", err, bad)
	}

	s := newStore(t, []Pair{server}, Options{ClientCAFiles: []string{ca.CertFile}})
	before := s.ClientCAs(ca.CertFile)
	if before == nil {
		t.Fatal("ClientCAs: nil for a configured file")
	}
	if s.ClientCAs(bad) != nil {
		t.Error("ClientCAs: a pool for a file that is not configured")
	}
	keep, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca.CertFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil {
		t.Fatal("Reload accepted a broken CA file")
	}
	if s.ClientCAs(ca.CertFile) != before {
		t.Error("a failed Reload replaced the CA pool")
	}
	if err := os.WriteFile(ca.CertFile, keep, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if p := s.ClientCAs(ca.CertFile); p == nil || p == before {
		t.Error("a successful Reload did not load a new pool")
	}
}

// TestWithClientAuth pins the handshake policy of each mode and that the
// per-pool configuration follows the pool: built once per pool, rebuilt
// when the pool changes.
func TestWithClientAuth(t *testing.T) {
	dir := t.TempDir()
	server := genPair(t, dir, SelfSigned{Hosts: []string{"localhost"}})
	caDir := filepath.Join(dir, "ca")
	if err := os.Mkdir(caDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ca := genPair(t, caDir, SelfSigned{Hosts: []string{"ca"}})
	s := newStore(t, []Pair{server}, Options{ClientCAFiles: []string{ca.CertFile}})
	base := s.TLSConfig()
	if WithClientAuth(base, ClientAuthOff, nil) != base {
		t.Error("ClientAuthOff changed the configuration")
	}
	pool := s.ClientCAs(ca.CertFile)
	cur := pool
	for mode, want := range map[ClientAuth]tls.ClientAuthType{
		ClientAuthOptional: tls.VerifyClientCertIfGiven,
		ClientAuthRequired: tls.RequireAndVerifyClientCert,
	} {
		cfg := WithClientAuth(base, mode, func() *x509.CertPool { return cur })
		a, err := cfg.GetConfigForClient(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		if a.ClientAuth != want || a.ClientCAs != pool || a.GetConfigForClient != nil || a.GetCertificate == nil {
			t.Errorf("%s: derived config ClientAuth %v, pool %p (want %v, %p)", mode, a.ClientAuth, a.ClientCAs, want, pool)
		}
		if b, _ := cfg.GetConfigForClient(&tls.ClientHelloInfo{}); b != a {
			t.Errorf("%s: a second handshake with the same pool built a new configuration", mode)
		}
		cur = nil
		if _, err := cfg.GetConfigForClient(&tls.ClientHelloInfo{}); err == nil {
			t.Errorf("%s: a handshake without a CA pool went on", mode)
		}
		cur = pool
	}
}
