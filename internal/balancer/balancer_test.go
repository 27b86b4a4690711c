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
