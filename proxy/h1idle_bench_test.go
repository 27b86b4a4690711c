package proxy

import (
	"net"
	"runtime"
	"runtime/metrics"
	"testing"
)

// BenchmarkH1IdleConn measures what an idle keep-alive client
// connection of kclb's HTTP/1.1 server holds after one proxied request
// (issue 16: ≤ 8 KiB each): b.N connections each send one request and
// stay open; then, after a collection, the growth of live heap objects
// and of goroutine stacks per connection is reported (heap-B/conn
// includes the client's own socket, about 0.4 KiB).
func BenchmarkH1IdleConn(b *testing.B) {
	addr := benchFront(b, newBenchHandler(b, rawBenchBackend(b), false), false)
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}}
	read := func() (heap, stacks float64) {
		runtime.GC()
		runtime.GC()
		metrics.Read(samples)
		return float64(samples[0].Value.Uint64()), float64(samples[1].Value.Uint64())
	}
	// A first connection warms the pools, the backend connection and
	// the stack-size estimate.
	warm := newRawBenchClient(b, addr)
	if err := warm.do(benchRequest); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 4<<10)
	heap0, stacks0 := read()
	conns := make([]net.Conn, 0, b.N)
	b.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range b.N {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := c.Write(benchRequest); err != nil {
			b.Fatal(err)
		}
		// The response (head and 955-byte body) arrives in one piece.
		if _, err := c.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
	heap1, stacks1 := read()
	b.ReportMetric((heap1-heap0)/float64(b.N), "heap-B/conn")
	b.ReportMetric((stacks1-stacks0)/float64(b.N), "stack-B/conn")
}
