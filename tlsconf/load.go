package tlsconf

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"
)

// dateLayout is how expiry dates appear in error messages.
const dateLayout = time.DateOnly

// loadPair reads and validates one certificate/key pair from disk.
func loadPair(p Pair, now time.Time) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(p.CertFile)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: read certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(p.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: read key: %w", err)
	}
	return parsePair(certPEM, keyPEM, p, now)
}

// parsePair builds a tls.Certificate from PEM data. p names the files in
// errors. The leaf is parsed once here and stored in Certificate.Leaf, so
// handshakes never parse it again.
func parsePair(certPEM, keyPEM []byte, p Pair, now time.Time) (*tls.Certificate, error) {
	var chain [][]byte
	for rest := certPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type == "CERTIFICATE" {
			chain = append(chain, block.Bytes)
		}
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("tlsconf: %s: no PEM CERTIFICATE block found", p.CertFile)
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("tlsconf: %s: parse certificate: %w", p.CertFile, err)
	}
	for i, der := range chain[1:] {
		if _, err := x509.ParseCertificate(der); err != nil {
			return nil, fmt.Errorf("tlsconf: %s: parse chain certificate %d: %w", p.CertFile, i+1, err)
		}
	}

	key, err := parseKey(keyPEM, p.KeyFile)
	if err != nil {
		return nil, err
	}
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("tlsconf: %s: certificate does not match key %s", p.CertFile, p.KeyFile)
	}

	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("tlsconf: %s: certificate expired on %s",
			p.CertFile, leaf.NotAfter.UTC().Format(dateLayout))
	}
	if now.Before(leaf.NotBefore) {
		return nil, fmt.Errorf("tlsconf: %s: certificate not valid until %s",
			p.CertFile, leaf.NotBefore.UTC().Format(time.RFC3339))
	}

	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

// maxKeyDER bounds the DER size of a private key block: an RSA 8192-bit
// PKCS#1 key is about 4.8 KiB, so 12 KiB leaves room while keeping a
// hostile or corrupted file from making key validation run for seconds.
const maxKeyDER = 12 << 10

// parseKey returns the first private key found in keyPEM. Blocks of other
// types (a combined cert+key file) are skipped; encrypted keys are rejected.
func parseKey(keyPEM []byte, keyFile string) (crypto.Signer, error) {
	for rest := keyPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("tlsconf: %s: no PEM private key found", keyFile)
		}
		var (
			key any
			err error
		)
		if strings.HasSuffix(block.Type, "PRIVATE KEY") && len(block.Bytes) > maxKeyDER {
			return nil, fmt.Errorf("tlsconf: %s: %s block of %d bytes is larger than any supported key", keyFile, block.Type, len(block.Bytes))
		}
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("tlsconf: %s: encrypted private keys are not supported", keyFile)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("tlsconf: %s: parse %s: %w", keyFile, block.Type, err)
		}
		switch k := key.(type) {
		case *ecdsa.PrivateKey:
			return k, nil
		case *rsa.PrivateKey:
			return k, nil
		case ed25519.PrivateKey:
			return k, nil
		default:
			return nil, fmt.Errorf("tlsconf: %s: unsupported private key type %T", keyFile, key)
		}
	}
}

// infoFor describes a loaded certificate for status output.
func infoFor(c *tls.Certificate, p Pair) CertInfo {
	leaf := c.Leaf
	names := make([]string, 0, len(leaf.DNSNames)+len(leaf.IPAddresses))
	names = append(names, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			names = append(names, a.Unmap().String())
		}
	}
	return CertInfo{
		CertFile:  p.CertFile,
		KeyFile:   p.KeyFile,
		Names:     names,
		Algorithm: leaf.PublicKeyAlgorithm.String(),
		NotBefore: leaf.NotBefore,
		NotAfter:  leaf.NotAfter,
	}
}

// errNoPairs is returned by NewStore when pairs is empty.
var errNoPairs = errors.New("tlsconf: no certificate/key pairs configured")
