package tlsconf

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSNISelection(t *testing.T) {
	dir := t.TempDir()
	pairs := []Pair{
		genPair(t, dir, SelfSigned{Hosts: []string{"default.test"}}),
		genPair(t, dir, SelfSigned{Hosts: []string{"a.test", "alias-a.test"}}),
		genPair(t, dir, SelfSigned{Hosts: []string{"b.test"}, Key: KeyRSA2048}),
		genPair(t, dir, SelfSigned{Hosts: []string{"*.wild.test"}}),
		genPair(t, dir, SelfSigned{Hosts: []string{"exact.wild.test"}}),
	}
	s := newStore(t, pairs, Options{})
	addr := startEchoServer(t, s.TLSConfig())

	tests := []struct {
		name string
		sni  string
		want int // index into pairs
	}{
		{name: "no SNI gets default", sni: "", want: 0},
		{name: "default by name", sni: "default.test", want: 0},
		{name: "first pair", sni: "a.test", want: 1},
		{name: "second SAN of first pair", sni: "alias-a.test", want: 1},
		{name: "upper case", sni: "A.TEST", want: 1},
		{name: "rsa pair", sni: "b.test", want: 2},
		{name: "unknown gets default", sni: "unknown.test", want: 0},
		{name: "wildcard", sni: "x.wild.test", want: 3},
		{name: "exact beats wildcard", sni: "exact.wild.test", want: 4},
		{name: "wildcard is one label", sni: "a.b.wild.test", want: 0},
		{name: "wildcard needs a label", sni: "wild.test", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := handshake(t, addr, clientConfig(tt.sni))
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if got, want := peerDER(t, st), leafDER(t, pairs[tt.want].CertFile); !bytes.Equal(got, want) {
				t.Errorf("SNI %q: got certificate for %v, want %s", tt.sni, st.PeerCertificates[0].DNSNames, pairs[tt.want].CertFile)
			}
		})
	}
}

// TestSNIVerified checks that a verifying client accepts the certificate
// chosen for its name, so selection and generated SANs agree.
func TestSNIVerified(t *testing.T) {
	dir := t.TempDir()
	pairs := []Pair{
		genPair(t, dir, SelfSigned{Hosts: []string{"one.test", "127.0.0.1"}}),
		genPair(t, dir, SelfSigned{Hosts: []string{"*.two.test"}}),
	}
	s := newStore(t, pairs, Options{})
	addr := startEchoServer(t, s.TLSConfig())

	tests := []struct {
		name     string
		sni      string
		pair     int
		wantFail bool
	}{
		{name: "exact", sni: "one.test", pair: 0},
		{name: "wildcard", sni: "www.two.test", pair: 1},
		{name: "IP without SNI", sni: "127.0.0.1", pair: 0},
		{name: "default does not verify for another name", sni: "three.test", pair: 0, wantFail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			roots := certPool(t, pairs[tt.pair].CertFile)
			_, err := handshake(t, addr, &tls.Config{ServerName: tt.sni, RootCAs: roots})
			if (err != nil) != tt.wantFail {
				t.Fatalf("handshake error = %v, want failure %v", err, tt.wantFail)
			}
		})
	}
}

func TestPickNormalizesName(t *testing.T) {
	dir := t.TempDir()
	pairs := []Pair{
		genPair(t, dir, SelfSigned{Hosts: []string{"default.test"}}),
		genPair(t, dir, SelfSigned{Hosts: []string{"Mixed.Test."}}),
	}
	s := newStore(t, pairs, Options{})
	snap := s.cur.Load()
	tests := []struct {
		name string
		sni  string
		want int
	}{
		{name: "trailing dot", sni: "mixed.test.", want: 1},
		{name: "mixed case SAN", sni: "mixed.test", want: 1},
		{name: "upper case SNI", sni: "MIXED.TEST", want: 1},
		{name: "dot only", sni: ".", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := snap.pick(&tls.ClientHelloInfo{ServerName: tt.sni})
			if want := leafDER(t, pairs[tt.want].CertFile); !bytes.Equal(got.Leaf.Raw, want) {
				t.Errorf("pick(%q) = %v, want pair %d", tt.sni, got.Leaf.DNSNames, tt.want)
			}
		})
	}
}

// TestDualCertificate serves an ECDSA and an RSA certificate for the same
// name and checks that a client that only accepts RSA gets the RSA one.
func TestDualCertificate(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	pairs := []Pair{
		genPair(t, dirA, SelfSigned{Hosts: []string{"dual.test"}}),
		genPair(t, dirB, SelfSigned{Hosts: []string{"dual.test"}, Key: KeyRSA2048}),
	}
	s := newStore(t, pairs, Options{})
	addr := startEchoServer(t, s.TLSConfig())
	tests := []struct {
		name   string
		suites []uint16
		want   int
	}{
		{name: "ecdsa", suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, want: 0},
		{name: "rsa", suites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := clientConfig("dual.test")
			cfg.MaxVersion = tls.VersionTLS12
			cfg.CipherSuites = tt.suites
			st, err := handshake(t, addr, cfg)
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if !bytes.Equal(peerDER(t, st), leafDER(t, pairs[tt.want].CertFile)) {
				t.Errorf("got %s certificate, want pair %d", st.PeerCertificates[0].PublicKeyAlgorithm, tt.want)
			}
		})
	}
}

func TestNewStoreErrors(t *testing.T) {
	fixedNow := func() time.Time { return time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC) }

	tests := []struct {
		name string
		// setup writes files into dir and returns the pairs and the
		// expected error text (with file names filled in).
		setup    func(t *testing.T, dir string) ([]Pair, string)
		opts     Options
		wantIs   error
		contains bool // wantText is a substring, not the exact text
	}{
		{
			name: "missing certificate",
			setup: func(t *testing.T, dir string) ([]Pair, string) {
				p := Pair{CertFile: filepath.Join(dir, "nope.pem"), KeyFile: filepath.Join(dir, "nope-key.pem")}
				return []Pair{p}, "tlsconf: read certificate: open " + p.CertFile + ": no such file or directory"
			},
			wantIs: fs.ErrNotExist,
		},
		{
			name: "missing key",
			setup: func(t *testing.T, dir string) ([]Pair, string) {
				p := genPair(t, dir, SelfSigned{Hosts: []string{"a.test"}})
				p.KeyFile = filepath.Join(dir, "gone-key.pem")
				return []Pair{p}, "tlsconf: read key: open " + p.KeyFile + ": no such file or directory"
			},
			wantIs: fs.ErrNotExist,
		},
		{
			name: "certificate is not PEM",
			setup: func(t *testing.T, dir string) ([]Pair, string) {
				p := genPair(t, dir, SelfSigned{Hosts: []string{"a.test"}})
				writeFile(t, p.CertFile, "this is not PEM\n")
				return []Pair{p}, "tlsconf: " + p.CertFile + ": no PEM CERTIFICATE block found"
			},
		},
		{
			name: "key is not PEM",
			setup: func(t *testing.T, dir string) ([]Pair, string) {
				p := genPair(t, dir, SelfSigned{Hosts: []string{"a.test"}})
				writeFile(t, p.KeyFile, "\x00\x01garbage")
				return []Pair{p}, "tlsconf: " + p.KeyFile + ": no PEM private key found"
			},
		},
		{
			name: "key file holds only a certificate",
			setup: func(t *testing.T, dir string) ([]Pair, string) {
				p := genPair(t, dir, SelfSigned{Hosts: []string{"a.test"}})
				p.KeyFile = p.CertFile
				return []Pair{p}, "tlsconf: " + p.CertFile + ": no PEM private key found"
			},
		},
		{
			name: "corrupt certificate DER",
			setup: func(t *testing.T, dir string) ([]Pair, string) {
				p := genPair(t, dir, SelfSigned{Hosts: []string{"a.test"}})
				writeFile(t, p.CertFile, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
				return []Pair{p}, "tlsconf: " + p.CertFile + ": parse certificate: "
			},
			contains: true,
		},
		{
			name: "certificate does not match key",
			setup: func(t *testing.T, dir string) ([]Pair, string) {
				a := genPair(t, dir, SelfSigned{Hosts: []string{"a.test"}})
				b := genPair(t, dir, SelfSigned{Hosts: []string{"b.test"}})
				p := Pair{CertFile: a.CertFile, KeyFile: b.KeyFile}
				return []Pair{p}, "tlsconf: " + a.CertFile + ": certificate does not match key " + b.KeyFile
			},
		},
		{
			name: "RSA certificate with ECDSA key",
			setup: func(t *testing.T, dir string) ([]Pair, string) {
				a := genPair(t, dir, SelfSigned{Hosts: []string{"a.test"}, Key: KeyRSA2048})
				b := genPair(t, dir, SelfSigned{Hosts: []string{"b.test"}})
				p := Pair{CertFile: a.CertFile, KeyFile: b.KeyFile}
				return []Pair{p}, "tlsconf: " + a.CertFile + ": certificate does not match key " + b.KeyFile
			},
		},
		{
			name: "expired",
			setup: func(t *testing.T, dir string) ([]Pair, string) {
				p := genPair(t, dir, SelfSigned{
					Hosts:     []string{"old.test"},
					NotBefore: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
					ValidFor:  24 * time.Hour,
				})
				return []Pair{p}, "tlsconf: " + p.CertFile + ": certificate expired on 2026-01-02"
			},
			opts: Options{Now: fixedNow},
		},
		{
			name: "expired by the wall clock",
			setup: func(t *testing.T, dir string) ([]Pair, string) {
				p := genPair(t, dir, SelfSigned{
					Hosts:     []string{"old.test"},
					NotBefore: time.Date(2020, 2, 3, 0, 0, 0, 0, time.UTC),
					ValidFor:  30 * 24 * time.Hour,
				})
				return []Pair{p}, "tlsconf: " + p.CertFile + ": certificate expired on 2020-03-04"
			},
		},
		{
			name: "not yet valid",
			setup: func(t *testing.T, dir string) ([]Pair, string) {
				p := genPair(t, dir, SelfSigned{
					Hosts:     []string{"new.test"},
					NotBefore: time.Date(2027, 3, 4, 5, 6, 7, 0, time.UTC),
				})
				return []Pair{p}, "tlsconf: " + p.CertFile + ": certificate not valid until 2027-03-04T05:06:07Z"
			},
			opts: Options{Now: fixedNow},
		},
		{
			name: "errors of all pairs are reported",
			setup: func(t *testing.T, dir string) ([]Pair, string) {
				good := genPair(t, dir, SelfSigned{Hosts: []string{"good.test"}})
				bad1 := Pair{CertFile: filepath.Join(dir, "x.pem"), KeyFile: good.KeyFile}
				bad2 := Pair{CertFile: good.CertFile, KeyFile: filepath.Join(dir, "y-key.pem")}
				return []Pair{bad1, good, bad2},
					"tlsconf: read certificate: open " + bad1.CertFile + ": no such file or directory\n" +
						"tlsconf: read key: open " + bad2.KeyFile + ": no such file or directory"
			},
			wantIs: fs.ErrNotExist,
		},
		{
			name: "no pairs",
			setup: func(t *testing.T, dir string) ([]Pair, string) {
				return nil, "tlsconf: no certificate/key pairs configured"
			},
		},
		{
			name: "unsupported MinVersion",
			setup: func(t *testing.T, dir string) ([]Pair, string) {
				return []Pair{genPair(t, dir, SelfSigned{Hosts: []string{"a.test"}})},
					"tlsconf: MinVersion TLS 1.1 not supported (want TLS 1.2 or TLS 1.3)"
			},
			opts: Options{MinVersion: tls.VersionTLS11},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pairs, want := tt.setup(t, t.TempDir())
			s, err := NewStore(pairs, tt.opts)
			if err == nil {
				t.Fatalf("NewStore succeeded (%d certificates), want error %q", len(s.Certificates()), want)
			}
			got := err.Error()
			if tt.contains && !strings.Contains(got, want) || !tt.contains && got != want {
				t.Errorf("error:\n got %q\nwant %q", got, want)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.wantIs)
			}
		})
	}
}

func TestNewStoreAccepts(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) Pair
	}{
		{
			name: "combined certificate and key file",
			setup: func(t *testing.T, dir string) Pair {
				p := genPair(t, dir, SelfSigned{Hosts: []string{"combined.test"}})
				combined := filepath.Join(dir, "combined.pem")
				writeFile(t, combined, readFile(t, p.CertFile)+readFile(t, p.KeyFile))
				return Pair{CertFile: combined, KeyFile: combined}
			},
		},
		{
			name: "key before certificate in combined file",
			setup: func(t *testing.T, dir string) Pair {
				p := genPair(t, dir, SelfSigned{Hosts: []string{"combined.test"}})
				combined := filepath.Join(dir, "combined.pem")
				writeFile(t, combined, readFile(t, p.KeyFile)+readFile(t, p.CertFile))
				return Pair{CertFile: combined, KeyFile: combined}
			},
		},
		{
			name: "chain with intermediate",
			setup: func(t *testing.T, dir string) Pair {
				p := genPair(t, dir, SelfSigned{Hosts: []string{"leaf.test"}})
				other := genPair(t, dir, SelfSigned{Hosts: []string{"intermediate.test"}})
				writeFile(t, p.CertFile, readFile(t, p.CertFile)+readFile(t, other.CertFile))
				return p
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.setup(t, t.TempDir())
			s := newStore(t, []Pair{p}, Options{})
			addr := startEchoServer(t, s.TLSConfig())
			st, err := handshake(t, addr, clientConfig(""))
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if !bytes.Equal(peerDER(t, st), leafDER(t, p.CertFile)) {
				t.Errorf("server presented the wrong leaf")
			}
		})
	}
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	p := genPair(t, dir, SelfSigned{Hosts: []string{"svc.test"}})
	oldDER := leafDER(t, p.CertFile)
	s := newStore(t, []Pair{p}, Options{})
	addr := startEchoServer(t, s.TLSConfig())

	before, err := dialTLS(t, addr, clientConfig("svc.test"))
	if err != nil {
		t.Fatalf("handshake before reload: %v", err)
	}
	echo(t, before, "before reload")
	if !bytes.Equal(peerDER(t, before.ConnectionState()), oldDER) {
		t.Fatal("first connection did not get the original certificate")
	}

	// Same first host, so the same file names; new key and an extra SAN.
	if p2 := genPair(t, dir, SelfSigned{Hosts: []string{"svc.test", "v2.svc.test"}}); p2 != p {
		t.Fatalf("regenerated pair %v, want same files as %v", p2, p)
	}
	newDER := leafDER(t, p.CertFile)
	if bytes.Equal(newDER, oldDER) {
		t.Fatal("regenerated certificate is identical")
	}
	if err := s.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}

	st, err := handshake(t, addr, clientConfig("v2.svc.test"))
	if err != nil {
		t.Fatalf("handshake after reload: %v", err)
	}
	if !bytes.Equal(peerDER(t, st), newDER) {
		t.Errorf("new handshake got %v, want the reloaded certificate", st.PeerCertificates[0].DNSNames)
	}
	// The connection opened before the reload keeps working.
	echo(t, before, "after reload")
	echo(t, before, strings.Repeat("x", 64<<10))

	if got, want := s.Certificates()[0].Names, []string{"svc.test", "v2.svc.test"}; !slices.Equal(got, want) {
		t.Errorf("Certificates()[0].Names = %v, want %v", got, want)
	}
}

func TestReloadKeepsOldOnError(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(t *testing.T, p Pair)
		want   string // substring of the Reload error
	}{
		{
			name:   "garbage key",
			break_: func(t *testing.T, p Pair) { writeFile(t, p.KeyFile, "garbage") },
			want:   "no PEM private key found",
		},
		{
			name: "missing certificate",
			break_: func(t *testing.T, p Pair) {
				if err := os.Remove(p.CertFile); err != nil {
					t.Fatal(err)
				}
			},
			want: "no such file or directory",
		},
		{
			name: "certificate replaced, key not",
			break_: func(t *testing.T, p Pair) {
				other := genPair(t, t.TempDir(), SelfSigned{Hosts: []string{"other.test"}})
				writeFile(t, p.CertFile, readFile(t, other.CertFile))
			},
			want: "certificate does not match key",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := genPair(t, dir, SelfSigned{Hosts: []string{"svc.test"}})
			oldDER := leafDER(t, p.CertFile)
			s := newStore(t, []Pair{p}, Options{})
			addr := startEchoServer(t, s.TLSConfig())
			before, err := dialTLS(t, addr, clientConfig("svc.test"))
			if err != nil {
				t.Fatal(err)
			}
			oldInfo := s.Certificates()

			tt.break_(t, p)
			err = s.Reload()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Reload error = %v, want it to contain %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), dir) {
				t.Errorf("Reload error %q does not name the file", err)
			}

			st, err := handshake(t, addr, clientConfig("svc.test"))
			if err != nil {
				t.Fatalf("handshake after failed reload: %v", err)
			}
			if !bytes.Equal(peerDER(t, st), oldDER) {
				t.Error("failed reload replaced the certificate")
			}
			if got := s.Certificates(); !slices.EqualFunc(got, oldInfo, func(a, b CertInfo) bool {
				return a.NotAfter.Equal(b.NotAfter) && slices.Equal(a.Names, b.Names)
			}) {
				t.Errorf("Certificates() changed after failed reload: %v", got)
			}
			echo(t, before, "still here")

			// A repaired pair loads again.
			genPair(t, dir, SelfSigned{Hosts: []string{"svc.test"}})
			if err := s.Reload(); err != nil {
				t.Fatalf("Reload after repair: %v", err)
			}
		})
	}
}

// TestConcurrentReload runs handshakes while the files are rewritten and
// reloaded; run it with -race.
func TestConcurrentReload(t *testing.T) {
	dir := t.TempDir()
	p := genPair(t, dir, SelfSigned{Hosts: []string{"svc.test"}})
	s := newStore(t, []Pair{p}, Options{HTTP2: true})
	addr := startEchoServer(t, s.TLSConfig())

	const reloads = 10
	var (
		mu    sync.Mutex // guards known
		known = map[string]bool{string(leafDER(t, p.CertFile)): true}
		done  = make(chan struct{})
		errc  = make(chan error, 1)
	)
	go func() {
		defer close(done)
		for range reloads {
			c, k, err := SelfSigned{Hosts: []string{"svc.test"}}.Write(dir)
			if err == nil && (c != p.CertFile || k != p.KeyFile) {
				err = errors.New("file names changed")
			}
			if err == nil {
				data, rerr := os.ReadFile(c)
				if rerr != nil {
					err = rerr
				} else {
					mu.Lock()
					known[string(derOf(data))] = true
					mu.Unlock()
				}
			}
			if err == nil {
				err = s.Reload()
			}
			if err != nil {
				errc <- err
				return
			}
		}
	}()

	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for i := 0; i < 100; i++ {
				select {
				case <-done:
					return
				default:
				}
				st, err := handshake(t, addr, clientConfig("svc.test"))
				if err != nil {
					t.Errorf("handshake during reloads: %v", err)
					return
				}
				mu.Lock()
				ok := known[string(st.PeerCertificates[0].Raw)]
				mu.Unlock()
				if !ok {
					t.Error("server presented a certificate that was never written")
					return
				}
			}
		})
	}
	wg.Wait()
	<-done
	select {
	case err := <-errc:
		t.Fatalf("reloader: %v", err)
	default:
	}
}

func TestMinVersionAndSuites(t *testing.T) {
	dir := t.TempDir()
	ecdsaPair := genPair(t, dir, SelfSigned{Hosts: []string{"ec.test"}})
	rsaPair := genPair(t, dir, SelfSigned{Hosts: []string{"rsa.test"}, Key: KeyRSA2048})
	pairs := []Pair{ecdsaPair, rsaPair}

	tests := []struct {
		name        string
		minVersion  uint16
		sni         string
		clientMax   uint16
		suites      []uint16
		wantVersion uint16 // 0: handshake must fail
	}{
		{name: "default min accepts 1.2", sni: "ec.test", clientMax: tls.VersionTLS12, wantVersion: tls.VersionTLS12},
		{name: "default min prefers 1.3", sni: "ec.test", wantVersion: tls.VersionTLS13},
		{name: "min 1.3 rejects 1.2-only client", minVersion: tls.VersionTLS13, sni: "ec.test", clientMax: tls.VersionTLS12},
		{name: "min 1.3 accepts 1.3", minVersion: tls.VersionTLS13, sni: "ec.test", wantVersion: tls.VersionTLS13},
		{name: "min 1.2 rejects 1.1 client", sni: "ec.test", clientMax: tls.VersionTLS11},
		{name: "ECDSA CBC suite rejected", sni: "ec.test", clientMax: tls.VersionTLS12,
			suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}},
		{name: "RSA key exchange rejected", sni: "rsa.test", clientMax: tls.VersionTLS12,
			suites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_256_GCM_SHA384}},
		{name: "ECDSA ChaCha20", sni: "ec.test", clientMax: tls.VersionTLS12,
			suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}, wantVersion: tls.VersionTLS12},
		{name: "RSA AES-256-GCM", sni: "rsa.test", clientMax: tls.VersionTLS12,
			suites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}, wantVersion: tls.VersionTLS12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, pairs, Options{MinVersion: tt.minVersion})
			addr := startEchoServer(t, s.TLSConfig())
			cfg := clientConfig(tt.sni)
			cfg.MaxVersion = tt.clientMax
			cfg.CipherSuites = tt.suites
			st, err := handshake(t, addr, cfg)
			if tt.wantVersion == 0 {
				if err == nil {
					t.Fatalf("handshake succeeded with %s %s, want failure",
						tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if st.Version != tt.wantVersion {
				t.Errorf("version = %s, want %s", tls.VersionName(st.Version), tls.VersionName(tt.wantVersion))
			}
			if st.Version == tls.VersionTLS12 && !slices.Contains(tls12Suites, st.CipherSuite) {
				t.Errorf("negotiated %s, not in the allowed list", tls.CipherSuiteName(st.CipherSuite))
			}
		})
	}
}

func TestALPN(t *testing.T) {
	dir := t.TempDir()
	p := genPair(t, dir, SelfSigned{Hosts: []string{"svc.test"}})
	tests := []struct {
		name   string
		http2  bool
		client []string
		want   string
	}{
		{name: "http2 on", http2: true, client: []string{"h2", "http/1.1"}, want: "h2"},
		{name: "http2 on, client h1 only", http2: true, client: []string{"http/1.1"}, want: "http/1.1"},
		{name: "http2 off", http2: false, client: []string{"h2", "http/1.1"}, want: "http/1.1"},
		{name: "no ALPN from client", http2: true, client: nil, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, []Pair{p}, Options{HTTP2: tt.http2})
			addr := startEchoServer(t, s.TLSConfig())
			cfg := clientConfig("svc.test")
			cfg.NextProtos = tt.client
			st, err := handshake(t, addr, cfg)
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if st.NegotiatedProtocol != tt.want {
				t.Errorf("ALPN = %q, want %q", st.NegotiatedProtocol, tt.want)
			}
		})
	}
}

func TestCertificates(t *testing.T) {
	dir := t.TempDir()
	notBefore := time.Now().Add(-time.Hour).Truncate(time.Second)
	pairs := []Pair{
		genPair(t, dir, SelfSigned{Hosts: []string{"a.test", "127.0.0.1", "::1"}, NotBefore: notBefore, ValidFor: 48 * time.Hour}),
		genPair(t, dir, SelfSigned{Hosts: []string{"*.b.test"}, Key: KeyRSA2048, NotBefore: notBefore}),
	}
	s := newStore(t, pairs, Options{})
	got := s.Certificates()
	want := []CertInfo{
		{CertFile: pairs[0].CertFile, KeyFile: pairs[0].KeyFile, Names: []string{"a.test", "127.0.0.1", "::1"},
			Algorithm: "ECDSA", NotBefore: notBefore, NotAfter: notBefore.Add(48 * time.Hour), Default: true},
		{CertFile: pairs[1].CertFile, KeyFile: pairs[1].KeyFile, Names: []string{"*.b.test"},
			Algorithm: "RSA", NotBefore: notBefore, NotAfter: notBefore.Add(24 * time.Hour)},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d certificates, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.CertFile != w.CertFile || g.KeyFile != w.KeyFile || !slices.Equal(g.Names, w.Names) ||
			g.Algorithm != w.Algorithm || !g.NotBefore.Equal(w.NotBefore) || !g.NotAfter.Equal(w.NotAfter) ||
			g.Default != w.Default {
			t.Errorf("Certificates()[%d] =\n %+v\nwant\n %+v", i, g, w)
		}
	}
	// The result is a copy.
	got[0].Names[0] = "changed"
	if s.Certificates()[0].Names[0] != "a.test" {
		t.Error("Certificates returned shared storage")
	}
}

// TestSelectionDoesNotAllocate guards the per-handshake cost of the
// GetCertificate hook.
func TestSelectionDoesNotAllocate(t *testing.T) {
	dir := t.TempDir()
	pairs := []Pair{
		genPair(t, dir, SelfSigned{Hosts: []string{"default.test"}}),
		genPair(t, dir, SelfSigned{Hosts: []string{"a.test"}}),
		genPair(t, dir, SelfSigned{Hosts: []string{"*.wild.test"}}),
	}
	s := newStore(t, pairs, Options{})
	get := s.TLSConfig().GetCertificate
	for _, sni := range []string{"", "a.test", "x.wild.test", "unknown.test", "a.test."} {
		hello := &tls.ClientHelloInfo{ServerName: sni}
		allocs := testing.AllocsPerRun(100, func() {
			if c, err := get(hello); c == nil || err != nil {
				t.Fatalf("GetCertificate(%q) = %v, %v", sni, c, err)
			}
		})
		if allocs != 0 {
			t.Errorf("GetCertificate(%q): %v allocations, want 0", sni, allocs)
		}
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
