package health

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kclb/kclb/internal/backend"
)

// TestDatabaseDownLeavesAndReturns also shows that a return through the
// sink starts the pool's slow start (the ramp itself is backend's test).
func TestDatabaseDownLeavesAndReturns(t *testing.T) {
	nodes := newNodes(t, 3)
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, nodes, testOptions())
		s := e.server(0)
		e.nodes[0].setReady(readyDBDown)
		for i := 1; i < e.opts.Fall; i++ {
			e.step()
			if s.Health() != backend.HealthUp {
				t.Fatalf("after %d failed rounds: health %v, want up (fall %d)", i, s.Health(), e.opts.Fall)
			}
		}
		e.step()
		if s.Health() != backend.HealthDown {
			t.Fatalf("after fall rounds: health %v, want down", s.Health())
		}
		evs := serverEvents(e.drain())
		if len(evs) != 1 || evs[0].server != "node1" || evs[0].from != backend.HealthUp || evs[0].to != backend.HealthDown {
			t.Fatalf("events %+v, want one node1 up>down", evs)
		}
		if !strings.Contains(evs[0].reason, dbCheckName) || !strings.Contains(evs[0].reason, failingSince) {
			t.Errorf("reason %q does not name the failing check and its since", evs[0].reason)
		}
		d := s.Detail()
		if d.FailingSince != failingSince {
			t.Errorf("Detail.FailingSince = %q, want %q", d.FailingSince, failingSince)
		}
		if d.Fails != e.opts.Fall {
			t.Errorf("Detail.Fails = %d, want %d", d.Fails, e.opts.Fall)
		}
		for _, other := range []int{1, 2} {
			if h := e.server(other).Health(); h != backend.HealthUp {
				t.Errorf("node%d health %v, want up", other+1, h)
			}
		}

		e.nodes[0].setReady(readyUp)
		for i := 1; i < e.opts.Rise; i++ {
			e.step()
			if s.Health() != backend.HealthDown {
				t.Fatalf("after %d passes: health %v, want still down (rise %d)", i, s.Health(), e.opts.Rise)
			}
		}
		e.step()
		if s.Health() != backend.HealthUp {
			t.Fatalf("after rise passes: health %v, want up", s.Health())
		}
		if f := s.Weight(); f != 1 {
			t.Errorf("weight right after return = %d, want 1 (slow start from 0)", f)
		}
		if d := s.Detail(); d.FailingSince != "" || !strings.Contains(d.Reason, "2 consecutive passes") {
			t.Errorf("detail after return %+v", d)
		}
		// Transitions are cmd/kclb's to log (from OnHealth): the checker logs
		// check detail at debug only.
		for _, line := range strings.Split(e.logs.String(), "\n") {
			if line != "" && !strings.Contains(line, "level=DEBUG") {
				t.Fatalf("checker logged above debug: %s", line)
			}
		}
		if !strings.Contains(e.logs.String(), dbCheckName) {
			t.Fatal("failing check not logged at debug")
		}
	})
}

func TestFailureModes(t *testing.T) {
	tests := []struct {
		name    string
		mode    readyMode
		timeout time.Duration
		want    backend.Health
		reason  string
	}{
		{name: "503 DOWN body", mode: readyDBDown, want: backend.HealthDown, reason: dbCheckName},
		{name: "200 with DOWN body", mode: ready200Down, want: backend.HealthDown, reason: dbCheckName},
		{name: "invalid JSON", mode: readyInvalid, want: backend.HealthDown, reason: "invalid body"},
		{name: "2 MiB body", mode: readyHuge, want: backend.HealthDown, reason: "body larger than 65536 bytes"},
		{name: "hanging check", mode: readyHang, timeout: 100 * time.Millisecond, want: backend.HealthDown, reason: "no answer within 100ms"},
		{name: "still starting", mode: readyStarting, want: backend.HealthStarting, reason: "Keycloak Initialized"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions()
			if tc.timeout != 0 {
				opts.Timeout = tc.timeout
			}
			run := func(t *testing.T, e *env) {
				if tc.want == backend.HealthStarting {
					e.nodes[0].starting.Store(true)
				}
				e.nodes[0].setReady(tc.mode)
				for range e.opts.Fall {
					e.step()
				}
				s := e.server(0)
				if s.Health() != tc.want {
					t.Fatalf("health %v, want %v (detail %+v)", s.Health(), tc.want, s.Detail())
				}
				if r := s.Detail().Reason; !strings.Contains(r, tc.reason) {
					t.Fatalf("reason %q, want it to contain %q", r, tc.reason)
				}
			}
			if tc.mode == readyHang {
				// A probe waiting on a socket is never durably blocked,
				// so a bubble's clock would not reach the timeout: this
				// case runs on the fake clock, with a real timeout.
				run(t, newEnv(t, 1, opts))
				return
			}
			nodes := newNodes(t, 1)
			synctest.Test(t, func(t *testing.T) { run(t, newBubbleEnv(t, nodes, opts)) })
		})
	}
}

func TestMgmtRefusedIsDead(t *testing.T) {
	opts := testOptions()
	opts.WellKnown = true
	opts.Realm = testRealm
	nodes := newNodes(t, 2)
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, nodes, opts)
		e.nodes[0].mgmt.Close()
		for range e.opts.Fall {
			e.step()
		}
		s := e.server(0)
		if s.Health() != backend.HealthDead {
			t.Fatalf("health %v, want dead", s.Health())
		}
		if r := s.Detail().Reason; !strings.Contains(r, "connection refused") {
			t.Fatalf("reason %q, want connection refused", r)
		}
		// Traffic still answers, but Dead servers never take panic traffic.
		e.nodes[1].setReady(readyDBDown)
		for range e.opts.Fall {
			e.step()
		}
		if !e.pool.Panic() {
			t.Fatal("pool not in panic with no server up")
		}
		if s.Available() {
			t.Error("dead server available in panic mode")
		}
		if !e.server(1).Available() {
			t.Error("live (down) server not available in panic mode")
		}
	})
}

func TestNotLiveIsDead(t *testing.T) {
	nodes := newNodes(t, 1)
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, nodes, testOptions())
		e.nodes[0].setReady(readyDBDown)
		e.nodes[0].notLive.Store(true)
		for range e.opts.Fall {
			e.step()
		}
		if h := e.server(0).Health(); h != backend.HealthDead {
			t.Fatalf("health %v, want dead", h)
		}
		// The node becomes live again but stays unready: Dead moves to Down.
		e.nodes[0].notLive.Store(false)
		e.step()
		if h := e.server(0).Health(); h != backend.HealthDown {
			t.Fatalf("health %v, want down once live", h)
		}
	})
}

// TestEveryFailedProbeIsClassified pins architecture.md's health event:
// /health/started and /health/live are asked on every failed readiness
// probe, from the first (not after fall failures), and never while
// readiness passes; so a node already out moves to Dead in the round its
// liveness fails.
func TestEveryFailedProbeIsClassified(t *testing.T) {
	nodes := newNodes(t, 1)
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, nodes, testOptions())
		k := e.nodes[0]
		e.step()
		if k.startedHits.Load() != 0 || k.liveHits.Load() != 0 {
			t.Fatalf("passing rounds asked started %d and live %d times, want 0", k.startedHits.Load(), k.liveHits.Load())
		}
		k.setReady(readyDBDown)
		for i := 1; i <= e.opts.Fall; i++ {
			e.step()
			if n, m := k.startedHits.Load(), k.liveHits.Load(); n != int64(i) || m != int64(i) {
				t.Fatalf("after %d failed rounds: started asked %d times, live %d; want %d each", i, n, m, i)
			}
		}
		s := e.server(0)
		if s.Health() != backend.HealthDown {
			t.Fatalf("health %v after fall rounds, want down", s.Health())
		}
		k.notLive.Store(true)
		e.step()
		if s.Health() != backend.HealthDead {
			t.Fatalf("down node whose liveness fails: %v after one round, want dead", s.Health())
		}
	})
}

func TestFlappingNeverOutrunsRiseFall(t *testing.T) {
	nodes := newNodes(t, 1)
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, nodes, testOptions())
		for i := range 20 {
			if i%2 == 0 {
				e.nodes[0].setReady(readyDBDown)
			} else {
				e.nodes[0].setReady(readyUp)
			}
			e.step()
		}
		if evs := e.drain(); len(evs) != 0 {
			t.Fatalf("flapping caused transitions: %+v", evs)
		}
		// Two downs then one up: still not enough for fall 3.
		for _, m := range []readyMode{readyDBDown, readyDBDown, readyUp, readyDBDown, readyDBDown, readyUp} {
			e.nodes[0].setReady(m)
			e.step()
		}
		if evs := e.drain(); len(evs) != 0 {
			t.Fatalf("2-down/1-up pattern caused transitions: %+v", evs)
		}
	})
}

func TestAllDatabaseDownPanicMode(t *testing.T) {
	nodes := newNodes(t, 3)
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, nodes, testOptions())
		for _, k := range e.nodes {
			k.setReady(readyDBDown)
		}
		for range e.opts.Fall {
			e.step()
		}
		for i := range e.nodes {
			if h := e.server(i).Health(); h != backend.HealthDown {
				t.Fatalf("node%d health %v, want down (live)", i+1, h)
			}
			if !e.server(i).Available() {
				t.Errorf("node%d not available in panic mode", i+1)
			}
		}
		if !e.pool.Panic() {
			t.Fatal("panic mode off with every server down")
		}
		var sawPanic bool
		for _, ev := range e.drain() {
			if ev.server == "" && ev.panic {
				sawPanic = true
			}
		}
		if !sawPanic {
			t.Error("no panic-start event")
		}
		for _, k := range e.nodes {
			k.setReady(readyUp)
		}
		for range e.opts.Rise {
			e.step()
		}
		if e.pool.Panic() {
			t.Fatal("panic mode still on after the database returned")
		}
		var sawEnd bool
		for _, ev := range e.drain() {
			if ev.server == "" && !ev.panic {
				sawEnd = true
			}
		}
		if !sawEnd {
			t.Error("no panic-end event")
		}
	})
}

func TestPassiveEjectionNeedsRisePasses(t *testing.T) {
	nodes := newNodes(t, 2)
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, nodes, testOptions())
		for range 3 {
			e.step() // build up passes that must not count after the ejection
		}
		s := e.server(0)
		for range 3 {
			e.pool.ObserveFailure(s, "connection reset")
		}
		// Passive detection marks Down, never Dead (issue 18, item 2).
		if s.Health() != backend.HealthDown {
			t.Fatalf("passive ejection: health %v, want down", s.Health())
		}
		e.drain()
		for i := 1; i < e.opts.Rise; i++ {
			e.step()
			if s.Health() != backend.HealthDown {
				t.Fatalf("after %d passes: health %v, want down until rise", i, s.Health())
			}
			if r := s.Detail().Reason; !strings.Contains(r, "passive") {
				t.Fatalf("passive reason overwritten: %q", r)
			}
		}
		e.step()
		if s.Health() != backend.HealthUp {
			t.Fatalf("after rise passes: health %v, want up", s.Health())
		}
		evs := serverEvents(e.drain())
		if len(evs) != 1 || evs[0].from != backend.HealthDown || evs[0].to != backend.HealthUp {
			t.Fatalf("events %+v, want one down>up", evs)
		}
	})
}

// TestPassiveEjectionAndActiveVerdicts: a passively ejected server stays
// Down while its readiness fails, and only the active liveness check
// makes it Dead (issue 18, item 2).
func TestPassiveEjectionAndActiveVerdicts(t *testing.T) {
	nodes := newNodes(t, 2)
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, nodes, testOptions())
		s := e.server(0)
		for range 3 {
			e.pool.ObserveFailure(s, "connection reset")
		}
		e.nodes[0].setReady(readyDBDown) // live but unready: stays Down
		for range 4 {
			e.step()
			if s.Health() != backend.HealthDown {
				t.Fatalf("checker moved a passively ejected, unready server to %v", s.Health())
			}
		}
		e.nodes[0].notLive.Store(true)
		for range 4 {
			e.step()
		}
		if s.Health() != backend.HealthDead {
			t.Fatalf("liveness failing: health %v, want dead", s.Health())
		}
	})
}

func TestClusterSplit(t *testing.T) {
	tests := []struct {
		name string
		mode ClusterMode
		want backend.Health
	}{
		{name: "report", mode: ClusterReport, want: backend.HealthUp},
		{name: "eject", mode: ClusterEject, want: backend.HealthDown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions()
			opts.ClusterCheck = tc.mode
			var mu sync.Mutex
			routes := map[string]string{}
			opts.OnRoute = func(route string, s *backend.Server) {
				mu.Lock()
				routes[s.Name()] = route
				mu.Unlock()
			}
			nodes := newNodes(t, 3)
			synctest.Test(t, func(t *testing.T) {
				e := newBubbleEnv(t, nodes, opts)
				e.step()
				mu.Lock()
				for _, k := range e.nodes {
					if routes[k.node] != k.node {
						t.Errorf("route of %s = %q, want %q", k.node, routes[k.node], k.node)
					}
				}
				mu.Unlock()
				for i := range e.nodes {
					if e.server(i).Detail().Split {
						t.Fatalf("node%d flagged split in a healthy cluster", i+1)
					}
				}
				e.nodes[2].split.Store(true)
				for range e.opts.Fall {
					e.step()
				}
				s := e.server(2)
				if !s.Detail().Split {
					t.Fatal("split node not flagged")
				}
				if s.Health() != tc.want {
					t.Fatalf("split node health %v, want %v", s.Health(), tc.want)
				}
				if tc.want == backend.HealthDown && !strings.Contains(s.Detail().Reason, "cluster split") {
					t.Errorf("reason %q", s.Detail().Reason)
				}
				for _, i := range []int{0, 1} {
					if d := e.server(i).Detail(); d.Split || e.server(i).Health() != backend.HealthUp {
						t.Errorf("majority node%d: split=%v health=%v", i+1, d.Split, e.server(i).Health())
					}
				}
				e.nodes[2].split.Store(false)
				for range e.opts.Rise {
					e.step()
				}
				if s.Detail().Split || s.Health() != backend.HealthUp {
					t.Fatalf("healed node: split=%v health=%v", s.Detail().Split, s.Health())
				}
			})
		})
	}
}

func TestTokenProbe(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := testOptions()
	opts.Realm = testRealm
	opts.TokenProbe = TokenProbe{ClientID: testClientID, SecretFile: secretFile, Interval: time.Second}
	nodes := newNodes(t, 2)
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, nodes, opts)
		e.step()
		if e.nodes[0].tokenHits.Load() == 0 {
			t.Fatal("token endpoint never called")
		}
		if h := e.server(0).Health(); h != backend.HealthUp {
			t.Fatalf("health %v with a working token probe (detail %+v)", h, e.server(0).Detail())
		}
		e.nodes[0].tokenFail.Store(true)
		for range e.opts.Fall {
			e.step()
		}
		s := e.server(0)
		if s.Health() != backend.HealthDown {
			t.Fatalf("health %v, want down with the token probe failing while ready is UP", s.Health())
		}
		d := s.Detail()
		if !strings.Contains(d.Reason, "token: HTTP 401") {
			t.Errorf("reason %q", d.Reason)
		}
		for _, where := range []string{d.Reason, d.LastResult, e.logs.String()} {
			if strings.Contains(where, testSecret) || strings.Contains(where, "s3cr3t") {
				t.Fatalf("secret leaked: %q", where)
			}
		}
		if h := e.server(1).Health(); h != backend.HealthUp {
			t.Errorf("other node health %v", h)
		}
	})
}

func TestTokenProbeOwnInterval(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(testSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := testOptions()
	opts.Realm = testRealm
	opts.TokenProbe = TokenProbe{ClientID: testClientID, SecretFile: secretFile, Interval: 5 * time.Second}
	nodes := newNodes(t, 1)
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, nodes, opts)
		for range 10 {
			e.step()
		}
		ready, token := e.nodes[0].readyHits.Load(), e.nodes[0].tokenHits.Load()
		if ready != 11 || token != 3 {
			t.Fatalf("11 rounds made %d ready and %d token requests, want 11 and 3", ready, token)
		}
		// A single failure is retried at the next round and costs nothing.
		for range 4 {
			e.step() // up to the next token request (rounds 12..15)
		}
		e.nodes[0].tokenFail.Store(true)
		e.step() // round 16: token due, fails
		e.nodes[0].tokenFail.Store(false)
		e.step() // round 17: retried at once, passes
		if got := e.nodes[0].tokenHits.Load(); got != 5 {
			t.Fatalf("token requests after a failure and its retry: %d, want 5", got)
		}
		s := e.server(0)
		if s.Health() != backend.HealthUp || s.Detail().Fails != 0 {
			t.Fatalf("single token failure: health %v fails %d", s.Health(), s.Detail().Fails)
		}
	})
}

func TestLBCheckAndWellKnown(t *testing.T) {
	opts := testOptions()
	opts.LBCheck = true
	opts.WellKnown = true
	opts.Realm = testRealm
	nodes := newNodes(t, 1)
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, nodes, opts)
		e.step()
		if h := e.server(0).Health(); h != backend.HealthUp {
			t.Fatalf("health %v (detail %+v)", h, e.server(0).Detail())
		}
		e.nodes[0].lbDown.Store(true)
		for range e.opts.Fall {
			e.step()
		}
		if h := e.server(0).Health(); h != backend.HealthDown {
			t.Fatalf("health %v with lb-check DOWN, want down", h)
		}
		if r := e.server(0).Detail().Reason; !strings.Contains(r, "lb-check") {
			t.Errorf("reason %q", r)
		}
	})
}

func TestTrafficRefusedIsDead(t *testing.T) {
	opts := testOptions()
	opts.WellKnown = true
	opts.Realm = testRealm
	nodes := newNodes(t, 1)
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, nodes, opts)
		e.nodes[0].traffic.Close()
		for range e.opts.Fall {
			e.step()
		}
		if h := e.server(0).Health(); h != backend.HealthDead {
			t.Fatalf("health %v with the traffic port refusing, want dead", h)
		}
	})
}

func TestObserveHook(t *testing.T) {
	var oks, fails atomic.Int64
	opts := testOptions()
	opts.Observe = func(s *backend.Server, latency time.Duration, ok bool) {
		if latency < 0 {
			t.Errorf("negative latency")
		}
		if ok {
			oks.Add(1)
		} else {
			fails.Add(1)
		}
	}
	nodes := newNodes(t, 1)
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, nodes, opts)
		e.nodes[0].setReady(readyDBDown)
		e.step()
		e.step()
		if oks.Load() != 1 || fails.Load() != 2 {
			t.Fatalf("observed %d ok and %d failed rounds, want 1 and 2", oks.Load(), fails.Load())
		}
		if d := e.server(0).Detail(); d.LastCheck.IsZero() || d.Fails != 2 || !strings.Contains(d.LastResult, dbCheckName) {
			t.Fatalf("detail %+v", d)
		}
	})
}

func TestServersAddedAndRemovedAtRuntime(t *testing.T) {
	nodes := newNodes(t, 1)
	k := newFakeKC(t, "late", 2)
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, nodes, testOptions())
		e.pool.Add(k.spec())
		e.step() // the supervisor's resync starts a goroutine
		if k.readyHits.Load() == 0 {
			t.Fatal("server added at runtime was never checked")
		}
		e.pool.Remove("late")
		e.step() // the supervisor's resync stops the goroutine
		if n := e.checker.active.Load(); n != 1 {
			t.Fatalf("%d check goroutines after the removal, want 1", n)
		}
		hits := k.readyHits.Load()
		for range 3 {
			e.step()
		}
		if k.readyHits.Load() != hits {
			t.Fatalf("removed server still checked: %d hits after %d", k.readyHits.Load(), hits)
		}
	})
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{name: "bad scheme", opts: Options{Scheme: "ftp"}, want: "Scheme"},
		{name: "relative path", opts: Options{Path: "health/ready"}, want: "Path"},
		{name: "well-known without realm", opts: Options{WellKnown: true}, want: "Realm"},
		{name: "token without secret file", opts: Options{Realm: "r", TokenProbe: TokenProbe{ClientID: "c"}}, want: "SecretFile"},
		{name: "missing CA file", opts: Options{Scheme: "https", CAFile: "/nonexistent/ca.pem"}, want: "CAFile"},
		{name: "realm with slash", opts: Options{Realm: "a/b", WellKnown: true}, want: "Realm"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(func() []*backend.Server { return nil }, (*backend.Pool)(nil), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want mention of %s", err, tc.want)
			}
		})
	}
}

// TestWallClock runs the checker on the real clock with a small interval
// and jitter on, synchronising on the pool's events only.
func TestWallClock(t *testing.T) {
	k := newFakeKC(t, "node1", 1)
	events := make(chan event, 100)
	pool, err := backend.NewPool([]backend.Spec{k.spec()}, backend.PoolOptions{
		Slowstart: 50 * time.Millisecond,
		OnHealth: func(s *backend.Server, from, to backend.Health, reason string, panicMode bool) {
			if s != nil {
				events <- event{server: s.Name(), from: from, to: to, reason: reason}
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(pool.Servers, pool, Options{Interval: 10 * time.Millisecond, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	next := func() event {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case <-time.After(20 * time.Second):
			t.Fatal("no health event")
		}
		return event{}
	}
	k.setReady(readyDBDown)
	if ev := next(); ev.to != backend.HealthDown {
		t.Fatalf("event %+v, want down", ev)
	}
	k.setReady(readyUp)
	if ev := next(); ev.to != backend.HealthUp {
		t.Fatalf("event %+v, want up", ev)
	}
	s := pool.Servers()[0]
	waitFor(t, "slow start to finish", func() bool { return s.Weight() == 100 })
}
