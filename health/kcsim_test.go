package health

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/kcsim"
	"github.com/kclb/kclb/internal/kcsim/kcsimtest"
)

// TestAgainstKcsim runs the checker with every probe against the project's
// Keycloak stand-in and walks through its failure switches.
func TestAgainstKcsim(t *testing.T) {
	const secret = "kcsim-probe-secret"
	cl := kcsimtest.StartCluster(t, 3, kcsim.Options{ProbeSecret: secret})
	secretFile := filepath.Join(t.TempDir(), "probe-secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	var specs []backend.Spec
	for _, m := range cl.Nodes() {
		specs = append(specs, backend.Spec{Name: m.Node.Name(), Addr: m.Traffic.String(), Mgmt: m.Mgmt.String()})
	}
	var mu sync.Mutex
	routes := map[string]string{}
	opts := testOptions()
	opts.Realm = "test"
	opts.WellKnown = true
	opts.ClusterCheck = ClusterEject
	opts.TokenProbe = TokenProbe{ClientID: "kclb-probe", SecretFile: secretFile, Interval: opts.Interval}
	opts.OnRoute = func(route string, s *backend.Server) {
		mu.Lock()
		routes[s.Name()] = route
		mu.Unlock()
	}
	e := newEnvSpecs(t, specs, opts)
	e.step()
	for i, m := range cl.Nodes() {
		s := e.pool.Lookup(m.Node.Name())
		if s.Health() != backend.HealthUp {
			t.Fatalf("%s health %v at start: %+v", s.Name(), s.Health(), s.Detail())
		}
		mu.Lock()
		if routes[s.Name()] != m.Node.Name() {
			t.Errorf("route of server %d = %q, want %q", i, routes[s.Name()], m.Node.Name())
		}
		mu.Unlock()
	}

	// cycle turns a switch on, expects want after Fall rounds, turns it off
	// and expects Up after Rise rounds.
	cycle := func(name string, i int, set func(bool), want backend.Health, reason string) {
		t.Helper()
		s := e.pool.Lookup(cl.At(i).Node.Name())
		set(true)
		for range e.opts.Fall {
			e.step()
		}
		if s.Health() != want {
			t.Fatalf("%s: health %v, want %v (detail %+v)", name, s.Health(), want, s.Detail())
		}
		if r := s.Detail().Reason; !strings.Contains(r, reason) {
			t.Fatalf("%s: reason %q, want %q in it", name, r, reason)
		}
		set(false)
		for range e.opts.Rise {
			e.step()
		}
		if s.Health() != backend.HealthUp {
			t.Fatalf("%s off: health %v, want up (detail %+v)", name, s.Health(), s.Detail())
		}
	}
	n0, n1, n2 := cl.At(0).Node, cl.At(1).Node, cl.At(2).Node
	cycle("db=down", 0, n0.SetDatabaseDown, backend.HealthDown, "Keycloak database connections async health check")
	cycle("split", 1, n1.SetSplit, backend.HealthDown, "cluster split")
	cycle("token=fail", 2, n2.SetTokenFail, backend.HealthDown, "token: HTTP 500 unknown_error")
	cycle("starting", 0, n0.SetStarting, backend.HealthStarting, "Keycloak Initialized")
	cycle("refuse (traffic port)", 1, func(on bool) {
		n1.SetRefuse(on)
		// kcsim closes and reopens its listener asynchronously.
		waitFor(t, "traffic port state", func() bool {
			c, err := net.Dial("tcp", cl.At(1).Traffic.String())
			if err == nil {
				c.Close()
			}
			return (err != nil) == on
		})
	}, backend.HealthDead, "connection refused")
	cycle("stopped", 2, func(on bool) {
		if on {
			cl.Stop(2)
		} else {
			cl.Start(2)
		}
	}, backend.HealthDead, "ready: connection refused")

	// Every database down: all Down (live), panic mode; back: panic ends.
	for _, m := range cl.Nodes() {
		m.Node.SetDatabaseDown(true)
	}
	for range e.opts.Fall {
		e.step()
	}
	if !e.pool.Panic() || !e.pool.AnyAvailable() {
		t.Fatalf("all db down: panic=%v available=%v", e.pool.Panic(), e.pool.AnyAvailable())
	}
	for _, m := range cl.Nodes() {
		m.Node.SetDatabaseDown(false)
	}
	for range e.opts.Rise {
		e.step()
	}
	if e.pool.Panic() {
		t.Fatal("panic mode still on after the database returned")
	}
	if strings.Contains(e.logs.String(), secret) {
		t.Fatal("probe secret in the logs")
	}
}
