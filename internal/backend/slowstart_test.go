package backend

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestRampWeight(t *testing.T) {
	tests := []struct {
		name               string
		weight             int
		elapsed, slowstart time.Duration
		want               int
		done               bool
	}{
		{name: "start", weight: 100, elapsed: 0, slowstart: 10 * time.Second, want: 1},
		{name: "a tenth", weight: 100, elapsed: time.Second, slowstart: 10 * time.Second, want: 10},
		{name: "almost", weight: 100, elapsed: 10*time.Second - 1, slowstart: 10 * time.Second, want: 99},
		{name: "end", weight: 100, elapsed: 10 * time.Second, slowstart: 10 * time.Second, want: 100, done: true},
		{name: "after", weight: 7, elapsed: time.Hour, slowstart: time.Second, want: 7, done: true},
		{name: "off", weight: 50, elapsed: 0, slowstart: 0, want: 50, done: true},
		{name: "clock stepped back", weight: 100, elapsed: -time.Second, slowstart: time.Second, want: 1},
		{name: "largest weight", weight: 1000, elapsed: 59 * time.Second, slowstart: 60 * time.Second, want: 983},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, done := rampWeight(tc.weight, tc.elapsed, tc.slowstart)
			if w != tc.want || done != tc.done {
				t.Fatalf("rampWeight(%d, %s, %s) = %d, %v; want %d, %v", tc.weight, tc.elapsed, tc.slowstart, w, done, tc.want, tc.done)
			}
		})
	}
}

// TestSlowStart runs in a synctest bubble: the pool's clock is the
// bubble's, so the ramp is read at exact points of a 10 s slow start.
func TestSlowStart(t *testing.T) { synctest.Test(t, testSlowStart) }

func testSlowStart(t *testing.T) {
	p := newTestPool(t, 2, PoolOptions{Slowstart: 10 * time.Second})
	a, b := p.Lookup("a"), p.Lookup("b")
	if a.Weight() != 100 || b.Weight() != 100 {
		t.Fatalf("servers of a new pool at %d, %d; want full weight", a.Weight(), b.Weight())
	}
	p.SetHealth(a, HealthDown, Detail{Reason: "check failed"})
	if w := a.Weight(); w != 100 {
		t.Fatalf("down server weight %d, want 100 (no ramp while not up)", w)
	}
	time.Sleep(time.Minute) // time down does not count
	if !p.CompareAndSetHealth(a, HealthDown, HealthUp, Detail{Reason: "back"}) {
		t.Fatal("CompareAndSetHealth refused")
	}
	last := a.Weight()
	if last != 1 {
		t.Fatalf("weight right after return %d, want 1", last)
	}
	for i := 1; i <= 10; i++ {
		time.Sleep(time.Second)
		w := a.Weight()
		if want := min(10*i, 100); w != want {
			t.Fatalf("after %d s weight %d, want %d", i, w, want)
		}
		if w < last {
			t.Fatalf("weight went down: %d after %d", w, last)
		}
		last = w
	}
	if a.rampFrom.Load() != 0 {
		t.Error("ramp not cleared after it ended: Weight keeps reading the clock")
	}

	// Leaving Up mid-ramp ends it; the next return starts from 0.
	p.SetHealth(b, HealthStarting, Detail{})
	p.SetHealth(b, HealthUp, Detail{})
	time.Sleep(5 * time.Second)
	if w := b.Weight(); w != 50 {
		t.Fatalf("halfway weight %d, want 50", w)
	}
	p.ObserveFailure(b, "x") // PassiveFails 3: not yet
	p.SetHealth(b, HealthDead, Detail{})
	if w := b.Weight(); w != 100 {
		t.Fatalf("dead server weight %d, want 100", w)
	}
	p.SetHealth(b, HealthUp, Detail{})
	if w := b.Weight(); w != 1 {
		t.Fatalf("weight after second return %d, want 1", w)
	}

	// A reload may change the ramp: it applies to ramps in progress.
	p.SetSlowstart(20 * time.Second)
	time.Sleep(5 * time.Second)
	if w := b.Weight(); w != 25 {
		t.Fatalf("weight 5 s into a 20 s ramp %d, want 25", w)
	}
	p.SetSlowstart(0)
	if w := b.Weight(); w != 100 {
		t.Fatalf("weight with slow start off %d, want 100", w)
	}
}

// TestSlowStartOnJoin: a server that joins a running pool (discovery's
// Add, a reload's new name) ramps; one a reload only changed keeps its
// ramp; the servers a pool starts with do not ramp.
func TestSlowStartOnJoin(t *testing.T) { synctest.Test(t, testSlowStartOnJoin) }

func testSlowStartOnJoin(t *testing.T) {
	p := newTestPool(t, 1, PoolOptions{Slowstart: 10 * time.Second})
	added := p.Add(Spec{Name: "added", Addr: "127.0.0.1:2"})
	if w := added.Weight(); w != 1 {
		t.Fatalf("added server weight %d, want 1", w)
	}
	if again := p.Add(Spec{Name: "added"}); again != added || again.Weight() != 1 {
		t.Fatal("adding an existing name replaced or re-ramped it")
	}
	time.Sleep(4 * time.Second)
	err := p.Reconcile([]Spec{
		{Name: "a", Addr: "127.0.0.1:1"},
		{Name: "added", Addr: "127.0.0.1:2", Weight: 200}, // changed
		{Name: "new", Addr: "127.0.0.1:3"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if w := p.Lookup("a").Weight(); w != 100 {
		t.Fatalf("unchanged server weight %d, want 100", w)
	}
	if w := p.Lookup("added").Weight(); w != 80 {
		t.Fatalf("changed server weight %d, want 80 (4 s of its 10 s ramp, weight 200)", w)
	}
	if w := p.Lookup("new").Weight(); w != 1 {
		t.Fatalf("new server weight %d, want 1", w)
	}

	off := newTestPool(t, 1, PoolOptions{})
	if w := off.Add(Spec{Name: "x"}).Weight(); w != 100 {
		t.Fatalf("weight without slow start %d, want 100", w)
	}
}

// BenchmarkWeight is the balancer's read of a server's weight, outside
// and during slow start: neither may allocate.
func BenchmarkWeight(b *testing.B) {
	p, err := NewPool([]Spec{{Name: "steady"}}, PoolOptions{Slowstart: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	steady := p.Lookup("steady")
	ramping := p.Add(Spec{Name: "ramping"})
	b.Run("steady", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = steady.Weight()
		}
	})
	b.Run("ramping", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = ramping.Weight()
		}
	})
}
