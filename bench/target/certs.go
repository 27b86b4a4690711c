package target

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
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

// WriteCert generates a certificate of type kt valid for a day and writes it
// under dir as <kt>.crt, <kt>.key and <kt>.pem.
func WriteCert(dir string, kt KeyType) (*Cert, error) {
	var key crypto.Signer
	var err error
	if kt == RSA {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, fmt.Errorf("target: generate %v key: %w", kt, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("target: create %v certificate: %w", kt, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("target: parse certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("target: marshal key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	c := &Cert{
		CertFile: filepath.Join(dir, kt.String()+".crt"),
		KeyFile:  filepath.Join(dir, kt.String()+".key"),
		Combined: filepath.Join(dir, kt.String()+".pem"),
		Pool:     x509.NewCertPool(),
		Type:     kt,
	}
	c.Pool.AddCert(leaf)
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
