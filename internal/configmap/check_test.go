package configmap

import (
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kclb/kclb/affinity"
	"github.com/kclb/kclb/health"
	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/config"
	"github.com/kclb/kclb/internal/ratelimit"
	"github.com/kclb/kclb/proxy"
	"github.com/kclb/kclb/vrrp"
)

// base is a small valid configuration (8 lines) the cases add to; it
// persists no state.
const base = `[global]
state_file = ""
[[listener]]
name = "http"
bind = "127.0.0.1:8080"
[[backend.server]]
name = "kc1"
address = "127.0.0.1:18081"
`

// vrrpInstance is base with one [[vrrp.instance]] (lines 9-13) and the
// keys in extra from line 14.
func vrrpInstance(extra string) string {
	return base + "[[vrrp.instance]]\nname = \"a\"\ninterface = \"eth0\"\nvrid = 1\nvips = [\"203.0.113.100/24\"]\n" + extra
}

// TestRuntimeRulesAtTheirKeys: the rules the runtime packages own
// (Options.Validate, vrrp.Check) and the conversion's own (values the
// runtime's sentinels cannot carry) come back from Parse as config's
// problems do, at the key that set the field and its line, sorted by line
// with config's own problems.
func TestRuntimeRulesAtTheirKeys(t *testing.T) {
	tests := []struct{ name, toml, want string }{
		{"vrrp ranges", base + "[[vrrp.instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 256\npriority = 0\nadvert_int = \"15ms\"\nvips = [\"203.0.113.100/24\"]\n",
			"line 12: vrrp.instance[0].vrid: 256 is out of range 1..255\n" +
				"line 13: vrrp.instance[0].priority: must not be 0 (leave the key out for its default)\n" +
				"line 14: vrrp.instance[0].advert_int: 15ms: want 10ms..40.95s in steps of 10ms"},
		{"vrrp v2", base + "[[vrrp.instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 51\nversion = 2\nadvert_int = \"1500ms\"\nauth_pass = \"kc_vrrp_2024\"\nvips = [\"203.0.113.100/24\"]\n",
			"line 14: vrrp.instance[0].advert_int: 1.5s: VRRP version 2 needs whole seconds in 1s..255s\n" +
				"line 15: vrrp.instance[0].auth_pass: is 12 bytes; VRRP allows at most 8"},
		{"vrrp vip and duplicate vrid", base + "[[vrrp.instance]]\nname = \"a\"\ninterface = \"eth0\"\nvrid = 51\nvips = [\"203.0.113.300/24\"]\n" +
			"[[vrrp.instance]]\nname = \"b\"\ninterface = \"eth0\"\nvrid = 51\nvips = [\"203.0.113.101/24\"]\n",
			"line 13: vrrp.instance[0].vips[0]: \"203.0.113.300/24\" is not a network in CIDR notation\n" +
				"line 17: vrrp.instance[1].vrid: 51 is already used on eth0 for IPv4 by instance \"a\""},
		{"vrrp auth with v3", base + "[[vrrp.instance]]\nname = \"a\"\ninterface = \"eth0\"\nvrid = 1\nauth_pass = \"x\"\nvips = [\"203.0.113.100\"]\n",
			"line 13: vrrp.instance[0].auth_pass: VRRP version 3 has no authentication; remove the password or use version 2"},
		{"vrrp mixed families", base + "[[vrrp.instance]]\nname = \"a\"\ninterface = \"eth0\"\nvrid = 1\nvips = [\"2001:db8::100/64\", \"203.0.113.100/24\"]\n",
			"line 13: vrrp.instance[0].vips[1]: \"203.0.113.100/24\" is IPv4 but the instance's first VIP is IPv6: one address family per instance (put the other family in an instance of its own)"},
		{"vrrp ipv6 version 2", base + "[[vrrp.instance]]\nname = \"a\"\ninterface = \"eth0\"\nvrid = 1\nversion = 2\nvips = [\"2001:db8::100/64\"]\n",
			"line 13: vrrp.instance[0].version: 2 is IPv4 only; IPv6 virtual addresses need version = 3"},
		{"vrrp ipv4-mapped vip", base + "[[vrrp.instance]]\nname = \"a\"\ninterface = \"eth0\"\nvrid = 1\nvips = [\"::ffff:203.0.113.100/128\"]\n",
			"line 13: vrrp.instance[0].vips[0]: \"::ffff:203.0.113.100/128\" is an IPv4-mapped IPv6 address; write it as IPv4 (203.0.113.100)"},
		{"vrrp ipv6 peer", base + "[[vrrp.instance]]\nname = \"a\"\ninterface = \"eth0\"\nvrid = 1\nvips = [\"203.0.113.100\"]\nunicast_peers = [\"2001:db8::11\"]\n",
			"line 14: vrrp.instance[0].unicast_peers[0]: \"2001:db8::11\" is not IPv4 like the instance's virtual addresses"},
		{"vrrp ipv4 peer of ipv6", base + "[[vrrp.instance]]\nname = \"a\"\ninterface = \"eth0\"\nvrid = 1\nvips = [\"2001:db8::100\"]\nunicast_peers = [\"203.0.113.11\"]\n",
			"line 14: vrrp.instance[0].unicast_peers[0]: \"203.0.113.11\" is not IPv6 like the instance's virtual addresses"},
		{"vrrp ipv6 global peer", base + "[[vrrp.instance]]\nname = \"a\"\ninterface = \"eth0\"\nvrid = 1\nvips = [\"2001:db8::100\"]\nunicast_peers = [\"2001:db8::12\"]\n",
			"line 14: vrrp.instance[0].unicast_peers[0]: \"2001:db8::12\" is not link-local (fe80::/10): IPv6 adverts come from the peer's link-local address, so list that"},
		{"vrrp ipv6 global source", base + "[[vrrp.instance]]\nname = \"a\"\ninterface = \"eth0\"\nvrid = 1\nvips = [\"2001:db8::100\"]\nsource_address = \"2001:db8::11\"\n",
			"line 14: vrrp.instance[0].source_address: \"2001:db8::11\" is not an IPv6 link-local address (fe80::/10): IPv6 adverts are sent from the interface's link-local address (RFC 5798 §5.1.2.1)"},
		{"vrrp duplicate vrid same family", base + "[[vrrp.instance]]\nname = \"a\"\ninterface = \"eth0\"\nvrid = 51\nvips = [\"2001:db8::100\"]\n" +
			"[[vrrp.instance]]\nname = \"b\"\ninterface = \"eth0\"\nvrid = 51\nvips = [\"2001:db8::101\"]\n",
			"line 17: vrrp.instance[1].vrid: 51 is already used on eth0 for IPv6 by instance \"a\""},
		{"vrrp interface", strings.Replace(vrrpInstance(""), "interface = \"eth0\"", "interface = \"a/b\"", 1),
			"line 11: vrrp.instance[0].interface: \"a/b\" is not a valid interface name"},
		{"vrrp zero version and rise", vrrpInstance("version = 0\ntrack_rise = 0\ntrack_fall = 0\n"),
			"line 14: vrrp.instance[0].version: must not be 0 (leave the key out for its default)\n" +
				"line 15: vrrp.instance[0].track_rise: must not be 0 (leave the key out for its default)\n" +
				"line 16: vrrp.instance[0].track_fall: must not be 0 (leave the key out for its default)"},
		{"vrrp zero advert_int", vrrpInstance("advert_int = \"0s\"\n"),
			"line 14: vrrp.instance[0].advert_int: must not be 0 (leave the key out for its default)"},
		{"vrrp negative off", vrrpInstance("garp_repeat = -1\ngarp_delay = \"-1s\"\ngarp_refresh = \"-1s\"\npreempt_delay = \"-1s\"\n"),
			"line 14: vrrp.instance[0].garp_repeat: -1 is less than 0\n" +
				"line 15: vrrp.instance[0].garp_delay: must not be negative, got -1s\n" +
				"line 16: vrrp.instance[0].garp_refresh: must not be negative, got -1s\n" +
				"line 17: vrrp.instance[0].preempt_delay: must not be negative, got -1s"},
		{"two problems at one key", vrrpInstance("auth_pass = \"123456789\"\n"),
			"line 14: vrrp.instance[0].auth_pass: VRRP version 3 has no authentication; remove the password or use version 2\n" +
				"line 14: vrrp.instance[0].auth_pass: is 9 bytes; VRRP allows at most 8"},
		{"vrrp track weight", vrrpInstance("track_weight = 255\n"),
			"line 14: vrrp.instance[0].track_weight: 255 is out of range 0..254"},
		{"vrrp and config problems sorted by line", "[timeouts]\nconnect = \"0s\"\n" + vrrpInstance("priority = 256\n"),
			"line 2: timeouts.connect: must be greater than 0, got 0s\n" +
				"line 16: vrrp.instance[0].priority: 256 is out of range 1..255"},
		{"vrrp source address", vrrpInstance("unicast_peers = [\"203.0.113.11\"]\nsource_address = \"203.0.113.11\"\n"),
			"line 15: vrrp.instance[0].source_address: \"203.0.113.11\" is also one of the unicast peers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantProblems(t, tt.toml, tt.want) })
	}
}

// wantProblems parses text and wants exactly the problems want lists
// (as *config.Errors prints them) and no configuration.
func wantProblems(t *testing.T, text, want string) {
	t.Helper()
	c, err := Parse([]byte(text), t.TempDir())
	var errs *config.Errors
	if !errors.As(err, &errs) || c != nil {
		t.Fatalf("Parse = %v, %v; want a nil config and *config.Errors:\n%s", c != nil, err, want)
	}
	if got := err.Error(); got != want {
		t.Errorf("error text:\n%s\nwant:\n%s", got, want)
	}
}

// TestVRRPSourceAddress: source_address (keepalived's unicast_src_ip,
// issue 15) is optional, must be an address of the instance's family
// that is neither a VIP nor a peer, reported at its line.
func TestVRRPSourceAddress(t *testing.T) {
	inst := func(src string) string {
		return vrrpInstance("unicast_peers = [\"203.0.113.11\"]\n" + src)
	}
	if _, err := Parse([]byte(inst(`source_address = "203.0.113.10"`+"\n")), ""); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ val, want string }{
		{`"2001:db8::1"`, "not an IPv4 address"},
		{`"203.0.113.100"`, "virtual addresses"},
		{`"203.0.113.11"`, "unicast peers"},
		{`"127.0.0.1"`, "cannot be the source"},
		{`"eth0"`, "not an IP address"},
	} {
		_, err := Parse([]byte(inst("source_address = "+tt.val+"\n")), "")
		var errs *config.Errors
		if !errors.As(err, &errs) || len(errs.Problems) != 1 || errs.Problems[0].Path != "vrrp.instance[0].source_address" ||
			!strings.Contains(errs.Problems[0].Msg, tt.want) || errs.Problems[0].Line != 15 {
			t.Errorf("source_address = %s: %v, want one problem at line 15 saying %q", tt.val, err, tt.want)
		}
	}
}

// TestKeysCoverOptions pins the field-to-key tables: every field of
// each runtime package's options (a nested struct's fields too, as
// "TokenProbe.ClientID") is converted from a key of its table or named
// as set by no key, and every key in a table is one config decodes there.
func TestKeysCoverOptions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		options reflect.Type
		table   reflect.Type
		keys    map[string]string
		unkeyed []string
	}{
		{"vrrp", reflect.TypeFor[vrrp.Options](), reflect.TypeFor[config.VRRPInstance](), vrrpKeys, vrrpUnkeyed},
		{"health", reflect.TypeFor[health.Options](), reflect.TypeFor[config.Health](), healthKeys, healthUnkeyed},
		{"pool", reflect.TypeFor[backend.PoolOptions](), reflect.TypeFor[config.Health](), poolKeys, poolUnkeyed},
		{"affinity", reflect.TypeFor[affinity.Options](), reflect.TypeFor[config.Affinity](), affinityKeys, affinityUnkeyed},
		{"rate_limit", reflect.TypeFor[ratelimit.Rule](), reflect.TypeFor[config.RateLimit](), rateKeys, nil},
		{"backend.server", reflect.TypeFor[backend.Spec](), reflect.TypeFor[config.Server](), serverSpecKeys, nil},
	} {
		tags := make(map[string]bool)
		for i := range tc.table.NumField() {
			tags[strings.Split(tc.table.Field(i).Tag.Get("toml"), ",")[0]] = true
		}
		seen := make(map[string]bool)
		var walk func(prefix string, t reflect.Type)
		walk = func(prefix string, ot reflect.Type) {
			for i := range ot.NumField() {
				f := prefix + ot.Field(i).Name
				key, keyed := tc.keys[f]
				unkeyed := slices.Contains(tc.unkeyed, f)
				seen[f] = true
				switch {
				case keyed && unkeyed:
					t.Errorf("%s.%s is both keyed (%q) and unkeyed", tc.name, f, key)
				case keyed && !tags[key]:
					t.Errorf("%s: %s -> %q, which is not a key of %s", tc.name, f, key, tc.table)
				case !keyed && !unkeyed && ot.Field(i).Type.Kind() == reflect.Struct && ot.Field(i).Type.PkgPath() == ot.PkgPath():
					walk(f+".", ot.Field(i).Type)
				case !keyed && !unkeyed:
					t.Errorf("%s.%s: no key in the table, and not unkeyed", tc.name, f)
				}
				if unkeyed && ot.Field(i).Type.Kind() == reflect.Struct && ot.Field(i).Type.PkgPath() == ot.PkgPath() {
					walk(f+".", ot.Field(i).Type) // its fields may still be keyed
				}
			}
		}
		walk("", tc.options)
		for f := range tc.keys {
			if !seen[f] {
				t.Errorf("%s: the table names %s, which is not a field", tc.name, f)
			}
		}
	}
}

// TestEveryVRRPFieldErrorHasAKey runs options breaking each rule of
// vrrp.Options.Validate and vrrp.Check through the mapping: every field
// a rule names must come back as a key of [[vrrp.instance]], not as the
// instance's table with a Go field name in the message.
func TestEveryVRRPFieldErrorHasAKey(t *testing.T) {
	vip4 := []netip.Prefix{netip.MustParsePrefix("203.0.113.100/24")}
	vip6 := []netip.Prefix{netip.MustParsePrefix("2001:db8::100/64")}
	bad := []vrrp.Options{
		{Interface: "", VRID: 300, Priority: -1, Version: 4, AuthPass: "123456789", TrackWeight: 255, TrackRise: -1, TrackFall: -1,
			PreemptDelay: -1, GARPRefresh: -1},
		{Interface: "eth0", VRID: 1, AdvertInterval: 5 * time.Millisecond, AuthPass: "x", VIPs: append(vip4, vip6...),
			UnicastPeers: []netip.Addr{netip.MustParseAddr("2001:db8::1")}, SourceAddr: netip.MustParseAddr("127.0.0.1")},
		{Interface: "eth0", VRID: 1, Version: 2, VIPs: append(vip6, netip.Prefix{}),
			UnicastPeers: []netip.Addr{netip.MustParseAddr("2001:db8::1")}, SourceAddr: netip.MustParseAddr("2001:db8::2")},
		{Interface: "eth0", VRID: 1, Version: 2, AdvertInterval: 1500 * time.Millisecond, VIPs: vip6},
		{Interface: "eth0", VRID: 1, VIPs: vip6},
	}
	err := vrrp.Check(bad)
	if err == nil {
		t.Fatal("vrrp.Check accepted every case")
	}
	fields := make(map[string]bool)
	for _, e := range joined(err) {
		var ie *vrrp.InstanceError
		if !errors.As(e, &ie) {
			t.Fatalf("vrrp.Check returned %T %v, want *vrrp.InstanceError", e, e)
		}
		for _, fe := range joined(ie.Err) {
			field, _, ok := fieldError(fe)
			if !ok {
				t.Errorf("instance %d: %T %v is not a field error", ie.Index, fe, fe)
				continue
			}
			fields[strings.Split(field, "[")[0]] = true
		}
		for _, p := range fieldProblems(ie.Err, idx("vrrp.instance", ie.Index), vrrpKeys) {
			if !strings.HasPrefix(p.Path, idx("vrrp.instance", ie.Index)+".") {
				t.Errorf("problem %q: %s is not at a key", p.Path, p.Msg)
			}
		}
	}
	// The cases reach every field a rule names.
	for _, f := range []string{"Interface", "VRID", "Priority", "Version", "AdvertInterval", "AuthPass", "VIPs", "UnicastPeers",
		"SourceAddr", "PreemptDelay", "TrackWeight", "TrackRise", "TrackFall", "GARPRefresh"} {
		if !fields[f] {
			t.Errorf("no case breaks a rule about %s", f)
		}
	}
}

// TestVRRPDefaultsAreTheRuntimes: the defaults config writes for an
// absent [[vrrp.instance]] key are the vrrp package's exported ones, so
// leaving a key out means the same in the file and in vrrp.Options.
// track_rise and track_fall are the file's own (2 and 3, keepalived's
// habit for a pool that reports every change; vrrp's 1 suits callers
// reporting edges).
func TestVRRPDefaultsAreTheRuntimes(t *testing.T) {
	c, err := Parse([]byte(vrrpInstance("")), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	in := c.VRRP.Instances[0]
	for _, d := range []struct {
		key           string
		file, runtime any
	}{
		{"priority", in.Priority, vrrp.DefaultPriority},
		{"advert_int", in.AdvertInt.Duration, vrrp.DefaultAdvertInterval},
		{"version", in.Version, vrrp.DefaultVersion},
		{"garp_repeat", in.GARPRepeat, vrrp.DefaultGARPRepeat},
		{"garp_delay", in.GARPDelay.Duration, vrrp.DefaultGARPDelay},
	} {
		if d.file != d.runtime {
			t.Errorf("vrrp.instance.%s: config's default %v, vrrp's %v", d.key, d.file, d.runtime)
		}
	}
}

// TestEveryHealthFieldErrorHasAKey: every field health.Options.Validate
// names, for options converted from a configuration, comes back at a
// [health] key.
func TestEveryHealthFieldErrorHasAKey(t *testing.T) {
	bad := health.Options{
		Path: "ready", LivePath: "/live now", StartedPath: "/x\x7f", Scheme: "ftp", Interval: -1, Timeout: -1,
		Rise: -1, Fall: -1, MaxBodyBytes: -1, ClusterCheck: 9, Realm: "a/b",
		TokenProbe: health.TokenProbe{ClientID: "probe", Interval: -1},
	}
	fields := make(map[string]bool)
	for _, e := range joined(bad.Validate()) {
		field, _, ok := fieldError(e)
		if !ok {
			t.Fatalf("%T %v is not a field error", e, e)
		}
		fields[field] = true
	}
	for _, p := range fieldProblems(bad.Validate(), "health", healthKeys) {
		if !strings.HasPrefix(p.Path, "health.") {
			t.Errorf("problem %q: %s is not at a key", p.Path, p.Msg)
		}
	}
	for f := range healthKeys {
		switch f {
		case "CAFile", "InsecureSkipVerify", "WellKnown", "LBCheck", "TokenProbe.ClientID":
			continue // no rule of Validate is about these alone
		}
		if !fields[f] {
			t.Errorf("no case breaks a rule about %s", f)
		}
	}
	// The realm is also required by the probes that use it.
	if err := (health.Options{WellKnown: true}).Validate(); len(fieldProblems(err, "health", healthKeys)) != 1 ||
		fieldProblems(err, "health", healthKeys)[0].Path != "health.realm" {
		t.Errorf("WellKnown without a realm: %v", err)
	}
}

// TestHealthRulesAtTheirKeys: the checker's rules, moved from config to
// health.Options.Validate, are reported at their keys and lines with the
// messages config gave.
func TestHealthRulesAtTheirKeys(t *testing.T) {
	h := func(keys string) string { return base + "[health]\n" + keys }
	for _, tt := range []struct{ name, toml, want string }{
		{"paths", h("path = \"ready\"\nlive_path = \"/live now\"\nstarted_path = \"\"\n"),
			"line 10: health.path: \"ready\" must start with \"/\"\n" +
				"line 11: health.live_path: \"/live now\" contains white space or control characters\n" +
				"line 12: health.started_path: \"\" must start with \"/\""},
		{"durations", h("interval = \"-1s\"\ntimeout = \"0s\"\n"),
			"line 10: health.interval: must be greater than 0, got -1s\n" +
				"line 11: health.timeout: must be greater than 0, got 0s"},
		{"counts", h("rise = 0\nfall = -1\nmax_body_bytes = 0\n"),
			"line 10: health.rise: 0 is less than 1\n" +
				"line 11: health.fall: -1 is less than 1\n" +
				"line 12: health.max_body_bytes: 0 is less than 1"},
		{"realm", h("realm = \"a b\"\n"), "line 10: health.realm: \"a b\" is not a realm name"},
		{"empty realm with well-known", h("realm = \"\"\nwell_known = true\n"), "line 10: health.realm: \"\" is not a realm name"},
		{"pool", h("panic_threshold = 1.5\npassive_max_ejection_percent = 101\npassive_fails = -1\nslowstart = \"-1s\"\n"),
			"line 10: health.panic_threshold: 1.5 is not a fraction in 0..1\n" +
				"line 11: health.passive_max_ejection_percent: 101 is out of range 1..100\n" +
				"line 12: health.passive_fails: -1 is less than 0\n" +
				"line 13: health.slowstart: must not be negative, got -1s"},
		{"pool zero", h("passive_max_ejection_percent = 0\npassive_fails = 0\nslowstart = \"0s\"\npanic_threshold = 0.0\n"),
			"line 10: health.passive_max_ejection_percent: must not be 0 (leave the key out for its default)"},
		// A rate limit rule's, with config's own problems of the entry.
		{"rate limit rule problems", base + "[[rate_limit]]\nname = \"a b\"\npaths = [\"/realms/x*\", \"realms\"]\nmethods = [\"post\"]\nburst = 0\nkey = \"cookie\"\nipv6_prefix = 0\nexempt = [\"10.0.0.1/8\"]\n",
			"line 9: rate_limit[0].rate: is required (e.g. \"10/s\" or \"600/m\")\n" +
				"line 10: rate_limit[0].name: \"a b\" may only contain letters, digits, '.', '_' and '-'\n" +
				"line 11: rate_limit[0].paths[0]: \"/realms/x*\" may use \"*\" only as a whole segment, and no '%', '\\' or ';'\n" +
				"line 11: rate_limit[0].paths[1]: \"realms\" must start with \"/\"\n" +
				"line 12: rate_limit[0].methods[0]: \"post\" is not an upper-case method name such as \"POST\"\n" +
				"line 13: rate_limit[0].burst: 0 is out of range 1..1000000\n" +
				"line 14: rate_limit[0].key: \"cookie\" is not a known key (only \"client\": the client address)\n" +
				"line 15: rate_limit[0].ipv6_prefix: 0 is out of range 1..128\n" +
				"line 16: rate_limit[0].exempt[0]: \"10.0.0.1/8\" has host bits set (did you mean \"10.0.0.0/8\"?)"},
		// A server's.
		{"server weight and maxconn", base + "[[backend.server]]\nname = \"kc2\"\naddress = \"h:1\"\nweight = 1001\nmaxconn = -1\n" +
			"[[backend.server]]\nname = \"kc3\"\naddress = \"h:1\"\nweight = 0\n",
			"line 12: backend.server[1].weight: 1001 is out of range 1..1000\n" +
				"line 13: backend.server[1].maxconn: -1 is less than 0\n" +
				"line 17: backend.server[2].weight: 0 is out of range 1..1000"},
		{"default maxconn", base + "[backend]\ndefault_maxconn = -1\n",
			"line 6: backend.server[0].maxconn: -1 is less than 0\n" +
				"line 10: backend.default_maxconn: -1 is less than 0"},
		// The affinity cookie's rules.
		{"auth session cookie", base + "[affinity]\ncookie = \"AUTH_SESSION_ID_KCLB\"\n",
			"line 10: affinity.cookie: \"AUTH_SESSION_ID_KCLB\" would clobber Keycloak's AUTH_SESSION_ID cookie and cause redirect loops; use e.g. \"KC_ROUTE\""},
		// Issue 18, item 6: sub-second values passed check, then failed run.
		{"sub-second max_age", base + "[affinity]\nmax_age = \"500ms\"\n",
			"line 10: affinity.max_age: 500ms is below 1s (the cookie's Max-Age counts seconds)"},
		{"fractional max_age", base + "[affinity]\nmax_age = \"90.5s\"\n",
			"line 10: affinity.max_age: 1m30.5s is not a whole number of seconds (the cookie's Max-Age counts seconds)"},
		{"keycloak cookie", base + "[affinity]\ncookie = \"keycloak_identity\"\n",
			"line 10: affinity.cookie: \"keycloak_identity\" is one of Keycloak's own cookies; use e.g. \"KC_ROUTE\""},
		{"max_age of disabled affinity", base + "[affinity]\nenabled = false\nmax_age = \"-1s\"\ncookie = \"a b\"\n",
			"line 11: affinity.max_age: must not be negative, got -1s"},
		// The proxy handler's rules, at keys of several tables.
		{"zero timeout", base + "[timeouts]\nserver = \"0s\"\nconnect = \"-1s\"\n",
			"line 10: timeouts.server: must be greater than 0, got 0s\n" +
				"line 11: timeouts.connect: must be greater than 0, got -1s"},
		{"small response headers", base + "[limits]\nmax_response_header_bytes = 8192\nbody_buffer_bytes = 67108865\n",
			"line 10: limits.max_response_header_bytes: 8192 is out of range 65536..67108864\n" +
				"line 11: limits.body_buffer_bytes: 67108865 is out of range 0..67108864"},
		{"limits below 0", base + "[limits]\nretries = -1\nqueue_size = -1\nbody_buffer_bytes = -1\nbody_waits_per_client = -1\nmax_response_header_bytes = 0\n",
			"line 10: limits.retries: -1 is out of range 0..100\n" +
				"line 11: limits.queue_size: -1 is less than 0\n" +
				"line 12: limits.body_buffer_bytes: -1 is out of range 0..67108864\n" +
				"line 13: limits.body_waits_per_client: -1 is less than 0\n" +
				"line 14: limits.max_response_header_bytes: 0 is out of range 65536..67108864"},
		{"retries without redispatch", base + "[limits]\nretries = 101\nredispatch = false\n", "line 10: limits.retries: 101 is out of range 0..100"},
		{"retries", base + "[limits]\nretries = 101\n", "line 10: limits.retries: 101 is out of range 0..100"},
		{"listener limits", base + "[timeouts]\nclient_header = \"0s\"\nkeep_alive = \"-1s\"\nclient = \"-1s\"\n" +
			"[limits]\nmax_request_header_bytes = 1024\nh2_max_concurrent_streams = 0\n",
			"line 10: timeouts.client_header: must be greater than 0, got 0s\n" +
				"line 11: timeouts.keep_alive: must be greater than 0, got -1s\n" +
				"line 12: timeouts.client: must be greater than 0, got -1s\n" +
				"line 14: limits.max_request_header_bytes: 1024 is out of range 4096..67108864\n" +
				"line 15: limits.h2_max_concurrent_streams: 0 is out of range 1..2147483647"},
		{"no listener", "[[backend.server]]\nname = \"kc1\"\naddress = \"127.0.0.1:18081\"\n[limits]\nh2_max_concurrent_streams = -1\n",
			"line 5: limits.h2_max_concurrent_streams: -1 is out of range 1..2147483647\n" +
				"listener: no listeners configured (add a [[listener]])"},
		{"blocked status", base + "[paths]\nblocked_status = 500\n", "line 10: paths.blocked_status: 500 is not 403 or 404"},
		{"blocked status 0", base + "[paths]\nblocked_status = 0\n", "line 10: paths.blocked_status: 0 is not 403 or 404"},
		{"token probe", h("token_client_id = \"probe\"\ntoken_interval = \"0s\"\n"),
			"line 9: health.token_secret_file: is required with the probe's client ID\n" +
				"line 11: health.token_interval: must be greater than 0, got 0s"},
	} {
		t.Run(tt.name, func(t *testing.T) { wantProblems(t, tt.toml, tt.want) })
	}
}

// TestHealthDefaultsAreTheRuntimes: the [health] defaults config writes
// are health's and the pool's exported ones.
func TestHealthDefaultsAreTheRuntimes(t *testing.T) {
	c, err := Parse([]byte(base), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := c.Health
	for _, d := range []struct {
		key           string
		file, runtime any
	}{
		{"path", h.Path, health.DefaultPath},
		{"live_path", h.LivePath, health.DefaultLivePath},
		{"started_path", h.StartedPath, health.DefaultStartedPath},
		{"interval", h.Interval.Duration, health.DefaultInterval},
		{"timeout", h.Timeout.Duration, health.DefaultTimeout},
		{"rise", h.Rise, health.DefaultRise},
		{"fall", h.Fall, health.DefaultFall},
		{"max_body_bytes", h.MaxBodyBytes, health.DefaultMaxBodyBytes},
		{"token_interval", h.TokenInterval.Duration, health.DefaultTokenInterval},
		{"passive_fails", h.PassiveFails, backend.DefaultPassiveFails},
		{"passive_max_ejection_percent", h.PassiveMaxEjectionPercent, backend.DefaultMaxEjectionPercent},
	} {
		if d.file != d.runtime {
			t.Errorf("health.%s: config's default %v, health's %v", d.key, d.file, d.runtime)
		}
	}
}

// TestProxyKeysCoverOptions: every proxy.Options and proxy.ServerOptions
// field is converted from the key its table names (a key config
// decodes) or is unkeyed.
func TestProxyKeysCoverOptions(t *testing.T) {
	for _, tc := range []struct {
		ot      reflect.Type
		keys    map[string]string
		unkeyed []string
	}{
		{reflect.TypeFor[proxy.Options](), proxyKeys, proxyUnkeyed},
		{reflect.TypeFor[proxy.ServerOptions](), serverKeys, serverUnkeyed},
	} {
		for i := range tc.ot.NumField() {
			f := tc.ot.Field(i).Name
			key, keyed := tc.keys[f]
			switch {
			case keyed == slices.Contains(tc.unkeyed, f):
				t.Errorf("%s.%s: keyed %v and unkeyed %v; want exactly one", tc.ot, f, keyed, !keyed)
			case keyed && !configHasKey(key):
				t.Errorf("%s.%s -> %q, which is not a configuration key", tc.ot, f, key)
			}
		}
		if len(tc.keys)+len(tc.unkeyed) != tc.ot.NumField() {
			t.Errorf("%s: the tables name %d fields; it has %d", tc.ot, len(tc.keys)+len(tc.unkeyed), tc.ot.NumField())
		}
	}
}

// configHasKey reports whether path ("limits.retries") is a key of
// config.Config by its TOML tags.
func configHasKey(path string) bool {
	t := reflect.TypeFor[config.Config]()
	for part := range strings.SplitSeq(path, ".") {
		found := false
		for i := range t.NumField() {
			if strings.Split(t.Field(i).Tag.Get("toml"), ",")[0] == part {
				t, found = t.Field(i).Type, true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// TestProxyDefaultsAreTheRuntimes: the defaults config writes for the
// handler's and the affinity cookie's keys are proxy's and affinity's
// exported ones.
func TestProxyDefaultsAreTheRuntimes(t *testing.T) {
	c, err := Parse([]byte(base), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tm, l := c.Timeouts, c.Limits
	for _, d := range []struct {
		key           string
		file, runtime any
	}{
		{"timeouts.connect", tm.Connect.Duration, proxy.DefaultConnectTimeout},
		{"timeouts.server", tm.Server.Duration, proxy.DefaultServerTimeout},
		{"timeouts.queue", tm.Queue.Duration, proxy.DefaultQueueTimeout},
		{"timeouts.client_body", tm.ClientBody.Duration, proxy.DefaultBodyTimeout},
		{"timeouts.client", tm.Client.Duration, proxy.DefaultClientTimeout},
		{"timeouts.backend_idle", tm.BackendIdle.Duration, proxy.DefaultIdleTimeout},
		{"limits.retries", l.Retries, proxy.DefaultRetries},
		{"limits.queue_size", l.QueueSize, proxy.DefaultQueueSize},
		{"limits.body_buffer_bytes", l.BodyBufferBytes, proxy.DefaultBodyBufferBytes},
		{"limits.body_waits_per_client", l.BodyWaitsPerClient, proxy.DefaultBodyWaitsPerClient},
		{"limits.max_response_header_bytes", l.MaxResponseHeaderBytes, proxy.DefaultMaxResponseHeaderBytes},
		{"paths.blocked_status", c.Paths.BlockedStatus, proxy.DefaultBlockedStatus},
		{"affinity.cookie", c.Affinity.Cookie, affinity.DefaultCookieName},
		{"affinity.max_age", c.Affinity.MaxAge.Duration, affinity.DefaultMaxAge},
	} {
		if d.file != d.runtime {
			t.Errorf("%s: config's default %v, proxy's %v", d.key, d.file, d.runtime)
		}
	}
}

// TestRateLimitDefaultsAreTheRuntimes: a [[rate_limit]] rule's defaults in
// the file are ratelimit's.
func TestRateLimitDefaultsAreTheRuntimes(t *testing.T) {
	c, err := Parse([]byte(base+"[[rate_limit]]\nname = \"r\"\npaths = [\"/\"]\nrate = \"10/s\"\n"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if r := c.RateLimits[0]; r.Burst != ratelimit.DefaultBurst || r.IPv6Prefix != ratelimit.DefaultIPv6Prefix {
		t.Errorf("burst %d, ipv6_prefix %d; ratelimit's defaults %d, %d", r.Burst, r.IPv6Prefix, ratelimit.DefaultBurst, ratelimit.DefaultIPv6Prefix)
	}
}
