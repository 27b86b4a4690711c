package importer

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/config"
	"github.com/kclb/kclb/internal/configmap"
)

// minimalHAProxy is enough for a valid kclb configuration.
const minimalHAProxy = `frontend f
    bind *:80
    default_backend b
backend b
    server k1 10.0.0.1:8080 check
`

func TestImportMappings(t *testing.T) {
	tests := []struct {
		name       string
		haproxy    string
		keepalived string
		check      func(t *testing.T, c *config.Config)
		wantWarn   []string // substrings, each in some warning
		noWarn     []string // substrings in no warning
	}{
		{
			// Issue 14, item 1: HAProxy's client-certificate bind options
			// and the SSL_CLIENT_CERT header become client_auth,
			// client_ca and client_cert_header = "haproxy".
			name: "client certificates",
			haproxy: "frontend f\n bind :443 ssl crt /x.pem ca-file /ca.pem verify required\n http-request set-header SSL_CLIENT_CERT %[ssl_c_der,base64]\n http-request set-header CERT_CHAIN_0 %[ssl_c_chain_der]\n" +
				minimalHAProxy[len("frontend f\n    bind *:80\n"):],
			check: func(t *testing.T, c *config.Config) {
				l := c.Listeners[0]
				if l.ClientAuth != config.ClientAuthRequired || !strings.HasSuffix(l.ClientCA, "/ca.pem") {
					t.Errorf("client_auth %v, client_ca %q", l.ClientAuth, l.ClientCA)
				}
				if c.Backend.ClientCertHeader != config.CertHeaderHAProxy {
					t.Errorf("client_cert_header %v, want haproxy", c.Backend.ClientCertHeader)
				}
			},
		},
		{
			name: "client certificates without a CA",
			haproxy: "frontend f\n bind :443 ssl crt /x.pem verify optional\n bind :8443 ssl crt /x.pem ca-file /ca.pem crl-file /crl.pem verify optional\n" +
				minimalHAProxy[len("frontend f\n    bind *:80\n"):],
			check: func(t *testing.T, c *config.Config) {
				if l := c.Listeners[0]; l.ClientAuth != config.ClientAuthOff {
					t.Errorf("client_auth %v without a CA", l.ClientAuth)
				}
			},
			wantWarn: []string{"verify optional without ca-file", "without CRLs"},
		},
		{
			name:    "weights keep their ratios",
			haproxy: "frontend f\n bind :80\n default_backend b\nbackend b\n server a 10.0.0.1:8080 weight 10\n server b 10.0.0.2:8080\n",
			check: func(t *testing.T, c *config.Config) {
				if w := []int{c.Backend.Servers[0].Weight, c.Backend.Servers[1].Weight}; !slices.Equal(w, []int{10, 1}) {
					t.Errorf("weights %v, want [10 1]", w)
				}
			},
		},
		{
			name:    "checks on the management port",
			haproxy: "frontend f\n bind :80\nbackend b\n option httpchk GET /health/ready\n server a 10.0.0.1:8080 check port 9000\n server b 10.0.0.2:8080 check addr 10.1.0.2 port 9001\n",
			check: func(t *testing.T, c *config.Config) {
				if m := c.Backend.Servers[0].Management; m != "10.0.0.1:9000" {
					t.Errorf("management %q", m)
				}
				if m := c.Backend.Servers[1].Management; m != "10.1.0.2:9001" {
					t.Errorf("management %q", m)
				}
			},
			noWarn: []string{"traffic port"},
		},
		{
			name:    "no checks",
			haproxy: "frontend f\n bind :80\nbackend b\n server a 10.0.0.1:8080\n",
			check: func(t *testing.T, c *config.Config) {
				if c.Health.Enabled {
					t.Error("health enabled, want off as in HAProxy")
				}
			},
			wantWarn: []string{"haproxy.cfg:3: backend b: no server has 'check'"},
		},
		{
			name:     "connect-only checks",
			haproxy:  minimalHAProxy,
			check:    func(t *testing.T, c *config.Config) { eq(t, "health.path", c.Health.Path, "/health/ready") },
			wantWarn: []string{"backend b: HAProxy only checked that the port accepts connections"},
		},
		{
			name:    "default-server check timing",
			haproxy: "frontend f\n bind :80\nbackend b\n option httpchk /health/ready\n default-server inter 3s fall 5 rise 1 slowstart 30s maxconn 50\n server a 10.0.0.1:8080 check\n",
			check: func(t *testing.T, c *config.Config) {
				eq(t, "interval", c.Health.Interval.Duration, 3*time.Second)
				eq(t, "fall", c.Health.Fall, 5)
				eq(t, "rise", c.Health.Rise, 1)
				eq(t, "slowstart", c.Health.Slowstart.Duration, 30*time.Second)
				eq(t, "default_maxconn", c.Backend.DefaultMaxConn, 50)
				eq(t, "maxconn", c.Backend.Servers[0].MaxConn, 50)
			},
		},
		{
			name:    "backend directives in defaults",
			haproxy: "defaults\n option httpchk GET /health/live\n balance roundrobin\n default-server check port 9000\n" + minimalHAProxy,
			check: func(t *testing.T, c *config.Config) {
				eq(t, "health.path", c.Health.Path, "/health/live")
				eq(t, "balance", c.Backend.Balance, config.BalanceRoundRobin)
				eq(t, "management", c.Backend.Servers[0].Management, "10.0.0.1:9000")
			},
			noWarn: []string{"defaults", "traffic port"},
		},
		{
			name:    "short interval caps the timeout",
			haproxy: "frontend f\n bind :80\nbackend b\n timeout check 5s\n server a 10.0.0.1:8080 check inter 500ms\n",
			check: func(t *testing.T, c *config.Config) {
				eq(t, "interval", c.Health.Interval.Duration, 500*time.Millisecond)
				eq(t, "timeout", c.Health.Timeout.Duration, 500*time.Millisecond)
			},
		},
		{
			name:     "different inter per server",
			haproxy:  "frontend f\n bind :80\nbackend b\n server a 10.0.0.1:8080 check inter 3s\n server b 10.0.0.2:8080 check inter 4s\n",
			check:    func(t *testing.T, c *config.Config) { eq(t, "interval", c.Health.Interval.Duration, 3*time.Second) },
			wantWarn: []string{"haproxy.cfg:5: server b 10.0.0.2:8080 check inter 4s: kclb has one health.interval for all servers; using the value from haproxy.cfg:4"},
		},
		{
			name:    "Keycloak's cookie name is refused",
			haproxy: "frontend f\n bind :80\nbackend b\n cookie AUTH_SESSION_ID insert maxlife 2h\n server a 10.0.0.1:8080\n",
			check: func(t *testing.T, c *config.Config) {
				eq(t, "cookie", c.Affinity.Cookie, "KC_ROUTE")
				eq(t, "max_age", c.Affinity.MaxAge.Duration, 2*time.Hour)
			},
			wantWarn: []string{`cookie "AUTH_SESSION_ID" would clobber one of Keycloak's cookies; using KC_ROUTE`},
		},
		{
			name:    "no cookie, no affinity",
			haproxy: minimalHAProxy,
			check:   func(t *testing.T, c *config.Config) { eq(t, "affinity.enabled", c.Affinity.Enabled, false) },
		},
		{
			name:    "leastconn",
			haproxy: "frontend f\n bind :80\nbackend b\n balance leastconn\n server a 10.0.0.1:8080\n",
			check:   func(t *testing.T, c *config.Config) { eq(t, "balance", c.Backend.Balance, config.BalanceLeastRequest) },
		},
		{
			name:    "IPv6 and several TLS binds with one certificate",
			haproxy: "global\n ssl-default-bind-options ssl-min-ver TLSv1.3\nfrontend f\n bind :::443 ssl crt /x.pem alpn h2,http/1.1\n bind 127.0.0.1:8443 ssl crt /x.pem\n bind [::]:80\n redirect scheme https code 301 if !{ ssl_fc }\n" + minimalHAProxy[len("frontend f\n    bind *:80\n"):],
			check: func(t *testing.T, c *config.Config) {
				var got []string
				for _, l := range c.Listeners {
					got = append(got, l.Name+"="+l.Bind)
				}
				if want := []string{"https=:443", "https-8443=127.0.0.1:8443", "http=:80"}; !slices.Equal(got, want) {
					t.Errorf("listeners %v, want %v", got, want)
				}
				eq(t, "certificates", len(c.TLS.Certificates), 1)
				eq(t, "min_version", c.TLS.MinVersion, config.TLS13)
				eq(t, "redirect", c.Listeners[2].RedirectHTTPS, true)
				eq(t, "redirect_port", c.Listeners[2].RedirectPort, 443)
			},
		},
		{
			// Issue 15: bind :443 + bind :::443 v4v6 gave two listeners that
			// kclb check rejects; Go's ":443" is dual-stack.
			name:    "dual-stack binds are one listener",
			haproxy: "frontend f\n bind :443 ssl crt /x.pem\n bind :::443 v4v6 ssl crt /x.pem\n bind 0.0.0.0:80\n bind [::]:80\n" + minimalHAProxy[len("frontend f\n    bind *:80\n"):],
			check: func(t *testing.T, c *config.Config) {
				var got []string
				for _, l := range c.Listeners {
					got = append(got, l.Name+"="+l.Bind)
				}
				if want := []string{"https=:443", "http=:80"}; !slices.Equal(got, want) {
					t.Errorf("listeners %v, want %v", got, want)
				}
			},
			wantWarn: []string{"haproxy.cfg:3: bind :::443 v4v6 ssl crt /x.pem: the same listener as haproxy.cfg:2"},
		},
		{
			// Issue 15: the source-address ACL guarding the admin paths was
			// dropped and admin_networks stayed loopback.
			name:    "source ACLs guarding non-public paths become admin_networks",
			haproxy: "frontend f\n bind :80\n acl public path_beg /realms/ /resources/\n acl internal src 10.0.0.0/8 192.168.0.0/16\n http-request deny if !public !internal\n" + minimalHAProxy[len("frontend f\n    bind *:80\n"):],
			check: func(t *testing.T, c *config.Config) {
				eq(t, "admin_networks", fmt.Sprint(c.Paths.AdminNetworks), "[10.0.0.0/8 192.168.0.0/16]")
				eq(t, "public", strings.Join(c.Paths.Public, " "), "/realms/ /resources/")
			},
			noWarn: []string{"every path was proxied"},
		},
		{
			name:    "inline ACLs on /admin",
			haproxy: "frontend f\n bind :80\n http-request deny if { path_beg /admin } !{ src 203.0.113.0/24 }\n" + minimalHAProxy[len("frontend f\n    bind *:80\n"):],
			check: func(t *testing.T, c *config.Config) {
				eq(t, "admin_networks", fmt.Sprint(c.Paths.AdminNetworks), "[203.0.113.0/24]")
			},
		},
		{
			name:    "access rules kclb cannot express are errors",
			haproxy: "frontend f\n bind :80\n acl internal src 10.0.0.0/8\n http-request deny if !internal\n http-request deny if { path_beg /realms/master } !internal\n http-request deny if { hdr(host) -i old.example.com }\n" + minimalHAProxy[len("frontend f\n    bind *:80\n"):],
			check: func(t *testing.T, c *config.Config) {
				eq(t, "admin_networks", fmt.Sprint(c.Paths.AdminNetworks), "[127.0.0.0/8 ::1/128]")
			},
			wantWarn: []string{"haproxy.cfg:4: http-request deny if !internal: restricts every path", "haproxy.cfg:5: http-request deny if { path_beg /realms/master } !internal: restricts /realms/master", "haproxy.cfg:6: http-request deny if { hdr(host) -i old.example.com }: the ACL hdr(host)"},
		},
		{
			name:     "headers kclb strips are notes",
			haproxy:  "frontend f\n bind :80\n http-request del-header forwarded\n http-request del-header X-Real-IP\n http-request del-header x-forwarded-for\n" + minimalHAProxy[len("frontend f\n    bind *:80\n"):],
			check:    func(t *testing.T, c *config.Config) {},
			wantWarn: []string{"haproxy.cfg:3: http-request del-header forwarded: kclb removes forwarded", "haproxy.cfg:4: http-request del-header X-Real-IP: kclb removes X-Real-IP"},
			noWarn:   []string{"no kclb equivalent"},
		},
		{
			name:    "X-Frame-Options SAMEORIGIN and Referrer-Policy",
			haproxy: "frontend f\n bind :80\n http-response set-header X-Frame-Options SAMEORIGIN\n http-response set-header Referrer-Policy same-origin\n" + minimalHAProxy[len("frontend f\n    bind *:80\n"):],
			check: func(t *testing.T, c *config.Config) {
				eq(t, "referrer_policy", c.Headers.ReferrerPolicy, "same-origin")
			},
			noWarn: []string{"X-Frame-Options", "Referrer-Policy"},
		},
		{
			name:    "global maxconn below the frontend's",
			haproxy: "global\n maxconn 100\ndefaults\n maxconn 2000\n" + minimalHAProxy,
			check:   func(t *testing.T, c *config.Config) { eq(t, "maxconn", c.Global.MaxConn, 100) },
		},
		{
			name:    "server without port, backup server, second backend",
			haproxy: "frontend f\n bind :80\n default_backend b\nbackend b\n server a kc1.example.com\n server b 10.0.0.2:8080 backup\nbackend other\n server x 10.9.9.9:80\n",
			check: func(t *testing.T, c *config.Config) {
				eq(t, "address", c.Backend.Servers[0].Address, "kc1.example.com:8080")
				// Issue 14, item 5: a backup server is imported as one,
				// never as an active server.
				eq(t, "servers", len(c.Backend.Servers), 2)
				eq(t, "a backup", c.Backend.Servers[0].Backup, false)
				eq(t, "b backup", c.Backend.Servers[1].Backup, true)
			},
			wantWarn: []string{"haproxy.cfg:5: server a kc1.example.com: no port", "haproxy.cfg:7: backend other: kclb proxies to one Keycloak cluster"},
		},
		{
			name:    "keepalived version 3 with unicast, nopreempt, notify and garp",
			haproxy: minimalHAProxy,
			keepalived: `global_defs {
    router_id edge1
    vrrp_version 3
    vrrp_garp_master_repeat 3
}
vrrp_instance VI_6 {
    state BACKUP
    interface ens3
    virtual_router_id 7
    priority 90
    advert_int 0.5
    nopreempt
    preempt_delay 10
    unicast_peer {
        203.0.113.11
        203.0.113.12
    }
    virtual_ipaddress {
        203.0.113.100
        203.0.113.101/24 dev ens3 label ens3:1
    }
    garp_master_delay 2
    notify_master "/usr/local/bin/on-master.sh VI_6"
}
`,
			check: func(t *testing.T, c *config.Config) {
				v := c.VRRP.Instances[0]
				eq(t, "name", c.Global.Name, "edge1")
				eq(t, "version", v.Version, 3)
				eq(t, "advert_int", v.AdvertInt.Duration, 500*time.Millisecond)
				eq(t, "preempt", v.Preempt, false)
				eq(t, "preempt_delay", v.PreemptDelay.Duration, 10*time.Second)
				eq(t, "garp_repeat", v.GARPRepeat, 3)
				eq(t, "garp_delay", v.GARPDelay.Duration, 2*time.Second)
				eq(t, "notify_master", v.NotifyMaster, "/usr/local/bin/on-master.sh VI_6")
				eq(t, "track_weight", v.TrackWeight, 0)
				eq(t, "auth_pass", v.AuthPass, "")
				wantVIPs := []netip.Prefix{netip.MustParsePrefix("203.0.113.100/32"), netip.MustParsePrefix("203.0.113.101/24")}
				if !slices.Equal(v.VIPs, wantVIPs) {
					t.Errorf("vips %v, want %v", v.VIPs, wantVIPs)
				}
				wantPeers := []netip.Addr{netip.MustParseAddr("203.0.113.11"), netip.MustParseAddr("203.0.113.12")}
				if !slices.Equal(v.UnicastPeers, wantPeers) {
					t.Errorf("unicast peers %v, want %v", v.UnicastPeers, wantPeers)
				}
			},
			noWarn: []string{"keepalived.conf"},
		},
		{
			name:       "keepalived default version is 2",
			haproxy:    minimalHAProxy,
			keepalived: "vrrp_instance V {\n interface eth0\n virtual_router_id 1\n advert_int 1.5\n virtual_ipaddress {\n 192.0.2.1/24\n }\n}\n",
			check: func(t *testing.T, c *config.Config) {
				eq(t, "version", c.VRRP.Instances[0].Version, 2)
				eq(t, "advert_int", c.VRRP.Instances[0].AdvertInt.Duration, 2*time.Second)
			},
			wantWarn: []string{"keepalived.conf:4: advert_int 1.5: VRRP version 2 needs whole seconds; rounded up"},
		},
		{
			name:       "positive script weight raises the base priority",
			haproxy:    minimalHAProxy,
			keepalived: "vrrp_script s {\n script /bin/true\n weight 20\n}\nvrrp_instance V {\n interface eth0\n track_script {\n s\n }\n virtual_router_id 1\n priority 100\n virtual_ipaddress {\n 192.0.2.1/24\n }\n}\n",
			check: func(t *testing.T, c *config.Config) {
				eq(t, "priority", c.VRRP.Instances[0].Priority, 120)
				eq(t, "track_weight", c.VRRP.Instances[0].TrackWeight, 20)
			},
		},
		{
			name:       "script weight 0 means fault",
			haproxy:    minimalHAProxy,
			keepalived: "vrrp_script s {\n script /bin/true\n}\nvrrp_instance V {\n interface eth0\n virtual_router_id 1\n virtual_ipaddress {\n 192.0.2.1/24\n }\n track_script {\n s\n }\n}\n",
			check:      func(t *testing.T, c *config.Config) { eq(t, "track_weight", c.VRRP.Instances[0].TrackWeight, 254) },
			wantWarn:   []string{"weight 0 makes keepalived enter FAULT"},
		},
		{
			name:       "authentication forces version 2",
			haproxy:    minimalHAProxy,
			keepalived: "global_defs {\n vrrp_version 3\n}\nvrrp_instance V {\n interface eth0\n virtual_router_id 1\n virtual_ipaddress {\n 192.0.2.1/24\n }\n authentication {\n auth_type PASS\n auth_pass short\n }\n}\n",
			check: func(t *testing.T, c *config.Config) {
				eq(t, "version", c.VRRP.Instances[0].Version, 2)
				eq(t, "auth_pass", c.VRRP.Instances[0].AuthPass, "short")
			},
			wantWarn: []string{"authentication needs VRRP version 2; using version 2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ka *Source
			if tt.keepalived != "" {
				ka = &Source{Name: "keepalived.conf", Data: []byte(tt.keepalived)}
			}
			r, err := Import(Source{Name: "haproxy.cfg", Data: []byte(tt.haproxy)}, ka)
			if err != nil {
				t.Fatal(err)
			}
			c, err := configmap.Parse(provideFiles(t, r.Config), "")
			if err != nil {
				t.Fatalf("Parse: %v\n%s", err, r.Config)
			}
			var ws []string
			for _, w := range r.Warnings {
				// Matched without the severity word: "file:line: directive: msg".
				ws = append(ws, strings.Replace(w.String(), ": "+w.Severity.String()+": ", ": ", 1))
			}
			all := strings.Join(ws, "\n")
			for _, w := range tt.wantWarn {
				if !strings.Contains(all, w) {
					t.Errorf("no warning contains %q; warnings:\n%s", w, all)
				}
			}
			for _, w := range tt.noWarn {
				for _, got := range ws {
					if strings.Contains(got, w) {
						t.Errorf("unexpected warning %q", got)
					}
				}
			}
			tt.check(t, c)
			if t.Failed() {
				t.Logf("output:\n%s", r.Config)
			}
		})
	}
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestImportErrors(t *testing.T) {
	tests := []struct {
		name       string
		haproxy    string
		keepalived *Source
		want       string
	}{
		{"no input", "", nil, "no input"},
		{"haproxy quote", "global\n log \"x\n", nil, "haproxy line 2"},
		{"keepalived braces", minimalHAProxy, &Source{Name: "k", Data: []byte("}")}, "keepalived line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Import(Source{Name: "h", Data: []byte(tt.haproxy)}, tt.keepalived)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
