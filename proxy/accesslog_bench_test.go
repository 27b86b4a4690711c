package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/kclb/kclb/internal/accesslog"
	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/pathpolicy"
)

// countObserver is an Observer that only counts, standing in for the
// metrics package (which imports proxy).
type countObserver struct{ n, bytes int64 }

func (o *countObserver) Request(_ *backend.Server, rec accesslog.Record) {
	o.n++
	o.bytes += rec.BytesOut
}
func (o *countObserver) Blocked(pathpolicy.Verdict) {}

// accessModes are the per-request reporting set-ups the access-log
// benchmarks compare.
var accessModes = []struct {
	name     string
	log      *accesslog.Logger
	observed bool
}{
	{name: "log=off"},
	{name: "log=off/observer", observed: true},
	{name: "log=text", log: accesslog.New(accesslog.Options{Out: io.Discard})},
	{name: "log=json", log: accesslog.New(accesslog.Options{Out: io.Discard, JSON: true})},
}

// BenchmarkAccessLogKeepAlive is BenchmarkH1Proxy (kclb's server and
// upstream client, a client and a backend that allocate nothing) with
// the access log off and on: the difference is what one record costs on
// the whole forwarding path.
func BenchmarkAccessLogKeepAlive(b *testing.B) {
	addr := rawBenchBackend(b)
	for _, m := range accessModes {
		b.Run(m.name, func(b *testing.B) {
			h := newBenchHandler(b, addr, false)
			h.opts.AccessLog = m.log
			if m.observed {
				h.opts.Observer = new(countObserver)
			}
			c := newRawBenchClient(b, benchFront(b, h, false))
			b.ReportAllocs()
			done := reportCPU(b)
			for b.Loop() {
				if err := c.do(benchRequest); err != nil {
					b.Fatal(err)
				}
			}
			done()
		})
	}
}

// BenchmarkAccessLogRefused calls ServeHTTP in-process for a request the
// path policy refuses, so nothing but the handler and the record is
// measured.
func BenchmarkAccessLogRefused(b *testing.B) {
	for _, m := range accessModes {
		b.Run(m.name, func(b *testing.B) {
			h := newBenchHandler(b, "127.0.0.1:1", false)
			h.opts.Policy = pathpolicy.New(pathpolicy.Options{Public: []string{"/realms/"}})
			h.opts.AccessLog = m.log
			if m.observed {
				h.opts.Observer = new(countObserver)
			}
			r := httptest.NewRequest("GET", "/metrics?x=1", nil)
			r.RemoteAddr = "192.0.2.7:50000"
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			done := reportCPU(b)
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, r)
			}
			done()
		})
	}
}

// discardWriter is a ResponseWriter that keeps nothing.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}
