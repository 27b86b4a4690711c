package target

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/configmap"
)

// TestProxiesServeThroughConfig: each peer serves through the
// configuration the bench writes, plain and TLS (HTTP/2), with the
// security headers, HAProxy's affinity cookie, and the request fields
// kclb adds (ForwardedFields) with the client's scheme and port.
func TestProxiesServeThroughConfig(t *testing.T) {
	got := make(chan http.Header, 8)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/realms/test/hello" {
			select {
			case got <- r.Header.Clone():
			default:
			}
		}
		io.WriteString(w, `{"status":"UP"}`)
	}))
	t.Cleanup(be.Close)
	dir := t.TempDir()
	cert, err := WriteCert(dir, ECDSA)
	if err != nil {
		t.Fatal(err)
	}
	addr := be.Listener.Addr().String()
	env := Env{Dir: dir, Backends: []Backend{{Name: "kc1", Traffic: addr, Mgmt: addr}}, Cert: cert, MaxConn: 100, ReadyPath: "/realms/test/hello"}
	tests := []struct {
		name   string
		bin    string
		target Target
		cookie bool
	}{
		{name: "haproxy", bin: "haproxy", target: NewHAProxy(freeAddr(t), freeAddr(t)), cookie: true},
		{name: "nginx", bin: "nginx", target: NewNginx(freeAddr(t), freeAddr(t))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := exec.LookPath(tc.bin); err != nil {
				t.Skipf("needs apt package %s", tc.bin)
			}
			ctx := context.Background()
			if err := tc.target.Start(ctx, env); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tc.target.Stop() })
			if tc.target.Proc().RSS() <= 0 || tc.target.Proc().CPU() < 0 {
				t.Fatal("no process to measure")
			}
			c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: cert.Pool, ServerName: "localhost"}, ForceAttemptHTTP2: true}}
			for _, u := range []string{"http://" + tc.target.HTTPAddr(), "https://" + tc.target.HTTPSAddr()} {
				for len(got) > 0 { // the readiness probes' requests
					<-got
				}
				resp, err := c.Get(u + "/realms/test/hello")
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
					t.Fatalf("%s: status %d headers %v", u, resp.StatusCode, resp.Header)
				}
				if tc.cookie && !strings.Contains(resp.Header.Get("Set-Cookie"), "KC_ROUTE=kc1") {
					t.Fatalf("%s: no affinity cookie: %v", u, resp.Header)
				}
				if strings.HasPrefix(u, "https") && resp.ProtoMajor != 2 {
					t.Fatalf("%s: %s, want HTTP/2", u, resp.Proto)
				}
				var h http.Header
				select {
				case h = <-got:
				default:
					t.Fatalf("%s: the backend saw no request", u)
				}
				for _, k := range ForwardedFields {
					if h.Get(k) == "" {
						t.Errorf("%s: the backend got no %s: %v", u, k, h)
					}
				}
				scheme, hostport, _ := strings.Cut(u, "://")
				_, port, _ := net.SplitHostPort(hostport)
				if h.Get("X-Forwarded-Proto") != scheme || h.Get("X-Forwarded-Port") != port || h.Get("X-Forwarded-Host") != "127.0.0.1" {
					t.Errorf("%s: forwarded proto %q host %q port %q", u, h.Get("X-Forwarded-Proto"), h.Get("X-Forwarded-Host"), h.Get("X-Forwarded-Port"))
				}
			}
			if err := tc.target.Stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestWriteCert(t *testing.T) {
	for _, kt := range []KeyType{ECDSA, RSA} {
		t.Run(kt.String(), func(t *testing.T) {
			c, err := WriteCert(t.TempDir(), kt)
			if err != nil {
				t.Fatal(err)
			}
			pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tls.LoadX509KeyPair(c.Combined, c.Combined); err != nil {
				t.Fatal(err)
			}
			if pair.Leaf.PublicKeyAlgorithm.String() != map[KeyType]string{ECDSA: "ECDSA", RSA: "RSA"}[kt] {
				t.Fatalf("key algorithm %v", pair.Leaf.PublicKeyAlgorithm)
			}
		})
	}
}

func TestKclbConfigIsValid(t *testing.T) {
	dir := t.TempDir()
	cert, err := WriteCert(dir, RSA)
	if err != nil {
		t.Fatal(err)
	}
	k := NewKclb("kclb", "127.0.0.1:28500", "127.0.0.1:28510")
	cfg := k.Config(Env{Dir: dir, Cert: cert, MaxConn: 10000, Backends: []Backend{
		{Name: "kc1", Traffic: "127.0.0.1:28081", Mgmt: "127.0.0.1:29001", Route: "keycloak1"},
		{Name: "kc2", Traffic: "127.0.0.1:28082", Mgmt: "127.0.0.1:29002", Route: "keycloak2"},
	}})
	if _, err := configmap.Parse([]byte(cfg), dir); err != nil {
		t.Fatalf("kclb rejects the bench configuration: %v\n%s", err, cfg)
	}
}

func TestKclbConfigMentionsTopology(t *testing.T) {
	k := NewKclb("kclb", "127.0.0.1:1", "127.0.0.1:2")
	cfg := k.Config(Env{Backends: []Backend{{Name: "kc1", Traffic: "127.0.0.1:3", Mgmt: "127.0.0.1:4", Route: "keycloak1"}},
		Cert: &Cert{CertFile: "c.crt", KeyFile: "c.key"}, MaxConn: 10000})
	for _, want := range []string{`bind = "127.0.0.1:1"`, `management = "127.0.0.1:4"`, `route = "keycloak1"`, "access_log = false", "maxconn = 11000", `slowstart = "0s"`} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
}
