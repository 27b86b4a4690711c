package configmap

import (
	"slices"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/config"
	"github.com/kclb/kclb/internal/daemon"
)

// TestConversions pins each place where the configuration's spelling of
// a value differs from the runtime package's (cmd/kclb's wiring tests
// prove every key arrives somewhere; these say where and how).
func TestConversions(t *testing.T) {
	for _, tt := range []struct {
		name string
		set  func(c *config.Config)
		ok   func(s *daemon.Spec) bool
	}{
		{"passive_fails 0 disables", func(c *config.Config) { c.Health.PassiveFails = 0 }, func(s *daemon.Spec) bool { return s.Pool.PassiveFails < 0 }},
		{"passive_fails kept", func(c *config.Config) { c.Health.PassiveFails = 4 }, func(s *daemon.Spec) bool { return s.Pool.PassiveFails == 4 }},
		{"retries 0 is none", func(c *config.Config) { c.Limits.Retries, c.Limits.Redispatch = 0, true }, func(s *daemon.Spec) bool { return s.Handler.Retries < 0 }},
		{"no redispatch is no retries", func(c *config.Config) { c.Limits.Retries, c.Limits.Redispatch = 3, false }, func(s *daemon.Spec) bool { return s.Handler.Retries < 0 }},
		{"retries kept", func(c *config.Config) { c.Limits.Retries, c.Limits.Redispatch = 3, true }, func(s *daemon.Spec) bool { return s.Handler.Retries == 3 }},
		{"queue_size 0 is no queue", func(c *config.Config) { c.Limits.QueueSize = 0 }, func(s *daemon.Spec) bool { return s.Handler.QueueSize < 0 }},
		{"body_buffer_bytes 0 is none", func(c *config.Config) { c.Limits.BodyBufferBytes = 0 }, func(s *daemon.Spec) bool { return s.Handler.BodyBufferBytes < 0 }},
		{"slowstart 0 is none", func(c *config.Config) { c.Health.Slowstart.Duration = 0 }, func(s *daemon.Spec) bool { return s.Checks.Slowstart == 0 }},
		{"no slow start without checks", func(c *config.Config) { c.Health.Enabled, c.Health.Slowstart.Duration = false, time.Minute }, func(s *daemon.Spec) bool { return s.Checks.Slowstart == 0 }},
		{"negative maxconn is no limit", func(c *config.Config) { c.Global.MaxConn = -1 }, func(s *daemon.Spec) bool { return s.ConnSlots == 0 }},
		{"round robin", func(c *config.Config) { c.Backend.Balance = config.BalanceRoundRobin }, func(s *daemon.Spec) bool { return s.Balancer == "round_robin" }},
		{"affinity off", func(c *config.Config) { c.Affinity.Enabled = false }, func(s *daemon.Spec) bool { return s.Affinity == nil }},
		{"session cookie", func(c *config.Config) { c.Affinity.Enabled, c.Affinity.MaxAge.Duration = true, 0 }, func(s *daemon.Spec) bool { return s.Affinity.Session }},
		{"generated affinity key", func(c *config.Config) { c.Affinity.Secret, c.Affinity.SecretFile = "", "" }, func(s *daemon.Spec) bool { return s.AffinityKeyGenerated }},
		{"configured affinity key", func(c *config.Config) { c.Affinity.Secret = "0123456789abcdef" }, func(s *daemon.Spec) bool { return !s.AffinityKeyGenerated }},
		{"no discovery without dns_name", func(c *config.Config) { c.Backend.DNSName = "" }, func(s *daemon.Spec) bool { return s.Checks.Discovery == nil }},
		{"discovery without checks has no management port", func(c *config.Config) {
			c.Backend.DNSName, c.Backend.DNSManagementPort, c.Health.Enabled = "kc.example.org", 9000, false
		}, func(s *daemon.Spec) bool { return s.Checks.Discovery.MgmtPort == 0 && !s.Checks.Active }},
		{"server maxconn from default_maxconn", func(c *config.Config) {
			c.Backend.DefaultMaxConn = 7
			c.Backend.Servers = []config.Server{{Name: "a", Address: "127.0.0.1:1"}}
		}, func(s *daemon.Spec) bool { return s.Servers[0].MaxConn == 7 }},
		{"redirect to the first TLS port", func(c *config.Config) {
			c.Listeners = []config.Listener{{Name: "http", Bind: "127.0.0.1:80", RedirectHTTPS: true}, {Name: "https", Bind: "127.0.0.1:8443", TLS: true}}
		}, func(s *daemon.Spec) bool {
			return s.Listeners[0].RedirectPort == 8443 && slices.Equal(s.Listeners[1].NextProtos, []string{"http/1.1"})
		}},
		{"h2 over ALPN", func(c *config.Config) {
			c.Listeners = []config.Listener{{Name: "https", Bind: "127.0.0.1:8443", TLS: true, HTTP2: true}}
		}, func(s *daemon.Spec) bool { return slices.Equal(s.Listeners[0].NextProtos, []string{"h2", "http/1.1"}) }},
		{"listener identity is its table", func(c *config.Config) {
			c.Listeners = []config.Listener{{Name: "https", Bind: "127.0.0.1:8443"}}
		}, func(s *daemon.Spec) bool { return s.Listeners[0].Ident.(config.Listener).Name == "https" }},
		{"garp 0 is none", func(c *config.Config) {
			c.VRRP.Instances = []config.VRRPInstance{{Name: "vi", GARPRepeat: 0}}
		}, func(s *daemon.Spec) bool { return s.VRRP[0].GARPRepeat < 0 && s.VRRP[0].GARPDelay < 0 }},
		{"shutdown grace", func(c *config.Config) { c.Global.ShutdownGrace.Duration = 3 * time.Second }, func(s *daemon.Spec) bool { return s.ShutdownGrace == 3*time.Second }},
		{"admin socket", func(c *config.Config) { c.Admin.Socket, c.Admin.SocketMode = "/run/x.sock", 0o600 }, func(s *daemon.Spec) bool {
			return s.Admin.Socket.Path == "/run/x.sock" && s.Admin.Socket.Mode == 0o600
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			tt.set(c)
			if s := Spec(c); !tt.ok(s) {
				t.Errorf("unexpected conversion: %+v", s)
			}
		})
	}
}

// TestRestartOnlyChanges checks every restart-only key is detected, in
// the order a reload names them.
func TestRestartOnlyChanges(t *testing.T) {
	base := config.Default()
	for _, tc := range []struct {
		key string
		set func(c *config.Config)
	}{
		{"global.name", func(c *config.Config) { c.Global.Name += "x" }},
		{"global.maxconn", func(c *config.Config) { c.Global.MaxConn++ }},
		{"global.log_format", func(c *config.Config) { c.Global.LogFormat = config.LogJSON }},
		{"global.log_level", func(c *config.Config) { c.Global.LogLevel = config.LogDebug }},
		{"global.state_file", func(c *config.Config) { c.Global.StateFile = "/tmp/x" }},
		{"health.passive_fails", func(c *config.Config) { c.Health.PassiveFails = 0 }},
		{"health.panic_threshold", func(c *config.Config) { c.Health.PanicThreshold = 0.5 }},
		{"health.passive_max_ejection_percent", func(c *config.Config) { c.Health.PassiveMaxEjectionPercent = 50 }},
		{"[admin]", func(c *config.Config) { c.Admin.SocketGroup = "kclb" }},
	} {
		cur := *base
		tc.set(&cur)
		if got := RestartOnlyChanges(base, &cur); !slices.Equal(got, []string{tc.key}) {
			t.Errorf("%s changed: RestartOnlyChanges = %v", tc.key, got)
		}
	}
	if got := RestartOnlyChanges(base, base); len(got) != 0 {
		t.Errorf("unchanged: %v", got)
	}
	two := *base
	two.Global.LogLevel, two.Health.PassiveFails = config.LogDebug, 0
	if got := RestartOnlyChanges(base, &two); !slices.Equal(got, []string{"global.log_level", "health.passive_fails"}) {
		t.Errorf("two changes: %v", got)
	}
}
