package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startHAProxy runs haproxy with cfg in the foreground until the test
// ends and waits until every address in binds accepts connections.
func startHAProxy(t *testing.T, cfg string, binds ...string) {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy not installed")
	}
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", path)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out.String())
		}
	})
	for _, b := range binds {
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", b, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-done:
				t.Fatalf("haproxy exited: %s", out.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("haproxy does not listen on %s: %v", b, err)
			}
			time.Sleep(20 * time.Millisecond) // polling a port: haproxy has no readiness signal in -db mode
		}
	}
}

// TestProxyProtocolBehindHAProxy pins issue 14, item 2 through the real
// binaries: HAProxy (mode tcp, send-proxy-v2 and send-proxy) in front of
// a kclb listener with proxy_protocol = true. The client address in the
// header, not HAProxy's, reaches Keycloak's X-Forwarded-For and the rate
// limit (whose exempt network is HAProxy's own address); a direct
// connection from the trusted address without a header, and one from
// an untrusted address, are closed and counted.
func TestProxyProtocolBehindHAProxy(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	eb := startEdgeBackend(t)
	admin, addr := freeAddr(t), freeAddr(t)
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("metrics-token-of-at-least-32-bytes-0123"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "kclb.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
[global]
name = "edge"
state_file = ""
access_log = false

[timeouts]
client_header = "1s"

[admin]
socket = ""
tcp = %q
token_file = %q
public_read = true

[health]
enabled = false

[paths]
public = ["/realms/"]

[[listener]]
name = "http"
bind = %q
proxy_protocol = true
proxy_protocol_from = ["127.0.0.1/32"]

[[backend.server]]
name = "kc1"
address = %q

[[rate_limit]]
name = "login"
paths = ["/realms/*/login-actions/authenticate"]
rate = "1/m"
burst = 2
exempt = ["127.0.0.1/32"]
`, admin, token, addr, eb.addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	startKclb(t, cfg, 1)
	v2, v1 := freeAddr(t), freeAddr(t)
	startHAProxy(t, fmt.Sprintf(`
defaults
  mode tcp
  timeout connect 5s
  timeout client 10s
  timeout server 10s
frontend v2
  bind %s
  default_backend kclb_v2
frontend v1
  bind %s
  default_backend kclb_v1
backend kclb_v2
  server kclb %s send-proxy-v2 source 127.0.0.1
backend kclb_v1
  server kclb %s send-proxy source 127.0.0.1
`, v2, v1, addr, addr), v2, v1)

	for _, tc := range []struct{ name, front, client string }{{"v2", v2, "127.0.0.3"}, {"v1", v1, "127.0.0.4"}} {
		t.Run(tc.name, func(t *testing.T) {
			got := curlBurst(t, tc.client, "http://"+tc.front+"/realms/acme/login-actions/authenticate", 3)
			if strings.Join(got, "|") != "200|200|429 60" {
				t.Fatalf("burst from %s through HAProxy: %q, want 200, 200, 429 (limited by the header's address)", tc.client, got)
			}
			if h := eb.last(); !strings.Contains(h, "X-Forwarded-For: "+tc.client+"\r\n") {
				t.Fatalf("Keycloak got no X-Forwarded-For of the client %s:\n%s", tc.client, h)
			}
		})
	}
	// Straight to kclb from the trusted address: no header, closed.
	if got := rawExchange(t, addr, "GET /realms/a HTTP/1.1\r\nHost: x\r\n\r\n"); got != "" {
		t.Fatalf("request without a PROXY header answered: %q", got)
	}
	// From an address outside proxy_protocol_from: closed unread.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\nGET /realms/a HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, _ := io.ReadAll(c); len(b) != 0 {
		t.Fatalf("untrusted sender answered: %q", b)
	}
	c.Close()
	m := scrapeMetrics(t, "http://"+admin)
	for _, tc := range []struct {
		name, label, value string
		want               float64
	}{
		{"kclb_proxy_protocol_refused_total", "reason", "untrusted", 1},
		{"kclb_proxy_protocol_refused_total", "reason", "bad_header", 1},
		{"kclb_rate_limited_requests_total", "rule", "login", 2},
	} {
		if got := metricValue(t, m, tc.name, map[string]string{tc.label: tc.value}); got != tc.want {
			t.Errorf("%s{%s=%q} = %v, want %v", tc.name, tc.label, tc.value, got, tc.want)
		}
	}
}

// TestProxyProtocolTLSAndHTTP2 pins issue 14, item 2 on a TLS listener:
// the header precedes the TLS handshake, and the header's client reaches
// Keycloak over HTTP/1.1 (kclb's own server) and over HTTP/2 (net/http's,
// after the hand-off), with HAProxy passing TLS through in mode tcp.
func TestProxyProtocolTLSAndHTTP2(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	eb := startEdgeBackend(t)
	dir := t.TempDir()
	cert, key, _ := testCert(t, dir)
	addr := freeAddr(t)
	cfg := filepath.Join(dir, "kclb.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
[global]
name = "edge"
state_file = ""
access_log = false

[admin]
socket = ""

[health]
enabled = false

[paths]
public = ["/realms/"]

[[listener]]
name = "https"
bind = %q
tls = true
http2 = true
proxy_protocol = true
proxy_protocol_from = ["127.0.0.1/32"]

[[tls.certificate]]
cert = %q
key = %q

[[backend.server]]
name = "kc1"
address = %q
`, addr, cert, key, eb.addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	startKclb(t, cfg, 1)
	front := freeAddr(t)
	startHAProxy(t, fmt.Sprintf(`
defaults
  mode tcp
  timeout connect 5s
  timeout client 10s
  timeout server 10s
frontend tls
  bind %s
  default_backend kclb
backend kclb
  server kclb %s send-proxy-v2 source 127.0.0.1
`, front, addr), front)
	for _, tc := range []struct{ proto, flag, client string }{{"HTTP/1.1", "--http1.1", "127.0.0.5"}, {"HTTP/2", "--http2", "127.0.0.6"}} {
		out, err := exec.Command("curl", "-sk", tc.flag, "--interface", tc.client, "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
			"https://"+front+"/realms/acme/account").CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", tc.proto, err, out)
		}
		if want := map[string]string{"HTTP/1.1": "200 1.1", "HTTP/2": "200 2"}[tc.proto]; string(out) != want {
			t.Fatalf("%s through HAProxy: %q, want %q", tc.proto, out, want)
		}
		if h := eb.last(); !strings.Contains(h, "X-Forwarded-For: "+tc.client+"\r\n") {
			t.Fatalf("%s: Keycloak got no X-Forwarded-For of the client %s:\n%s", tc.proto, tc.client, h)
		}
	}
}
