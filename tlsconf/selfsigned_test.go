package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestGenerateSelfSigned(t *testing.T) {
	tests := []struct {
		name     string
		gen      SelfSigned
		wantCert string // base name
		wantKey  string
		check    func(t *testing.T, pub any)
	}{
		{
			name:     "ecdsa",
			gen:      SelfSigned{Hosts: []string{"localhost", "127.0.0.1", "::1"}, ValidFor: 2 * time.Hour},
			wantCert: "localhost.pem", wantKey: "localhost-key.pem",
			check: func(t *testing.T, pub any) {
				k, ok := pub.(*ecdsa.PublicKey)
				if !ok || k.Curve != elliptic.P256() {
					t.Errorf("public key %T, want ECDSA P-256", pub)
				}
			},
		},
		{
			name:     "rsa",
			gen:      SelfSigned{Hosts: []string{"localhost", "127.0.0.1"}, Key: KeyRSA2048, ValidFor: 2 * time.Hour},
			wantCert: "localhost-rsa.pem", wantKey: "localhost-rsa-key.pem",
			check: func(t *testing.T, pub any) {
				k, ok := pub.(*rsa.PublicKey)
				if !ok || k.N.BitLen() != 2048 {
					t.Errorf("public key %T, want RSA 2048", pub)
				}
			},
		},
		{
			name:     "wildcard file name",
			gen:      SelfSigned{Hosts: []string{"*.example.test"}, ValidFor: 2 * time.Hour},
			wantCert: "_wildcard.example.test.pem", wantKey: "_wildcard.example.test-key.pem",
			check: func(t *testing.T, pub any) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			start := time.Now()
			certFile, keyFile, err := tt.gen.Write(dir)
			if err != nil {
				t.Fatal(err)
			}
			if certFile != filepath.Join(dir, tt.wantCert) || keyFile != filepath.Join(dir, tt.wantKey) {
				t.Errorf("files %s, %s; want %s, %s in %s", certFile, keyFile, tt.wantCert, tt.wantKey, dir)
			}
			checkMode(t, keyFile, 0o600)
			checkMode(t, certFile, 0o644)
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 2 {
				t.Errorf("dir holds %d entries, want 2 (temporary files left behind?)", len(entries))
			}

			cert, err := x509.ParseCertificate(leafDER(t, certFile))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, cert.PublicKey)
			if cert.NotBefore.After(start) || start.Sub(cert.NotBefore) > 2*time.Minute {
				t.Errorf("NotBefore %v, want about a minute before %v", cert.NotBefore, start)
			}
			if got := cert.NotAfter.Sub(cert.NotBefore); got != tt.gen.ValidFor {
				t.Errorf("validity %v, want %v", got, tt.gen.ValidFor)
			}
			for _, h := range tt.gen.Hosts {
				if h[0] == '*' {
					h = "www" + h[1:]
				}
				if err := cert.VerifyHostname(h); err != nil {
					t.Errorf("VerifyHostname(%q): %v", h, err)
				}
			}
			roots := x509.NewCertPool()
			roots.AddCert(cert)
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				t.Errorf("self-verification: %v", err)
			}
			// The pair loads.
			newStore(t, []Pair{{CertFile: certFile, KeyFile: keyFile}}, Options{})
		})
	}
}

func TestGenerateSelfSignedDefaults(t *testing.T) {
	dir := t.TempDir()
	certFile, _, err := GenerateSelfSigned(dir, []string{"demo.test"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(leafDER(t, certFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := cert.NotAfter.Sub(cert.NotBefore); got != 24*time.Hour {
		t.Errorf("default validity %v, want 24h", got)
	}
	if _, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("default key %T, want ECDSA", cert.PublicKey)
	}
}

func TestGenerateSelfSignedErrors(t *testing.T) {
	tests := []struct {
		name string
		gen  SelfSigned
		dir  func(t *testing.T) string
		want string
	}{
		{name: "no hosts", gen: SelfSigned{}, dir: func(t *testing.T) string { return t.TempDir() },
			want: "tlsconf: self-signed certificate needs at least one host"},
		{name: "unknown key type", gen: SelfSigned{Hosts: []string{"a.test"}, Key: 7},
			dir: func(t *testing.T) string { return t.TempDir() }, want: "tlsconf: unknown key type KeyType(7)"},
		{name: "missing dir", gen: SelfSigned{Hosts: []string{"a.test"}},
			dir: func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, want: "tlsconf: write "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := tt.gen.Write(tt.dir(t))
			if err == nil || len(err.Error()) < len(tt.want) || err.Error()[:len(tt.want)] != tt.want {
				t.Errorf("error = %v, want prefix %q", err, tt.want)
			}
		})
	}
}

func TestKeyTypeString(t *testing.T) {
	tests := []struct {
		name string
		k    KeyType
		want string
	}{
		{name: "ecdsa", k: KeyECDSAP256, want: "ecdsa-p256"},
		{name: "rsa", k: KeyRSA2048, want: "rsa-2048"},
		{name: "unknown", k: 9, want: "KeyType(9)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.k.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %v, want %v", path, got, want)
	}
}
