package importer

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/config"
	"github.com/kclb/kclb/internal/configmap"
)

// fileKey matches output lines naming a file kclb reads at load time.
var fileKey = regexp.MustCompile(`(?m)^(cert|key|secret_file|token_file|client_ca) = "(/[^"]*)"`)

// provideFiles creates every file the output references under a temp
// directory and returns the output rewritten to use them.
func provideFiles(t *testing.T, out []byte) []byte {
	t.Helper()
	dir := t.TempDir()
	for _, m := range fileKey.FindAllSubmatch(out, -1) {
		p := filepath.Join(dir, string(m[2]))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		content := "placeholder PEM (config only checks that it is readable)\n"
		if string(m[1]) == "secret_file" || string(m[1]) == "token_file" {
			content = "a-shared-secret-of-enough-length\n"
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return fileKey.ReplaceAll(out, []byte(`$1 = "`+dir+`$2"`))
}

func importFiles(t *testing.T, haproxy, keepalived string) *Result {
	t.Helper()
	h, err := os.ReadFile(haproxy)
	if err != nil {
		t.Fatal(err)
	}
	var ka *Source
	if keepalived != "" {
		k, err := os.ReadFile(keepalived)
		if err != nil {
			t.Fatal(err)
		}
		ka = &Source{Name: keepalived, Data: k}
	}
	r, err := Import(Source{Name: haproxy, Data: h}, ka)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestImportSeed(t *testing.T) {
	tests := []struct {
		name       string
		keepalived string
		priority   int
	}{
		{"master", "testdata/keepalived.conf", 110},
		{"backup", "testdata/keepalived-backup.conf", 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := importFiles(t, "testdata/haproxy.cfg", tt.keepalived)

			// The messages are pinned by testdata/golden/seed; the seeds
			// translate without an error.
			if errs := r.Errors(); len(errs) > 0 {
				t.Errorf("errors importing the seed: %v", errs)
			}
			for _, w := range r.Warnings {
				if !strings.Contains(string(r.Config), "#   "+w.String()+"\n") {
					t.Errorf("warning %q is not a comment at the top of the output", w)
				}
			}
			if strings.Contains(string(r.Config), "kc_vrrp_2024") {
				t.Error("the full VRRP password appears in the output")
			}

			// As generated, the only problems are the files that do not
			// exist on this machine (unless they happen to).
			_, err := configmap.Parse(r.Config, "")
			var errs *config.Errors
			if err != nil {
				if !errors.As(err, &errs) {
					t.Fatalf("Parse: %v", err)
				}
				for _, p := range errs.Problems {
					switch p.Path {
					case "tls.certificate[0].cert", "tls.certificate[0].key", "affinity.secret_file", "admin.token_file":
						if !strings.Contains(p.Msg, "does not exist") {
							t.Errorf("unexpected problem: %s", p)
						}
					default:
						t.Errorf("unexpected problem: %s", p)
					}
				}
			}

			cfg, err := configmap.Parse(provideFiles(t, r.Config), "")
			if err != nil {
				t.Fatalf("Parse with the referenced files present: %v\n%s", err, r.Config)
			}
			checkSeed(t, cfg, tt.priority)
		})
	}
}

// checkSeed compares the imported seed configuration with what the seed
// files say.
func checkSeed(t *testing.T, c *config.Config, priority int) {
	t.Helper()
	eq := func(what string, got, want any) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	eq("global.maxconn", c.Global.MaxConn, 2000)
	eq("global.access_log", c.Global.AccessLog, true)
	eq("timeouts.connect", c.Timeouts.Connect.Duration, 5*time.Second)
	eq("timeouts.client", c.Timeouts.Client.Duration, 50*time.Second)
	eq("timeouts.server", c.Timeouts.Server.Duration, 50*time.Second)
	eq("limits.retries", c.Limits.Retries, 3)
	eq("limits.redispatch", c.Limits.Redispatch, true)

	if len(c.Listeners) != 2 {
		t.Fatalf("listeners = %+v, want 2", c.Listeners)
	}
	http, https := c.Listeners[0], c.Listeners[1]
	eq("http bind", http.Bind, ":80")
	eq("http redirect_https", http.RedirectHTTPS, true)
	eq("http redirect_port", http.RedirectPort, 443)
	eq("http tls", http.TLS, false)
	eq("https bind", https.Bind, ":443")
	eq("https tls", https.TLS, true)
	if len(c.TLS.Certificates) != 1 {
		t.Fatalf("certificates = %+v, want 1", c.TLS.Certificates)
	}
	cert := c.TLS.Certificates[0]
	eq("cert is the combined PEM", strings.HasSuffix(cert.Cert, "/etc/ssl/certs/keycloak.pem"), true)
	eq("key is the same file", cert.Key, cert.Cert)

	eq("backend.balance", c.Backend.Balance, config.BalanceRoundRobin)
	if len(c.Backend.Servers) != 3 {
		t.Fatalf("servers = %+v, want 3", c.Backend.Servers)
	}
	for i, s := range c.Backend.Servers {
		n := string(rune('1' + i))
		eq("server name", s.Name, "keycloak"+n)
		eq("server address", s.Address, "keycloak"+n+".example.com:8080")
		eq("server management", s.Management, "keycloak"+n+".example.com:9000")
		eq("server maxconn", s.MaxConn, 500)
		eq("server weight", s.Weight, 100)
		eq("server route", s.Route, "")
	}

	eq("headers.frame_options", c.Headers.FrameOptions, "SAMEORIGIN")
	eq("headers.content_type_options", c.Headers.ContentTypeOptions, "nosniff")
	eq("headers.hsts", c.Headers.HSTS, "max-age=31536000; includeSubDomains")
	eq("affinity.enabled", c.Affinity.Enabled, true)
	eq("affinity.cookie", c.Affinity.Cookie, "KEYCLOAK_SERVER")
	eq("affinity.secret_file", strings.HasSuffix(c.Affinity.SecretFile, "/etc/kclb/affinity.key"), true)
	eq("affinity key from the file", string(c.Affinity.Key), "a-shared-secret-of-enough-length")
	eq("health.enabled", c.Health.Enabled, true)
	eq("health.path", c.Health.Path, "/health/ready")
	eq("health.interval", c.Health.Interval.Duration, 2*time.Second)
	eq("health.rise", c.Health.Rise, 2)
	eq("health.fall", c.Health.Fall, 3)
	eq("admin.socket", c.Admin.Socket, "/run/kclb/admin.sock")
	eq("admin.socket_mode", c.Admin.SocketMode, config.FileMode(0o660))

	if len(c.VRRP.Instances) != 1 {
		t.Fatalf("vrrp instances = %+v, want 1", c.VRRP.Instances)
	}
	v := c.VRRP.Instances[0]
	eq("vrrp name", v.Name, "VI_1")
	eq("vrrp interface", v.Interface, "eth0")
	eq("vrrp vrid", v.VRID, 51)
	eq("vrrp priority", v.Priority, priority)
	eq("vrrp advert_int", v.AdvertInt.Duration, time.Second)
	eq("vrrp version", v.Version, 2)
	eq("vrrp auth_pass", v.AuthPass, "kc_vrrp_")
	if !slices.Equal(v.VIPs, []netip.Prefix{netip.MustParsePrefix("203.0.113.100/24")}) {
		t.Errorf("vrrp vips = %v, want [203.0.113.100/24]", v.VIPs)
	}
	eq("vrrp unicast peers", len(v.UnicastPeers), 0)
	eq("vrrp preempt", v.Preempt, true)
	eq("vrrp track_weight", v.TrackWeight, 2)
	eq("vrrp track_fall", v.TrackFall, 3)
	eq("vrrp track_rise", v.TrackRise, 2)
}

// TestImportSeedComments checks that values name their source lines.
func TestImportSeedComments(t *testing.T) {
	r := importFiles(t, "testdata/haproxy.cfg", "testdata/keepalived.conf")
	for _, want := range []string{
		"# from haproxy.cfg:41 server keycloak1 keycloak1.example.com:8080 check cookie kc1 maxconn 500\n[[backend.server]]\n",
		`connect = "5s"                          # from haproxy.cfg:15 timeout connect 5000ms`,
		`retries = 3                             # from haproxy.cfg:21 retries 3`,
		`vrid = 51                               # from keepalived.conf:13 virtual_router_id 51`,
		`vips = ["203.0.113.100/24"]             # from keepalived.conf:20 virtual_ipaddress`,
		`secret_file = "/etc/kclb/affinity.key"  # HMAC key, the same file on every edge node`,
	} {
		if !strings.Contains(string(r.Config), want) {
			t.Errorf("output lacks %q:\n%s", want, r.Config)
		}
	}
}

// TestImportInstallScript imports the tutorial's simpler configuration,
// whose checks fetch a realm page under the legacy /auth prefix.
func TestImportInstallScript(t *testing.T) {
	r := importFiles(t, "testdata/haproxy-install-script.cfg", "")
	// The messages are pinned by testdata/golden/seed-install.
	if errs := r.Errors(); len(errs) > 0 {
		t.Errorf("errors importing the install script's configuration: %v", errs)
	}
	// listen stats becomes the admin TCP listener (issue 15).
	if !strings.Contains(string(r.Config), `tcp = ":8404"`) {
		t.Errorf("listen stats is not admin.tcp:\n%s", r.Config)
	}
	// No certificate and no affinity secret: it parses with the admin
	// token file present.
	c, err := configmap.Parse(provideFiles(t, r.Config), "")
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, r.Config)
	}
	eq(t, "global.maxconn", c.Global.MaxConn, 4096)
	eq(t, "listeners", len(c.Listeners), 1)
	eq(t, "bind", c.Listeners[0].Bind, ":80")
	eq(t, "redirect", c.Listeners[0].RedirectHTTPS, false)
	eq(t, "servers", len(c.Backend.Servers), 3)
	eq(t, "address", c.Backend.Servers[2].Address, "keycloak3:8080")
	eq(t, "management", c.Backend.Servers[2].Management, "keycloak3:9000")
	eq(t, "health.path", c.Health.Path, "/auth/health/ready")
	eq(t, "health.live_path", c.Health.LivePath, "/auth/health/live")
	eq(t, "affinity", c.Affinity.Enabled, false)
	eq(t, "public", strings.Join(c.Paths.Public, " "), "/auth/realms/ /auth/resources/ /auth/.well-known/")
	eq(t, "timeouts.server", c.Timeouts.Server.Duration, 50*time.Second)
}
