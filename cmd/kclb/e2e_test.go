package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/kcsim"
	"github.com/kclb/kclb/tlsconf"
)

func bufioReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }

func asExit(err error, target **exec.ExitError) bool { return errors.As(err, target) }

// echo is what kcsim's /echo test hook reports about the request it got.
type echo = kcsim.EchoResponse

func getEcho(t *testing.T, c *http.Client, req *http.Request) echo {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: status %d: %s", req.URL, resp.StatusCode, b)
	}
	var e echo
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("echo body %q: %v", b, err)
	}
	return e
}

const echoPaths = `
[paths]
public = ["/realms/", "/resources/", "/.well-known/", "/echo", "/bigheader"]
admin_networks = ["10.0.0.0/8"]
`

func needCurl(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("needs curl (apt-get install curl)")
	}
}

// curl runs curl against kclb with the test CA and returns stdout.
func (e *env) curl(t *testing.T, args ...string) string {
	t.Helper()
	_, port, _ := net.SplitHostPort(e.httpsAddr)
	base := []string{"-sS", "--max-time", "20", "--cacert", e.certFile, "--resolve", "localhost:" + port + ":127.0.0.1"}
	out, err := exec.Command("curl", append(base, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestCurlHTTP1AndHTTP2(t *testing.T) {
	needCurl(t)
	e := newEnv(t, envOptions{})
	for _, tc := range []struct{ flag, want string }{{"--http1.1", "1.1"}, {"--http2", "2"}} {
		out := e.curl(t, tc.flag, "-w", "\n%{http_version} %{http_code}", e.url("/realms/test/.well-known/openid-configuration"))
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if got := lines[len(lines)-1]; got != tc.want+" 200" {
			t.Fatalf("%s: got %q, want %q", tc.flag, got, tc.want+" 200")
		}
		var disc map[string]any
		if err := json.Unmarshal([]byte(strings.Join(lines[:len(lines)-1], "\n")), &disc); err != nil {
			t.Fatalf("%s: discovery document: %v", tc.flag, err)
		}
		_, port, _ := net.SplitHostPort(e.httpsAddr)
		if want := "https://localhost:" + port + "/realms/test"; disc["issuer"] != want {
			t.Fatalf("issuer %v, want %s (forwarded headers reach Keycloak)", disc["issuer"], want)
		}
	}
}

func TestHTTPRedirectsToHTTPS(t *testing.T) {
	needCurl(t)
	e := newEnv(t, envOptions{})
	out := e.curl(t, "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "http://"+e.httpAddr+"/realms/test/account?x=1")
	_, port, _ := net.SplitHostPort(e.httpsAddr)
	want := "308 https://127.0.0.1:" + port + "/realms/test/account?x=1"
	if out != want {
		t.Fatalf("got %q, want %q", out, want)
	}
}

func TestRoundRobinAndStoppedNode(t *testing.T) {
	e := newEnv(t, envOptions{extra: echoPaths + "\n[affinity]\nenabled = false\n[backend]\nbalance = \"round_robin\"\n"})
	c := e.client(false)
	count := func(n int) map[string]int {
		seen := map[string]int{}
		for range n {
			req, _ := http.NewRequest("GET", e.url("/echo"), nil)
			seen[getEcho(t, c, req).Node]++
		}
		return seen
	}
	seen := count(30)
	for _, n := range []string{"keycloak1", "keycloak2", "keycloak3"} {
		if seen[n] != 10 {
			t.Fatalf("round robin spread %v, want 10 each", seen)
		}
	}
	// A stopped node is skipped on connect failure: no client error.
	e.cluster.Stop(1)
	seen = count(30)
	if seen["keycloak2"] != 0 || seen["keycloak1"]+seen["keycloak3"] != 30 {
		t.Fatalf("after stopping keycloak2: %v", seen)
	}
}

func TestLargeResponseHeaderPasses(t *testing.T) {
	e := newEnv(t, envOptions{extra: echoPaths})
	resp, err := e.client(true).Get(e.url("/bigheader?kib=100"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || len(resp.Header.Get("X-Big")) < 100<<10 {
		t.Fatalf("status %d, X-Big %d bytes", resp.StatusCode, len(resp.Header.Get("X-Big")))
	}
}

func TestSpoofedForwardedHeadersDropped(t *testing.T) {
	e := newEnv(t, envOptions{extra: echoPaths})
	for _, h2 := range []bool{false, true} {
		req, _ := http.NewRequest("GET", e.url("/echo"), nil)
		req.Header.Set("X-Forwarded-For", "6.6.6.6")
		req.Header.Set("X-Forwarded-Host", "evil.example")
		req.Header.Set("Forwarded", "for=6.6.6.6;host=evil.example")
		req.Header.Set("X-Real-IP", "6.6.6.6")
		got := getEcho(t, e.client(h2), req)
		hv := func(k string) string { return strings.Join(got.Header[k], ",") }
		_, port, _ := net.SplitHostPort(e.httpsAddr)
		if hv("X-Forwarded-For") != "127.0.0.1" || hv("X-Forwarded-Host") != "localhost" ||
			hv("X-Forwarded-Proto") != "https" || hv("X-Forwarded-Port") != port {
			t.Fatalf("h2=%v forwarded headers %v", h2, got.Header)
		}
		if hv("Forwarded") != "" || hv("X-Real-Ip") != "" {
			t.Fatalf("h2=%v spoofed header reached Keycloak: %v", h2, got.Header)
		}
	}
}

func TestAdminBypassesBlocked(t *testing.T) {
	e := newEnv(t, envOptions{extra: echoPaths})
	paths := []string{"/admin/", "//admin/", "/%61dmin/", "/realms/../admin/", "/ADMIN/", "/admin;x/",
		"/realms%2F..%2Fadmin/", "/metrics", "/health/ready", "/%68ealth/live"}
	conf := &tls.Config{RootCAs: e.roots, ServerName: "localhost", NextProtos: []string{"http/1.1"}}
	for _, p := range paths {
		conn, err := tls.Dial("tcp", e.httpsAddr, conf)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", p)
		b, _ := io.ReadAll(conn)
		conn.Close()
		status := strings.SplitN(string(b), "\r\n", 2)[0]
		if !strings.Contains(status, " 403 ") && !strings.Contains(status, " 404 ") {
			t.Errorf("%s: %q, want 403 or 404", p, status)
		}
	}
	if got := e.cluster.Stats().ByClass["admin"]; got != 0 {
		t.Fatalf("%d admin requests reached Keycloak", got)
	}
}

func TestSecurityHeadersEndToEnd(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(true)
	get := func(path string) http.Header {
		resp, err := c.Get(e.url(path))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header
	}
	// Keycloak's own login page: its X-Frame-Options and CSP survive.
	h := get("/realms/test/protocol/openid-connect/auth?client_id=app&redirect_uri=https://app.example/cb&response_type=code")
	if h.Get("X-Frame-Options") != "SAMEORIGIN" || !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'self'") {
		t.Fatalf("Keycloak's framing headers changed: XFO %q CSP %q", h.Get("X-Frame-Options"), h.Get("Content-Security-Policy"))
	}
	// The session iframe page stays frameable.
	h = get("/realms/test/protocol/openid-connect/login-status-iframe.html")
	if h.Get("X-Frame-Options") != "" {
		t.Fatalf("framing header added to the session iframe: %q", h.Get("X-Frame-Options"))
	}
	if h.Get("Strict-Transport-Security") == "" || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("missing headers not added: %v", h)
	}
}

func TestSIGHUPSwapsCertificate(t *testing.T) {
	e := newEnv(t, envOptions{})
	conf := &tls.Config{ServerName: "localhost", InsecureSkipVerify: true}
	serial := func(c *tls.Conn) string { return c.ConnectionState().PeerCertificates[0].SerialNumber.String() }
	old, err := tls.Dial("tcp", e.httpsAddr, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	before := serial(old)

	// Write a new certificate over the configured files, then SIGHUP.
	certPEM, keyPEM, err := tlsconf.SelfSigned{Hosts: []string{"localhost"}, ValidFor: time.Hour}.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	reloaded := e.proc.watch("configuration reloaded")
	e.proc.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, reloaded, "certificate reload", 10*time.Second)

	fresh, err := tls.Dial("tcp", e.httpsAddr, conf)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if after := serial(fresh); after == before {
		t.Fatalf("new handshake still sees the old certificate %s", before)
	}
	// The connection opened before the reload keeps working.
	fmt.Fprintf(old, "GET /realms/test/.well-known/openid-configuration HTTP/1.1\r\nHost: localhost\r\n\r\n")
	resp, err := http.ReadResponse(bufioReader(old), nil)
	if err != nil {
		t.Fatalf("old connection after reload: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("old connection: status %d", resp.StatusCode)
	}
}

func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	good := dir + "/good.toml"
	bad := dir + "/bad.toml"
	os.WriteFile(good, []byte("[[listener]]\nname = \"http\"\nbind = \"127.0.0.1:8080\"\n[[backend.server]]\nname = \"kc1\"\naddress = \"127.0.0.1:8081\"\n[global]\nstate_file = \"\"\n[affinity]\nsecret = \"0123456789abcdef0123\"\n"), 0o600)
	os.WriteFile(bad, []byte("[[listener]]\nname = \"http\"\nbind = \"127.0.0.1:8080\"\n[[backend.server]]\nname = \"kc1\"\naddress = \"10.0.0.21\"\n"), 0o600)
	out, err := exec.Command(kclbBin, "check", "-c", good).CombinedOutput()
	if err != nil {
		t.Fatalf("check good: %v\n%s", err, out)
	}
	out, err = exec.Command(kclbBin, "check", "-c", bad).CombinedOutput()
	var ee *exec.ExitError
	if !asExit(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("check bad: %v, want exit 1\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("backend.server[0].address")) {
		t.Fatalf("check bad does not name the key path:\n%s", out)
	}
}

// TestCheckExample runs `kclb check` on config.example.toml with its
// /etc/kclb files provided (a real certificate and a secret) in a temp dir.
func TestCheckExample(t *testing.T) {
	dir := t.TempDir()
	example, err := os.ReadFile("../../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(dir+"/tls", 0o700)
	certPEM, keyPEM, err := tlsconf.SelfSigned{Hosts: []string{"sso.example.com"}, ValidFor: time.Hour}.Generate()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(dir+"/tls/keycloak.crt", certPEM, 0o644)
	os.WriteFile(dir+"/tls/keycloak.key", keyPEM, 0o600)
	os.WriteFile(dir+"/affinity.key", []byte("a-shared-secret-of-enough-length\n"), 0o600)
	cfg := dir + "/config.toml"
	example = bytes.ReplaceAll(example, []byte(`"/etc/kclb/`), []byte(`"`+dir+`/`))
	// The kclb group exists where kclb is installed (deploy/kclb.sysusers).
	example = bytes.Replace(example, []byte(`socket_group = "kclb"`), fmt.Appendf(nil, `socket_group = "%d"`, os.Getgid()), 1)
	os.WriteFile(cfg, example, 0o600)
	out, err := exec.Command(kclbBin, "check", "-c", cfg).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("is valid")) {
		t.Fatalf("kclb check config.example.toml: %v\n%s", err, out)
	}
}
