package pathpolicy

import (
	"net/netip"
	"strings"
	"testing"
)

func TestCanonical(t *testing.T) {
	tests := []struct {
		name, in, want string
		ok             bool
	}{
		{"simple", "/realms/test/account", "/realms/test/account", true},
		{"trailing slash kept", "/realms/test/", "/realms/test/", true},
		{"double slash", "//admin", "/admin", true},
		{"encoded letter", "/%61dmin", "/admin", true},
		{"double encoded", "/%2561dmin", "/admin", true},
		{"dot dot", "/realms/../admin", "/admin", true},
		{"encoded dot dot", "/realms/%2e%2e/admin", "/admin", true},
		{"encoded slash", "/realms%2F..%2Fadmin", "/admin", true},
		{"backslash", "/realms\\..\\admin", "/admin", true},
		{"params", "/admin;x", "/admin", true},
		{"params mid", "/realms;a=b/test", "/realms/test", true},
		{"dot segment", "/./realms/./x", "/realms/x", true},
		{"dotfile kept", "/.well-known/openid-configuration", "/.well-known/openid-configuration", true},
		{"climb above root", "/../etc", "", false},
		{"bad escape", "/%zz", "", false},
		{"truncated escape", "/%4", "", false},
		{"nul", "/realms/%00", "", false},
		{"not absolute", "realms", "", false},
		{"empty", "", "", false},
		{"root", "/", "/", true},
		{"too deeply encoded", "/%2525252561", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Canonical(tt.in)
			if ok != tt.ok || got != tt.want {
				t.Fatalf("Canonical(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	p := New(Options{AdminNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	outside := netip.MustParseAddr("198.51.100.7")
	inside := netip.MustParseAddr("10.1.2.3")
	tests := []struct {
		name string
		path string
		addr netip.Addr
		want Verdict
	}{
		{"realm page", "/realms/test/protocol/openid-connect/auth", outside, Allow},
		{"resources", "/resources/abc/login/keycloak.v2/css/login.css", outside, Allow},
		{"well-known", "/.well-known/openid-configuration", outside, Allow},
		{"robots", "/robots.txt", outside, Allow},
		{"js off", "/js/keycloak.js", outside, Blocked},
		{"root", "/", outside, Blocked},
		{"admin outside", "/admin/master/console/", outside, AdminDenied},
		{"admin bare", "/admin", outside, AdminDenied},
		{"admin inside", "/admin/master/console/", inside, Allow},
		{"admin v4-mapped inside", "/admin/", netip.MustParseAddr("::ffff:10.1.2.3"), Allow},
		{"double slash admin", "//admin/", outside, AdminDenied},
		{"encoded admin", "/%61dmin/", outside, AdminDenied},
		{"dotdot admin", "/realms/../admin/", outside, AdminDenied},
		{"upper admin", "/ADMIN/", outside, AdminDenied},
		{"param admin", "/admin;x/", outside, AdminDenied},
		{"encoded slash admin", "/realms%2F..%2Fadmin", outside, AdminDenied},
		{"metrics", "/metrics", outside, Blocked},
		{"metrics inside", "/metrics", inside, Blocked},
		{"health", "/health/ready", inside, Blocked},
		{"encoded health", "/%68ealth", outside, Blocked},
		{"upper health", "/Health/Live", outside, Blocked},
		{"realm prefix trick", "/realmsx/admin", outside, Blocked},
		{"invalid", "/%zz", outside, Invalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, got := p.Check(tt.path, tt.addr)
			if got != tt.want {
				t.Fatalf("Check(%q) = %v, want %v", tt.path, got, tt.want)
			}
		})
	}
}

func TestCanonicalSimpleDoesNotAllocate(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		if _, ok := Canonical("/realms/test/protocol/openid-connect/auth"); !ok {
			t.Fatal("not ok")
		}
	})
	if allocs != 0 {
		t.Fatalf("allocs = %v, want 0", allocs)
	}
}

// FuzzCanonical checks that canonical output is stable, rooted, and free
// of the constructs the policy relies on having removed.
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{"/", "//admin", "/%61dmin", "/realms/../admin", "/admin;x", "/a/./b/", "/%2e%2e/", "\\admin", "/%252e%252e/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		c, ok := Canonical(raw)
		if !ok {
			return
		}
		if !strings.HasPrefix(c, "/") {
			t.Fatalf("Canonical(%q) = %q: not rooted", raw, c)
		}
		if strings.Contains(c, "//") || strings.Contains(c, "\\") || strings.Contains(c, ";") {
			t.Fatalf("Canonical(%q) = %q: not canonical", raw, c)
		}
		for seg := range strings.SplitSeq(c, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("Canonical(%q) = %q: dot segment left", raw, c)
			}
		}
		// A canonical path containing no '%' must be a fixed point.
		if !strings.Contains(c, "%") {
			if again, ok := Canonical(c); !ok || again != c {
				t.Fatalf("Canonical(%q) = %q, again %q %v", raw, c, again, ok)
			}
		}
	})
}

func BenchmarkCheck(b *testing.B) {
	p := New(Options{})
	addr := netip.MustParseAddr("198.51.100.7")
	b.ReportAllocs()
	for b.Loop() {
		p.Check("/realms/test/protocol/openid-connect/auth", addr)
	}
}
