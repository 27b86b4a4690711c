package kclbconf

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/BurntSushi/toml"

	"github.com/kclb/kclb/internal/configmap"
	"github.com/kclb/kclb/tlsconf"
)

// TestFileIsAValidConfig writes a lab's configuration and reads it back
// with kclb's own config package.
func TestFileIsAValidConfig(t *testing.T) {
	dir := t.TempDir()
	cert, key, err := tlsconf.GenerateSelfSigned(dir, []string{"sso.example.com"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var f File
	f.Global("edge-a", "shutdown_grace", 2*time.Second).
		Listener("https", "203.0.113.100:8443", "tls", true, "freebind", true).
		Certificate(cert, key).
		Section("affinity", "secret", "shared-between-both-edge-nodes-0123").
		Section("health", "interval", 100*time.Millisecond, "timeout", 90*time.Millisecond, "rise", 1, "fall", 2).
		Server("keycloak1", "203.0.113.21:8080", "203.0.113.21:9000").
		Table("vrrp.instance", "name", "VI_1", "interface", "eth0", "vrid", 51, "priority", 110,
			"advert_int", 100*time.Millisecond, "vips", []string{"203.0.113.100/24"})
	cfg, err := configmap.Parse([]byte(f.String()), dir)
	if err != nil {
		t.Fatalf("%v\n%s", err, f.String())
	}
	if cfg.Global.Name != "edge-a" || len(cfg.Listeners) != 1 || len(cfg.Backend.Servers) != 1 || len(cfg.VRRP.Instances) != 1 {
		t.Fatalf("read back %+v\n%s", cfg, f.String())
	}
	if !strings.Contains(f.String(), "state_file = \"\"\naccess_log = false\n") {
		t.Errorf("Global did not write its defaults:\n%s", f.String())
	}
	var g File
	g.Global("x", "access_log", true)
	if strings.Count(g.String(), "access_log") != 1 {
		t.Errorf("Global wrote access_log twice:\n%s", g.String())
	}
}

// FuzzQuote: every string written as a value reads back as itself.
func FuzzQuote(f *testing.F) {
	for _, s := range []string{"", "plain", `a"b\c`, "line\nbreak\ttab", "\x00\x1f\x7f", "ünïcode ☃"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			t.Skip("TOML files are UTF-8")
		}
		var v struct{ K string }
		if _, err := toml.Decode("K = "+Value(s), &v); err != nil {
			t.Fatalf("%q written as %s: %v", s, Value(s), err)
		}
		if v.K != s {
			t.Fatalf("%q read back as %q", s, v.K)
		}
	})
}
