package balancer

import (
	"testing"
	"time"

	"github.com/kclb/kclb/internal/backend"
)

func servers(weights ...int) []*backend.Server {
	var out []*backend.Server
	for i, w := range weights {
		out = append(out, backend.NewServer(backend.Spec{Name: string(rune('a' + i)), Weight: w}, nil))
	}
	return out
}

func TestRoundRobinWeights(t *testing.T) {
	ss := servers(100, 200, 100)
	rr := &RoundRobin{}
	got := map[string]int{}
	for range 400 {
		got[rr.Select(nil, ss, nil).Name()]++
	}
	if got["a"] != 100 || got["b"] != 200 || got["c"] != 100 {
		t.Fatalf("shares %v, want 100/200/100", got)
	}
}

func TestSkipsUnavailableAndTried(t *testing.T) {
	for _, sel := range []Selector{&RoundRobin{}, LeastRequest{}} {
		ss := servers(100, 100, 100)
		ss[0].SetAdmin(backend.AdminDrain)
		var tried Tried
		tried.Add(ss[1])
		for range 20 {
			if s := sel.Select(nil, ss, &tried); s != ss[2] {
				t.Fatalf("%T picked %v", sel, s)
			}
		}
		tried.Add(ss[2])
		if s := sel.Select(nil, ss, &tried); s != nil {
			t.Fatalf("%T picked %v with nothing eligible", sel, s.Name())
		}
	}
}

func TestLeastRequestPrefersIdle(t *testing.T) {
	ss := servers(100, 100)
	// Load a with 10 in-flight requests.
	for range 10 {
		ss[0].Acquire(t.Context(), 0, 0)
	}
	for range 50 {
		if s := (LeastRequest{}).Select(nil, ss, nil); s != ss[1] {
			t.Fatalf("picked the busy server")
		}
	}
}

func TestNew(t *testing.T) {
	if _, err := New("bogus"); err == nil {
		t.Fatal("unknown policy accepted")
	}
}

func BenchmarkLeastRequest(b *testing.B) {
	ss := servers(100, 100, 100)
	b.ReportAllocs()
	for b.Loop() {
		LeastRequest{}.Select(nil, ss, nil)
	}
}

func BenchmarkRoundRobin(b *testing.B) {
	ss := servers(100, 100, 100)
	rr := &RoundRobin{}
	b.ReportAllocs()
	for b.Loop() {
		rr.Select(nil, ss, nil)
	}
}

// BenchmarkSlowStart is both policies over three servers of which one is
// in slow start (its weight is computed from the clock on every read):
// like the steady case, it must not allocate.
func BenchmarkSlowStart(b *testing.B) {
	p, err := backend.NewPool([]backend.Spec{{Name: "a"}, {Name: "b"}}, backend.PoolOptions{Slowstart: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	p.Add(backend.Spec{Name: "ramping"})
	ss := p.Servers()
	b.Run("least_request", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			LeastRequest{}.Select(nil, ss, nil)
		}
	})
	b.Run("round_robin", func(b *testing.B) {
		rr := &RoundRobin{}
		b.ReportAllocs()
		for b.Loop() {
			rr.Select(nil, ss, nil)
		}
	})
}

// TestRoundRobinFollowsServers pins that a server's share follows the
// server, not its place in the slice: the pool's slice is reordered, and
// after 50 servers joined for one pick each and left, the state stays
// bounded and the weights still hold.
func TestRoundRobinFollowsServers(t *testing.T) {
	ss := servers(100, 300)
	rr := &RoundRobin{}
	got := map[string]int{}
	for i := range 400 {
		view := ss
		if i%2 == 1 {
			view = []*backend.Server{ss[1], ss[0]}
		}
		got[rr.Select(nil, view, nil).Name()]++
	}
	if got["a"] != 100 || got["b"] != 300 {
		t.Fatalf("shares with a reordered slice %v, want 100/300", got)
	}
	// Many servers come and go: the state stays bounded and the two
	// remaining servers keep their shares.
	for i := range 50 {
		extra := servers(100)
		rr.Select(nil, append([]*backend.Server{extra[0]}, ss...), nil)
		if n := len(rr.current); n > 2*3+8+1 {
			t.Fatalf("after %d departures, %d slots held", i, n)
		}
	}
	clear(got)
	for range 400 {
		got[rr.Select(nil, ss, nil).Name()]++
	}
	if got["a"] < 99 || got["a"] > 101 || got["b"] < 299 || got["b"] > 301 {
		t.Fatalf("shares after departures %v, want 100/300", got)
	}
}

// BenchmarkRoundRobinParallel is the policy under contention from every P,
// as at 1000 connections: the lock's hold time is what it measures.
func BenchmarkRoundRobinParallel(b *testing.B) {
	ss := servers(100, 100, 100)
	rr := &RoundRobin{}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rr.Select(nil, ss, nil)
		}
	})
}
