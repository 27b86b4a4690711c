package health

import (
	"context"
	"testing"

	"github.com/kclb/kclb/internal/backend"
)

func BenchmarkParseHealth(b *testing.B) {
	body := []byte(bodyReadyDown)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		r, err := ParseHealth(body)
		if err != nil || r.Up() {
			b.Fatal("unexpected verdict")
		}
	}
}

// BenchmarkReadinessRound measures one readiness check against a loopback
// node, with a new connection per check as in production.
func BenchmarkReadinessRound(b *testing.B) {
	k := newFakeKC(b, "node1", 1)
	s := backend.NewServer(k.spec(), nil)
	c, err := New(nil, nil, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if r := c.readiness(context.Background(), s); !r.ok {
			b.Fatal(r.reason)
		}
	}
}
