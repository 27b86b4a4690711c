package kcsim_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	. "github.com/kclb/kclb/internal/kcsim"
	"github.com/kclb/kclb/internal/kcsim/kcsimtest"
)

// authRoute starts a login on node i of c with a fresh client and returns
// the route of the AUTH_SESSION_ID it set.
func authRoute(t *testing.T, c *kcsimtest.Cluster, i int) string {
	t.Helper()
	resp, _ := get(t, client(t), c.At(i).TrafficURL()+"/realms/test/protocol/openid-connect/auth?client_id=a&redirect_uri=http%3A%2F%2Fx%2Fcb")
	for _, ck := range resp.Cookies() {
		if ck.Name == "AUTH_SESSION_ID" {
			a, err := ParseAuthSessionID(ck.Value)
			if err != nil {
				t.Fatal(err)
			}
			return a.Route
		}
	}
	t.Fatal("no AUTH_SESSION_ID set")
	return ""
}

// TestWrongRoute checks the keycloak#43933 switch: the share of new auth
// sessions whose route names another node, spread evenly, cycling through
// the peers (issue 18, item 3).
func TestWrongRoute(t *testing.T) {
	tests := []struct {
		name  string
		share float64
		want  []string // routes of node 1's first six sessions
	}{
		{name: "never", share: 0, want: []string{"keycloak1", "keycloak1", "keycloak1", "keycloak1", "keycloak1", "keycloak1"}},
		{name: "always", share: 1, want: []string{"keycloak2", "keycloak3", "keycloak2", "keycloak3", "keycloak2", "keycloak3"}},
		{name: "a third", share: 1.0 / 3, want: []string{"keycloak1", "keycloak1", "keycloak2", "keycloak1", "keycloak1", "keycloak3"}},
		{name: "half", share: 0.5, want: []string{"keycloak1", "keycloak2", "keycloak1", "keycloak3", "keycloak1", "keycloak2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := kcsimtest.StartCluster(t, 3, Options{WrongRoute: tt.share})
			var got []string
			for range tt.want {
				got = append(got, authRoute(t, c, 0))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("routes %q, want %q", got, tt.want)
			}
			if sw := c.At(0).Node.Switches(); sw.WrongRoute != tt.share {
				t.Errorf("switch wrong_route = %v, want %v", sw.WrongRoute, tt.share)
			}
		})
	}
}

func TestWrongRouteWithoutPeers(t *testing.T) {
	n := New(Options{Node: "solo", WrongRoute: 1})
	route := func() string {
		t.Helper()
		rec := httptest.NewRecorder()
		n.TrafficHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/realms/test/protocol/openid-connect/auth?client_id=a&redirect_uri=http%3A%2F%2Fx%2Fcb", nil))
		for _, ck := range rec.Result().Cookies() {
			if ck.Name == "AUTH_SESSION_ID" {
				return RouteOf(ck.Value)
			}
		}
		t.Fatal("no AUTH_SESSION_ID set")
		return ""
	}
	if r := route(); r != "solo-peer" {
		t.Errorf("route %q, want solo-peer", r)
	}
	n.SetWrongRoute(7) // clamped
	if got := n.Switches().WrongRoute; got != 1 {
		t.Errorf("clamped share = %v, want 1", got)
	}
	n.SetWrongRoute(-1)
	if r := route(); r != "solo" {
		t.Errorf("route after SetWrongRoute(-1) = %q, want solo", r)
	}
}

// TestWrongRouteStrict: with wrong routes a strict node counts a login
// that reaches it through a route naming it, since the route no longer
// proves the session lives there; the node that created the session
// completes the login.
func TestWrongRouteStrict(t *testing.T) {
	c := kcsimtest.StartCluster(t, 2, Options{Strict: true, WrongRoute: 1})
	if r := authRoute(t, c, 0); r != "keycloak2" {
		t.Fatalf("route %q, want keycloak2", r)
	}
	// Following the (wrong) route: node 2 does not hold the session.
	resp, _ := crossNodeLogin(t, c, 0, 1)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("authenticate on the node the route names: %d, want 400", resp.StatusCode)
	}
	if got := c.At(1).Node.Stats().Misroutes; got != 1 {
		t.Errorf("misroutes on node 2 = %d, want 1", got)
	}
	// Staying on the node that created it works whatever the route says.
	if resp, _ := crossNodeLogin(t, c, 0, 0); resp.StatusCode != http.StatusFound {
		t.Fatalf("authenticate on the creating node: %d, want 302", resp.StatusCode)
	}
	if got := c.At(0).Node.Stats().Misroutes; got != 0 {
		t.Errorf("misroutes on node 1 = %d, want 0", got)
	}
}

func TestWrongRouteControl(t *testing.T) {
	c := kcsimtest.StartCluster(t, 1, Options{})
	m := c.At(0)
	hc := client(t)
	for _, tc := range []struct {
		query  string
		status int
		want   float64
	}{
		{"wrong_route=0.5", 200, 0.5},
		{"wrong_route=2", 400, 0.5},
		{"wrong_route=-0.5", 400, 0.5},
		{"wrong_route=NaN", 400, 0.5},
		{"wrong_route=lots&db=down", 400, 0.5},
		{"wrong_route=1", 200, 1},
		{"wrong_route=0", 200, 0},
	} {
		resp, body := do(t, hc, http.MethodPost, m.MgmtURL()+"/kcsim/control?"+tc.query, nil)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d: %s", tc.query, resp.StatusCode, tc.status, body)
		}
		if sw := m.Node.Switches(); sw.WrongRoute != tc.want || sw.DatabaseDown {
			t.Errorf("%s: switches %+v, want wrong_route %v and nothing else", tc.query, sw, tc.want)
		}
	}
}
