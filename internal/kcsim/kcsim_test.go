package kcsim_test

import (
	"context"
	"encoding/json"
	"errors"
	. "github.com/kclb/kclb/internal/kcsim"
	"github.com/kclb/kclb/internal/kcsim/kcsimtest"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// client returns an HTTP client with a fresh cookie jar that does not follow redirects.
func client(t testing.TB) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{}}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// get performs a GET and returns the response with its body read.
func get(t testing.TB, c *http.Client, u string, hdr ...string) (*http.Response, string) {
	t.Helper()
	return do(t, c, http.MethodGet, u, nil, hdr...)
}

func do(t testing.TB, c *http.Client, method, u string, form url.Values, hdr ...string) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, u, err)
	}
	return resp, string(b)
}

// waitFor polls cond every 10 ms until it holds or 5 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLoginFlow(t *testing.T) {
	tests := []struct {
		name   string
		format CookieFormat
		strict bool
	}{
		{name: "26.1 strict", format: Format261, strict: true},
		{name: "26.1 relaxed", format: Format261},
		{name: "legacy strict", format: FormatLegacy, strict: true},
		{name: "legacy relaxed", format: FormatLegacy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := kcsimtest.StartCluster(t, 1, Options{CookieFormat: tt.format, Strict: tt.strict})
			m := c.At(0)
			f := &LoginFlow{Client: client(t)}
			res, err := f.Run(context.Background(), m.TrafficURL())
			if err != nil {
				t.Fatal(err)
			}
			a, err := ParseAuthSessionID(res.AuthSessionID)
			if err != nil {
				t.Fatalf("AUTH_SESSION_ID %q: %v", res.AuthSessionID, err)
			}
			if a.Format != tt.format || a.Route != "keycloak1" {
				t.Errorf("AUTH_SESSION_ID %q parsed as %+v, want format %s route keycloak1", res.AuthSessionID, a, tt.format)
			}
			if res.AuthNode != "keycloak1" || res.AuthenticateNode != "keycloak1" || res.TokenNode != "keycloak1" {
				t.Errorf("nodes %+v", res)
			}
			if res.RefreshToken == "" {
				t.Error("no refresh token")
			}
			st := m.Node.Stats()
			if st.Logins != 1 || st.Tokens != 1 || st.Misroutes != 0 {
				t.Errorf("stats %+v, want 1 login, 1 token, 0 misroutes", st)
			}
			// The code is single-use.
			hc := client(t)
			resp, body := do(t, hc, http.MethodPost, m.TrafficURL()+"/realms/test/protocol/openid-connect/token",
				url.Values{"grant_type": {"authorization_code"}, "code": {res.Code}, "redirect_uri": {"https://app.example/callback"}, "client_id": {"kclb-test"}})
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "invalid_grant") {
				t.Errorf("second redemption: %d %s, want 400 invalid_grant", resp.StatusCode, body)
			}
			// The refresh token works.
			resp, body = do(t, hc, http.MethodPost, m.TrafficURL()+"/realms/test/protocol/openid-connect/token",
				url.Values{"grant_type": {"refresh_token"}, "refresh_token": {res.RefreshToken}, "client_id": {"kclb-test"}})
			if resp.StatusCode != http.StatusOK || !strings.Contains(body, "access_token") {
				t.Errorf("refresh: %d %s", resp.StatusCode, body)
			}
		})
	}
}

func TestLoginCookies(t *testing.T) {
	c := kcsimtest.StartCluster(t, 1, Options{})
	m := c.At(0)
	hc := client(t)
	resp, _ := get(t, hc, m.TrafficURL()+"/realms/test/protocol/openid-connect/auth?client_id=a&redirect_uri=http%3A%2F%2Fx%2Fcb",
		"X-Forwarded-Proto", "https")
	want := map[string][]string{
		"AUTH_SESSION_ID":        {"; Path=/realms/test/", "; Secure", "; SameSite=None", "; HttpOnly"},
		"AUTH_SESSION_ID_LEGACY": {"; Path=/realms/test/", "; HttpOnly"},
		"KC_RESTART":             {"; Path=/realms/test/", "; HttpOnly"},
		"KC_AUTH_SESSION_HASH":   {"; Path=/realms/test/"},
	}
	got := map[string]string{}
	for _, sc := range resp.Header.Values("Set-Cookie") {
		name, _, _ := strings.Cut(sc, "=")
		got[name] = sc
	}
	for name, attrs := range want {
		sc, ok := got[name]
		if !ok {
			t.Errorf("no %s cookie in %q", name, resp.Header.Values("Set-Cookie"))
			continue
		}
		for _, a := range attrs {
			if !strings.Contains(sc, a) {
				t.Errorf("%s: %q lacks %q", name, sc, a)
			}
		}
	}
	if n := len(got["KC_RESTART"]); n < 1400 || n > 1800 {
		t.Errorf("KC_RESTART cookie is %d bytes, want about 1.5 KB", n)
	}
	// Over plain HTTP there is no Secure attribute.
	resp, _ = get(t, hc, m.TrafficURL()+"/realms/test/protocol/openid-connect/auth?client_id=a&redirect_uri=http%3A%2F%2Fx%2Fcb")
	for _, sc := range resp.Header.Values("Set-Cookie") {
		if strings.Contains(sc, "Secure") {
			t.Errorf("plain HTTP cookie has Secure: %q", sc)
		}
	}
}

func TestLoginIdentityCookies(t *testing.T) {
	c := kcsimtest.StartCluster(t, 1, Options{})
	base := c.At(0).TrafficURL()
	hc := client(t)
	_, body := get(t, hc, base+"/realms/test/protocol/openid-connect/auth?client_id=a&redirect_uri=http%3A%2F%2Fx%2Fcb&state=st")
	action, err := FormAction([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(action, "session_code=") || !strings.Contains(action, "execution=") ||
		!strings.Contains(action, "client_id=a") || !strings.Contains(action, "tab_id=") {
		t.Errorf("form action %q lacks a query parameter", action)
	}
	resp, _ := do(t, hc, http.MethodPost, action, url.Values{"username": {"u"}, "password": {"p"}})
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authenticate: %d", resp.StatusCode)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc.Host != "x" || loc.Path != "/cb" || loc.Query().Get("state") != "st" || loc.Query().Get("code") == "" {
		t.Errorf("Location %q", loc)
	}
	cookies := map[string]string{}
	for _, sc := range resp.Header.Values("Set-Cookie") {
		name, _, _ := strings.Cut(sc, "=")
		cookies[name] = sc
	}
	if n := len(cookies["KEYCLOAK_IDENTITY"]); n < 1900 || n > 2400 {
		t.Errorf("KEYCLOAK_IDENTITY is %d bytes, want about 2 KB", n)
	}
	if cookies["KEYCLOAK_SESSION"] == "" {
		t.Error("no KEYCLOAK_SESSION")
	}
	if !strings.HasPrefix(cookies["KC_RESTART"], "KC_RESTART=;") || !strings.Contains(cookies["KC_RESTART"], "Max-Age=0") {
		t.Errorf("KC_RESTART not expired: %q", cookies["KC_RESTART"])
	}
	// A login with an empty password re-renders the form.
	_, body = get(t, hc, base+"/realms/test/protocol/openid-connect/auth?client_id=a&redirect_uri=http%3A%2F%2Fx%2Fcb")
	action, _ = FormAction([]byte(body))
	resp, body = do(t, hc, http.MethodPost, action, url.Values{"username": {"u"}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, MsgInvalidUser) {
		t.Errorf("empty password: %d, want 200 with %q", resp.StatusCode, MsgInvalidUser)
	}
}

// crossNodeLogin starts a login on node a and posts the form to node b.
func crossNodeLogin(t *testing.T, c *kcsimtest.Cluster, a, b int) (*http.Response, string) {
	t.Helper()
	hc := client(t)
	_, body := get(t, hc, c.At(a).TrafficURL()+"/realms/test/protocol/openid-connect/auth?client_id=a&redirect_uri=http%3A%2F%2Fx%2Fcb")
	action, err := FormAction([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	au, _ := url.Parse(action)
	// Cookie jars ignore ports, so the AUTH_SESSION_ID set by node a goes to node b.
	return do(t, hc, http.MethodPost, c.At(b).TrafficURL()+au.RequestURI(), url.Values{"username": {"u"}, "password": {"p"}})
}

func TestStrictMisroute(t *testing.T) {
	tests := []struct {
		name      string
		strict    bool
		noRoute   bool
		wantCode  int
		misroutes int64
	}{
		{name: "strict counts a misroute", strict: true, wantCode: http.StatusBadRequest, misroutes: 1},
		{name: "strict without route counts a misroute", strict: true, noRoute: true, wantCode: http.StatusBadRequest, misroutes: 1},
		{name: "relaxed accepts any node", strict: false, wantCode: http.StatusFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := kcsimtest.StartCluster(t, 2, Options{Strict: tt.strict, NoRoute: tt.noRoute})
			resp, body := crossNodeLogin(t, c, 0, 1)
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("authenticate on the other node: %d, want %d", resp.StatusCode, tt.wantCode)
			}
			if tt.wantCode == http.StatusBadRequest && !strings.Contains(body, "Your login attempt timed out") {
				t.Errorf("body lacks the timed-out message: %s", body)
			}
			if got := c.At(1).Node.Stats().Misroutes; got != tt.misroutes {
				t.Errorf("misroutes on node 2 = %d, want %d", got, tt.misroutes)
			}
			if got := c.At(0).Node.Stats().Misroutes; got != 0 {
				t.Errorf("misroutes on node 1 = %d, want 0", got)
			}
		})
	}
}

func TestStrictCodeBoundToNode(t *testing.T) {
	for _, strict := range []bool{true, false} {
		t.Run(map[bool]string{true: "strict", false: "relaxed"}[strict], func(t *testing.T) {
			c := kcsimtest.StartCluster(t, 2, Options{Strict: strict})
			resp, _ := crossNodeLogin(t, c, 0, 0)
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("authenticate: %d", resp.StatusCode)
			}
			loc, _ := url.Parse(resp.Header.Get("Location"))
			resp, body := do(t, client(t), http.MethodPost, c.At(1).TrafficURL()+"/realms/test/protocol/openid-connect/token",
				url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {"http://x/cb"}, "client_id": {"a"}})
			want, wantMis := http.StatusOK, int64(0)
			if strict {
				want, wantMis = http.StatusBadRequest, 1
			}
			if resp.StatusCode != want {
				t.Errorf("redeem on other node: %d %s, want %d", resp.StatusCode, body, want)
			}
			if got := c.At(1).Node.Stats().Misroutes; got != wantMis {
				t.Errorf("misroutes = %d, want %d", got, wantMis)
			}
		})
	}
}

func TestParseAuthSessionID(t *testing.T) {
	const id = "5e161e00-d426-4ea6-98e9-52eb9844e2d7"
	tests := []struct {
		name    string
		value   string
		want    AuthSessionID
		wantErr bool
	}{
		{name: "26.1 doc example", value: "NWUxNjFlMDAtZDQyNi00ZWE2LTk4ZTktNTJlYjk4NDRlMmQ3LkhTNTEyc2ln.node1",
			want: AuthSessionID{ID: id, Signature: "HS512sig", Route: "node1", Format: Format261}},
		{name: "legacy doc example", value: id + ".node1", want: AuthSessionID{ID: id, Route: "node1", Format: FormatLegacy}},
		{name: "legacy no route", value: id, want: AuthSessionID{ID: id, Format: FormatLegacy}},
		{name: "26.1 no route", value: "NWUxNjFlMDAtZDQyNi00ZWE2LTk4ZTktNTJlYjk4NDRlMmQ3LkhTNTEyc2ln",
			want: AuthSessionID{ID: id, Signature: "HS512sig", Format: Format261}},
		{name: "route with dots", value: id + ".kc-0.svc.local", want: AuthSessionID{ID: id, Route: "kc-0.svc.local", Format: FormatLegacy}},
		{name: "ip:port route", value: id + ".10.0.0.1:7800", want: AuthSessionID{ID: id, Route: "10.0.0.1:7800", Format: FormatLegacy}},
		{name: "empty", value: "", wantErr: true},
		{name: "abc123 from hello", value: "abc123.node1", wantErr: true},
		{name: "base64 without signature", value: "NWUxNjFlMDAtZDQyNi00ZWE2LTk4ZTktNTJlYjk4NDRlMmQ3.node1", wantErr: true},
		{name: "bad base64", value: "!!!.node1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAuthSessionID(tt.value)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				if !errors.Is(err, ErrMalformedAuthSession) {
					t.Errorf("err %v is not ErrMalformedAuthSession", err)
				}
				return
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if r := RouteOf(tt.value); r != tt.want.Route {
				t.Errorf("RouteOf = %q, want %q", r, tt.want.Route)
			}
		})
	}
}

func TestEncodeAuthSessionIDRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		format CookieFormat
		route  string
	}{
		{name: "26.1", format: Format261, route: "keycloak1"},
		{name: "26.1 no route", format: Format261},
		{name: "legacy", format: FormatLegacy, route: "keycloak1"},
		{name: "legacy dotted route", format: FormatLegacy, route: "kc.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := NewUUID()
			v := EncodeAuthSessionID(tt.format, id, tt.route, []byte("k"))
			a, err := ParseAuthSessionID(v)
			if err != nil {
				t.Fatal(err)
			}
			if a.ID != id || a.Route != tt.route || a.Format != tt.format || RouteOf(v) != tt.route {
				t.Errorf("%q parsed as %+v", v, a)
			}
		})
	}
}

func FuzzParseAuthSessionID(f *testing.F) {
	f.Add("NWUxNjFlMDAtZDQyNi00ZWE2LTk4ZTktNTJlYjk4NDRlMmQ3LkhTNTEyc2ln.node1")
	f.Add("5e161e00-d426-4ea6-98e9-52eb9844e2d7.node1")
	f.Add("5e161e00-d426-4ea6-98e9-52eb9844e2d7")
	f.Add("abc123.node1")
	f.Add("..")
	f.Fuzz(func(t *testing.T, v string) {
		a, err := ParseAuthSessionID(v)
		if err != nil {
			return
		}
		if a.Route != RouteOf(v) {
			t.Fatalf("route %q != RouteOf %q", a.Route, RouteOf(v))
		}
		if !IsUUID(a.ID) {
			t.Fatalf("id %q is not a UUID", a.ID)
		}
		if a.Format == FormatLegacy {
			if got := EncodeAuthSessionID(FormatLegacy, a.ID, a.Route, nil); got != v {
				t.Fatalf("re-encode %q, want %q", got, v)
			}
		}
		b, err := ParseAuthSessionID(EncodeAuthSessionID(a.Format, a.ID, a.Route, []byte("k")))
		if err != nil || b.ID != a.ID || b.Route != a.Route || b.Format != a.Format {
			t.Fatalf("round trip of %+v: %+v, %v", a, b, err)
		}
	})
}

// Exact bodies from docs/keycloak.md.
const (
	readyUp   = `{"status":"UP","checks":[{"name":"Keycloak cluster health check","status":"UP"},{"name":"Keycloak database connections async health check","status":"UP"}]}`
	readyDown = `{"status":"DOWN","checks":[{"name":"Keycloak cluster health check","status":"UP"},{"name":"Keycloak database connections async health check","status":"DOWN","data":{"Failing since":"2026-07-31 00:59:19,000"}}]}`
	liveUp    = `{"status":"UP","checks":[]}`
)

func TestHealthBodies(t *testing.T) {
	c := kcsimtest.StartCluster(t, 1, Options{})
	m := c.At(0)
	n := m.Node
	hc := client(t)
	fixedDown := func() {
		n.SetDatabaseDown(true)
		ts, _ := time.Parse(FailingSinceLayout, "2026-07-31 00:59:19,000")
		n.SetFailingSince(ts)
	}
	tests := []struct {
		name   string
		set    func()
		path   string
		status int
		body   string
	}{
		{name: "ready up", path: "/health/ready", status: 200, body: readyUp},
		{name: "live", path: "/health/live", status: 200, body: liveUp},
		{name: "started", path: "/health/started", status: 200, body: `{"status":"UP","checks":[{"name":"Keycloak Initialized","status":"UP"}]}`},
		{name: "aggregate", path: "/health", status: 200, body: `{"status":"UP","checks":[{"name":"Graceful Shutdown","status":"UP"},{"name":"Keycloak Initialized","status":"UP"},` + readyUp[len(`{"status":"UP","checks":[`):]},
		{name: "ready db down", set: fixedDown, path: "/health/ready", status: 503, body: readyDown},
		{name: "live db down", set: fixedDown, path: "/health/live", status: 200, body: liveUp},
		{name: "starting started", set: func() { n.SetStarting(true) }, path: "/health/started", status: 503, body: `{"status":"DOWN","checks":[{"name":"Keycloak Initialized","status":"DOWN"}]}`},
		{name: "starting ready", set: func() { n.SetStarting(true) }, path: "/health/ready", status: 503,
			body: `{"status":"DOWN","checks":[{"name":"Keycloak Initialized","status":"DOWN"},` + readyUp[len(`{"status":"UP","checks":[`):]},
		{name: "starting live", set: func() { n.SetStarting(true) }, path: "/health/live", status: 200, body: liveUp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n.SetDatabaseDown(false)
			n.SetStarting(false)
			if tt.set != nil {
				tt.set()
			}
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				resp, body := do(t, hc, method, m.MgmtURL()+tt.path, nil)
				if resp.StatusCode != tt.status {
					t.Errorf("%s: status %d, want %d", method, resp.StatusCode, tt.status)
				}
				want := tt.body
				if method == http.MethodHead {
					want = ""
				}
				if body != want {
					t.Errorf("%s: body\n%s\nwant\n%s", method, body, want)
				}
				if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("%s: Content-Type %q", method, ct)
				}
			}
		})
	}
}

func TestDatabaseDownViaControl(t *testing.T) {
	c := kcsimtest.StartCluster(t, 1, Options{})
	m := c.At(0)
	hc := client(t)
	resp, _ := do(t, hc, http.MethodPost, m.MgmtURL()+"/kcsim/control?db=down", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("control: %d", resp.StatusCode)
	}
	resp, body := get(t, hc, m.MgmtURL()+"/health/ready")
	if resp.StatusCode != 503 {
		t.Errorf("ready: %d, want 503", resp.StatusCode)
	}
	// Same shape as the documented DOWN body, with a real timestamp.
	prefix, suffix := readyDown[:strings.Index(readyDown, "2026")], `"}}]}`
	if !strings.HasPrefix(body, prefix) || !strings.HasSuffix(body, suffix) {
		t.Fatalf("DOWN body %s", body)
	}
	if _, err := time.Parse(FailingSinceLayout, strings.TrimSuffix(strings.TrimPrefix(body, prefix), suffix)); err != nil {
		t.Errorf("Failing since: %v", err)
	}
	if resp, _ := get(t, hc, m.MgmtURL()+"/health/live"); resp.StatusCode != 200 {
		t.Errorf("live: %d, want 200", resp.StatusCode)
	}
	do(t, hc, http.MethodPost, m.MgmtURL()+"/kcsim/control?db=up", nil)
	if resp, body := get(t, hc, m.MgmtURL()+"/health/ready"); resp.StatusCode != 200 || body != readyUp {
		t.Errorf("ready after db=up: %d %s", resp.StatusCode, body)
	}
}

func TestSplitMetrics(t *testing.T) {
	c := kcsimtest.StartCluster(t, 3, Options{})
	m := c.At(1)
	hc := client(t)
	metric := func() string {
		_, body := get(t, hc, m.MgmtURL()+"/metrics")
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, "vendor_cluster_size{") {
				return line
			}
		}
		t.Fatalf("no vendor_cluster_size in\n%s", body)
		return ""
	}
	if got, want := metric(), `vendor_cluster_size{cluster="ISPN",node="keycloak2"} 3.0`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	do(t, hc, http.MethodPost, m.MgmtURL()+"/kcsim/control?split=on", nil)
	if got, want := metric(), `vendor_cluster_size{cluster="ISPN",node="keycloak2"} 1.0`; got != want {
		t.Errorf("split: got %q, want %q", got, want)
	}
	do(t, hc, http.MethodPost, m.MgmtURL()+"/kcsim/control?split=off", nil)
	_, body := get(t, hc, m.MgmtURL()+"/metrics")
	if !strings.Contains(body, `vendor_jgroups_merge3_get_num_merge_events{cluster="ISPN",node="keycloak2"} 1.0`) {
		t.Errorf("merge count not incremented:\n%s", body)
	}
}

// dialRefused reports whether a TCP connect to addr fails with ECONNREFUSED.
func dialRefused(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		conn.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

func TestRefuse(t *testing.T) {
	c := kcsimtest.StartCluster(t, 1, Options{})
	m := c.At(0)
	hc := client(t)
	// An idle keep-alive connection that refuse must close.
	conn, err := net.Dial("tcp", m.Traffic.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /robots.txt HTTP/1.1\r\nHost: x\r\n\r\n")
	buf := make([]byte, 4096)
	if _, err := conn.Read(buf); err != nil {
		t.Fatal(err)
	}
	resp, _ := do(t, hc, http.MethodPost, m.MgmtURL()+"/kcsim/control?refuse=on", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("control: %d", resp.StatusCode)
	}
	waitFor(t, "connections refused", func() bool { return dialRefused(m.Traffic.String()) })
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, err := conn.Read(buf); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("open connection not closed by refuse")
			}
			break
		}
	}
	// The management port keeps answering.
	if resp, _ := get(t, hc, m.MgmtURL()+"/health/live"); resp.StatusCode != 200 {
		t.Errorf("live while refusing: %d", resp.StatusCode)
	}
	m.Node.SetRefuse(false)
	waitFor(t, "traffic back", func() bool { return !dialRefused(m.Traffic.String()) })
	if resp, _ := get(t, hc, m.TrafficURL()+"/robots.txt"); resp.StatusCode != 200 {
		t.Errorf("after refuse=off: %d", resp.StatusCode)
	}
}

func TestControlEndpoint(t *testing.T) {
	c := kcsimtest.StartCluster(t, 1, Options{})
	m := c.At(0)
	hc := client(t)
	tests := []struct {
		name   string
		query  string
		status int
		want   Switches
	}{
		{name: "bad db", query: "db=sideways&split=on", status: 400},
		{name: "bad delay", query: "delay=soon", status: 400},
		{name: "negative delay", query: "delay=-1s", status: 400},
		{name: "all on", query: "db=down&split=on&delay=200ms&starting=on&token=fail", status: 200,
			want: Switches{DatabaseDown: true, Split: true, Delay: 200 * time.Millisecond, Starting: true, TokenFail: true}},
		{name: "all off", query: "db=up&split=off&delay=0s&starting=off&token=ok", status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, hc, http.MethodPost, m.MgmtURL()+"/kcsim/control?"+tt.query, nil)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if got := m.Node.Switches(); got != tt.want {
				t.Errorf("switches %+v, want %+v", got, tt.want)
			}
		})
	}
	if resp, _ := get(t, hc, m.MgmtURL()+"/kcsim/control?db=down"); m.Node.Switches().DatabaseDown {
		t.Errorf("GET changed a switch (status %d)", resp.StatusCode)
	}
	get(t, hc, m.TrafficURL()+"/realms/test/.well-known/openid-configuration")
	_, body := get(t, hc, m.MgmtURL()+"/kcsim/stats")
	var st Stats
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("stats %s: %v", body, err)
	}
	if st.Requests != 1 || st.ByClass["well-known"] != 1 {
		t.Errorf("stats %+v, want 1 well-known request", st)
	}
}

func TestTokenFail(t *testing.T) {
	c := kcsimtest.StartCluster(t, 1, Options{ProbeSecret: "s3cret"})
	m := c.At(0)
	hc := client(t)
	tokenURL := m.TrafficURL() + "/realms/test/protocol/openid-connect/token"
	cc := func(secret string) int {
		resp, _ := do(t, hc, http.MethodPost, tokenURL, url.Values{"grant_type": {"client_credentials"}, "client_id": {"probe"}, "client_secret": {secret}})
		return resp.StatusCode
	}
	if got := cc("s3cret"); got != 200 {
		t.Errorf("client_credentials: %d", got)
	}
	if got := cc("wrong"); got != 401 {
		t.Errorf("wrong secret: %d, want 401", got)
	}
	m.Node.SetTokenFail(true)
	if got := cc("s3cret"); got != 500 {
		t.Errorf("token=fail: %d, want 500", got)
	}
	if resp, _ := get(t, hc, m.MgmtURL()+"/health/ready"); resp.StatusCode != 200 {
		t.Errorf("ready while token fails: %d", resp.StatusCode)
	}
	if _, err := (&LoginFlow{Client: client(t)}).Run(context.Background(), m.TrafficURL()); err == nil {
		t.Error("login succeeded with token=fail")
	} else if le := (*LoginError)(nil); !errors.As(err, &le) || le.Step != StepToken || le.Status != 500 {
		t.Errorf("error %v, want a token step failure with 500", err)
	}
}

func TestSecurityHeaders(t *testing.T) {
	c := kcsimtest.StartCluster(t, 1, Options{})
	hc := client(t)
	tests := []struct {
		name   string
		path   string
		iframe bool
	}{
		{name: "status iframe", path: "/realms/test/protocol/openid-connect/login-status-iframe.html", iframe: true},
		{name: "3p step1", path: "/realms/test/protocol/openid-connect/3p-cookies/step1.html", iframe: true},
		{name: "3p step2", path: "/realms/test/protocol/openid-connect/3p-cookies/step2.html", iframe: true},
		{name: "login page", path: "/realms/test/protocol/openid-connect/auth?client_id=a&redirect_uri=http%3A%2F%2Fx"},
		{name: "discovery", path: "/realms/test/.well-known/openid-configuration"},
		{name: "admin", path: "/admin/master/console/"},
		{name: "resource", path: "/resources/abc/login/styles.css"},
		{name: "not found", path: "/realms/test/nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, _ := get(t, hc, c.At(0).TrafficURL()+tt.path)
			h := resp.Header
			if resp.StatusCode >= 500 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			xfo, csp := h.Values("X-Frame-Options"), h.Get("Content-Security-Policy")
			if tt.iframe {
				if len(xfo) != 0 || strings.Contains(csp, "frame-ancestors") {
					t.Errorf("iframe page has framing headers: X-Frame-Options %q, CSP %q", xfo, csp)
				}
			} else if h.Get("X-Frame-Options") != "SAMEORIGIN" || csp != "frame-src 'self'; frame-ancestors 'self'; object-src 'none';" {
				t.Errorf("X-Frame-Options %q, CSP %q", xfo, csp)
			}
			for k, v := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Robots-Tag": "none",
				"Referrer-Policy": "no-referrer", "Strict-Transport-Security": "max-age=31536000; includeSubDomains"} {
				if got := h.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestTrafficPaths(t *testing.T) {
	c := kcsimtest.StartCluster(t, 1, Options{})
	hc := client(t)
	tests := []struct {
		name     string
		path     string
		status   int
		location string
	}{
		{name: "health", path: "/health", status: 404},
		{name: "health ready", path: "/health/ready", status: 404},
		{name: "metrics", path: "/metrics", status: 404},
		{name: "lb-check", path: "/lb-check", status: 404},
		{name: "root", path: "/", status: 302, location: "/admin/"},
		{name: "admin", path: "/admin/", status: 302, location: "/admin/master/console/"},
		{name: "admin console", path: "/admin/master/console/", status: 200},
		{name: "keycloak.js", path: "/js/keycloak.js", status: 200},
		{name: "robots", path: "/robots.txt", status: 200},
		{name: "realm", path: "/realms/test", status: 200},
		{name: "other realm", path: "/realms/other/.well-known/openid-configuration", status: 404},
		{name: "auth without client", path: "/realms/test/protocol/openid-connect/auth", status: 400},
		{name: "authenticate without cookie", path: "/realms/test/login-actions/authenticate", status: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, _ := get(t, hc, c.At(0).TrafficURL()+tt.path)
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if got := resp.Header.Get("Location"); got != tt.location {
				t.Errorf("Location %q, want %q", got, tt.location)
			}
		})
	}
	resp, body := get(t, hc, c.At(0).TrafficURL()+"/resources/x/y.js")
	if len(body) != 2048 || resp.Header.Get("Cache-Control") != "max-age=2592000" {
		t.Errorf("resource: %d bytes, Cache-Control %q", len(body), resp.Header.Get("Cache-Control"))
	}
}

func TestDiscoveryForwardedHeaders(t *testing.T) {
	c := kcsimtest.StartCluster(t, 1, Options{})
	m := c.At(0)
	hc := client(t)
	tests := []struct {
		name   string
		hdr    []string
		issuer string
	}{
		{name: "host header", issuer: "http://" + m.Traffic.String() + "/realms/test"},
		{name: "proto and host", hdr: []string{"X-Forwarded-Proto", "https", "X-Forwarded-Host", "sso.example"}, issuer: "https://sso.example/realms/test"},
		{name: "default port dropped", hdr: []string{"X-Forwarded-Proto", "https", "X-Forwarded-Host", "sso.example", "X-Forwarded-Port", "443"}, issuer: "https://sso.example/realms/test"},
		{name: "explicit port", hdr: []string{"X-Forwarded-Proto", "https", "X-Forwarded-Host", "sso.example", "X-Forwarded-Port", "8443"}, issuer: "https://sso.example:8443/realms/test"},
		{name: "host with port replaced", hdr: []string{"X-Forwarded-Host", "sso.example:1234", "X-Forwarded-Port", "8080"}, issuer: "http://sso.example:8080/realms/test"},
		{name: "first of a list", hdr: []string{"X-Forwarded-Proto", "https, http", "X-Forwarded-Host", "a.example, b.example"}, issuer: "https://a.example/realms/test"},
		{name: "ipv6", hdr: []string{"X-Forwarded-Host", "[2001:db8::1]", "X-Forwarded-Port", "8080"}, issuer: "http://[2001:db8::1]:8080/realms/test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, hc, m.TrafficURL()+"/realms/test/.well-known/openid-configuration", tt.hdr...)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			var d map[string]any
			if err := json.Unmarshal([]byte(body), &d); err != nil {
				t.Fatal(err)
			}
			if d["issuer"] != tt.issuer || d["token_endpoint"] != tt.issuer+"/protocol/openid-connect/token" ||
				d["authorization_endpoint"] != tt.issuer+"/protocol/openid-connect/auth" {
				t.Errorf("issuer %v token %v auth %v, want issuer %s", d["issuer"], d["token_endpoint"], d["authorization_endpoint"], tt.issuer)
			}
		})
	}
}

func TestTestHooks(t *testing.T) {
	c := kcsimtest.StartCluster(t, 1, Options{})
	base := c.At(0).TrafficURL()
	hc := client(t)

	_, body := get(t, hc, base+"/echo?a=1&b=%2F", "X-Test", "v1")
	var e EchoResponse
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatal(err)
	}
	if e.Method != "GET" || e.URI != "/echo?a=1&b=%2F" || e.Header.Get("X-Test") != "v1" || e.Node != "keycloak1" || e.RemoteAddr == "" {
		t.Errorf("echo %+v", e)
	}

	resp, _ := get(t, hc, base+"/bigheader?kib=32")
	if n := len(resp.Header.Get("X-Big")); n != 32<<10 {
		t.Errorf("X-Big is %d bytes, want %d", n, 32<<10)
	}
	if resp, _ := get(t, hc, base+"/bigheader?kib=x"); resp.StatusCode != 400 {
		t.Errorf("bad kib: %d", resp.StatusCode)
	}

	resp, body = get(t, hc, base+"/stream?chunks=3&interval=1ms")
	if resp.StatusCode != 200 || body != "chunk 0\nchunk 1\nchunk 2\n" {
		t.Errorf("stream: %d %q", resp.StatusCode, body)
	}

	resp, body = get(t, hc, base+"/realms/test/hello")
	if len(body) != 959 || resp.Header.Get("X-Node") != "keycloak1" ||
		resp.Header.Get("Set-Cookie") != "AUTH_SESSION_ID=abc123.keycloak1; Path=/realms/test/; HttpOnly" ||
		resp.Header.Get("Cache-Control") != "no-store, must-revalidate, max-age=0" {
		t.Errorf("hello: %d bytes, headers %v", len(body), resp.Header)
	}
}

func TestHelloMatchesPeerBench(t *testing.T) {
	n := New(Options{Node: "node1"})
	rec := httptest.NewRecorder()
	n.TrafficHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/realms/test/hello", nil))
	if rec.Body.Len() != 955 {
		t.Errorf("body %d bytes, want 955", rec.Body.Len())
	}
}

func TestDelay(t *testing.T) {
	c := kcsimtest.StartCluster(t, 1, Options{})
	m := c.At(0)
	m.Node.SetDelay(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", m.TrafficURL()+"/robots.txt", nil)
	if resp, err := client(t).Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("request completed despite a one-hour delay")
	}
	m.Node.SetDelay(0)
	if resp, _ := get(t, client(t), m.TrafficURL()+"/robots.txt"); resp.StatusCode != 200 {
		t.Errorf("status %d", resp.StatusCode)
	}
}

func TestStopStart(t *testing.T) {
	c := kcsimtest.StartCluster(t, 2, Options{Strict: true})
	m := c.At(0)
	hc := client(t)
	if _, err := (&LoginFlow{Client: hc}).Run(context.Background(), m.TrafficURL()); err != nil {
		t.Fatal(err)
	}
	c.Stop(0)
	if !dialRefused(m.Traffic.String()) || !dialRefused(m.Mgmt.String()) {
		t.Fatal("stopped node still accepts connections")
	}
	if !c.Running(1) || c.Running(0) {
		t.Error("Running wrong")
	}
	c.Start(0)
	if resp, _ := get(t, hc, m.MgmtURL()+"/health/ready"); resp.StatusCode != 200 {
		t.Errorf("ready after restart: %d", resp.StatusCode)
	}
	if _, err := (&LoginFlow{Client: hc}).Run(context.Background(), m.TrafficURL()); err != nil {
		t.Fatal(err)
	}
	if got := c.Stats().Logins; got != 2 {
		t.Errorf("logins across restart = %d, want 2", got)
	}
}

func TestShutdownDelay(t *testing.T) {
	n := New(Options{Node: "kc", ShutdownDelay: time.Second})
	tl, _ := net.Listen("tcp", "127.0.0.1:0")
	ml, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx, tl, ml) }()
	hc := client(t)
	if resp, _ := get(t, hc, "http://"+ml.Addr().String()+"/health/ready"); resp.StatusCode != 200 {
		t.Fatalf("ready: %d", resp.StatusCode)
	}
	cancel()
	waitFor(t, "readiness DOWN", func() bool { return n.Switches().ShuttingDown })
	resp, body := get(t, hc, "http://"+ml.Addr().String()+"/health/ready")
	if resp.StatusCode != 503 || !strings.Contains(body, `{"name":"Graceful Shutdown","status":"DOWN"}`) {
		t.Errorf("ready during shutdown: %d %s", resp.StatusCode, body)
	}
	if resp, _ := get(t, hc, "http://"+tl.Addr().String()+"/robots.txt"); resp.StatusCode != 200 {
		t.Errorf("traffic during shutdown delay: %d", resp.StatusCode)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
}

func BenchmarkHello(b *testing.B) {
	n := New(Options{Node: "node1"})
	h := n.TrafficHandler()
	req := httptest.NewRequest("GET", "/realms/test/hello", nil)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}

func BenchmarkParseAuthSessionID(b *testing.B) {
	v := EncodeAuthSessionID(Format261, NewUUID(), "keycloak1", []byte("k"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseAuthSessionID(v); err != nil {
			b.Fatal(err)
		}
	}
}

// discardWriter is a ResponseWriter that reuses its header map.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// TestMain checks that stopped nodes leave no goroutines behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestLoginFlowDefaultClient(t *testing.T) {
	c := kcsimtest.StartCluster(t, 1, Options{Strict: true})
	if _, err := (&LoginFlow{}).Run(context.Background(), c.At(0).TrafficURL()); err != nil {
		t.Fatal(err)
	}
	// Without cookies the authenticate step must fail, and say so.
	noJar := &http.Client{Transport: &http.Transport{}}
	defer noJar.CloseIdleConnections()
	_, err := (&LoginFlow{Client: noJar}).Run(context.Background(), c.At(0).TrafficURL())
	var le *LoginError
	if !errors.As(err, &le) || le.Step != StepAuthenticate || le.Status != http.StatusBadRequest {
		t.Errorf("login without a jar: %v, want an authenticate failure with 400", err)
	}
}

// BenchmarkHelloLoopback measures /hello through a real loopback socket
// with one keep-alive connection.
func BenchmarkHelloLoopback(b *testing.B) {
	c := kcsimtest.StartCluster(b, 1, Options{})
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	u := c.At(0).TrafficURL() + "/realms/test/hello"
	b.ReportAllocs()
	for b.Loop() {
		resp, err := hc.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func TestLBCheckMultiSite(t *testing.T) {
	hc := client(t)
	plain := kcsimtest.StartCluster(t, 1, Options{}).At(0)
	if resp, _ := get(t, hc, plain.TrafficURL()+"/lb-check"); resp.StatusCode != 404 {
		t.Fatalf("/lb-check without MultiSite: %d, want 404", resp.StatusCode)
	}
	m := kcsimtest.StartCluster(t, 1, Options{MultiSite: true}).At(0)
	if resp, body := get(t, hc, m.TrafficURL()+"/lb-check"); resp.StatusCode != 200 || body != `{"status":"UP"}` {
		t.Fatalf("/lb-check: %d %q", resp.StatusCode, body)
	}
	do(t, hc, http.MethodPost, m.MgmtURL()+"/kcsim/control?site=offline", nil)
	if resp, body := get(t, hc, m.TrafficURL()+"/lb-check"); resp.StatusCode != 503 || body != `{"status":"DOWN"}` {
		t.Fatalf("/lb-check offline: %d %q", resp.StatusCode, body)
	}
	if !m.Node.Switches().SiteOffline {
		t.Fatal("switch not reported")
	}
	if resp, _ := get(t, hc, m.MgmtURL()+"/health/ready"); resp.StatusCode != 200 {
		t.Fatalf("ready while the site is offline: %d", resp.StatusCode)
	}
	m.Node.SetSiteOffline(false)
	if resp, _ := get(t, hc, m.TrafficURL()+"/lb-check"); resp.StatusCode != 200 {
		t.Fatalf("/lb-check back online: %d", resp.StatusCode)
	}
}
