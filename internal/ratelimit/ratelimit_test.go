package ratelimit

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a manual clock for the limiter.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

var loginRule = Rule{
	Name:    "login",
	Paths:   []string{"/realms/*/login-actions/authenticate"},
	Methods: []string{"POST"},
	Limit:   10, Per: time.Minute, Burst: 3,
}

func mustNew(t testing.TB, o Options) *Limiter {
	t.Helper()
	l, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

var a1 = netip.MustParseAddr("192.0.2.1")

func TestBurstThenLimitThenRefill(t *testing.T) {
	c := newClock()
	l := mustNew(t, Options{Rules: []Rule{loginRule}, Start: c.now()})
	path := "/realms/acme/login-actions/authenticate"
	for i := range 3 {
		if d := l.Check(path, "POST", a1, c.now()); d.Limited {
			t.Fatalf("request %d of the burst limited", i+1)
		}
	}
	d := l.Check(path, "POST", a1, c.now())
	if !d.Limited || d.Rule != "login" {
		t.Fatalf("fourth request: %+v, want limited by login", d)
	}
	if d.RetryAfter != 6*time.Second || d.RetryAfterSeconds() != 6 {
		t.Fatalf("RetryAfter %s (%d s), want 6s (one request per 6 s)", d.RetryAfter, d.RetryAfterSeconds())
	}
	// Another client is not affected.
	if d := l.Check(path, "POST", netip.MustParseAddr("192.0.2.2"), c.now()); d.Limited {
		t.Fatal("another client limited")
	}
	c.advance(6 * time.Second)
	if d := l.Check(path, "POST", a1, c.now()); d.Limited {
		t.Fatal("limited after waiting Retry-After")
	}
	if d := l.Check(path, "POST", a1, c.now()); !d.Limited {
		t.Fatal("second request after one interval passed")
	}
	if got := l.Stats()[0].Limited; got != 2 {
		t.Fatalf("Limited counter %d, want 2", got)
	}
}

func TestRuleSelection(t *testing.T) {
	c := newClock()
	one := Rule{Name: "r", Paths: []string{"/realms/*/protocol/openid-connect/token"}, Methods: []string{"POST"},
		Limit: 1, Per: time.Hour, Exempt: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	l := mustNew(t, Options{Rules: []Rule{one}, Start: c.now()})
	for _, tc := range []struct {
		name, path, method, addr string
		limited                  bool // on the second request
	}{
		{"token endpoint", "/realms/a/protocol/openid-connect/token", "POST", "192.0.2.10", true},
		{"below the pattern", "/realms/a/protocol/openid-connect/token/introspect", "POST", "192.0.2.11", true},
		{"case folded", "/REALMS/a/Protocol/openid-connect/TOKEN", "POST", "192.0.2.12", true},
		{"other method", "/realms/a/protocol/openid-connect/token", "GET", "192.0.2.13", false},
		{"sibling path", "/realms/a/protocol/openid-connect/tokenx", "POST", "192.0.2.14", false},
		{"empty wildcard segment", "/realms//protocol/openid-connect/token", "POST", "192.0.2.15", false},
		{"shorter path", "/realms/a/protocol/openid-connect", "POST", "192.0.2.16", false},
		{"exempt network", "/realms/a/protocol/openid-connect/token", "POST", "10.1.2.3", false},
		{"exempt network, v4-mapped", "/realms/a/protocol/openid-connect/token", "POST", "::ffff:10.1.2.3", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := netip.MustParseAddr(tc.addr)
			if d := l.Check(tc.path, tc.method, a, c.now()); d.Limited {
				t.Fatal("first request limited")
			}
			if d := l.Check(tc.path, tc.method, a, c.now()); d.Limited != tc.limited {
				t.Fatalf("second request limited = %v, want %v", d.Limited, tc.limited)
			}
		})
	}
}

func TestIPv6Aggregation(t *testing.T) {
	c := newClock()
	r := Rule{Name: "r", Paths: []string{"/"}, Limit: 1, Per: time.Hour}
	l := mustNew(t, Options{Rules: []Rule{r}, Start: c.now()})
	if l.Check("/x", "GET", netip.MustParseAddr("2001:db8:1:2::1"), c.now()).Limited {
		t.Fatal("first request limited")
	}
	if !l.Check("/x", "GET", netip.MustParseAddr("2001:db8:1:2:ffff::9"), c.now()).Limited {
		t.Fatal("another address of the same /64 has its own allowance")
	}
	if l.Check("/x", "GET", netip.MustParseAddr("2001:db8:1:3::1"), c.now()).Limited {
		t.Fatal("the next /64 shares the allowance")
	}
	r.IPv6Prefix = 128
	l = mustNew(t, Options{Rules: []Rule{r}, Start: c.now()})
	l.Check("/x", "GET", netip.MustParseAddr("2001:db8:1:2::1"), c.now())
	if l.Check("/x", "GET", netip.MustParseAddr("2001:db8:1:2::2"), c.now()).Limited {
		t.Fatal("ipv6_prefix 128 aggregates")
	}
}

func TestEveryMatchingRuleCounts(t *testing.T) {
	c := newClock()
	wide := Rule{Name: "wide", Paths: []string{"/realms"}, Limit: 1, Per: time.Second, Burst: 100}
	narrow := Rule{Name: "narrow", Paths: []string{"/realms/*/login-actions"}, Limit: 1, Per: time.Minute}
	l := mustNew(t, Options{Rules: []Rule{wide, narrow}, Start: c.now()})
	p := "/realms/a/login-actions/authenticate"
	if l.Check(p, "POST", a1, c.now()).Limited {
		t.Fatal("first request limited")
	}
	d := l.Check(p, "POST", a1, c.now())
	if !d.Limited || d.Rule != "narrow" || d.RetryAfter != time.Minute {
		t.Fatalf("second request %+v, want limited by narrow for 1m", d)
	}
	if l.Check("/realms/a/account", "GET", a1, c.now()).Limited {
		t.Fatal("the narrow rule limited a path outside it")
	}
}

func TestInvalidRules(t *testing.T) {
	ok := Rule{Name: "r", Paths: []string{"/realms"}, Limit: 1, Per: time.Second}
	for _, tc := range []struct {
		name string
		edit func(r *Rule)
		want string
	}{
		{"no name", func(r *Rule) { r.Name = "" }, "Name"},
		{"no path", func(r *Rule) { r.Paths = nil }, "path"},
		{"relative path", func(r *Rule) { r.Paths = []string{"realms"} }, "start with"},
		{"partial wildcard", func(r *Rule) { r.Paths = []string{"/realms/a*"} }, "whole segment"},
		{"empty segment", func(r *Rule) { r.Paths = []string{"/realms//token"} }, "empty segment"},
		{"dot segment", func(r *Rule) { r.Paths = []string{"/realms/../admin"} }, "dot segment"},
		{"zero rate", func(r *Rule) { r.Limit = 0 }, "positive"},
		{"negative burst", func(r *Rule) { r.Burst = -1 }, "out of range"},
		{"lower-case method", func(r *Rule) { r.Methods = []string{"post"} }, "upper-case"},
		{"ipv6 prefix", func(r *Rule) { r.IPv6Prefix = 129 }, "1..128"},
		{"burst over the bound", func(r *Rule) { r.Burst = MaxBurst + 1 }, "out of range"},
		{"huge window", func(r *Rule) { r.Per, r.Burst = 10000*time.Hour, MaxBurst }, "too long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ok
			tc.edit(&r)
			_, err := New(Options{Rules: []Rule{r}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := New(Options{Rules: []Rule{ok, ok}}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("duplicate names: %v", err)
	}
}

func TestNilLimiterAllows(t *testing.T) {
	var l *Limiter
	c := newClock()
	if l.Check("/", "GET", a1, c.now()).Limited || l.Stats() != nil {
		t.Fatal("nil limiter limits")
	}
}

// addrN returns the n-th distinct IPv4 address of 10.0.0.0/8 (n < 2^24)
// or, above, an IPv6 address in a distinct /64.
func addrN(n uint32) netip.Addr {
	if n < 1<<24 {
		return netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
	}
	var b [16]byte
	b[0], b[1] = 0x20, 0x01
	binary.BigEndian.PutUint32(b[4:], n)
	return netip.AddrFrom16(b)
}

// TestMemoryBoundMillionClients: a million distinct client addresses
// leave the table at its fixed size and the heap where it was; a client
// deep in debt stays limited through the flood, because eviction takes
// the clients closest to fully refilled first.
func TestMemoryBoundMillionClients(t *testing.T) {
	c := newClock()
	r := Rule{Name: "r", Paths: []string{"/"}, Limit: 1, Per: time.Minute, Burst: 5}
	l := mustNew(t, Options{Rules: []Rule{r}, Entries: 1 << 14, Start: c.now()})
	attacker := netip.MustParseAddr("198.51.100.7")
	for range 5 {
		l.Check("/", "POST", attacker, c.now())
	}
	if !l.Check("/", "POST", attacker, c.now()).Limited {
		t.Fatal("attacker not limited after its burst")
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range uint32(1_000_000) {
		if l.Check("/", "POST", addrN(i), c.now()).Limited {
			t.Fatalf("fresh client %d limited", i)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if got := l.Stats()[0].Entries; got != 1<<14 {
		t.Fatalf("table has %d entries, want the fixed 16384", got)
	}
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 1<<20 {
		t.Fatalf("heap grew by %d bytes over a million clients", grew)
	}
	if d := l.Check("/", "POST", attacker, c.now()); !d.Limited {
		t.Fatal("the limited client was forgotten during the flood")
	}
}

func TestCheckDoesNotAllocate(t *testing.T) {
	c := newClock()
	l := mustNew(t, Options{Rules: []Rule{loginRule, {Name: "token", Paths: []string{"/realms/*/protocol/openid-connect/token"}, Limit: 600, Per: time.Minute, Burst: 50}}})
	v6 := netip.MustParseAddr("2001:db8::1")
	if n := testing.AllocsPerRun(1000, func() {
		l.Check("/realms/acme/login-actions/authenticate", "POST", a1, c.now())
		l.Check("/realms/acme/protocol/openid-connect/token", "POST", v6, c.now())
		l.Check("/resources/x/y.css", "GET", a1, c.now())
	}); n != 0 {
		t.Fatalf("Check allocates %.1f times per run", n)
	}
}

func TestParsePattern(t *testing.T) {
	for _, tc := range []struct {
		pat, path string
		want      bool
	}{
		{"/", "/anything", true},
		{"/realms/", "/realms", true},
		{"/realms/", "/realmsx", false},
		{"/realms/*", "/realms/", false},
		{"/realms/*", "/realms/a", true},
		{"/realms/*/x", "/realms/a/x/", true},
		{"/realms/*/x", "/realms/a/y/x", false},
	} {
		p, err := ParsePattern(tc.pat)
		if err != nil {
			t.Fatalf("%q: %v", tc.pat, err)
		}
		if got := p.match(tc.path); got != tc.want {
			t.Errorf("%q matches %q = %v, want %v", tc.pat, tc.path, got, tc.want)
		}
	}
}

// FuzzParsePattern: the parser never panics, a pattern it accepts
// matches the path made from it (wildcards filled in), and matching any
// path never panics.
func FuzzParsePattern(f *testing.F) {
	for _, s := range []string{"/", "/realms/*/login-actions/authenticate", "/a//b", "/a/*b", "/../x", "realms", "/a/\x00", "/*/*/"} {
		f.Add(s, "/realms/acme/login-actions/authenticate")
	}
	f.Fuzz(func(t *testing.T, pat, path string) {
		p, err := ParsePattern(pat)
		if err != nil {
			return
		}
		p.match(path)
		own := "/" + strings.ReplaceAll(strings.Join(p, "/"), "*", "x")
		if !p.match(own) {
			t.Fatalf("pattern %q does not match %q", pat, own)
		}
		r := Rule{Name: "f", Paths: []string{pat}, Limit: 1, Per: time.Second}
		c := newClock()
		l, err := New(Options{Rules: []Rule{r}, Entries: 8, Start: c.now()})
		if err != nil {
			t.Fatalf("ParsePattern accepts %q but New refuses it: %v", pat, err)
		}
		l.Check(path, "GET", netip.Addr{}, c.now())
	})
}

func BenchmarkCheckKnownKey(b *testing.B) {
	c := newClock()
	l := mustNew(b, Options{Rules: []Rule{loginRule, {Name: "token", Paths: []string{"/realms/*/protocol/openid-connect/token"}, Limit: 1 << 30, Per: time.Second, Burst: MaxBurst}}})
	a := netip.MustParseAddr("192.0.2.9")
	b.ReportAllocs()
	for b.Loop() {
		l.Check("/realms/acme/protocol/openid-connect/token", "POST", a, c.now())
	}
}

func BenchmarkCheckUnmatchedPath(b *testing.B) {
	c := newClock()
	l := mustNew(b, Options{Rules: []Rule{loginRule}})
	b.ReportAllocs()
	for b.Loop() {
		l.Check("/resources/abc/login/keycloak.v2/css/styles.css", "GET", a1, c.now())
	}
}

func BenchmarkCheckParallelDistinctKeys(b *testing.B) {
	c := newClock()
	l := mustNew(b, Options{Rules: []Rule{{Name: "token", Paths: []string{"/realms/*/protocol/openid-connect/token"}, Limit: 1 << 30, Per: time.Second, Burst: MaxBurst}}})
	var n atomic.Uint32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		a := addrN(n.Add(1))
		for pb.Next() {
			l.Check("/realms/acme/protocol/openid-connect/token", "POST", a, c.now())
		}
	})
}
