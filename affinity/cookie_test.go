package affinity

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/backend"
)

func TestCookieCodecRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		server  string
		expires time.Time
	}{
		{name: "plain", server: "kc1", expires: epoch.Add(6 * time.Hour)},
		{name: "address-like name", server: "10.0.0.7:8443", expires: epoch.Add(time.Second)},
		{name: "unicode name", server: "knoten-ü", expires: epoch.Add(24 * time.Hour)},
		{name: "empty name", server: "", expires: epoch.Add(time.Minute)},
		{name: "far future", server: "kc1", expires: time.Unix(999_999_999_999, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := EncodeCookie(testSecret, tt.server, tt.expires)
			if tt.server != "" && strings.Contains(v, tt.server) {
				t.Fatalf("value %q reveals the server name", v)
			}
			for i := 0; i < len(v); i++ {
				if !isCookieOctet(v[i]) {
					t.Fatalf("value %q has byte %q not allowed in a cookie", v, v[i])
				}
			}
			id, exp, err := DecodeCookie(testSecret, v, epoch)
			if err != nil {
				t.Fatalf("DecodeCookie(%q): %v", v, err)
			}
			if id != CookieID(testSecret, tt.server) || !exp.Equal(tt.expires.Truncate(time.Second)) {
				t.Fatalf("DecodeCookie = %q %v, want %q %v", id, exp, CookieID(testSecret, tt.server), tt.expires)
			}
		})
	}
}

func TestCookieIDStable(t *testing.T) {
	a, b := CookieID(testSecret, "kc1"), CookieID(slices.Clone(testSecret), "kc1")
	if a != b || len(a) != idLen {
		t.Fatalf("ids %q and %q: want equal, %d chars", a, b, idLen)
	}
	if CookieID(testSecret, "kc2") == a {
		t.Fatal("two servers share an id")
	}
	if CookieID([]byte("another-secret-of-enough-length"), "kc1") == a {
		t.Fatal("id does not depend on the secret")
	}
}

func TestDecodeCookieErrors(t *testing.T) {
	good := EncodeCookie(testSecret, "kc1", epoch.Add(time.Hour))
	id, digits, mac := good[:idLen], good[idLen+1:len(good)-macLen-1], good[len(good)-macLen:]
	tests := []struct {
		name  string
		value string
		now   time.Time
		want  error
	}{
		{name: "empty", value: "", want: ErrCookieMalformed},
		{name: "too short", value: good[:minValue-1], want: ErrCookieMalformed},
		{name: "too long", value: id + "." + strings.Repeat("1", maxDigits+1) + "." + mac, want: ErrCookieMalformed},
		{name: "no dots", value: strings.ReplaceAll(good, ".", "x"), want: ErrCookieMalformed},
		{name: "leading zero", value: id + ".0" + digits + "." + mac, want: ErrCookieMalformed},
		{name: "zero expiry", value: id + ".0." + mac, want: ErrCookieMalformed},
		{name: "non-digit expiry", value: id + "." + digits[:len(digits)-1] + "x." + mac, want: ErrCookieMalformed},
		{name: "negative expiry", value: id + ".-" + digits[1:] + "." + mac, want: ErrCookieMalformed},
		{name: "invalid base64 in id", value: "!" + good[1:], want: ErrCookieMalformed},
		{name: "std base64 in mac", value: good[:len(good)-1] + "+", want: ErrCookieMalformed},
		{name: "tampered expiry", value: id + "." + strconv.FormatInt(epoch.Add(100*time.Hour).Unix(), 10) + "." + mac, want: ErrCookieSignature},
		{name: "tampered id", value: CookieID(testSecret, "kc2") + good[idLen:], want: ErrCookieSignature},
		{name: "tampered mac", value: good[:len(good)-2] + flip(good[len(good)-2]) + good[len(good)-1:], want: ErrCookieSignature},
		{name: "wrong key", value: EncodeCookie([]byte("another-secret-of-enough-length"), "kc1", epoch.Add(time.Hour)), want: ErrCookieSignature},
		{name: "expired", value: good, now: epoch.Add(2 * time.Hour), want: ErrCookieExpired},
		{name: "expires now", value: good, now: epoch.Add(time.Hour), want: ErrCookieExpired},
		{name: "valid one second before", value: good, now: epoch.Add(time.Hour - time.Second), want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.now
			if now.IsZero() {
				now = epoch
			}
			_, _, err := DecodeCookie(testSecret, tt.value, now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("DecodeCookie(%q) = %v, want %v", tt.value, err, tt.want)
			}
		})
	}
}

// flip returns a different base64url character.
func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

func TestDecodeCookieEveryByteTampered(t *testing.T) {
	good := EncodeCookie(testSecret, "kc1", epoch.Add(time.Hour))
	alphabet := "AZaz09-_."
	for i := range len(good) {
		for j := range len(alphabet) {
			b := []byte(good)
			if b[i] == alphabet[j] {
				continue
			}
			b[i] = alphabet[j]
			if _, _, err := DecodeCookie(testSecret, string(b), epoch); err == nil {
				t.Fatalf("tampered value %q (byte %d) accepted", b, i)
			}
		}
	}
}

func TestParseAuthSessionRoute(t *testing.T) {
	tests := []struct {
		name  string
		value string
		route string
		ok    bool
	}{
		{name: "legacy format", value: "5e161e00-d426-4ea6-98e9-52eb9844e2d7.node1", route: "node1", ok: true},
		{name: "26.1 format", value: "NWUxNjFlMDAtZDQyNi00ZWE2LTk4ZTktNTJlYjk4NDRlMmQ3LkhTNTEyc2ln.node1", route: "node1", ok: true},
		{name: "padded base64", value: "YWJjZA==.kc-0", route: "kc-0", ok: true},
		{name: "generated node name", value: "abc.keycloak-0-12345", route: "keycloak-0-12345", ok: true},
		{name: "multiple dots", value: "abc.kc1.example.com", route: "kc1.example.com", ok: true},
		{name: "ip port route", value: "abc.10.0.0.1:7800", route: "10.0.0.1:7800", ok: true},
		{name: "no suffix", value: "5e161e00-d426-4ea6-98e9-52eb9844e2d7", ok: false},
		{name: "trailing dot", value: "abc.", ok: false},
		{name: "empty", value: "", ok: false},
		{name: "only dot", value: ".", ok: false},
		{name: "empty id", value: ".node1", ok: false},
		{name: "invalid base64 id", value: "ab!c.node1", ok: false},
		{name: "space in id", value: "ab c.node1", ok: false},
		{name: "quote in route", value: `abc.no"de`, ok: false},
		{name: "semicolon in route", value: "abc.no;de", ok: false},
		{name: "control in route", value: "abc.no\x00de", ok: false},
		{name: "non-ascii route", value: "abc.nöde", ok: false},
		{name: "longest route", value: "abc." + strings.Repeat("r", maxRouteLen), route: strings.Repeat("r", maxRouteLen), ok: true},
		{name: "huge route", value: "abc." + strings.Repeat("r", maxRouteLen+1), ok: false},
		{name: "huge value", value: strings.Repeat("A", 1<<16) + ".node1", route: "node1", ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			route, ok := ParseAuthSessionRoute(tt.value)
			if route != tt.route || ok != tt.ok {
				t.Fatalf("ParseAuthSessionRoute(%.40q) = %q, %v; want %q, %v", tt.value, route, ok, tt.route, tt.ok)
			}
		})
	}
}

type pair struct{ name, value string }

func scanAll(vals []string) []pair {
	var out []pair
	sc := newPairScanner(vals)
	for {
		n, v, ok := sc.next()
		if !ok {
			return out
		}
		out = append(out, pair{n, v})
	}
}

func TestPairScanner(t *testing.T) {
	many := make([]string, 200)
	var wantMany []pair
	for i := range many {
		many[i] = "c" + strconv.Itoa(i) + "=" + strconv.Itoa(i)
		wantMany = append(wantMany, pair{"c" + strconv.Itoa(i), strconv.Itoa(i)})
	}
	huge := strings.Repeat("x", 100_000)
	tests := []struct {
		name string
		vals []string
		want []pair
	}{
		{name: "none"},
		{name: "empty value", vals: []string{""}},
		{name: "one", vals: []string{"a=1"}, want: []pair{{"a", "1"}}},
		{name: "spaces and tabs", vals: []string{" a = 1 ;\tb=2\t; c= "}, want: []pair{{"a", "1"}, {"b", "2"}, {"c", ""}}},
		{name: "quoted", vals: []string{`a="x y"; b="`}, want: []pair{{"a", "x y"}, {"b", `"`}}},
		{name: "equals in value", vals: []string{"a=b=c; d=="}, want: []pair{{"a", "b=c"}, {"d", "="}}},
		{name: "no equals", vals: []string{"flag; a=1"}, want: []pair{{"", "flag"}, {"a", "1"}}},
		{name: "empty segments", vals: []string{";;a=1;; ;b=2;"}, want: []pair{{"a", "1"}, {"b", "2"}}},
		{name: "duplicates in order", vals: []string{"a=1; a=2", "a=3"}, want: []pair{{"a", "1"}, {"a", "2"}, {"a", "3"}}},
		{name: "many cookies", vals: []string{strings.Join(many, "; ")}, want: wantMany},
		{name: "many headers", vals: many, want: wantMany},
		{name: "huge value", vals: []string{"a=" + huge + "; b=1"}, want: []pair{{"a", huge}, {"b", "1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := scanAll(tt.vals); !slices.Equal(got, tt.want) {
				t.Fatalf("scan(%.60q) = %.200v, want %.200v", tt.vals, got, tt.want)
			}
		})
	}
}

func TestSetCookieNameValue(t *testing.T) {
	tests := []struct {
		name, in, wantName, wantValue string
	}{
		{name: "attributes", in: "AUTH_SESSION_ID=abc.node1; Version=1; Path=/realms/x/; HttpOnly", wantName: "AUTH_SESSION_ID", wantValue: "abc.node1"},
		{name: "quoted", in: `AUTH_SESSION_ID="abc.node1"; Path=/`, wantName: "AUTH_SESSION_ID", wantValue: "abc.node1"},
		{name: "bare", in: "a=b", wantName: "a", wantValue: "b"},
		{name: "no equals", in: "garbage; Path=/a=b"},
		{name: "empty", in: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, v := setCookieNameValue(tt.in)
			if n != tt.wantName || v != tt.wantValue {
				t.Fatalf("setCookieNameValue(%q) = %q, %q", tt.in, n, v)
			}
		})
	}
}

func FuzzParseAuthSessionRoute(f *testing.F) {
	for _, s := range []string{
		"5e161e00-d426-4ea6-98e9-52eb9844e2d7.node1",
		"NWUxNjFlMDAtZDQyNi00ZWE2LTk4ZTktNTJlYjk4NDRlMmQ3LkhTNTEyc2ln.node1",
		"abc", "", ".", "abc.", ".x", "a.b.c", "ab!c.d", "a.\x00", "YWJj==.kc-0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		route, ok := ParseAuthSessionRoute(v)
		if !ok {
			if route != "" {
				t.Fatalf("not ok but route %q", route)
			}
			return
		}
		i := strings.IndexByte(v, '.')
		if i <= 0 || v[i+1:] != route || route == "" || len(route) > maxRouteLen {
			t.Fatalf("ParseAuthSessionRoute(%q) = %q: not everything after the first dot", v, route)
		}
		for j := 0; j < len(route); j++ {
			if !isCookieOctet(route[j]) {
				t.Fatalf("route %q has byte %q", route, route[j])
			}
		}
	})
}

func FuzzDecodeCookie(f *testing.F) {
	f.Add(EncodeCookie(testSecret, "kc1", epoch.Add(time.Hour)), int64(0))
	f.Add(EncodeCookie(testSecret, "kc2", epoch.Add(time.Second)), int64(3600))
	f.Add("", int64(0))
	f.Add("garbage", int64(0))
	f.Add(strings.Repeat("A", idLen)+".1."+strings.Repeat("A", macLen), int64(0))
	c := newCodec(testSecret)
	f.Fuzz(func(t *testing.T, v string, delta int64) {
		now := epoch.Unix() + delta%(1<<32)
		id, exp, reason, ok := c.decode(v, now)
		_, _, err := DecodeCookie(testSecret, v, time.Unix(now, 0))
		if ok != (err == nil) {
			t.Fatalf("decode ok=%v but DecodeCookie err=%v", ok, err)
		}
		if !ok {
			if int(reason) >= NumMissReasons {
				t.Fatalf("reason %d out of range", reason)
			}
			return
		}
		// Anything accepted must be exactly what we would have issued.
		if exp <= now || c.encode(id, exp) != v {
			t.Fatalf("accepted %q (id %q exp %d now %d) is not canonical", v, id, exp, now)
		}
	})
}

func FuzzCookieRoundTrip(f *testing.F) {
	f.Add("kc1", int64(1_800_000_000), []byte("0123456789abcdef"))
	f.Add("", int64(1), []byte("0123456789abcdefXYZ"))
	f.Add("10.0.0.1:8080", int64(999_999_999_999), []byte("\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, name string, exp int64, secret []byte) {
		if exp < 1 || exp > 999_999_999_999 {
			return
		}
		v := EncodeCookie(secret, name, time.Unix(exp, 0))
		if len(v) < minValue || len(v) > maxValue {
			t.Fatalf("length %d out of bounds", len(v))
		}
		id, got, err := DecodeCookie(secret, v, time.Unix(exp-1, 0))
		if err != nil || id != CookieID(secret, name) || got.Unix() != exp {
			t.Fatalf("round trip of %q/%d: %q %v %v", name, exp, id, got, err)
		}
		if _, _, err := DecodeCookie(secret, v, time.Unix(exp, 0)); !errors.Is(err, ErrCookieExpired) {
			t.Fatalf("at expiry: %v, want ErrCookieExpired", err)
		}
		other := append(slices.Clone(secret), 'x')
		if _, _, err := DecodeCookie(other, v, time.Unix(exp-1, 0)); !errors.Is(err, ErrCookieSignature) {
			t.Fatalf("wrong key: %v, want ErrCookieSignature", err)
		}
	})
}

// FuzzStripCookie checks stripCookie against the pair scanner: the result
// holds exactly the input's pairs minus ours, in order, each byte for
// byte.
func FuzzStripCookie(f *testing.F) {
	for _, s := range []string{
		"KC_ROUTE=1", "a=1; KC_ROUTE=2; b=3", "a=1;;KC_ROUTE=2 ;\tb", " KC_ROUTE = x ", `a="b; c"; KC_ROUTE=1`,
		"KC_ROUTE=1; KC_ROUTE=2", "", ";;;", "a=1; b=2",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got, changed := stripCookie(v, "KC_ROUTE")
		var want []pair
		removed := false
		for _, p := range scanAll([]string{v}) {
			if p.name == "KC_ROUTE" {
				removed = true
				continue
			}
			want = append(want, p)
		}
		if changed != removed {
			t.Fatalf("stripCookie(%q) changed=%v, but KC_ROUTE present=%v", v, changed, removed)
		}
		if !changed {
			if got != v {
				t.Fatalf("unchanged input rewritten: %q -> %q", v, got)
			}
			return
		}
		if after := scanAll([]string{got}); !slices.Equal(after, want) {
			t.Fatalf("stripCookie(%q) = %q: pairs %v, want %v", v, got, after, want)
		}
		// Kept pair contents appear verbatim and in order.
		rest := got
		forEachPair(v, func(s, e int) {
			if pairName(v[s:e]) == "KC_ROUTE" {
				return
			}
			i := strings.Index(rest, v[s:e])
			if i < 0 {
				t.Fatalf("stripCookie(%q) = %q lost pair %q", v, got, v[s:e])
			}
			rest = rest[i+e-s:]
		})
	})
}

// FuzzPick drives the whole decision with arbitrary Cookie headers: it
// must never panic, never return a server outside the slice, and only
// trust a KC_ROUTE that verifies.
func FuzzPick(f *testing.F) {
	fx := newFixture(f, 3, true, nil)
	f.Add(validCookies(fx))
	f.Add("AUTH_SESSION_ID=abc.node9; KC_ROUTE=x")
	f.Add("KC_ROUTE=" + strings.Repeat(".", 60))
	f.Add(fx.cookieFor("kc1") + "; " + fx.cookieFor("kc2"))
	servers := fx.pool.Servers()
	f.Fuzz(func(t *testing.T, cookie string) {
		d := fx.pick(nil, cookie)
		if d.Server == nil || !slices.Contains(servers, d.Server) {
			t.Fatalf("Pick(%q) = %v, not one of the servers", cookie, d.Server)
		}
		// A valid KC_ROUTE naming a server (among the first
		// maxRouteCookies) always wins over AUTH_SESSION_ID (issue 18,
		// item 3); every fixture server can take the request.
		n := 0
		for _, p := range scanAll([]string{cookie}) {
			if p.name != "KC_ROUTE" || n >= maxRouteCookies {
				continue
			}
			n++
			id, _, err := DecodeCookie(testSecret, p.value, *fx.now)
			if s := byID(servers, id); err == nil && s != nil {
				if d.Server != s || d.Source != SourceCookie {
					t.Fatalf("Pick(%q) = %s from %v, want %s from its valid KC_ROUTE", cookie, d.Server.Name(), d.Source, s.Name())
				}
				break
			}
		}
		if d.Source == SourceCookie {
			ok := false
			for _, p := range scanAll([]string{cookie}) {
				if p.name != "KC_ROUTE" {
					continue
				}
				if id, _, err := DecodeCookie(testSecret, p.value, *fx.now); err == nil && id == CookieID(testSecret, d.Server.Name()) {
					ok = true
				}
			}
			if !ok {
				t.Fatalf("Pick(%q) trusted a cookie that does not verify", cookie)
			}
		}
	})
}

// TestSessionCookie pins issue 18, item 6: with Session the cookie carries
// no Max-Age (the browser drops it on close), and it still pins until its
// signed expiry.
func TestSessionCookie(t *testing.T) {
	f := newFixture(t, 2, true, func(o *Options) { o.Session = true })
	h := http.Header{}
	f.aff.Respond(h, Decision{Server: f.server("kc2"), SetCookie: true}, true)
	raw := h.Values("Set-Cookie")
	if len(raw) != 1 || strings.Contains(raw[0], "Max-Age") || strings.Contains(raw[0], "Expires") {
		t.Fatalf("Set-Cookie = %q, want one session cookie (no Max-Age, no Expires)", raw)
	}
	c, err := http.ParseSetCookie(raw[0])
	if err != nil || c.Path != "/" || !c.HttpOnly || !c.Secure {
		t.Fatalf("cookie %+v, err %v (raw %q)", c, err, raw[0])
	}
	if d := f.pick(nil, "KC_ROUTE="+c.Value); name(d.Server) != "kc2" || d.Source != SourceCookie {
		t.Fatalf("session cookie picks %s via %v, want kc2 via cookie", name(d.Server), d.Source)
	}
	if _, exp, err := DecodeCookie(testSecret, c.Value, epoch); err != nil || !exp.Equal(epoch.Add(6*time.Hour)) {
		t.Fatalf("signed expiry %v (err %v), want the 6h default", exp, err)
	}
}

// byID returns the server of servers whose cookie id is id, or nil.
func byID(servers []*backend.Server, id string) *backend.Server {
	for _, s := range servers {
		if CookieID(testSecret, s.Name()) == id {
			return s
		}
	}
	return nil
}
