package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testPKI is a CA hierarchy written as PEM files: root → intermediate →
// client leaf, and an unrelated rogue CA with its own client.
type testPKI struct {
	rootFile   string // the root CA (client_ca)
	clientCert string // leaf followed by the intermediate
	clientKey  string
	leafDER    []byte
	interDER   []byte
	rogueFile  string // the rogue CA
	rogueCert  string // a client certificate of the rogue CA
	rogueKey   string
}

func newTestPKI(t *testing.T, dir string) *testPKI {
	t.Helper()
	p := &testPKI{}
	write := func(name string, blocks ...*pem.Block) string {
		var b []byte
		for _, blk := range blocks {
			b = append(b, pem.EncodeToMemory(blk)...)
		}
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	serial := int64(1)
	issue := func(cn string, ca bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		serial++
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
		}
		if ca {
			tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
			tmpl.KeyUsage = x509.KeyUsageCertSign
		} else {
			tmpl.KeyUsage = x509.KeyUsageDigitalSignature
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}
		signer, signKey := tmpl, key
		if parent != nil {
			signer, signKey = parent, parentKey
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signKey)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c, key, der
	}
	keyBlock := func(k *ecdsa.PrivateKey) *pem.Block {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	}
	root, rootKey, rootDER := issue("Test Root CA", true, nil, nil)
	inter, interKey, interDER := issue("Test Issuing CA", true, root, rootKey)
	_, leafKey, leafDER := issue("alice", false, inter, interKey)
	p.rootFile = write("root.pem", &pem.Block{Type: "CERTIFICATE", Bytes: rootDER})
	p.clientCert = write("alice.pem", &pem.Block{Type: "CERTIFICATE", Bytes: leafDER}, &pem.Block{Type: "CERTIFICATE", Bytes: interDER})
	p.clientKey = write("alice.key", keyBlock(leafKey))
	p.leafDER, p.interDER = leafDER, interDER

	rogue, rogueKey, rogueDER := issue("Rogue CA", true, nil, nil)
	_, mKey, mDER := issue("mallory", false, rogue, rogueKey)
	p.rogueFile = write("rogue-ca.pem", &pem.Block{Type: "CERTIFICATE", Bytes: rogueDER})
	p.rogueCert = write("mallory.pem", &pem.Block{Type: "CERTIFICATE", Bytes: mDER})
	p.rogueKey = write("mallory.key", keyBlock(mKey))
	return p
}

// curlTLS runs one curl request to url, trusting caFile for the server,
// with extra arguments (--cert/--key, -H, --http1.1/--http2). It returns
// the HTTP status ("000" when the TLS handshake or the first read failed)
// and curl's exit code.
func curlTLS(t *testing.T, caFile, url string, extra ...string) (string, int) {
	t.Helper()
	args := append([]string{"-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", caFile}, extra...)
	out, err := exec.Command("curl", append(args, url)...).Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("curl: %v", err)
	}
	return strings.TrimSpace(string(out)), code
}

// headerValue returns the value of the first header named name
// (case-insensitively) in a recorded request head, and whether there was one.
func headerValue(head, name string) (string, bool) {
	for line := range strings.SplitSeq(head, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// TestClientCertificatesThroughBinary pins issue 14, item 1 end to end on
// each client-facing server (kclb's HTTP/1.1 server, net/http's HTTP/1.1
// and HTTP/2): with client_auth = "optional", curl's verified certificate
// reaches the backend as RFC 9440 Client-Cert (the leaf's DER) and
// Client-Cert-Chain (the intermediate curl sent), replacing a forged
// copy; without a certificate no certificate header arrives, forged ones
// included; a certificate of another CA ends the handshake. With
// client_auth = "required", no certificate or a rogue one is a TLS alert
// and never reaches the backend.
func TestClientCertificatesThroughBinary(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	serverCert, serverKey, _ := testCert(t, dir)
	tlsSection := fmt.Sprintf("[[tls.certificate]]\ncert = %q\nkey = %q\n", serverCert, serverKey)
	wantCert := ":" + base64.StdEncoding.EncodeToString(pki.leafDER) + ":"
	wantChain := ":" + base64.StdEncoding.EncodeToString(pki.interDER) + ":"
	forged := []string{"-H", "Client-Cert: :Zm9yZ2Vk:", "-H", "SSL_CLIENT_CERT: forged", "-H", "X-Forwarded-Client-Cert: Hash=00"}

	for _, tc := range []struct{ name, listener, curl string }{
		{"kclb-h1", "", "--http1.1"},
		{"nethttp-h1", "stdlib_http1 = true", "--http1.1"},
		{"h2", "", "--http2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eb := startEdgeBackend(t)
			addr, _ := startEdgeKclb(t, eb, "", fmt.Sprintf("tls = true\nclient_auth = \"optional\"\nclient_ca = %q\n%s", pki.rootFile, tc.listener), tlsSection)
			url := "https://" + addr + "/realms/acme/protocol/openid-connect/token"

			args := append([]string{tc.curl, "--cert", pki.clientCert, "--key", pki.clientKey}, forged...)
			if code, rc := curlTLS(t, serverCert, url, args...); code != "200" {
				t.Fatalf("verified certificate: status %q (curl exit %d)", code, rc)
			}
			head := eb.last()
			if v, _ := headerValue(head, "Client-Cert"); v != wantCert {
				t.Errorf("Client-Cert = %q, want the leaf's DER %q", v, wantCert)
			}
			if v, _ := headerValue(head, "Client-Cert-Chain"); v != wantChain {
				t.Errorf("Client-Cert-Chain = %q, want the intermediate %q", v, wantChain)
			}
			for _, h := range []string{"SSL_CLIENT_CERT", "X-Forwarded-Client-Cert"} {
				if v, ok := headerValue(head, h); ok {
					t.Errorf("forged %s reached the backend: %q", h, v)
				}
			}
			if n := strings.Count(strings.ToLower(head), "\r\nclient-cert:"); n != 1 {
				t.Errorf("%d Client-Cert headers reached the backend, want 1:\n%s", n, head)
			}

			if code, rc := curlTLS(t, serverCert, url, append([]string{tc.curl}, forged...)...); code != "200" {
				t.Fatalf("no certificate, optional: status %q (curl exit %d)", code, rc)
			}
			head = eb.last()
			for _, h := range []string{"Client-Cert", "Client-Cert-Chain", "SSL_CLIENT_CERT", "X-Forwarded-Client-Cert"} {
				if v, ok := headerValue(head, h); ok {
					t.Errorf("no certificate, but %s reached the backend: %q", h, v)
				}
			}

			before := headCount(eb)
			if code, rc := curlTLS(t, serverCert, url, tc.curl, "--cert", pki.rogueCert, "--key", pki.rogueKey); code != "000" || rc == 0 {
				t.Errorf("certificate of another CA, optional: status %q, curl exit %d; want a TLS alert", code, rc)
			}
			if headCount(eb) != before {
				t.Errorf("a request with a rogue certificate reached the backend")
			}
		})
	}

	t.Run("required", func(t *testing.T) {
		eb := startEdgeBackend(t)
		addr, _ := startEdgeKclb(t, eb, "", fmt.Sprintf("tls = true\nclient_auth = \"required\"\nclient_ca = %q\n", pki.rootFile), tlsSection)
		url := "https://" + addr + "/realms/acme/protocol/openid-connect/token"
		for name, args := range map[string][]string{
			"no certificate": {"-H", "Client-Cert: :Zm9yZ2Vk:"},
			"rogue":          {"--cert", pki.rogueCert, "--key", pki.rogueKey},
		} {
			if code, rc := curlTLS(t, serverCert, url, args...); code != "000" || rc == 0 {
				t.Errorf("%s, required: status %q, curl exit %d; want a TLS alert", name, code, rc)
			}
		}
		if n := headCount(eb); n != 0 {
			t.Errorf("%d refused requests reached the backend", n)
		}
		if code, rc := curlTLS(t, serverCert, url, "--cert", pki.clientCert, "--key", pki.clientKey); code != "200" {
			t.Fatalf("verified certificate, required: status %q (curl exit %d)", code, rc)
		}
		if v, _ := headerValue(eb.last(), "Client-Cert"); v != wantCert {
			t.Errorf("Client-Cert = %q, want %q", v, wantCert)
		}
	})
}

// TestClientCAReloadsOnSIGHUP pins issue 14, item 1 ("the CA reloads on
// SIGHUP like server certificates"): after the client_ca file is
// rewritten with another CA and kclb gets SIGHUP, new handshakes verify
// against the new CA on the listener already open.
func TestClientCAReloadsOnSIGHUP(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	serverCert, serverKey, _ := testCert(t, dir)
	caFile := filepath.Join(dir, "client-ca.pem")
	copyFile := func(from string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(caFile, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(pki.rootFile)
	eb := startEdgeBackend(t)
	addr, proc := startEdgeKclb(t, eb, "", fmt.Sprintf("tls = true\nclient_auth = \"required\"\nclient_ca = %q\n", caFile),
		fmt.Sprintf("[[tls.certificate]]\ncert = %q\nkey = %q\n", serverCert, serverKey))
	url := "https://" + addr + "/realms/acme/"
	alice := []string{"--cert", pki.clientCert, "--key", pki.clientKey}
	mallory := []string{"--cert", pki.rogueCert, "--key", pki.rogueKey}
	if code, _ := curlTLS(t, serverCert, url, alice...); code != "200" {
		t.Fatalf("before reload, root CA's client: %q", code)
	}
	if code, _ := curlTLS(t, serverCert, url, mallory...); code != "000" {
		t.Fatalf("before reload, rogue CA's client: %q", code)
	}
	copyFile(pki.rogueFile)
	reloaded := proc.watch("configuration reloaded")
	proc.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, reloaded, "reload", 20*time.Second)
	if code, _ := curlTLS(t, serverCert, url, mallory...); code != "200" {
		t.Errorf("after reload, the new CA's client: %q", code)
	}
	if code, _ := curlTLS(t, serverCert, url, alice...); code != "000" {
		t.Errorf("after reload, the removed CA's client: %q", code)
	}
}

// headCount is how many requests eb has received.
func headCount(eb *edgeBackend) int {
	eb.mu.Lock()
	defer eb.mu.Unlock()
	return len(eb.heads)
}
