package backend

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func newTestPool(t *testing.T, n int, opts PoolOptions) *Pool {
	t.Helper()
	var specs []Spec
	for i := range n {
		specs = append(specs, Spec{Name: string(rune('a' + i)), Addr: "127.0.0.1:1"})
	}
	p, err := NewPool(specs, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPanicMode(t *testing.T) {
	tests := []struct {
		name      string
		n         int
		threshold float64
		down      int
		wantPanic bool
	}{
		{"one of two down", 2, 0, 1, false},
		{"all down", 2, 0, 2, true},
		{"threshold crossed", 4, 0.5, 3, true},
		{"threshold held", 4, 0.5, 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestPool(t, tt.n, PoolOptions{PanicThreshold: tt.threshold})
			for _, s := range p.Servers()[:tt.down] {
				p.SetHealth(s, HealthDown, Detail{Reason: "db down"})
			}
			if p.Panic() != tt.wantPanic {
				t.Fatalf("panic = %v, want %v", p.Panic(), tt.wantPanic)
			}
			// In panic mode Down (live) servers take traffic; Dead never.
			d := p.Servers()[0]
			if d.Available() != tt.wantPanic {
				t.Fatalf("down server available = %v in panic=%v", d.Available(), tt.wantPanic)
			}
			p.SetHealth(d, HealthDead, Detail{})
			if d.Available() {
				t.Fatal("dead server available")
			}
		})
	}
}

func TestAvailabilityEdges(t *testing.T) {
	var edges []bool
	p := newTestPool(t, 2, PoolOptions{OnAvailable: func(up bool) { edges = append(edges, up) }})
	a, b := p.Servers()[0], p.Servers()[1]
	p.SetHealth(a, HealthDead, Detail{})
	p.SetHealth(b, HealthDead, Detail{})
	p.SetHealth(a, HealthUp, Detail{})
	want := []bool{true, false, true}
	if len(edges) != len(want) {
		t.Fatalf("edges %v, want %v", edges, want)
	}
	for i := range want {
		if edges[i] != want[i] {
			t.Fatalf("edges %v, want %v", edges, want)
		}
	}
}

func TestPassiveEjection(t *testing.T) {
	p := newTestPool(t, 3, PoolOptions{PassiveFails: 3})
	s := p.Servers()[0]
	p.ObserveFailure(s, "connect: refused")
	p.ObserveFailure(s, "connect: refused")
	p.ObserveSuccess(s)
	p.ObserveFailure(s, "connect: refused")
	p.ObserveFailure(s, "connect: refused")
	if s.Health() != HealthUp {
		t.Fatalf("ejected before 3 consecutive failures")
	}
	p.ObserveFailure(s, "connect: refused")
	// Down, not Dead: panic mode may still use it (issue 18, item 2).
	if s.Health() != HealthDown || s.Detail().Reason == "" {
		t.Fatalf("health %v reason %q after 3 failures, want down with a reason", s.Health(), s.Detail().Reason)
	}
	for _, x := range p.Servers()[1:] {
		p.SetHealth(x, HealthDown, Detail{Reason: "db down"})
	}
	if !p.Panic() || !s.Available() {
		t.Fatalf("panic %v, ejected server available %v: want panic mode to use it", p.Panic(), s.Available())
	}
}

// TestPassiveEjectionCap pins issue 18, item 2: passive detection never
// holds out more than MaxEjectionPercent of the servers (at least one)
// nor the last Up server taking new clients, whatever fails.
func TestPassiveEjectionCap(t *testing.T) {
	tests := []struct {
		name    string
		n       int
		percent int
		maint   int // servers in maintenance (not counted)
		dead    int // servers dead by active checks
		want    int // ejected when every server fails
	}{
		{name: "one server", n: 1, want: 0},
		{name: "two servers", n: 2, want: 1},
		{name: "three servers, default", n: 3, want: 1},
		{name: "six servers, default", n: 6, want: 2},
		{name: "ten servers, default", n: 10, want: 3},
		{name: "three servers, 10 percent", n: 3, percent: 10, want: 1},
		{name: "four servers, 50 percent", n: 4, percent: 50, want: 2},
		{name: "three servers, 100 percent", n: 3, percent: 100, want: 2},
		{name: "maintenance not counted", n: 6, maint: 3, want: 1},
		{name: "two of three dead", n: 3, dead: 2, want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestPool(t, tc.n, PoolOptions{PassiveFails: 1, MaxEjectionPercent: tc.percent})
			servers := p.Servers()
			for _, s := range servers[:tc.maint] {
				p.SetAdmin(s.Name(), AdminMaint)
			}
			for _, s := range servers[tc.maint : tc.maint+tc.dead] {
				p.SetHealth(s, HealthDead, Detail{Reason: "live check failed"})
			}
			for range 3 {
				for _, s := range servers[tc.maint:] { // maintenance gets no traffic
					p.ObserveFailure(s, "connect: refused")
				}
			}
			got := 0
			for _, s := range servers {
				if s.Health() == HealthDown {
					got++
				}
			}
			if got != tc.want {
				t.Fatalf("%d servers ejected, want %d", got, tc.want)
			}
			if tc.want < tc.n-tc.maint-tc.dead && p.EjectionsCapped() == 0 {
				t.Error("refused ejections not counted")
			}
		})
	}
}

// TestPassiveEjectionSlotFreed: once an ejected server is back (the
// checker's rise), another may be ejected; a reload keeps the count.
func TestPassiveEjectionSlotFreed(t *testing.T) {
	p := newTestPool(t, 3, PoolOptions{PassiveFails: 1})
	a, b := p.Lookup("a"), p.Lookup("b")
	p.ObserveFailure(a, "connect: refused")
	p.ObserveFailure(b, "connect: refused")
	if a.Health() != HealthDown || b.Health() != HealthUp {
		t.Fatalf("a %v b %v, want a down, b up (cap of one)", a.Health(), b.Health())
	}
	if err := p.Reconcile([]Spec{{Name: "a", Addr: "127.0.0.1:9"}, {Name: "b", Addr: "127.0.0.1:1"}, {Name: "c", Addr: "127.0.0.1:1"}}); err != nil {
		t.Fatal(err)
	}
	a = p.Lookup("a")
	p.ObserveFailure(b, "connect: refused")
	if a.Health() != HealthDown || b.Health() != HealthUp {
		t.Fatalf("after reload: a %v b %v, want the ejection still counted", a.Health(), b.Health())
	}
	p.SetHealth(a, HealthUp, Detail{Reason: "ready"})
	p.ObserveFailure(b, "connect: refused")
	if b.Health() != HealthDown {
		t.Fatalf("b %v after a returned, want down", b.Health())
	}
}

func TestAdminStates(t *testing.T) {
	p := newTestPool(t, 1, PoolOptions{})
	s := p.Servers()[0]
	for _, tc := range []struct {
		a                 AdminState
		avail, acceptsPin bool
	}{{AdminReady, true, true}, {AdminDrain, false, true}, {AdminMaint, false, false}} {
		if err := p.SetAdmin("a", tc.a); err != nil {
			t.Fatal(err)
		}
		if s.Available() != tc.avail || s.AcceptsPinned() != tc.acceptsPin {
			t.Fatalf("%v: available %v pinned %v", tc.a, s.Available(), s.AcceptsPinned())
		}
	}
	if err := p.SetAdmin("nope", AdminDrain); err == nil {
		t.Fatal("unknown server accepted")
	}
}

func TestReconcile(t *testing.T) {
	p := newTestPool(t, 3, PoolOptions{})
	a, b := p.Lookup("a"), p.Lookup("b")
	p.SetAdmin("b", AdminDrain)
	p.SetHealth(b, HealthDown, Detail{Reason: "x"})
	err := p.Reconcile([]Spec{
		{Name: "a", Addr: "127.0.0.1:1"}, // unchanged
		{Name: "b", Addr: "127.0.0.1:2"}, // changed address
		{Name: "d", Addr: "127.0.0.1:4"}, // new; c removed
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.Lookup("a") != a {
		t.Fatal("unchanged server replaced")
	}
	nb := p.Lookup("b")
	if nb == b || nb.Addr() != "127.0.0.1:2" || nb.Admin() != AdminDrain || nb.Health() != HealthDown {
		t.Fatalf("changed server: same=%v addr %s admin %v health %v", nb == b, nb.Addr(), nb.Admin(), nb.Health())
	}
	if p.Lookup("c") != nil || p.Lookup("d") == nil {
		t.Fatal("membership not reconciled")
	}
	if err := p.Reconcile([]Spec{{Name: "x"}, {Name: "x"}}); err == nil {
		t.Fatal("duplicate names accepted")
	}
}

// TestAcquireQueue runs in a synctest bubble: synctest.Wait returns once
// the waiter is blocked in its queue.
func TestAcquireQueue(t *testing.T) { synctest.Test(t, testAcquireQueue) }

func testAcquireQueue(t *testing.T) {
	s := NewServer(Spec{Name: "a", MaxConn: 1}, nil)
	ctx := context.Background()
	at := time.Now().Add(-time.Hour)
	if queued, err := s.AcquireAt(ctx, 1, time.Second, at); err != nil || queued {
		t.Fatalf("a free slot: queued %v, %v", queued, err)
	}
	if !s.LastUse().Equal(at) {
		t.Fatalf("LastUse %v, want the caller's %v", s.LastUse(), at)
	}
	// One waiter fits the queue and gets the slot when it is released.
	got := make(chan error, 1)
	go func() {
		queued, err := s.AcquireAt(ctx, 1, time.Minute, time.Now())
		if err == nil && !queued {
			err = errors.New("a slot taken after waiting reported no wait")
		}
		got <- err
	}()
	synctest.Wait()
	if q := s.Queued(); q != 1 {
		t.Fatalf("queued %d, want 1", q)
	}
	if err := s.Acquire(ctx, 1, time.Minute); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("second waiter: %v, want ErrQueueFull", err)
	}
	s.Release()
	if err := <-got; err != nil {
		t.Fatalf("queued waiter: %v", err)
	}
	if err := s.Acquire(ctx, 0, time.Millisecond); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("zero queue: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Acquire(cctx, 1, time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	s.Release()
	if s.InFlight() != 0 {
		t.Fatalf("in flight %d", s.InFlight())
	}
}

// TestPassiveEjectionEndsWithoutChecks: a passively ejected server that
// no active check watches is back after EjectionTime; one the checker
// reported on since stays out until the checker brings it back. It runs
// in a synctest bubble, so the 30 s default is waited for exactly.
func TestPassiveEjectionEndsWithoutChecks(t *testing.T) {
	synctest.Test(t, testPassiveEjectionEndsWithoutChecks)
}

func testPassiveEjectionEndsWithoutChecks(t *testing.T) {
	p := newTestPool(t, 3, PoolOptions{PassiveFails: 1, MaxEjectionPercent: 100})
	a, b := p.Lookup("a"), p.Lookup("b")
	p.ObserveFailure(a, "connect: refused")
	p.ObserveFailure(b, "connect: refused")
	if a.Health() != HealthDown || b.Health() != HealthDown {
		t.Fatalf("a %v b %v, want both down", a.Health(), b.Health())
	}
	d := b.Detail()
	d.LastCheck = time.Now().Add(time.Second) // the checker looked after the ejection
	p.SetHealth(b, HealthDown, d)
	time.Sleep(30*time.Second - time.Nanosecond)
	synctest.Wait()
	if a.Health() != HealthDown {
		t.Fatalf("a %v before EjectionTime, want down", a.Health())
	}
	time.Sleep(time.Nanosecond)
	synctest.Wait()
	if a.Health() != HealthUp {
		t.Fatalf("a still %v (%s)", a.Health(), a.Detail().Reason)
	}
	if r := a.Detail().Reason; !strings.Contains(r, "without active checks") {
		t.Errorf("reason %q", r)
	}
	// b's timer fired at the same instant as a's.
	if b.Health() != HealthDown {
		t.Errorf("checked server b %v, want still down", b.Health())
	}
}

// TestBackupServers pins issue 14, item 5: a backup server takes new
// clients only while no other server is Up and ready, before panic mode;
// panic mode starts only when the backups are down too.
func TestBackupServers(t *testing.T) {
	var edges []bool
	p, err := NewPool([]Spec{{Name: "a"}, {Name: "b"}, {Name: "spare", Backup: true}},
		PoolOptions{OnAvailable: func(up bool) { edges = append(edges, up) }})
	if err != nil {
		t.Fatal(err)
	}
	a, b, spare := p.Lookup("a"), p.Lookup("b"), p.Lookup("spare")
	avail := func() string {
		var out []string
		for _, s := range p.Servers() {
			if s.Available() {
				out = append(out, s.Name())
			}
		}
		return strings.Join(out, ",")
	}
	if got := avail(); got != "a,b" || p.Backups() || !spare.Backup() {
		t.Fatalf("all up: available %q, backups in use %v", got, p.Backups())
	}
	p.SetHealth(a, HealthDown, Detail{Reason: "test"})
	if got := avail(); got != "b" {
		t.Fatalf("one primary down: available %q, want b", got)
	}
	if err := p.SetAdmin("b", AdminDrain); err != nil {
		t.Fatal(err)
	}
	if got := avail(); got != "spare" || !p.Backups() || p.Panic() {
		t.Fatalf("no primary ready: available %q, backups %v, panic %v; want the backup only, no panic", got, p.Backups(), p.Panic())
	}
	if !b.AcceptsPinned() {
		t.Fatal("a draining primary that is up refuses its pinned clients")
	}
	p.SetAdmin("b", AdminReady)
	if got := avail(); got != "b" || p.Backups() {
		t.Fatalf("primary back: available %q, backups %v", got, p.Backups())
	}
	p.SetHealth(b, HealthDown, Detail{Reason: "test"})
	if got := avail(); got != "spare" || p.Panic() {
		t.Fatalf("every primary down: available %q, panic %v", got, p.Panic())
	}
	p.SetHealth(spare, HealthDown, Detail{Reason: "test"})
	if got := avail(); got != "a,b,spare" || !p.Panic() {
		t.Fatalf("everything down: available %q, panic %v; want panic mode over every live server", got, p.Panic())
	}
	p.SetHealth(a, HealthUp, Detail{})
	if got := avail(); got != "a" || p.Panic() || p.Backups() {
		t.Fatalf("a primary up again: available %q, panic %v, backups %v", got, p.Panic(), p.Backups())
	}
	for i, up := range edges {
		if !up {
			t.Fatalf("availability edge %d went down although a server always took clients: %v", i, edges)
		}
	}
	// A pool of backups alone uses them.
	only, _ := NewPool([]Spec{{Name: "x", Backup: true}}, PoolOptions{})
	if !only.Servers()[0].Available() {
		t.Fatal("a pool of backup servers only takes no traffic")
	}
	// Outside a pool a backup server is an ordinary one.
	if !NewServer(Spec{Name: "y", Backup: true}, nil).Available() {
		t.Fatal("a lone backup server is not available")
	}
}
