package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
)

// ClientAuth is how a listener asks for client certificates (the
// certificate Keycloak's X.509 authenticator and RFC 8705 certificate-bound
// tokens read). The zero value is ClientAuthOff.
type ClientAuth uint8

// Client certificate modes.
const (
	// ClientAuthOff asks for no certificate.
	ClientAuthOff ClientAuth = iota
	// ClientAuthOptional asks for a certificate; a client may send none,
	// but one it sends must verify against the CA or the handshake ends
	// with an alert (crypto/tls's VerifyClientCertIfGiven).
	ClientAuthOptional
	// ClientAuthRequired refuses, with a TLS alert, a handshake without a
	// certificate that verifies against the CA
	// (RequireAndVerifyClientCert).
	ClientAuthRequired
)

// String returns the configuration spelling ("off", "optional", "required").
func (a ClientAuth) String() string {
	switch a {
	case ClientAuthOff:
		return "off"
	case ClientAuthOptional:
		return "optional"
	case ClientAuthRequired:
		return "required"
	}
	return fmt.Sprintf("ClientAuth(%d)", uint8(a))
}

// tlsType is the crypto/tls policy of a.
func (a ClientAuth) tlsType() tls.ClientAuthType {
	switch a {
	case ClientAuthOptional:
		return tls.VerifyClientCertIfGiven
	case ClientAuthRequired:
		return tls.RequireAndVerifyClientCert
	}
	return tls.NoClientCert
}

// loadClientCAs reads a PEM file of CA certificates into a pool. Blocks
// other than CERTIFICATE are ignored; a file without any is an error.
func loadClientCAs(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: read client CA: %w", err)
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("tlsconf: %s: parse client CA certificate %d: %w", file, n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("tlsconf: %s: no PEM CERTIFICATE block found", file)
	}
	return pool, nil
}

// ClientCAs returns the pool loaded from file, one of Options.ClientCAFiles,
// as of the last successful load or Reload; nil for a file not named there.
func (s *Store) ClientCAs(file string) *x509.CertPool {
	return s.cur.Load().clientCAs[file]
}

// WithClientAuth returns a copy of base that asks for client certificates
// as mode requires and has crypto/tls verify them against pool(), called
// at each handshake, so a reloaded CA applies to new handshakes on a
// listener already open. The configuration for one pool is built once and
// reused until the pool changes. A nil pool() fails the handshake. base
// must not be changed afterwards; with ClientAuthOff, base is returned as
// it is.
func WithClientAuth(base *tls.Config, mode ClientAuth, pool func() *x509.CertPool) *tls.Config {
	if mode == ClientAuthOff {
		return base
	}
	ca := &clientAuthConfigs{base: base.Clone(), mode: mode.tlsType(), pool: pool}
	out := base.Clone()
	out.ClientAuth = ca.mode
	out.GetConfigForClient = ca.forHello
	return out
}

// clientAuthConfigs derives the per-handshake configuration of a listener
// that verifies client certificates.
type clientAuthConfigs struct {
	base *tls.Config // immutable
	mode tls.ClientAuthType
	pool func() *x509.CertPool
	cur  atomic.Pointer[derivedConfig]
}

// derivedConfig is base with one CA pool filled in.
type derivedConfig struct {
	pool *x509.CertPool
	cfg  *tls.Config
}

// errNoClientCA fails a handshake on a listener whose CA is not loaded.
var errNoClientCA = errors.New("tlsconf: client CA not loaded")

// forHello is the tls.Config.GetConfigForClient hook.
func (c *clientAuthConfigs) forHello(*tls.ClientHelloInfo) (*tls.Config, error) {
	p := c.pool()
	if p == nil {
		return nil, errNoClientCA
	}
	if d := c.cur.Load(); d != nil && d.pool == p {
		return d.cfg, nil
	}
	cfg := c.base.Clone()
	cfg.ClientAuth = c.mode
	cfg.ClientCAs = p
	cfg.GetConfigForClient = nil
	c.cur.Store(&derivedConfig{pool: p, cfg: cfg})
	return cfg, nil
}
