package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startOCSPResponder runs `openssl ocsp` as a responder for the CA in
// caFile/caKey over the certificates of index (an openssl ca index) on
// port, and returns its URL and the process. openssl reads the index
// once it has bound its port, so the index must be complete before the
// responder starts (with -port 0 and the certificate written afterwards,
// the responder sometimes read no index and exited).
func startOCSPResponder(t *testing.T, dir, caFile, caKey, port string) (string, *exec.Cmd) {
	t.Helper()
	index := filepath.Join(dir, "index.txt")
	cmd := exec.Command("openssl", "ocsp", "-index", index, "-port", port, "-rsigner", caFile, "-rkey", caKey,
		"-CA", caFile, "-ndays", "1", "-ignore_err")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	accepted := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		re := regexp.MustCompile(`ACCEPT .*:(\d+)`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				accepted <- m[1]
			}
		}
	}()
	select {
	case p := <-accepted:
		return "http://127.0.0.1:" + p, cmd
	case <-time.After(10 * time.Second):
		t.Fatal("openssl ocsp did not report its port")
	}
	return "", nil
}

// ocspCA is a CA written as ca.pem and ca.key in dir.
type ocspCA struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// pemFile appends b to dir/name.
func pemFile(t *testing.T, dir, name string, b *pem.Block) string {
	t.Helper()
	f := filepath.Join(dir, name)
	fh, err := os.OpenFile(f, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if err := pem.Encode(fh, b); err != nil {
		t.Fatal(err)
	}
	return f
}

func pkcs8Block(t *testing.T, k *ecdsa.PrivateKey) *pem.Block {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return &pem.Block{Type: "PRIVATE KEY", Bytes: der}
}

func newOCSPCA(t *testing.T, dir string) *ocspCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kclb OCSP test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pemFile(t, dir, "ca.pem", &pem.Block{Type: "CERTIFICATE", Bytes: der})
	pemFile(t, dir, "ca.key", pkcs8Block(t, key))
	return &ocspCA{dir: dir, cert: cert, key: key}
}

// issueServer writes a certificate for localhost naming responder in its
// AIA, followed by the CA (server.pem, server.key), and index.txt
// listing it as valid.
func (ca *ocspCA) issueServer(t *testing.T, responder string) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	notAfter := time.Now().Add(24 * time.Hour)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(0x1001), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		OCSPServer: []string{responder}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = pemFile(t, ca.dir, "server.pem", &pem.Block{Type: "CERTIFICATE", Bytes: der})
	pemFile(t, ca.dir, "server.pem", &pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
	keyFile = pemFile(t, ca.dir, "server.key", pkcs8Block(t, key))
	line := fmt.Sprintf("V\t%s\t\t1001\tunknown\t/CN=localhost\n", notAfter.UTC().Format("060102150405Z"))
	if err := os.WriteFile(filepath.Join(ca.dir, "index.txt"), []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// sClientStatus runs `openssl s_client -status` against addr and returns
// its output.
func sClientStatus(t *testing.T, addr, caFile string) string {
	t.Helper()
	cmd := exec.Command("openssl", "s_client", "-connect", addr, "-servername", "localhost", "-status", "-CAfile", caFile)
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl s_client: %v\n%s", err, out)
	}
	return string(out)
}

// TestOCSPStaplingThroughBinary pins issue 14, item 4 end to end with
// openssl as the responder and the client: kclb fetches a response from
// the responder its certificate names (in the background: it listens
// before any fetch) and `openssl s_client -status` sees it stapled, good;
// a response saved with `openssl ocsp -respout` and configured as
// ocsp_file, with ocsp_stapling = false and the responder gone, is
// stapled by a second kclb (the air-gapped set-up).
func TestOCSPStaplingThroughBinary(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	dir := t.TempDir()
	ca := newOCSPCA(t, dir)
	caFile, caKey := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	// The responder's URL goes into the certificate, which goes into the
	// index the responder reads at start: pick the port first.
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(pl.Addr().(*net.TCPAddr).Port)
	pl.Close()
	certFile, keyFile := ca.issueServer(t, "http://127.0.0.1:"+port)
	url, responder := startOCSPResponder(t, dir, caFile, caKey, port)

	eb := startEdgeBackend(t)
	run := func(tlsExtra, certExtra string) (string, *kclbProc) {
		return startEdgeKclb(t, eb, "", "tls = true", fmt.Sprintf("[tls]\n%s\n[[tls.certificate]]\ncert = %q\nkey = %q\n%s\n", tlsExtra, certFile, keyFile, certExtra))
	}
	addr, proc := run("", "")
	updated := proc.watch("OCSP staple updated")
	if !strings.Contains(strings.Join(proc.Logs(), "\n"), "OCSP staple updated") {
		waitLog(t, updated, "OCSP staple updated", 20*time.Second)
	}
	out := sClientStatus(t, addr, caFile)
	for _, want := range []string{"OCSP Response Status: successful", "Cert Status: good", "Next Update:"} {
		if !strings.Contains(out, want) {
			t.Fatalf("s_client -status: no %q:\n%s", want, out)
		}
	}

	respFile := filepath.Join(dir, "server.ocsp")
	if out, err := exec.Command("openssl", "ocsp", "-issuer", caFile, "-cert", certFile, "-url", url,
		"-CAfile", caFile, "-respout", respFile).CombinedOutput(); err != nil {
		t.Fatalf("openssl ocsp -respout: %v\n%s", err, out)
	}
	responder.Process.Kill()
	responder.Wait()
	addr2, _ := run("ocsp_stapling = false", fmt.Sprintf("ocsp_file = %q", respFile))
	out = sClientStatus(t, addr2, caFile)
	if !strings.Contains(out, "Cert Status: good") {
		t.Fatalf("ocsp_file: s_client -status shows no good staple:\n%s", out)
	}
}
