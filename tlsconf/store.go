// Package tlsconf holds the TLS termination configuration of the public
// HTTPS listener: it loads certificate/key pairs from PEM files, selects a
// certificate per handshake by SNI (RFC 6066, section 3) and reloads the files
// atomically, so that new handshakes see new certificates while established
// connections are left alone.
//
// Protocol policy: TLS 1.2 or 1.3 only; TLS 1.2 is limited to ECDHE key
// exchange with AEAD ciphers (AES-GCM, ChaCha20-Poly1305). Key exchange groups
// are Go's defaults, which in Go 1.26 are the hybrid post-quantum
// X25519MLKEM768, SecP256r1MLKEM768 and SecP384r1MLKEM1024 followed by X25519,
// P-256, P-384 and P-521.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Pair names a PEM certificate file and its PEM private key file. The
// certificate file holds the leaf first, optionally followed by intermediate
// certificates. CertFile and KeyFile may name the same file when it holds
// both (HAProxy's combined format).
type Pair struct {
	CertFile string
	KeyFile  string
	// OCSPFile, if set, is a DER OCSP response for the certificate,
	// stapled instead of fetching one (air-gapped sites); re-read on
	// Reload. The certificate file must then hold the issuer after the
	// leaf.
	OCSPFile string
}

// Options tunes the TLS configuration. The zero value is valid: TLS 1.2
// minimum, ALPN http/1.1 only, wall clock time.
type Options struct {
	// MinVersion is the lowest protocol version accepted: tls.VersionTLS12
	// or tls.VersionTLS13. Zero means tls.VersionTLS12.
	MinVersion uint16
	// HTTP2 advertises "h2" before "http/1.1" in ALPN. If false, only
	// "http/1.1" is advertised.
	HTTP2 bool
	// Now is the clock used to reject expired or not yet valid certificates
	// when loading. If nil, time.Now is used.
	Now func() time.Time
	// ClientCAFiles are PEM files of CA certificates that verify client
	// certificates (ClientCAs, WithClientAuth); they are read with the
	// certificate pairs and reloaded with them, all or nothing. Nil means
	// none.
	ClientCAFiles []string
	// OCSPStapling lets a Stapler fetch OCSP responses from the
	// responder each certificate names (RFC 6960) and staple them.
	// False: only Pair.OCSPFile responses are stapled.
	OCSPStapling bool
}

// CertInfo describes one loaded certificate, for status pages.
type CertInfo struct {
	// CertFile and KeyFile are the files the pair was loaded from.
	CertFile string
	KeyFile  string
	// Names are the leaf's DNS SANs followed by its IP SANs.
	Names []string
	// Algorithm is the leaf's public key algorithm ("ECDSA", "RSA", ...).
	Algorithm string
	// NotBefore and NotAfter bound the leaf's validity.
	NotBefore time.Time
	NotAfter  time.Time
	// Default is true for the certificate served when no name matches: the
	// first pair.
	Default bool
	// OCSPThisUpdate and OCSPNextUpdate bound the OCSP response stapled
	// now; both zero when none is.
	OCSPThisUpdate time.Time
	OCSPNextUpdate time.Time
}

// tls12Suites are the TLS 1.2 cipher suites accepted: ECDHE with AEAD only.
// TLS 1.3 suites are not configurable and are all AEAD.
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// Store holds the loaded certificates and selects one per handshake by SNI.
// It is safe for concurrent use. Create it with NewStore.
type Store struct {
	pairs []Pair // immutable after NewStore
	opts  Options

	// reloadMu serialises Reload so that two concurrent reloads cannot
	// install their snapshots out of order.
	reloadMu sync.Mutex

	cur atomic.Pointer[snapshot]
}

// snapshot is an immutable set of loaded certificates.
type snapshot struct {
	def *tls.Certificate
	// exact maps a lower-case DNS SAN to the certificates holding it, in
	// pair order.
	exact map[string][]*tls.Certificate
	// wildcard maps the parent domain of a "*.parent" SAN to the
	// certificates holding it, in pair order.
	wildcard map[string][]*tls.Certificate
	infos    []CertInfo
	// slots holds the OCSP state of each pair, in pair order (nil for a
	// certificate that cannot be stapled); ocsp maps the certificates
	// that can to their slot.
	slots []*stapleSlot
	ocsp  map[*tls.Certificate]*stapleSlot
	// clientCAs maps each of Options.ClientCAFiles to its pool.
	clientCAs map[string]*x509.CertPool
}

// NewStore loads every pair and returns a Store serving them. The first pair
// is the default certificate. It returns an error naming the file if any
// pair is missing, is not PEM, has a certificate that does not match its key,
// or is expired or not yet valid; errors of several pairs are joined.
func NewStore(pairs []Pair, opts Options) (*Store, error) {
	switch opts.MinVersion {
	case 0:
		opts.MinVersion = tls.VersionTLS12
	case tls.VersionTLS12, tls.VersionTLS13:
	default:
		return nil, fmt.Errorf("tlsconf: MinVersion %s not supported (want TLS 1.2 or TLS 1.3)",
			tls.VersionName(opts.MinVersion))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if len(pairs) == 0 {
		return nil, errNoPairs
	}
	opts.ClientCAFiles = slices.Clone(opts.ClientCAFiles)
	s := &Store{pairs: slices.Clone(pairs), opts: opts}
	snap, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(snap)
	return s, nil
}

// Reload re-reads every pair and client CA file. If any fails, the current certificates
// stay in use and the error is returned; otherwise the new set is swapped in
// atomically and used by handshakes that start afterwards. Established
// connections are not affected either way.
func (s *Store) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	snap, err := s.load()
	if err != nil {
		return err
	}
	carryStaples(s.cur.Load(), snap)
	s.cur.Store(snap)
	return nil
}

// load reads all pairs into a new snapshot.
func (s *Store) load() (*snapshot, error) {
	now := s.opts.Now()
	snap := &snapshot{
		exact:    make(map[string][]*tls.Certificate),
		wildcard: make(map[string][]*tls.Certificate),
		infos:    make([]CertInfo, 0, len(s.pairs)),
	}
	var errs []error
	for i, p := range s.pairs {
		c, err := loadPair(p, now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if i == 0 {
			snap.def = c
		}
		info := infoFor(c, p)
		info.Default = i == 0
		snap.infos = append(snap.infos, info)
		slot, err := newSlot(c, p, now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		snap.slots = append(snap.slots, slot)
		if slot != nil {
			if snap.ocsp == nil {
				snap.ocsp = make(map[*tls.Certificate]*stapleSlot)
			}
			snap.ocsp[c] = slot
		}
		for _, name := range c.Leaf.DNSNames {
			name = strings.TrimSuffix(strings.ToLower(name), ".")
			if parent, ok := strings.CutPrefix(name, "*."); ok {
				if parent != "" && !slices.Contains(snap.wildcard[parent], c) {
					snap.wildcard[parent] = append(snap.wildcard[parent], c)
				}
				continue
			}
			if name != "" && !slices.Contains(snap.exact[name], c) {
				snap.exact[name] = append(snap.exact[name], c)
			}
		}
	}
	if len(s.opts.ClientCAFiles) > 0 {
		snap.clientCAs = make(map[string]*x509.CertPool, len(s.opts.ClientCAFiles))
	}
	for _, f := range s.opts.ClientCAFiles {
		pool, err := loadClientCAs(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		snap.clientCAs[f] = pool
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return snap, nil
}

// TLSConfig returns a new server configuration that picks the certificate of
// each handshake from the Store's current set. The caller owns the returned
// value and may adjust it before first use; it must not be changed after.
//
// ALPN: http.Server.ServeTLS rewrites NextProtos from Server.Protocols, so a
// server using it must set Protocols to match Options.HTTP2; serving on
// tls.NewListener(ln, cfg) keeps NextProtos as returned here.
func (s *Store) TLSConfig() *tls.Config {
	protos := []string{"http/1.1"}
	if s.opts.HTTP2 {
		protos = []string{"h2", "http/1.1"}
	}
	return &tls.Config{
		MinVersion:     s.opts.MinVersion,
		CipherSuites:   slices.Clone(tls12Suites),
		NextProtos:     protos,
		GetCertificate: s.GetCertificate,
		// Records of up to 16 KiB from the first byte, as HAProxy
		// (tune.ssl.maxrecord 0) and nginx (ssl_buffer_size 16k) write
		// them: crypto/tls's dynamic sizing cuts a new connection's first
		// responses into records of one TCP segment, each its own
		// write(2), which costs more than the head start it gives a
		// client on a lossy path.
		DynamicRecordSizingDisabled: true,
	}
}

// GetCertificate is the tls.Config.GetCertificate hook: it picks the
// certificate for hello from the current set. It never fails.
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	snap := s.cur.Load()
	c := snap.pick(hello)
	if sl := snap.ocsp[c]; sl != nil {
		if st := sl.cur.Load(); st != nil {
			return st.cert, nil
		}
	}
	return c, nil
}

// pick selects the certificate for a ClientHello: an exact DNS SAN match,
// then a single-label wildcard match, then the default. Among several
// certificates for the same name, the first one the client supports wins
// (so an ECDSA and an RSA certificate can serve the same name).
func (snap *snapshot) pick(hello *tls.ClientHelloInfo) *tls.Certificate {
	name := normalizeName(hello.ServerName)
	if name == "" {
		return snap.def
	}
	if cs, ok := snap.exact[name]; ok {
		return choose(cs, hello)
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if cs, ok := snap.wildcard[name[i+1:]]; ok {
			return choose(cs, hello)
		}
	}
	return snap.def
}

// choose returns the first certificate in cs that the client supports, or
// cs[0] if none is (the handshake then fails with a clear alert).
func choose(cs []*tls.Certificate, hello *tls.ClientHelloInfo) *tls.Certificate {
	if len(cs) == 1 {
		return cs[0]
	}
	for _, c := range cs {
		if hello.SupportsCertificate(c) == nil {
			return c
		}
	}
	return cs[0]
}

// normalizeName lower-cases an SNI name and strips one trailing dot. It
// allocates only when the name contains upper-case ASCII.
func normalizeName(name string) string {
	name = strings.TrimSuffix(name, ".")
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(name)
		}
	}
	return name
}

// Certificates describes the currently loaded certificates in pair order.
// The result is a copy the caller may keep.
func (s *Store) Certificates() []CertInfo {
	snap := s.cur.Load()
	infos := slices.Clone(snap.infos)
	for i := range infos {
		infos[i].Names = slices.Clone(infos[i].Names)
		if sl := snap.slots[i]; sl != nil {
			if st := sl.cur.Load(); st != nil {
				infos[i].OCSPThisUpdate, infos[i].OCSPNextUpdate = st.resp.ThisUpdate, st.resp.NextUpdate
			}
		}
	}
	return infos
}
