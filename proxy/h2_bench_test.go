package proxy

import (
	"bytes"
	"io"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/balancer"
	"github.com/kclb/kclb/internal/pathpolicy"
)

// BenchmarkH2Proxy proxies bodiless GETs from an in-memory HTTP/2
// connection (kclb's server) to the raw benchmark backend, 10 streams
// at a time, one op per request. The client reads frames without
// decoding them; its Framer allocates a HEADERS frame per response,
// which -benchmem counts too. cpu-ns/op is the process's CPU time per
// request, the client's included.
func BenchmarkH2Proxy(b *testing.B) {
	pool, err := backend.NewPool([]backend.Spec{{Name: "kc1", Addr: rawBenchBackend(b)}}, backend.PoolOptions{})
	if err != nil {
		b.Fatal(err)
	}
	h, err := New(Options{Pool: pool, Router: BalancerRouter{Selector: &balancer.RoundRobin{}}, Policy: pathpolicy.New(pathpolicy.Options{}),
		Security: NewSecurityHeaders("max-age=31536000; includeSubDomains", "nosniff", "no-referrer", "SAMEORIGIN")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(h.Close)
	conn, _, _ := h2pipe(b, h)
	defer conn.Close()
	fr := http2.NewFramer(conn, conn)
	fr.SetReuseFrames()
	io.WriteString(conn, http2.ClientPreface)
	fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30})
	fr.WriteWindowUpdate(0, 1<<30)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	enc.SetMaxDynamicTableSizeLimit(0) // the same block for every request
	for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "sso.example.com"}, {":path", "/realms/test/hello"}} {
		enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	block := hb.Bytes()
	const streams = 10
	next := uint32(1)
	send := func() {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: next, BlockFragment: block, EndStream: true, EndHeaders: true})
		next += 2
	}
	// Writes and reads share the goroutine: net.Pipe has no buffer, so
	// the server's writer must never wait for this client to read while
	// it writes. A second goroutine writes the requests.
	reqs := make(chan struct{}, streams)
	go func() {
		for range reqs {
			send()
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b)()
	for range min(streams, b.N) {
		reqs <- struct{}{}
	}
	sent := min(streams, b.N)
	for done := 0; done < b.N; {
		f, err := fr.ReadFrame()
		if err != nil {
			b.Fatal(err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
		case *http2.DataFrame:
			if f.StreamEnded() {
				done++
				if sent < b.N {
					sent++
					reqs <- struct{}{}
				}
			}
		case *http2.HeadersFrame:
			if f.StreamEnded() {
				b.Fatalf("response without a body")
			}
		case *http2.RSTStreamFrame:
			b.Fatalf("unexpected %v: %v after %d of %d", f, f.ErrCode, done, b.N)
		case *http2.GoAwayFrame:
			b.Fatalf("unexpected %v", f)
		}
	}
	b.StopTimer()
	close(reqs)
}
