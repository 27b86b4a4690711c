package target

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kclb/kclb/tlsconf"
)

// KeyType selects the certificate key algorithm.
type KeyType uint8

// Key types. The zero value is ECDSA P-256.
const (
	ECDSA KeyType = iota // ECDSA P-256
	RSA                  // RSA 2048
)

// String returns "ecdsa" or "rsa".
func (k KeyType) String() string {
	if k == RSA {
		return "rsa"
	}
	return "ecdsa"
}

// Cert is a self-signed certificate on disk for localhost and 127.0.0.1.
type Cert struct {
	// CertFile and KeyFile are PEM files; Combined holds both (HAProxy).
	CertFile, KeyFile, Combined string
	// Pool trusts the certificate, for clients.
	Pool *x509.CertPool
	// Type is the key algorithm.
	Type KeyType
}

// WriteCert generates a certificate of type kt (tlsconf.SelfSigned) valid
// for a day and writes it under dir as <kt>.crt, <kt>.key and <kt>.pem.
func WriteCert(dir string, kt KeyType) (*Cert, error) {
	key := tlsconf.KeyECDSAP256
	if kt == RSA {
		key = tlsconf.KeyRSA2048
	}
	certPEM, keyPEM, err := tlsconf.SelfSigned{Hosts: []string{"localhost", "127.0.0.1"}, Key: key}.Generate()
	if err != nil {
		return nil, fmt.Errorf("target: generate %v certificate: %w", kt, err)
	}
	c := &Cert{
		CertFile: filepath.Join(dir, kt.String()+".crt"),
		KeyFile:  filepath.Join(dir, kt.String()+".key"),
		Combined: filepath.Join(dir, kt.String()+".pem"),
		Pool:     x509.NewCertPool(),
		Type:     kt,
	}
	if !c.Pool.AppendCertsFromPEM(certPEM) {
		return nil, fmt.Errorf("target: generated %v certificate does not parse", kt)
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{c.CertFile, certPEM}, {c.KeyFile, keyPEM}, {c.Combined, append(append([]byte{}, certPEM...), keyPEM...)}} {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			return nil, fmt.Errorf("target: %w", err)
		}
	}
	return c, nil
}
