package tlsconf

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// KeyType selects the key algorithm of a generated certificate.
type KeyType uint8

const (
	// KeyECDSAP256 is an ECDSA key on NIST P-256 (the zero value).
	KeyECDSAP256 KeyType = iota
	// KeyRSA2048 is a 2048-bit RSA key.
	KeyRSA2048
)

// String returns "ecdsa-p256" or "rsa-2048".
func (k KeyType) String() string {
	switch k {
	case KeyECDSAP256:
		return "ecdsa-p256"
	case KeyRSA2048:
		return "rsa-2048"
	default:
		return fmt.Sprintf("KeyType(%d)", uint8(k))
	}
}

// SelfSigned describes a self-signed certificate to generate, for demos and
// tests. Use GenerateSelfSigned for the common case.
type SelfSigned struct {
	// Hosts are the certificate's subject alternative names: entries that
	// parse as IP addresses become IP SANs, the rest DNS SANs (wildcards such
	// as "*.example.com" allowed). At least one is required; the first is
	// also the subject common name.
	Hosts []string
	// Key is the key algorithm. The zero value is KeyECDSAP256.
	Key KeyType
	// NotBefore starts the validity period. If zero, one minute before now
	// is used, to tolerate small clock differences.
	NotBefore time.Time
	// ValidFor is the validity period from NotBefore. If zero, 24 hours.
	ValidFor time.Duration
}

// GenerateSelfSigned writes an ECDSA P-256 self-signed certificate for hosts,
// valid from one minute ago for validFor, into dir. See SelfSigned.Write.
func GenerateSelfSigned(dir string, hosts []string, validFor time.Duration) (certFile, keyFile string, err error) {
	return SelfSigned{Hosts: hosts, ValidFor: validFor}.Write(dir)
}

// Write generates the key and certificate and writes them as PEM into dir:
// the certificate as "<host>.pem" (mode 0644) and the PKCS #8 key as
// "<host>-key.pem" (mode 0600), where <host> is the first host with "*"
// spelled "_wildcard", plus "-rsa" for RSA keys. Existing files are replaced
// atomically (write to a temporary file, then rename), so a concurrent
// reader never sees a partial file.
func (o SelfSigned) Write(dir string) (certFile, keyFile string, err error) {
	certPEM, keyPEM, err := o.Generate()
	if err != nil {
		return "", "", err
	}
	base := strings.NewReplacer("*", "_wildcard", ":", "_", "/", "_").Replace(o.Hosts[0])
	if o.Key == KeyRSA2048 {
		base += "-rsa"
	}
	certFile = filepath.Join(dir, base+".pem")
	keyFile = filepath.Join(dir, base+"-key.pem")
	if err := writeFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	if err := writeFileAtomic(certFile, certPEM, 0o644); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// Generate returns the PEM certificate and PEM PKCS #8 private key without
// writing files.
func (o SelfSigned) Generate() (certPEM, keyPEM []byte, err error) {
	if len(o.Hosts) == 0 {
		return nil, nil, errors.New("tlsconf: self-signed certificate needs at least one host")
	}
	var key crypto.Signer
	switch o.Key {
	case KeyECDSAP256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyRSA2048:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, nil, fmt.Errorf("tlsconf: unknown key type %s", o.Key)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("tlsconf: generate %s key: %w", o.Key, err)
	}
	notBefore := o.NotBefore
	if notBefore.IsZero() {
		notBefore = time.Now().Add(-time.Minute)
	}
	validFor := o.ValidFor
	if validFor == 0 {
		validFor = 24 * time.Hour
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("tlsconf: generate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: o.Hosts[0], Organization: []string{"kclb self-signed"}},
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(validFor),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if o.Key == KeyRSA2048 {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	for _, h := range o.Hosts {
		if ip, err := netip.ParseAddr(h); err == nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsconf: create certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsconf: marshal key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}

// writeFileAtomic writes data to a temporary file in the target's directory
// with the given mode and renames it over path.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("tlsconf: write %s: %w", path, err)
	}
	tmp := f.Name()
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("tlsconf: write %s: %w", path, err)
	}
	return nil
}
