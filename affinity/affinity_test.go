package affinity

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/balancer"
)

var testSecret = []byte("0123456789abcdef-test-secret")

// epoch is the fixed test clock.
var epoch = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// firstEligible is a deterministic fallback: the first available server
// not yet tried. It counts its calls.
type firstEligible struct{ calls atomic.Int64 }

func (f *firstEligible) Select(_ *http.Request, servers []*backend.Server, tried *balancer.Tried) *backend.Server {
	f.calls.Add(1)
	for _, s := range servers {
		if s.Available() && !tried.Has(s) {
			return s
		}
	}
	return nil
}

// fixture is a pool of servers kc1..kcN (routes node1..nodeN unless
// routes is false) and an Affinity over a firstEligible fallback.
type fixture struct {
	pool *backend.Pool
	aff  *Affinity
	fb   *firstEligible
	now  *time.Time
}

func newFixture(t testing.TB, n int, routes bool, mod func(*Options)) *fixture {
	t.Helper()
	specs := make([]backend.Spec, n)
	for i := range specs {
		specs[i] = backend.Spec{Name: "kc" + string(rune('1'+i)), Addr: "127.0.0.1:1"}
		if routes {
			specs[i].Route = "node" + string(rune('1'+i))
		}
	}
	pool, err := backend.NewPool(specs, backend.PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := epoch
	opts := Options{Secret: testSecret, AuthSessionRoute: true, Learn: true, Now: func() time.Time { return now }}
	if mod != nil {
		mod(&opts)
	}
	fb := &firstEligible{}
	aff, err := New(opts, fb)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{pool: pool, aff: aff, fb: fb, now: &now}
}

func (f *fixture) server(name string) *backend.Server { return f.pool.Lookup(name) }

// cookieFor returns a KC_ROUTE pair naming server, issued now.
func (f *fixture) cookieFor(name string) string {
	return "KC_ROUTE=" + EncodeCookie(testSecret, name, f.now.Add(6*time.Hour))
}

func (f *fixture) pick(tried *balancer.Tried, cookies ...string) Decision {
	r, _ := http.NewRequest("GET", "http://kc.test/realms/test/account", nil)
	for _, c := range cookies {
		r.Header.Add("Cookie", c)
	}
	return f.aff.Pick(r, f.pool.Servers(), tried)
}

func name(s *backend.Server) string {
	if s == nil {
		return "<nil>"
	}
	return s.Name()
}

func TestNewOptions(t *testing.T) {
	fb := &firstEligible{}
	tests := []struct {
		name    string
		opts    Options
		fb      balancer.Selector
		wantErr string
	}{
		{name: "defaults", opts: Options{Secret: testSecret}, fb: fb},
		{name: "custom name", opts: Options{Secret: testSecret, CookieName: "LB"}, fb: fb},
		{name: "auth session name", opts: Options{Secret: testSecret, CookieName: "AUTH_SESSION_ID"}, fb: fb, wantErr: "clobber"},
		{name: "auth session prefix", opts: Options{Secret: testSecret, CookieName: "AUTH_SESSION_ID_KCLB"}, fb: fb, wantErr: "clobber"},
		{name: "invalid name", opts: Options{Secret: testSecret, CookieName: "KC ROUTE"}, fb: fb, wantErr: "not a valid"},
		{name: "name with equals", opts: Options{Secret: testSecret, CookieName: "A=B"}, fb: fb, wantErr: "not a valid"},
		{name: "short secret", opts: Options{Secret: []byte("short")}, fb: fb, wantErr: "at least 16"},
		{name: "no secret", opts: Options{}, fb: fb, wantErr: "at least 16"},
		{name: "tiny max age", opts: Options{Secret: testSecret, MaxAge: time.Millisecond}, fb: fb, wantErr: "below 1s"},
		{name: "negative max age", opts: Options{Secret: testSecret, MaxAge: -time.Hour}, fb: fb, wantErr: "negative"},
		{name: "no fallback", opts: Options{Secret: testSecret}, wantErr: "fallback"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := New(tt.opts, tt.fb)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if a.opts.MaxAge != 6*time.Hour && tt.opts.MaxAge == 0 {
					t.Errorf("MaxAge default = %v", a.opts.MaxAge)
				}
				if tt.opts.CookieName == "" && a.opts.CookieName != "KC_ROUTE" {
					t.Errorf("CookieName default = %q", a.opts.CookieName)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewCopiesSecret(t *testing.T) {
	secret := slices.Clone(testSecret)
	a, err := New(Options{Secret: secret, Now: func() time.Time { return epoch }}, &firstEligible{})
	if err != nil {
		t.Fatal(err)
	}
	clear(secret)
	s := backend.NewServer(backend.Spec{Name: "kc1"}, nil)
	h := http.Header{}
	a.Respond(h, Decision{Server: s, SetCookie: true}, true)
	v := cookieValue(t, h, "KC_ROUTE")
	if id, _, err := DecodeCookie(testSecret, v, epoch); err != nil || id != CookieID(testSecret, "kc1") {
		t.Fatalf("cookie after caller cleared its secret: id %q err %v", id, err)
	}
}

func TestPickPrecedence(t *testing.T) {
	f := newFixture(t, 3, true, nil)
	tests := []struct {
		name    string
		cookies []string
		want    string
		source  Source
		set     bool
	}{
		{name: "new client", want: "kc1", source: SourceBalancer, set: true},
		{name: "kc_route", cookies: []string{f.cookieFor("kc2")}, want: "kc2", source: SourceCookie},
		{name: "auth session legacy format", cookies: []string{"AUTH_SESSION_ID=5e161e00-d426-4ea6-98e9-52eb9844e2d7.node3"},
			want: "kc3", source: SourceAuthSession, set: true},
		{name: "auth session 26.1 format", cookies: []string{"AUTH_SESSION_ID=NWUxNjFlMDAtZDQyNi00ZWE2LTk4ZTktNTJlYjk4NDRlMmQ3LkhTNTEyc2ln.node2"},
			want: "kc2", source: SourceAuthSession, set: true},
		// Issue 18, item 3: the suffix is often wrong (keycloak#43933);
		// kclb's own valid cookie wins.
		{name: "kc_route beats auth session", cookies: []string{"AUTH_SESSION_ID=abc.node3; " + f.cookieFor("kc2")},
			want: "kc2", source: SourceCookie},
		{name: "auth session agrees with kc_route", cookies: []string{f.cookieFor("kc3") + "; AUTH_SESSION_ID=abc.node3"},
			want: "kc3", source: SourceCookie},
		{name: "auth session hint when kc_route is forged", cookies: []string{"KC_ROUTE=garbage; AUTH_SESSION_ID=abc.node3"},
			want: "kc3", source: SourceAuthSession, set: true},
		{name: "auth session hint when kc_route names no server", cookies: []string{"AUTH_SESSION_ID=abc.node3; KC_ROUTE=" +
			EncodeCookie(testSecret, "gone", epoch.Add(time.Hour))}, want: "kc3", source: SourceAuthSession, set: true},
		{name: "legacy cookie alone", cookies: []string{"AUTH_SESSION_ID_LEGACY=abc.node2"}, want: "kc2", source: SourceAuthSession, set: true},
		{name: "AUTH_SESSION_ID beats legacy", cookies: []string{"AUTH_SESSION_ID_LEGACY=abc.node2; AUTH_SESSION_ID=abc.node3"},
			want: "kc3", source: SourceAuthSession, set: true},
		{name: "first AUTH_SESSION_ID wins", cookies: []string{"AUTH_SESSION_ID=abc.node2; AUTH_SESSION_ID=abc.node3"},
			want: "kc2", source: SourceAuthSession, set: true},
		{name: "first AUTH_SESSION_ID wins across headers", cookies: []string{"AUTH_SESSION_ID=abc.node3", "AUTH_SESSION_ID=abc.node2"},
			want: "kc3", source: SourceAuthSession, set: true},
		{name: "unknown route falls to kc_route", cookies: []string{"AUTH_SESSION_ID=abc.nodeX; " + f.cookieFor("kc2")},
			want: "kc2", source: SourceCookie},
		{name: "route without suffix falls to kc_route", cookies: []string{"AUTH_SESSION_ID=abc; " + f.cookieFor("kc2")},
			want: "kc2", source: SourceCookie},
		{name: "unknown route and no cookie", cookies: []string{"AUTH_SESSION_ID=abc.nodeX"}, want: "kc1", source: SourceBalancer, set: true},
		{name: "kc_route in second header", cookies: []string{"a=b", f.cookieFor("kc3")}, want: "kc3", source: SourceCookie},
		{name: "quoted kc_route", cookies: []string{`KC_ROUTE="` + strings.TrimPrefix(f.cookieFor("kc2"), "KC_ROUTE=") + `"`},
			want: "kc2", source: SourceCookie},
		{name: "first valid kc_route wins", cookies: []string{"KC_ROUTE=garbage; " + f.cookieFor("kc3") + "; " + f.cookieFor("kc2")},
			want: "kc3", source: SourceCookie},
		{name: "name is case sensitive", cookies: []string{"kc_route=" + strings.TrimPrefix(f.cookieFor("kc2"), "KC_ROUTE=")},
			want: "kc1", source: SourceBalancer, set: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := f.pick(nil, tt.cookies...)
			if name(d.Server) != tt.want || d.Source != tt.source || d.SetCookie != tt.set || d.Redispatched {
				t.Fatalf("Pick = {%s %v set=%v redisp=%v}, want {%s %v set=%v redisp=false}",
					name(d.Server), d.Source, d.SetCookie, d.Redispatched, tt.want, tt.source, tt.set)
			}
		})
	}
}

func TestAuthSessionRouteDisabled(t *testing.T) {
	f := newFixture(t, 3, true, func(o *Options) { o.AuthSessionRoute = false })
	d := f.pick(nil, "AUTH_SESSION_ID=abc.node3; "+f.cookieFor("kc2"))
	if name(d.Server) != "kc2" || d.Source != SourceCookie {
		t.Fatalf("Pick = %s/%v, want kc2/cookie", name(d.Server), d.Source)
	}
	d = f.pick(nil, "AUTH_SESSION_ID=abc.node3")
	if name(d.Server) != "kc1" || d.Source != SourceBalancer {
		t.Fatalf("Pick = %s/%v, want kc1/balancer", name(d.Server), d.Source)
	}
}

func TestCustomCookieName(t *testing.T) {
	f := newFixture(t, 3, true, func(o *Options) { o.CookieName = "LBSTICK" })
	v := EncodeCookie(testSecret, "kc3", f.now.Add(time.Hour))
	if d := f.pick(nil, "KC_ROUTE="+v); d.Source != SourceBalancer {
		t.Fatalf("default name honoured with a custom name: %v", d.Source)
	}
	if d := f.pick(nil, "LBSTICK="+v); name(d.Server) != "kc3" || d.Source != SourceCookie {
		t.Fatalf("Pick = %s/%v, want kc3/cookie", name(d.Server), d.Source)
	}
	h := http.Header{"Cookie": {"LBSTICK=" + v + "; KC_ROUTE=x"}}
	f.aff.StripRequest(h)
	if got := h.Get("Cookie"); got != "KC_ROUTE=x" {
		t.Fatalf("StripRequest left %q", got)
	}
}

func TestInvalidCookiesIgnored(t *testing.T) {
	f := newFixture(t, 3, true, nil)
	good := strings.TrimPrefix(f.cookieFor("kc3"), "KC_ROUTE=")
	tampered := []byte(good)
	tampered[3] ^= 1 // still base64url: flips a letter's case bit
	other := []byte("another-secret-of-enough-length")
	tests := []struct {
		name   string
		cookie string
		reason MissReason
		clock  time.Duration // advance the clock before picking
	}{
		{name: "garbage", cookie: "KC_ROUTE=garbage", reason: MissMalformed},
		{name: "empty", cookie: "KC_ROUTE=", reason: MissMalformed},
		{name: "address", cookie: "KC_ROUTE=127.0.0.1:8080", reason: MissMalformed},
		{name: "tampered id", cookie: "KC_ROUTE=" + string(tampered), reason: MissSignature},
		{name: "wrong key", cookie: "KC_ROUTE=" + EncodeCookie(other, "kc3", f.now.Add(time.Hour)), reason: MissSignature},
		{name: "expired", cookie: "KC_ROUTE=" + good, reason: MissExpired, clock: 6*time.Hour + time.Second},
		{name: "beyond max age", cookie: "KC_ROUTE=" + EncodeCookie(testSecret, "kc3", f.now.Add(48*time.Hour)), reason: MissExpired},
		{name: "unknown server", cookie: "KC_ROUTE=" + EncodeCookie(testSecret, "kc9", f.now.Add(time.Hour)), reason: MissUnknownServer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			saved := *f.now
			*f.now = saved.Add(tt.clock)
			defer func() { *f.now = saved }()
			before := f.aff.Stats()
			d := f.pick(nil, tt.cookie)
			if name(d.Server) != "kc1" || d.Source != SourceBalancer || !d.SetCookie || d.Redispatched {
				t.Fatalf("Pick = %+v, want a fresh balancer pick of kc1 with a new cookie", d)
			}
			after := f.aff.Stats()
			for r := range MissReason(NumMissReasons) {
				want := before.Misses[r]
				if r == tt.reason {
					want++
				}
				if after.Misses[r] != want {
					t.Errorf("Misses[%v] = %d, want %d", r, after.Misses[r], want)
				}
			}
		})
	}
}

func TestUnknownRouteCounted(t *testing.T) {
	f := newFixture(t, 2, true, nil)
	f.pick(nil, "AUTH_SESSION_ID=abc.nowhere")
	if got := f.aff.Stats().Misses[MissUnknownRoute]; got != 1 {
		t.Fatalf("Misses[unknown_route] = %d, want 1", got)
	}
}

func TestPeerInstanceCookie(t *testing.T) {
	// The other kclb of the VRRP pair shares the secret: its cookie must
	// pin here too, although this instance never issued an id.
	peer := newFixture(t, 3, false, nil)
	h := http.Header{}
	peer.aff.Respond(h, Decision{Server: peer.server("kc2"), SetCookie: true}, true)
	v := cookieValue(t, h, "KC_ROUTE")

	f := newFixture(t, 3, false, nil)
	d := f.pick(nil, "KC_ROUTE="+v)
	if name(d.Server) != "kc2" || d.Source != SourceCookie || d.SetCookie {
		t.Fatalf("Pick with the peer's cookie = %+v, want kc2 from the cookie", d)
	}
}

func TestStaleServerNeverReturned(t *testing.T) {
	f := newFixture(t, 3, true, nil)
	old := f.server("kc2")
	c := f.cookieFor("kc2")
	f.aff.Learn("gen-route", old)
	if !f.pool.Remove("kc2") {
		t.Fatal("Remove kc2 failed")
	}
	for _, ck := range []string{c, "AUTH_SESSION_ID=a.node2", "AUTH_SESSION_ID=a.gen-route"} {
		d := f.pick(nil, ck)
		if d.Server == old || name(d.Server) != "kc1" || d.Source != SourceBalancer {
			t.Fatalf("cookie %q: Pick = %s/%v, want kc1 from the balancer", ck, name(d.Server), d.Source)
		}
	}
	// The server comes back under the same name (a new *Server): the old
	// cookie pins to the new object.
	back := f.pool.Add(backend.Spec{Name: "kc2", Addr: "127.0.0.1:2"})
	d := f.pick(nil, c)
	if d.Server != back || d.Source != SourceCookie {
		t.Fatalf("Pick after re-add = %s/%v (same object: %v), want the new kc2", name(d.Server), d.Source, d.Server == back)
	}
}

func TestRefreshCookie(t *testing.T) {
	f := newFixture(t, 2, true, nil)
	c := f.cookieFor("kc2") // valid for 6h
	tests := []struct {
		name    string
		advance time.Duration
		set     bool
	}{
		{name: "fresh", advance: time.Hour, set: false},
		{name: "just over half left", advance: 2*time.Hour + 59*time.Minute, set: false},
		{name: "under half left", advance: 3*time.Hour + time.Minute, set: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			*f.now = epoch.Add(tt.advance)
			d := f.pick(nil, c)
			if name(d.Server) != "kc2" || d.Source != SourceCookie || d.SetCookie != tt.set {
				t.Fatalf("Pick = %+v, want kc2 from the cookie, SetCookie=%v", d, tt.set)
			}
		})
	}
}

func TestRedispatch(t *testing.T) {
	tests := []struct {
		name       string
		prepare    func(f *fixture, tried *balancer.Tried)
		cookies    func(f *fixture) []string
		want       string
		source     Source
		redispatch bool
		keepCookie bool // SetCookie false expected
	}{
		{name: "down", prepare: func(f *fixture, _ *balancer.Tried) {
			f.pool.SetHealth(f.server("kc2"), backend.HealthDown, backend.Detail{})
		}, cookies: func(f *fixture) []string { return []string{f.cookieFor("kc2")} }, want: "kc1", redispatch: true},
		{name: "dead", prepare: func(f *fixture, _ *balancer.Tried) {
			f.pool.SetHealth(f.server("kc2"), backend.HealthDead, backend.Detail{})
		}, cookies: func(f *fixture) []string { return []string{f.cookieFor("kc2")} }, want: "kc1", redispatch: true},
		{name: "maint", prepare: func(f *fixture, _ *balancer.Tried) {
			if err := f.pool.SetAdmin("kc2", backend.AdminMaint); err != nil {
				panic(err)
			}
		}, cookies: func(f *fixture) []string { return []string{f.cookieFor("kc2")} }, want: "kc1", redispatch: true},
		{name: "tried", prepare: func(f *fixture, tried *balancer.Tried) {
			tried.Add(f.server("kc2"))
		}, cookies: func(f *fixture) []string { return []string{f.cookieFor("kc2")} }, want: "kc1", redispatch: true},
		{name: "drain honours pin", prepare: func(f *fixture, _ *balancer.Tried) {
			if err := f.pool.SetAdmin("kc2", backend.AdminDrain); err != nil {
				panic(err)
			}
		}, cookies: func(f *fixture) []string { return []string{f.cookieFor("kc2")} }, want: "kc2", source: SourceCookie, keepCookie: true},
		// Issue 18, item 6: the hint only names Available servers, so a
		// draining one gets no new clients through it.
		{name: "auth session naming a draining server is ignored", prepare: func(f *fixture, _ *balancer.Tried) {
			if err := f.pool.SetAdmin("kc3", backend.AdminDrain); err != nil {
				panic(err)
			}
		}, cookies: func(f *fixture) []string { return []string{"AUTH_SESSION_ID=x.node3"} }, want: "kc1"},
		{name: "pin down, auth session hint taken", prepare: func(f *fixture, _ *balancer.Tried) {
			f.pool.SetHealth(f.server("kc2"), backend.HealthDown, backend.Detail{})
		}, cookies: func(f *fixture) []string { return []string{"AUTH_SESSION_ID=x.node3; " + f.cookieFor("kc2")} }, want: "kc3", source: SourceAuthSession, redispatch: true},
		{name: "pin tried, auth session names it too", prepare: func(f *fixture, tried *balancer.Tried) {
			tried.Add(f.server("kc2"))
		}, cookies: func(f *fixture) []string { return []string{"AUTH_SESSION_ID=x.node2; " + f.cookieFor("kc2")} }, want: "kc1", redispatch: true},
		{name: "auth session down, kc_route wins anyway", prepare: func(f *fixture, _ *balancer.Tried) {
			f.pool.SetHealth(f.server("kc3"), backend.HealthDown, backend.Detail{})
		}, cookies: func(f *fixture) []string { return []string{"AUTH_SESSION_ID=x.node3; " + f.cookieFor("kc2")} }, want: "kc2", source: SourceCookie, keepCookie: true},
		{name: "auth session maint and no cookie: not a pin", prepare: func(f *fixture, _ *balancer.Tried) {
			if err := f.pool.SetAdmin("kc3", backend.AdminMaint); err != nil {
				panic(err)
			}
		}, cookies: func(f *fixture) []string { return []string{"AUTH_SESSION_ID=x.node3"} }, want: "kc1"},
		{name: "both pins down", prepare: func(f *fixture, _ *balancer.Tried) {
			f.pool.SetHealth(f.server("kc3"), backend.HealthDown, backend.Detail{})
			f.pool.SetHealth(f.server("kc2"), backend.HealthDown, backend.Detail{})
		}, cookies: func(f *fixture) []string { return []string{"AUTH_SESSION_ID=x.node3; " + f.cookieFor("kc2")} }, want: "kc1", redispatch: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, 3, true, nil)
			var tried balancer.Tried
			cookies := tt.cookies(f)
			tt.prepare(f, &tried)
			d := f.pick(&tried, cookies...)
			wantSet := !tt.keepCookie
			if name(d.Server) != tt.want || d.Source != tt.source || d.Redispatched != tt.redispatch || d.SetCookie != wantSet {
				t.Fatalf("Pick = {%s %v set=%v redisp=%v}, want {%s %v set=%v redisp=%v}",
					name(d.Server), d.Source, d.SetCookie, d.Redispatched, tt.want, tt.source, wantSet, tt.redispatch)
			}
			var counted uint64
			for _, s := range f.pool.Servers() {
				counted += s.Counters().Redispatches
			}
			want := uint64(0)
			if tt.redispatch {
				want = 1
			}
			wantCounted := want
			if tried.Len() > 0 {
				wantCounted = 0 // the proxy's retry loop counts it
			}
			if counted != wantCounted || f.aff.Stats().Redispatches != want {
				t.Fatalf("redispatches: servers %d, stats %d, want %d and %d", counted, f.aff.Stats().Redispatches, wantCounted, want)
			}
		})
	}
}

func TestRedispatchCountsOldServer(t *testing.T) {
	f := newFixture(t, 3, true, nil)
	if err := f.pool.SetAdmin("kc2", backend.AdminMaint); err != nil {
		t.Fatal(err)
	}
	d := f.pick(nil, f.cookieFor("kc2"))
	if !d.Redispatched || name(d.Server) != "kc1" {
		t.Fatalf("Pick = %+v", d)
	}
	if got := f.server("kc2").Counters().Redispatches; got != 1 {
		t.Fatalf("kc2 redispatches = %d, want 1", got)
	}
	// The re-issued cookie pins to the new server.
	h := http.Header{}
	f.aff.Respond(h, d, true)
	d2 := f.pick(nil, "KC_ROUTE="+cookieValue(t, h, "KC_ROUTE"))
	if name(d2.Server) != "kc1" || d2.Source != SourceCookie {
		t.Fatalf("Pick with re-issued cookie = %+v, want kc1 from the cookie", d2)
	}
}

func TestNoServer(t *testing.T) {
	f := newFixture(t, 2, true, nil)
	for _, s := range f.pool.Servers() {
		f.pool.SetHealth(s, backend.HealthDead, backend.Detail{})
	}
	d := f.pick(nil, f.cookieFor("kc2"))
	if d != (Decision{}) {
		t.Fatalf("Pick with every server dead = %+v, want zero", d)
	}
	if f.aff.Stats().NoServer != 1 {
		t.Fatalf("NoServer = %d, want 1", f.aff.Stats().NoServer)
	}
	h := http.Header{}
	f.aff.Respond(h, d, true)
	if len(h) != 0 {
		t.Fatalf("Respond with no server changed headers: %v", h)
	}
}

func TestDrainNewClientsAvoid(t *testing.T) {
	specs := []backend.Spec{{Name: "kc1"}, {Name: "kc2"}, {Name: "kc3"}}
	pool, err := backend.NewPool(specs, backend.PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Secret: testSecret, Now: func() time.Time { return epoch }}, &balancer.RoundRobin{})
	if err != nil {
		t.Fatal(err)
	}
	// Pin one client to kc2, then drain kc2.
	h := http.Header{}
	a.Respond(h, Decision{Server: pool.Lookup("kc2"), SetCookie: true}, true)
	pinned := "KC_ROUTE=" + cookieValue(t, h, "KC_ROUTE")
	if err := pool.SetAdmin("kc2", backend.AdminDrain); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for range 60 {
		r, _ := http.NewRequest("GET", "http://kc.test/", nil)
		counts[name(a.Pick(r, pool.Servers(), nil).Server)]++
		r.Header.Set("Cookie", pinned)
		if d := a.Pick(r, pool.Servers(), nil); name(d.Server) != "kc2" || d.Source != SourceCookie {
			t.Fatalf("pinned client on draining kc2 got %s/%v", name(d.Server), d.Source)
		}
	}
	if counts["kc2"] != 0 || counts["kc1"] != 30 || counts["kc3"] != 30 {
		t.Fatalf("new clients during drain: %v, want kc1 and kc3 only, evenly", counts)
	}
}

// respond feeds f the Set-Cookie headers of a response from server.
func (f *fixture) respond(server string, setCookies ...string) {
	f.aff.Respond(http.Header{"Set-Cookie": setCookies}, Decision{Server: f.server(server)}, true)
}

// setRoutes makes server answer n responses whose AUTH_SESSION_ID (and
// _LEGACY, as Keycloak sets both) carries route.
func (f *fixture) setRoutes(server, route string, n int) {
	for range n {
		f.respond(server, "AUTH_SESSION_ID=NWUxNjFl."+route+"; Path=/realms/test/; HttpOnly; SameSite=None; Secure",
			"AUTH_SESSION_ID_LEGACY=NWUxNjFl."+route+"; Path=/realms/test/; HttpOnly", "KC_RESTART=eyJ; Path=/realms/test/")
	}
}

// TestLearnFromSetCookie pins issue 18, item 3 for learning: a suffix is
// taken as a server's name only when that server keeps writing it and no
// other server does.
func TestLearnFromSetCookie(t *testing.T) {
	f := newFixture(t, 3, false, nil)
	// Before learning the route means nothing.
	if d := f.pick(nil, "AUTH_SESSION_ID=abc.kc-b-1234"); d.Source != SourceBalancer {
		t.Fatalf("unlearned route used: %+v", d)
	}
	f.setRoutes("kc2", "kc-b-1234", learnAfter-1)
	f.respond("kc3", `AUTH_SESSION_ID_LEGACY="5e161e00-d426.kc-c-9"; Path=/realms/test/`)
	f.respond("kc1", "AUTH_SESSION_ID=; Max-Age=0; Path=/realms/test/") // deletion: nothing to learn
	if got := f.aff.Routes(); len(got) != 0 {
		t.Fatalf("learned %v before %d consistent responses (AUTH_SESSION_ID and _LEGACY count once)", got, learnAfter)
	}
	f.setRoutes("kc2", "kc-b-1234", 1)
	f.setRoutes("kc3", "kc-c-9", learnAfter-1)
	if got, want := f.aff.Routes(), map[string]string{"kc-b-1234": "kc2", "kc-c-9": "kc3"}; !mapsEqual(got, want) {
		t.Fatalf("Routes = %v, want %v", got, want)
	}
	if d := f.pick(nil, "AUTH_SESSION_ID=abc.kc-b-1234"); name(d.Server) != "kc2" || d.Source != SourceAuthSession || !d.SetCookie {
		t.Fatalf("learned route: Pick = %+v, want kc2 from the auth session with a cookie", d)
	}
	if st := f.aff.Stats(); st.RouteConflicts != 0 || st.RoutesLearned != 2 {
		t.Fatalf("Stats = %+v, want 0 conflicts, 2 learned", st)
	}

	// Another server writes kc2's route (keycloak#43933): the route is
	// dropped at once and cannot be learned again within contestWindow.
	f.setRoutes("kc1", "kc-b-1234", 1)
	if got := f.aff.Routes(); !mapsEqual(got, map[string]string{"kc-c-9": "kc3"}) {
		t.Fatalf("Routes after a second writer = %v, want kc-b-1234 dropped", got)
	}
	f.setRoutes("kc2", "kc-b-1234", 3*learnAfter)
	if _, ok := f.aff.Routes()["kc-b-1234"]; ok {
		t.Fatal("contested route learned again within contestWindow")
	}
	*f.now = f.now.Add(contestWindow)
	f.setRoutes("kc2", "kc-b-1234", 1)
	if got := f.aff.Routes()["kc-b-1234"]; got != "kc2" {
		t.Fatalf("after contestWindow of kc2 alone writing it: route on %q, want kc2", got)
	}
	if st := f.aff.Stats(); st.RouteConflicts != 2 {
		t.Fatalf("RouteConflicts = %d, want 2 (kc1's cookie, then kc2's first one after it)", st.RouteConflicts)
	}

	// A node restarted under a new generated name: its new route replaces
	// the old one (one route per server).
	f.setRoutes("kc3", "kc-c-10", learnAfter)
	if got := f.aff.Routes(); !mapsEqual(got, map[string]string{"kc-b-1234": "kc2", "kc-c-10": "kc3"}) {
		t.Fatalf("Routes after kc3's new name = %v", got)
	}
}

// TestWrongSuffixesNeverLearned: servers that write other nodes' names,
// always or a third of the time as keycloak#43933 does, teach nothing, and
// a wrong suffix does not move a route learned from metrics (issue 18,
// item 3).
func TestWrongSuffixesNeverLearned(t *testing.T) {
	names := []string{"kc-a", "kc-b", "kc-c"}
	tests := []struct {
		name  string
		route func(server, i int) string
	}{
		{name: "always another node", route: func(s, i int) string { return names[(s+1+i%2)%3] }},
		{name: "a third another node", route: func(s, i int) string {
			if i%3 == 2 {
				return names[(s+1+i/3%2)%3]
			}
			return names[s]
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, 3, false, nil)
			for i := range 300 {
				for s := range 3 {
					f.setRoutes("kc"+strconv.Itoa(s+1), tt.route(s, i), 1)
				}
			}
			if got := f.aff.Routes(); len(got) != 0 {
				t.Fatalf("learned %v from wrong suffixes", got)
			}
			if d := f.pick(nil, "AUTH_SESSION_ID=abc.kc-b"); d.Source != SourceBalancer {
				t.Fatalf("wrong suffix followed: %+v", d)
			}
			// The nodes name themselves in their metrics: that table holds
			// whatever the cookies say.
			for s := range 3 {
				f.aff.Learn(names[s], f.server("kc"+strconv.Itoa(s+1)))
			}
			before := f.aff.Stats().RouteConflicts
			for i := range 300 {
				for s := range 3 {
					f.setRoutes("kc"+strconv.Itoa(s+1), tt.route(s, i), 1)
				}
			}
			if got, want := f.aff.Routes(), map[string]string{"kc-a": "kc1", "kc-b": "kc2", "kc-c": "kc3"}; !mapsEqual(got, want) {
				t.Fatalf("Routes = %v, want %v", got, want)
			}
			if f.aff.Stats().RouteConflicts == before {
				t.Fatal("wrong suffixes not counted as route conflicts")
			}
		})
	}
}

// TestLearnExplicit: Learn (the node label of the server's metrics) is
// authoritative and one server has one route.
func TestLearnExplicit(t *testing.T) {
	f := newFixture(t, 3, false, nil)
	kc2, kc3 := f.server("kc2"), f.server("kc3")
	f.setRoutes("kc2", "kc-b", learnAfter)
	f.aff.Learn("kc-b", kc3) // overrides the observed route
	if got := f.aff.Routes(); !mapsEqual(got, map[string]string{"kc-b": "kc3"}) {
		t.Fatalf("Routes = %v, want kc-b on kc3", got)
	}
	f.setRoutes("kc2", "kc-b", 3*learnAfter)
	if got := f.aff.Routes()["kc-b"]; got != "kc3" {
		t.Fatalf("explicit route moved to %s by cookies", got)
	}
	f.setRoutes("kc3", "kc-x", 3*learnAfter) // kc3 is kc-b per its metrics
	if got := f.aff.Routes(); !mapsEqual(got, map[string]string{"kc-b": "kc3"}) {
		t.Fatalf("Routes = %v after kc3 wrote another name", got)
	}
	f.aff.Learn("kc-b2", kc3) // renamed: replaces kc-b
	f.aff.Learn("kc-b", kc2)
	if got := f.aff.Routes(); !mapsEqual(got, map[string]string{"kc-b": "kc2", "kc-b2": "kc3"}) {
		t.Fatalf("Routes = %v", got)
	}
	f.aff.Learn("", kc3)
	f.aff.Learn("r", nil)
	f.aff.Learn(strings.Repeat("r", 256), kc3)
	if n := len(f.aff.Routes()); n != 2 {
		t.Fatalf("invalid Learn calls changed routes: %v", f.aff.Routes())
	}
}

// TestConfiguredServersTeachNothing: a server with a configured route
// learns nothing from its cookies, and a foreign suffix is counted.
func TestConfiguredServersTeachNothing(t *testing.T) {
	f := newFixture(t, 3, true, nil)
	f.setRoutes("kc1", "node2", 3*learnAfter)
	f.setRoutes("kc1", "node1", 3*learnAfter)
	if got := f.aff.Routes(); len(got) != 0 {
		t.Fatalf("learned %v from configured servers", got)
	}
	if st := f.aff.Stats(); st.RouteConflicts != 3*learnAfter {
		t.Fatalf("RouteConflicts = %d, want %d", st.RouteConflicts, 3*learnAfter)
	}
}

func TestLearnDisabled(t *testing.T) {
	f := newFixture(t, 2, false, func(o *Options) { o.Learn = false })
	f.aff.Respond(http.Header{"Set-Cookie": {"AUTH_SESSION_ID=x.n2; Path=/realms/t/"}}, Decision{Server: f.server("kc2")}, true)
	if r := f.aff.Routes(); len(r) != 0 {
		t.Fatalf("learned with Learn=false: %v", r)
	}
	// Explicit Learn still works.
	f.aff.Learn("n2", f.server("kc2"))
	if d := f.pick(nil, "AUTH_SESSION_ID=x.n2"); name(d.Server) != "kc2" {
		t.Fatalf("explicit route ignored: %s", name(d.Server))
	}
}

func TestConfiguredRouteBeatsLearned(t *testing.T) {
	f := newFixture(t, 3, true, nil)
	f.aff.Learn("node2", f.server("kc3"))
	if d := f.pick(nil, "AUTH_SESSION_ID=x.node2"); name(d.Server) != "kc2" {
		t.Fatalf("Pick = %s, want kc2 (configured route)", name(d.Server))
	}
}

func TestLearnedRoutesBounded(t *testing.T) {
	n := maxLearnedRoutes + 50
	specs := make([]backend.Spec, n)
	for i := range specs {
		specs[i] = backend.Spec{Name: "s" + strconv.Itoa(i), Addr: "127.0.0.1:1"}
	}
	pool, err := backend.NewPool(specs, backend.PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Secret: testSecret, Learn: true}, &firstEligible{})
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range pool.Servers() {
		a.Learn("gen-"+strconv.Itoa(i), s)
	}
	if got := len(a.Routes()); got != maxLearnedRoutes {
		t.Fatalf("learned %d routes, want the cap %d", got, maxLearnedRoutes)
	}
	if _, ok := a.Routes()["gen-"+strconv.Itoa(n-1)]; !ok {
		t.Fatal("newest route evicted")
	}
	// The cookie bookkeeping is bounded too.
	s := pool.Servers()[0]
	for i := range 3 * maxLearnedRoutes {
		a.observe("churn-"+strconv.Itoa(i), s)
		a.observe("churn-"+strconv.Itoa(i), pool.Servers()[1+i%5])
	}
	if len(a.seen) > maxLearnedRoutes || len(a.streaks) > maxLearnedRoutes {
		t.Fatalf("bookkeeping grew to %d routes and %d streaks", len(a.seen), len(a.streaks))
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// cookieValue returns the value of the Set-Cookie named name in h.
func cookieValue(t testing.TB, h http.Header, name string) string {
	t.Helper()
	for _, v := range h.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(v)
		if err == nil && c.Name == name {
			return c.Value
		}
	}
	t.Fatalf("no Set-Cookie %s in %v", name, h)
	return ""
}

func TestRespondCookieAttributes(t *testing.T) {
	for _, secure := range []bool{true, false} {
		t.Run(map[bool]string{true: "https", false: "http"}[secure], func(t *testing.T) {
			f := newFixture(t, 2, true, func(o *Options) { o.MaxAge = 90 * time.Minute })
			h := http.Header{}
			s := f.server("kc2")
			f.aff.Respond(h, Decision{Server: s, SetCookie: true}, secure)
			raw := h.Values("Set-Cookie")
			if len(raw) != 1 {
				t.Fatalf("Set-Cookie = %q, want one", raw)
			}
			c, err := http.ParseSetCookie(raw[0])
			if err != nil {
				t.Fatal(err)
			}
			if c.Name != "KC_ROUTE" || c.MaxAge != 5400 || c.Path != "/" || !c.HttpOnly || c.Secure != secure || c.Domain != "" {
				t.Fatalf("cookie = %+v (raw %q)", c, raw[0])
			}
			wantSameSite := http.SameSite(0) // attribute absent
			if secure {
				wantSameSite = http.SameSiteNoneMode
			}
			if c.SameSite != wantSameSite {
				t.Fatalf("SameSite = %v, want %v (raw %q)", c.SameSite, wantSameSite, raw[0])
			}
			if strings.Contains(c.Value, "kc2") || strings.Contains(c.Value, "127.0.0.1") {
				t.Fatalf("cookie value %q reveals the server", c.Value)
			}
			id, exp, err := DecodeCookie(testSecret, c.Value, epoch)
			if err != nil || id != CookieID(testSecret, "kc2") || !exp.Equal(epoch.Add(90*time.Minute)) {
				t.Fatalf("DecodeCookie = %q %v %v", id, exp, err)
			}
			if got := h.Values("Cache-Control"); !slices.Equal(got, []string{"private"}) {
				t.Fatalf("Cache-Control = %q", got)
			}
		})
	}
}

func TestCacheControl(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		set  bool
		want []string
	}{
		{name: "absent", set: true, want: []string{"private"}},
		{name: "no-store kept", in: []string{"no-store, must-revalidate, max-age=0"}, set: true, want: []string{"no-store, must-revalidate, max-age=0"}},
		{name: "private kept", in: []string{"private, max-age=60"}, set: true, want: []string{"private, max-age=60"}},
		{name: "qualified private kept", in: []string{`private="Set-Cookie"`}, set: true, want: []string{`private="Set-Cookie"`}},
		{name: "case insensitive", in: []string{"No-Store"}, set: true, want: []string{"No-Store"}},
		{name: "no-store in second line", in: []string{"max-age=0", "no-store"}, set: true, want: []string{"max-age=0", "no-store"}},
		{name: "no-cache gets private", in: []string{"no-cache"}, set: true, want: []string{"no-cache", "private"}},
		{name: "public replaced", in: []string{"public, max-age=3600"}, set: true, want: []string{"max-age=3600, private"}},
		{name: "public alone", in: []string{"PUBLIC"}, set: true, want: []string{"private"}},
		{name: "no cookie no change", in: []string{"public, max-age=3600"}, want: []string{"public, max-age=3600"}},
		{name: "no cookie absent", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, 1, true, nil)
			h := http.Header{}
			if tt.in != nil {
				h["Cache-Control"] = slices.Clone(tt.in)
			}
			f.aff.Respond(h, Decision{Server: f.server("kc1"), SetCookie: tt.set}, true)
			if got := h["Cache-Control"]; !slices.Equal(got, tt.want) {
				t.Fatalf("Cache-Control = %q, want %q", got, tt.want)
			}
			if n := len(h["Set-Cookie"]); (n == 1) != tt.set {
				t.Fatalf("%d Set-Cookie headers, SetCookie=%v", n, tt.set)
			}
		})
	}
}

func TestRespondKeepsBackendCookies(t *testing.T) {
	f := newFixture(t, 2, true, nil)
	backendCookies := []string{"AUTH_SESSION_ID=abc.node2; Path=/realms/test/", "KC_RESTART=jwt; Path=/realms/test/"}
	h := http.Header{"Set-Cookie": slices.Clone(backendCookies)}
	f.aff.Respond(h, Decision{Server: f.server("kc2"), SetCookie: true}, true)
	got := h["Set-Cookie"]
	if len(got) != 3 || !slices.Equal(got[:2], backendCookies) || !strings.HasPrefix(got[2], "KC_ROUTE=") {
		t.Fatalf("Set-Cookie = %q", got)
	}
}

// TestRespondStaysInResponseFields pins Router.ResponseFields: kclb's
// HTTP/1.1 server gives Respond a header holding only those fields, so
// Respond on it must change them exactly as on the whole header and
// leave every other field alone.
func TestRespondStaysInResponseFields(t *testing.T) {
	f := newFixture(t, 2, true, nil)
	scope := Router{A: f.aff}.ResponseFields()
	for _, cc := range [][]string{nil, {"no-store"}, {"public, max-age=60"}, {"max-age=5"}} {
		full := http.Header{
			"Set-Cookie":      {"AUTH_SESSION_ID=abc.kc2; Path=/realms/test/"},
			"Content-Type":    {"text/html"},
			"X-Frame-Options": {"DENY"},
			"Expires":         {"0"},
			"Pragma":          {"no-cache"},
			"Vary":            {"Cookie"},
		}
		if cc != nil {
			full["Cache-Control"] = slices.Clone(cc)
		}
		part := http.Header{}
		for _, k := range scope {
			if vv, ok := full[k]; ok {
				part[k] = slices.Clone(vv)
			}
		}
		others := full.Clone()
		d := Decision{Server: f.server("kc2"), SetCookie: true}
		f.aff.Respond(full, d, true)
		f.aff.Respond(part, d, true)
		for k, vv := range full {
			if slices.Contains(scope, k) {
				if !slices.Equal(part[k], vv) {
					t.Errorf("Cache-Control %q: %s = %q on the scope alone, %q on the whole header", cc, k, part[k], vv)
				}
				continue
			}
			if !slices.Equal(vv, others[k]) {
				t.Errorf("Cache-Control %q: Respond changed %s (%q to %q), outside ResponseFields", cc, k, others[k], vv)
			}
		}
		for k := range part {
			if !slices.Contains(scope, k) {
				t.Errorf("Respond added %s, outside ResponseFields", k)
			}
		}
	}
}

func TestStripRequest(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string // nil: header removed
	}{
		{name: "no header", in: nil, want: nil},
		{name: "only ours", in: []string{"KC_ROUTE=abc"}, want: nil},
		{name: "ours first", in: []string{"KC_ROUTE=abc; a=1; b=2"}, want: []string{"a=1; b=2"}},
		{name: "ours middle", in: []string{"a=1; KC_ROUTE=abc; b=2"}, want: []string{"a=1; b=2"}},
		{name: "ours last", in: []string{"a=1; b=2; KC_ROUTE=abc"}, want: []string{"a=1; b=2"}},
		{name: "not ours", in: []string{"a=1;b=2;  c=\"q\""}, want: []string{"a=1;b=2;  c=\"q\""}},
		{name: "similar names kept", in: []string{"XKC_ROUTE=1; KC_ROUTE_2=2; kc_route=3; KC_ROUTE=4"}, want: []string{"XKC_ROUTE=1; KC_ROUTE_2=2; kc_route=3"}},
		{name: "duplicates", in: []string{"KC_ROUTE=1; a=1; KC_ROUTE=2; b=2; KC_ROUTE=3"}, want: []string{"a=1; b=2"}},
		{name: "odd spacing kept", in: []string{"a=1;KC_ROUTE=x;\tb=2 ;c=3"}, want: []string{"a=1;\tb=2 ;c=3"}},
		{name: "empty segments kept", in: []string{"a=1;; KC_ROUTE=x; b=2"}, want: []string{"a=1; b=2"}},
		{name: "empty segments around kept", in: []string{"a=1;;b=2; KC_ROUTE=x"}, want: []string{"a=1;;b=2"}},
		{name: "value with spaces and equals", in: []string{`a="x y=z"; KC_ROUTE=x; b==`}, want: []string{`a="x y=z"; b==`}},
		{name: "spaces around name", in: []string{"a=1;  KC_ROUTE =x ; b=2"}, want: []string{"a=1 ; b=2"}},
		{name: "several headers", in: []string{"KC_ROUTE=1", "a=1", "b=2; KC_ROUTE=2"}, want: []string{"a=1", "b=2"}},
		{name: "flag without value kept", in: []string{"flag; KC_ROUTE=1"}, want: []string{"flag"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, 1, true, nil)
			h := http.Header{"Other": {"x"}}
			if tt.in != nil {
				h["Cookie"] = slices.Clone(tt.in)
			}
			f.aff.StripRequest(h)
			got, ok := h["Cookie"]
			if tt.want == nil {
				if ok {
					t.Fatalf("Cookie = %q, want removed", got)
				}
			} else if !slices.Equal(got, tt.want) {
				t.Fatalf("Cookie = %q, want %q", got, tt.want)
			}
			if h.Get("Other") != "x" {
				t.Fatal("other header touched")
			}
		})
	}
}

func TestSelectImplementsSelector(t *testing.T) {
	f := newFixture(t, 3, true, nil)
	var sel balancer.Selector = f.aff
	r, _ := http.NewRequest("GET", "http://kc.test/", nil)
	r.Header.Set("Cookie", f.cookieFor("kc3"))
	if s := sel.Select(r, f.pool.Servers(), nil); name(s) != "kc3" {
		t.Fatalf("Select = %s, want kc3", name(s))
	}
}

func TestSourceAndReasonStrings(t *testing.T) {
	seen := map[string]bool{}
	for s := range Source(NumSources) {
		str := s.String()
		if str == "unknown" || seen[str] {
			t.Fatalf("Source(%d).String() = %q", s, str)
		}
		seen[str] = true
	}
	for m := range MissReason(NumMissReasons) {
		str := m.String()
		if str == "unknown" || seen[str] {
			t.Fatalf("MissReason(%d).String() = %q", m, str)
		}
		seen[str] = true
	}
	if Source(NumSources).String() != "unknown" || MissReason(NumMissReasons).String() != "unknown" {
		t.Fatal("out of range values must print unknown")
	}
}

// validCookies is a realistic Cookie header of a client in a login flow:
// Keycloak's cookies plus a valid KC_ROUTE for kc2.
func validCookies(f *fixture) string {
	return "KC_RESTART=eyJhbGciOiJIUzUxMiJ9.eyJjaWQiOiJhY2NvdW50In0.c2ln; " +
		"AUTH_SESSION_ID=NWUxNjFlMDAtZDQyNi00ZWE2LTk4ZTktNTJlYjk4NDRlMmQ3LkhTNTEyc2ln.node2; " +
		"KC_AUTH_SESSION_HASH=aGFzaA; _ga=GA1.1.123; " + f.cookieFor("kc2")
}

func TestPickZeroAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	f := newFixture(t, 3, true, nil)
	r, _ := http.NewRequest("GET", "http://kc.test/realms/test/login-actions/authenticate", nil)
	r.Header.Set("Cookie", validCookies(f))
	servers := f.pool.Servers()
	var d Decision
	allocs := testing.AllocsPerRun(200, func() {
		var tried balancer.Tried
		d = f.aff.Pick(r, servers, &tried)
	})
	if name(d.Server) != "kc2" || d.Source != SourceCookie || d.SetCookie {
		t.Fatalf("Pick = %+v, want kc2 from the cookie without a new cookie", d)
	}
	if allocs != 0 {
		t.Fatalf("Pick allocates %.1f times per call, want 0", allocs)
	}
	// The cookie-only path too.
	r.Header.Set("Cookie", "a=1; "+f.cookieFor("kc3"))
	allocs = testing.AllocsPerRun(200, func() { d = f.aff.Pick(r, servers, nil) })
	if name(d.Server) != "kc3" || d.Source != SourceCookie || allocs != 0 {
		t.Fatalf("cookie path: Pick = %+v with %.1f allocs, want kc3 from the cookie with 0", d, allocs)
	}
	// The hint path (no KC_ROUTE) too.
	r.Header.Set("Cookie", "a=1; AUTH_SESSION_ID=NWUxNjFl.node1")
	allocs = testing.AllocsPerRun(200, func() { d = f.aff.Pick(r, servers, nil) })
	if name(d.Server) != "kc1" || d.Source != SourceAuthSession || allocs != 0 {
		t.Fatalf("hint path: Pick = %+v with %.1f allocs, want kc1 from the auth session with 0", d, allocs)
	}
}

func BenchmarkPick(b *testing.B) {
	f := newFixture(b, 3, true, nil)
	r, _ := http.NewRequest("GET", "http://kc.test/realms/test/login-actions/authenticate", nil)
	r.Header.Set("Cookie", validCookies(f))
	servers := f.pool.Servers()
	b.ReportAllocs()
	for b.Loop() {
		var tried balancer.Tried
		if d := f.aff.Pick(r, servers, &tried); d.Server == nil {
			b.Fatal("no server")
		}
	}
}

func BenchmarkPickCookieOnly(b *testing.B) {
	f := newFixture(b, 3, true, nil)
	r, _ := http.NewRequest("GET", "http://kc.test/resources/x.css", nil)
	r.Header.Set("Cookie", "_ga=GA1.1.123; "+f.cookieFor("kc3"))
	servers := f.pool.Servers()
	b.ReportAllocs()
	for b.Loop() {
		if d := f.aff.Pick(r, servers, nil); d.Source != SourceCookie {
			b.Fatal("not from the cookie")
		}
	}
}

func BenchmarkRespondSetCookie(b *testing.B) {
	f := newFixture(b, 3, true, nil)
	s := f.server("kc2")
	b.ReportAllocs()
	for b.Loop() {
		h := http.Header{"Set-Cookie": {"AUTH_SESSION_ID=abc.node2; Path=/realms/test/"}}
		f.aff.Respond(h, Decision{Server: s, SetCookie: true}, true)
	}
}

func BenchmarkStripRequest(b *testing.B) {
	f := newFixture(b, 3, true, nil)
	c := validCookies(f)
	b.ReportAllocs()
	h := http.Header{"Cookie": {c}}
	for b.Loop() {
		h["Cookie"][0] = c
		f.aff.StripRequest(h)
	}
}

// TestConcurrentPickAndLearn runs decisions, learning and id creation at
// once; run with -race it checks the copy-on-write tables.
func TestConcurrentPickAndLearn(t *testing.T) {
	f := newFixture(t, 3, false, nil)
	peer := EncodeCookie(testSecret, "kc3", epoch.Add(time.Hour)) // id not yet cached here
	done := make(chan struct{})
	errs := make(chan string, 4)
	for w := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 300 {
				switch w {
				case 0:
					f.aff.Respond(http.Header{"Set-Cookie": {"AUTH_SESSION_ID=a.r" + strconv.Itoa(i%20)}},
						Decision{Server: f.pool.Servers()[i%3], SetCookie: i%2 == 0}, true)
				case 1:
					f.aff.Learn("explicit"+strconv.Itoa(i%5), f.server("kc1"))
				default:
					d := f.pick(nil, "AUTH_SESSION_ID=a.r"+strconv.Itoa(i%20)+"; KC_ROUTE="+peer)
					if d.Server == nil {
						errs <- "no server"
						return
					}
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	if d := f.pick(nil, "KC_ROUTE="+peer); name(d.Server) != "kc3" || d.Source != SourceCookie {
		t.Fatalf("Pick after concurrent use = %s/%v, want kc3 from the cookie", name(d.Server), d.Source)
	}
	if got := f.aff.Routes()["explicit4"]; got != "kc1" {
		t.Fatalf("explicit route = %q, want kc1", got)
	}
}

// TestDrainNeverExtendsPins pins issue 18, item 6 (drain part): a client
// pinned to a draining server keeps reaching it, but its cookie is not
// refreshed past half its lifetime, and Respond refreshes no cookie naming
// a server that is not ready, so every pin to it ends within MaxAge; a new
// client placed on it just before the drain keeps its login there.
func TestDrainNeverExtendsPins(t *testing.T) {
	f := newFixture(t, 3, true, nil)
	stale := f.cookieFor("kc2")
	*f.now = f.now.Add(4 * time.Hour) // 2h of 6h left: refreshed when ready
	if d := f.pick(nil, stale); name(d.Server) != "kc2" || !d.SetCookie {
		t.Fatalf("ready: Pick = %+v, want kc2 with a refreshed cookie", d)
	}
	if err := f.pool.SetAdmin("kc2", backend.AdminDrain); err != nil {
		t.Fatal(err)
	}
	if d := f.pick(nil, stale); name(d.Server) != "kc2" || d.Source != SourceCookie || d.SetCookie {
		t.Fatalf("draining: Pick = %+v, want kc2 from the cookie without a new one", d)
	}
	// A refresh decided before the drain began sets no cookie after it.
	h := http.Header{}
	f.aff.Respond(h, Decision{Server: f.server("kc2"), Source: SourceCookie, SetCookie: true}, true)
	if v := h.Values("Set-Cookie"); len(v) != 0 {
		t.Fatalf("Respond for draining kc2 set %q", v)
	}
	// A new client placed on kc2 before the drain began gets its pin: its
	// login is in progress there, and its next step must not follow the
	// balancer (TestRollingRestart lost such logins: the AUTH_SESSION_ID
	// route of a draining server is ignored). The pin still ends within
	// MaxAge of the response.
	nh := http.Header{}
	f.aff.Respond(nh, Decision{Server: f.server("kc2"), Source: SourceBalancer, SetCookie: true}, true)
	if cookieValue(t, nh, "KC_ROUTE") == "" {
		t.Fatal("no cookie for a new client placed on kc2 before its drain began")
	}
	// Past its signed expiry the pin is gone: the client moves.
	*f.now = f.now.Add(2*time.Hour + time.Second)
	if d := f.pick(nil, stale); name(d.Server) == "kc2" || d.Source != SourceBalancer {
		t.Fatalf("expired pin: Pick = %+v, want another server from the balancer", d)
	}
	if err := f.pool.SetAdmin("kc2", backend.AdminReady); err != nil {
		t.Fatal(err)
	}
	f.aff.Respond(h, Decision{Server: f.server("kc2"), SetCookie: true}, true)
	if cookieValue(t, h, "KC_ROUTE") == "" {
		t.Fatal("no cookie for kc2 once ready again")
	}
}

// TestRespondReusesIssuedCookie pins the issued-cookie slots (issue 16:
// no MAC and no allocation per new visitor): responses issuing a
// server's cookie in the same second get the same value, which decodes
// to that server; a new second, another server or the other scheme gets
// its own; a header map that appends to the shared value leaves the
// next response's alone.
func TestRespondReusesIssuedCookie(t *testing.T) {
	f := newFixture(t, 2, true, nil)
	issue := func(server string, secure bool) http.Header {
		h := http.Header{}
		f.aff.Respond(h, Decision{Server: f.server(server), Source: SourceBalancer, SetCookie: true}, secure)
		if len(h["Set-Cookie"]) != 1 {
			t.Fatalf("Set-Cookie = %q, want one value", h["Set-Cookie"])
		}
		return h
	}
	value := func(h http.Header) string {
		v := h["Set-Cookie"][0]
		return v[len("KC_ROUTE="):strings.IndexByte(v, ';')]
	}
	h1 := issue("kc1", false)
	h1["Set-Cookie"] = append(h1["Set-Cookie"], "other=1")
	h2 := issue("kc1", false)
	if h1["Set-Cookie"][0] != h2["Set-Cookie"][0] || len(h2["Set-Cookie"]) != 1 {
		t.Fatalf("same second: %q then %q, want the same single value", h1["Set-Cookie"], h2["Set-Cookie"])
	}
	if id, exp, err := DecodeCookie(testSecret, value(h2), *f.now); err != nil || id != CookieID(testSecret, "kc1") || !exp.Equal(f.now.Add(time.Duration(f.aff.maxAge)*time.Second)) {
		t.Fatalf("decode %q: id %q exp %v err %v, want kc1's id until %v", value(h2), id, exp, err, f.now.Add(time.Duration(f.aff.maxAge)*time.Second))
	}
	if v := issue("kc2", false)["Set-Cookie"][0]; v == h2["Set-Cookie"][0] {
		t.Errorf("kc2 got kc1's cookie %q", v)
	}
	sec := issue("kc1", true)["Set-Cookie"][0]
	if !strings.HasSuffix(sec, "; Secure; SameSite=None") || strings.Contains(h2["Set-Cookie"][0], "Secure") {
		t.Errorf("HTTPS %q and HTTP %q: want Secure only on HTTPS", sec, h2["Set-Cookie"][0])
	}
	*f.now = f.now.Add(time.Second)
	h3 := issue("kc1", false)
	if h3["Set-Cookie"][0] == h2["Set-Cookie"][0] {
		t.Errorf("a second later: still %q, want a cookie expiring a second later", h3["Set-Cookie"][0])
	}
	if _, exp, err := DecodeCookie(testSecret, value(h3), *f.now); err != nil || !exp.Equal(f.now.Add(time.Duration(f.aff.maxAge)*time.Second)) {
		t.Errorf("a second later: exp %v err %v, want %v", exp, err, f.now.Add(time.Duration(f.aff.maxAge)*time.Second))
	}
	// Within the second, issuing costs nothing (the value is not made
	// again): no MAC, no allocation.
	h := http.Header{}
	noStore := []string{"no-store"}
	d := Decision{Server: f.server("kc1"), Source: SourceBalancer, SetCookie: true}
	if n := testing.AllocsPerRun(100, func() {
		clear(h)
		h["Cache-Control"] = noStore
		f.aff.Respond(h, d, false)
	}); n != 0 {
		t.Errorf("Respond allocates %v times per new visitor's cookie, want 0", n)
	}
}
