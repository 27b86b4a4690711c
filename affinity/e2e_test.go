package affinity_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kclb/kclb/affinity"
	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/balancer"
	"github.com/kclb/kclb/internal/kcsim"
	"github.com/kclb/kclb/internal/kcsim/kcsimtest"
	"github.com/kclb/kclb/proxy"
)

var e2eSecret = []byte("e2e-secret-0123456789abcdef")

// router adapts an Affinity to proxy.Router.
//
// The proxy calls StripRequest before the first Route, which would hide
// KC_ROUTE from Pick; its outbound request is the inbound one, so Route
// strips the cookie itself after deciding (before every attempt; a retry
// sees no KC_ROUTE, and its pin is in tried anyway) and StripRequest does
// nothing.
var _ proxy.Router = affinity.Router{}

// e2e is kclb's handler with affinity in front of a kcsim cluster.
type e2e struct {
	cluster *kcsimtest.Cluster
	pool    *backend.Pool
	aff     *affinity.Affinity
	url     string
}

func startE2E(t *testing.T, n int, kc kcsim.Options, configuredRoutes bool) *e2e {
	t.Helper()
	cluster := kcsimtest.StartCluster(t, n, kc)
	var specs []backend.Spec
	for i, m := range cluster.Nodes() {
		sp := backend.Spec{Name: fmt.Sprintf("kc%d", i+1), Addr: m.Traffic.String()}
		if configuredRoutes {
			sp.Route = m.Node.Name()
		}
		specs = append(specs, sp)
	}
	pool, err := backend.NewPool(specs, backend.PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	aff, err := affinity.New(affinity.Options{Secret: e2eSecret, AuthSessionRoute: true, Learn: true}, &balancer.RoundRobin{})
	if err != nil {
		t.Fatal(err)
	}
	// The flows stand for as many browsers, which would come from as many
	// addresses; here they all come from 127.0.0.1, and a thousand at once
	// would meet the per-address cap on requests reading their body (429).
	h, err := proxy.New(proxy.Options{Pool: pool, Router: affinity.Router{A: aff}, BodyWaitsPerClient: -1})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		h.Close()
	})
	return &e2e{cluster: cluster, pool: pool, aff: aff, url: srv.URL}
}

func (e *e2e) misroutes() int64 {
	var n int64
	for _, m := range e.cluster.Nodes() {
		n += m.Node.Stats().Misroutes
	}
	return n
}

// TestE2ELoginFlows runs concurrent browser logins through kclb against
// strict Keycloak stand-ins, which reject any step that reaches a node
// other than the one holding the login.
func TestE2ELoginFlows(t *testing.T) {
	flows := 1000
	if testing.Short() || raceDetector {
		flows = 100 // the race detector makes 1000 flows take minutes
	}
	tests := []struct {
		name       string
		kc         kcsim.Options
		configured bool
		skip       string
	}{
		{name: "learned routes 26.1", kc: kcsim.Options{Strict: true}},
		{name: "learned routes legacy format", kc: kcsim.Options{Strict: true, CookieFormat: kcsim.FormatLegacy}},
		{name: "configured routes", kc: kcsim.Options{Strict: true}, configured: true},
		{name: "no route suffix, KC_ROUTE only", kc: kcsim.Options{Strict: true, NoRoute: true}},
		// Issue 18, item 3: suffixes naming other nodes (keycloak#43933).
		{name: "every route wrong", kc: kcsim.Options{Strict: true, WrongRoute: 1}},
		{name: "a third of the routes wrong", kc: kcsim.Options{Strict: true, WrongRoute: 1.0 / 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startE2E(t, 3, tt.kc, tt.configured)
			ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			errs := make(chan error, flows)
			for range flows {
				wg.Go(func() {
					res, err := (&kcsim.LoginFlow{}).Run(ctx, e.url)
					switch {
					case err != nil:
						errs <- err
					case res.AuthNode != res.AuthenticateNode || res.AuthNode != res.TokenNode:
						errs <- fmt.Errorf("login spread over %s, %s, %s", res.AuthNode, res.AuthenticateNode, res.TokenNode)
					}
				})
			}
			wg.Wait()
			close(errs)
			failed := 0
			for err := range errs {
				if failed < 5 {
					t.Errorf("login: %v", err)
				}
				failed++
			}
			if failed > 0 {
				t.Fatalf("%d of %d logins failed", failed, flows)
			}
			if m := e.misroutes(); m != 0 {
				t.Fatalf("%d misroutes counted by the nodes", m)
			}
			st := e.aff.Stats()
			if st.Hits[affinity.SourceBalancer] != uint64(flows) {
				t.Errorf("balancer picks = %d, want one per login (%d); stats %+v", st.Hits[affinity.SourceBalancer], flows, st)
			}
			for _, m := range e.cluster.Nodes() {
				if got := m.Node.Stats().Logins; got < int64(flows)/6 {
					t.Errorf("node %s completed %d logins: new clients not spread", m.Node.Name(), got)
				}
			}
			t.Logf("stats: %+v routes: %v", st, e.aff.Routes())
		})
	}
}

// client is a browser-like client with a cookie jar.
type client struct {
	t   *testing.T
	c   *http.Client
	url string
}

func newClient(t *testing.T, url string) *client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &client{t: t, c: &http.Client{Jar: jar, Transport: tr}, url: url}
}

// get fetches /echo and returns what the node saw and the response.
func (c *client) get(extraCookie string) (kcsim.EchoResponse, *http.Response) {
	c.t.Helper()
	req, err := http.NewRequest("GET", c.url+"/echo", nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if extraCookie != "" {
		req.Header.Set("Cookie", extraCookie)
	}
	resp, err := c.c.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var e kcsim.EchoResponse
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		c.t.Fatalf("decode /echo: %v", err)
	}
	return e, resp
}

func routeCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == "KC_ROUTE" {
			return c
		}
	}
	return nil
}

func TestE2ECookieInsertedAndStripped(t *testing.T) {
	e := startE2E(t, 2, kcsim.Options{}, false)
	c := newClient(t, e.url)
	first, resp := c.get("")
	ck := routeCookie(resp)
	if ck == nil || ck.Path != "/" || !ck.HttpOnly || ck.MaxAge != 6*3600 {
		t.Fatalf("first response cookie = %+v", ck)
	}
	if cc := resp.Header.Values("Cache-Control"); len(cc) == 0 || !strings.Contains(strings.Join(cc, ","), "private") &&
		!strings.Contains(strings.Join(cc, ","), "no-store") {
		t.Fatalf("Cache-Control = %q on a response that sets the cookie", cc)
	}
	for range 10 {
		got, resp := c.get("")
		if got.Node != first.Node {
			t.Fatalf("pinned client moved from %s to %s", first.Node, got.Node)
		}
		if routeCookie(resp) != nil {
			t.Fatal("cookie re-issued to a pinned client")
		}
		if v, ok := got.Header["Cookie"]; ok {
			t.Fatalf("Keycloak saw Cookie %q, want none (only KC_ROUTE was sent)", v)
		}
	}
	// Other cookies reach Keycloak byte for byte (a client without a jar,
	// so the header is exactly ours).
	raw := "a=1; KC_ROUTE=" + ck.Value + "; b=\"two words\";c=3"
	bare := &client{t: t, c: &http.Client{Transport: c.c.Transport}, url: e.url}
	got, _ := bare.get(raw)
	if v := got.Header.Values("Cookie"); len(v) != 1 || v[0] != "a=1; b=\"two words\";c=3" {
		t.Fatalf("Keycloak saw Cookie %q", v)
	}
	if got.Node != first.Node {
		t.Fatalf("explicit cookie pinned to %s, want %s", got.Node, first.Node)
	}
}

func TestE2ERedispatchAndDrain(t *testing.T) {
	e := startE2E(t, 3, kcsim.Options{}, false)
	c := newClient(t, e.url)
	first, _ := c.get("")
	var pinned *backend.Server
	for i, m := range e.cluster.Nodes() {
		if m.Node.Name() == first.Node {
			pinned = e.pool.Servers()[i]
		}
	}
	if pinned == nil {
		t.Fatalf("no server for node %q", first.Node)
	}

	// Drain: the pinned client stays, new clients go elsewhere.
	if err := e.pool.SetAdmin(pinned.Name(), backend.AdminDrain); err != nil {
		t.Fatal(err)
	}
	for range 6 {
		if got, _ := c.get(""); got.Node != first.Node {
			t.Fatalf("draining: pinned client moved to %s", got.Node)
		}
		if got, _ := newClient(t, e.url).get(""); got.Node == first.Node {
			t.Fatalf("draining: new client sent to %s", got.Node)
		}
	}

	// Maintenance: the client is redispatched and re-pinned.
	if err := e.pool.SetAdmin(pinned.Name(), backend.AdminMaint); err != nil {
		t.Fatal(err)
	}
	moved, resp := c.get("")
	if moved.Node == first.Node || routeCookie(resp) == nil {
		t.Fatalf("maint: client on %s, new cookie %v", moved.Node, routeCookie(resp) != nil)
	}
	if pinned.Counters().Redispatches != 1 || e.aff.Stats().Redispatches != 1 {
		t.Fatalf("redispatches: server %d, affinity %d; want 1", pinned.Counters().Redispatches, e.aff.Stats().Redispatches)
	}
	if err := e.pool.SetAdmin(pinned.Name(), backend.AdminReady); err != nil {
		t.Fatal(err)
	}
	for range 6 {
		if got, _ := c.get(""); got.Node != moved.Node {
			t.Fatalf("after redispatch the client moved again, to %s", got.Node)
		}
	}
}

func TestE2ENodeStopped(t *testing.T) {
	e := startE2E(t, 3, kcsim.Options{}, false)
	c := newClient(t, e.url)
	first, _ := c.get("")
	idx := -1
	for i, m := range e.cluster.Nodes() {
		if m.Node.Name() == first.Node {
			idx = i
		}
	}
	if idx < 0 {
		t.Fatalf("no cluster node %q", first.Node)
	}
	e.cluster.Stop(idx)
	moved, resp := c.get("")
	if moved.Node == first.Node || routeCookie(resp) == nil {
		t.Fatalf("after stopping %s: answered by %s, new cookie %v", first.Node, moved.Node, routeCookie(resp) != nil)
	}
	if n := e.pool.Servers()[idx].Counters().Redispatches; n != 1 {
		t.Fatalf("stopped server redispatches = %d, want 1", n)
	}
	e.cluster.Start(idx)
	for range 6 {
		if got, _ := c.get(""); got.Node != moved.Node {
			t.Fatalf("client did not stay on %s after the failover: %s", moved.Node, got.Node)
		}
	}
}
