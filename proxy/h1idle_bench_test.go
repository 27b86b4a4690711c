package proxy

import (
	"bytes"
	"net"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

// liveMemory returns the bytes of live heap objects and of goroutine
// stacks after a collection.
func liveMemory() (heap, stacks float64) {
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}}
	runtime.GC()
	runtime.GC()
	metrics.Read(samples)
	return float64(samples[0].Value.Uint64()), float64(samples[1].Value.Uint64())
}

// stackBytes returns the bytes of goroutine stacks now, without a
// collection.
func stackBytes() float64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(s)
	return float64(s[0].Value.Uint64())
}

// openRequests opens b.N client connections to addr, each sending one
// request, calls each after its write (to wait for what it needs), then
// settle (if not nil), and reports the growth of heap and stacks per
// connection under unit ("conn" or "req"). The connections are closed
// at cleanup.
func openRequests(b *testing.B, addr, unit string, each func(c net.Conn), settle func()) {
	openRequestsMeasured(b, addr, unit, each, settle, false)
}

// openRequestsMeasured is openRequests; with stacksFirst the stacks are
// read before the collection that measures the heap, so that a stack a
// goroutine grew and still holds is counted even if the collection
// would shrink it.
func openRequestsMeasured(b *testing.B, addr, unit string, each func(c net.Conn), settle func(), stacksFirst bool) {
	heap0, stacks0 := liveMemory()
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
		each(c)
	}
	if settle != nil {
		settle()
	}
	stacksBefore := stackBytes()
	heap1, stacks1 := liveMemory()
	if stacksFirst {
		stacks1 = stacksBefore
	}
	b.ReportMetric((heap1-heap0)/float64(b.N), "heap-B/"+unit)
	b.ReportMetric((stacks1-stacks0)/float64(b.N), "stack-B/"+unit)
}

// BenchmarkH1IdleConn measures what an idle keep-alive client
// connection of kclb's HTTP/1.1 server holds after one proxied request
// (issue 16: ≤ 8 KiB each): b.N connections each send one request and
// stay open; then, once every one moved its idle wait to a fresh
// goroutine (idleRestack) and after a collection, the growth of live
// heap objects and of goroutine stacks per connection is reported
// (heap-B/conn includes the client's own socket, about 0.4 KiB).
func BenchmarkH1IdleConn(b *testing.B) {
	addr, srv := benchServer(b, newBenchHandler(b, rawBenchBackend(b), false), false)
	// A first connection warms the pools, the backend connection and
	// the stack-size estimate.
	warm := newRawBenchClient(b, addr)
	if err := warm.do(benchRequest); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 4<<10)
	openRequests(b, addr, "conn", func(c net.Conn) {
		// The response (head and 955-byte body) arrives in one piece.
		if _, err := c.Read(buf); err != nil {
			b.Fatal(err)
		}
	}, func() {
		for srv.restacks.Load() < int64(b.N)+1 {
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// BenchmarkH1InFlight measures what a proxied request holds while it
// waits for its backend (RSS at c1000, issue 16: ≤ 1.25× HAProxy): b.N
// client connections each send a request the backend answers only once
// all have arrived; the growth of live heap objects and goroutine stacks
// per waiting request is reported (the client's, proxy's and backend's
// sockets and the backend's goroutines included).
func BenchmarkH1InFlight(b *testing.B) {
	addr, arrived := holdingBackend(b, 0)
	var backends []net.Conn
	b.Cleanup(func() {
		for _, c := range backends {
			c.Close()
		}
	})
	openRequests(b, addr, "req", func(net.Conn) { backends = append(backends, <-arrived) }, nil)
	for _, c := range backends {
		c.Write(rawBenchResponse)
	}
}

// holdingBackend starts a backend that answers the first answered
// requests of each connection with rawBenchResponse and then, on the
// next request head, sends the connection on the returned channel
// without answering; it returns kclb's address in front of it.
func holdingBackend(b *testing.B, answered int) (string, <-chan net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	arrived := make(chan net.Conn)
	done := make(chan struct{})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				var buf [512]byte
				for i := 0; ; i++ {
					n := 0
					for !bytes.Contains(buf[:n], []byte("\r\n\r\n")) {
						m, err := c.Read(buf[n:])
						if err != nil {
							c.Close()
							return
						}
						n += m
					}
					if i < answered {
						if _, err := c.Write(rawBenchResponse); err != nil {
							c.Close()
							return
						}
						continue
					}
					select {
					case arrived <- c:
					case <-done:
						c.Close()
					}
					return
				}
			}()
		}
	}()
	b.Cleanup(func() { close(done); ln.Close() })
	return benchFront(b, newBenchHandler(b, ln.Addr().String(), false), false), arrived
}

// BenchmarkH1InFlightKeepAlive is BenchmarkH1InFlight for the requests
// of a busy keep-alive connection (wrk at c1000): each of b.N
// connections is first served one request, then sends a second, which
// the backend answers only once all have arrived. What the second
// holds includes the goroutine stack grown while serving the first
// (the runtime shrinks stacks only in a collection, which a proxy that
// allocates nothing seldom runs), so the stacks are measured before the
// collection that measures the heap.
func BenchmarkH1InFlightKeepAlive(b *testing.B) {
	addr, arrived := holdingBackend(b, 1)
	var backends []net.Conn
	b.Cleanup(func() {
		for _, c := range backends {
			c.Close()
		}
	})
	want := len(rawBenchResponse)
	buf := make([]byte, 4<<10)
	openRequestsMeasured(b, addr, "req", func(c net.Conn) {
		// kclb's response is longer than the backend's (its own
		// headers added): read until the body's end.
		n := 0
		for n < want || !bytes.HasSuffix(buf[:n], []byte(benchBody)) {
			m, err := c.Read(buf[n:])
			if err != nil {
				b.Fatal(err)
			}
			n += m
		}
		if _, err := c.Write(benchRequest); err != nil {
			b.Fatal(err)
		}
		backends = append(backends, <-arrived)
	}, nil, true)
	for _, c := range backends {
		c.Write(rawBenchResponse)
	}
}
