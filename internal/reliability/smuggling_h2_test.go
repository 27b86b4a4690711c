package reliability

import (
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/kclb/kclb/internal/backend"
)

// TestSmugglingHTTP2 sends HTTP/2 requests that would be dangerous once
// downgraded to HTTP/1.1 for the backend: connection-specific headers
// and CR, LF or NUL inside names and values. The HTTP/2 layer must reset
// the stream (PROTOCOL_ERROR) or answer 400 before the handler runs, so
// nothing reaches
// the backend, and the same connection keeps serving valid requests.
func TestSmugglingHTTP2(t *testing.T) {
	rec := startRecorder(t)
	l := startLB(t, lbOptions{backends: []backend.Spec{{Addr: rec.addr}}})
	tests := []struct {
		name  string
		extra []string
	}{
		{"connection", []string{"connection", "keep-alive"}},
		{"transfer-encoding", []string{"transfer-encoding", "chunked"}},
		{"keep-alive", []string{"keep-alive", "timeout=5"}},
		{"proxy-connection", []string{"proxy-connection", "keep-alive"}},
		{"upgrade", []string{"upgrade", "h2c"}},
		{"te other than trailers", []string{"te", "gzip"}},
		{"CRLF in value", []string{"x-a", "a\r\nGET /echo?smuggled=1 HTTP/1.1"}},
		{"LF in value", []string{"x-a", "a\nx-b: b"}},
		{"CR in value", []string{"x-a", "a\rb"}},
		{"NUL in value", []string{"x-a", "a\x00b"}},
		{"CRLF in name", []string{"x-a\r\nx-b", "b"}},
		{"upper-case name", []string{"X-Upper", "b"}},
		{"space in name", []string{"x a", "b"}},
		{"colon in name", []string{"x:a", "b"}},
	}
	c := dialH2(t, l, 0)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := l.h.Stats().Requests
			id := c.get("/echo?smuggled=1", tc.extra...)
			res := c.wait(id, 5*time.Second)
			// net/http answers connection-specific headers with a 400 of
			// its own and resets streams whose fields are malformed.
			if !(res.reset && res.rst == http2.ErrCodeProtocol) && res.status != 400 {
				t.Errorf("got %+v, want RST_STREAM PROTOCOL_ERROR or 400", res)
			}
			if res.goaway || res.closed {
				t.Fatalf("connection lost: %+v", res)
			}
			if got := l.h.Stats().Requests - before; got != 0 {
				t.Errorf("handler ran %d times, want 0", got)
			}
			// The same connection still serves a valid request.
			if res := c.wait(c.get("/echo?ok=1"), 5*time.Second); res.status != 200 {
				t.Errorf("valid request after the reset: %+v", res)
			}
		})
	}
	// Pseudo-header abuse, sent as raw blocks.
	blocks := []struct {
		name   string
		fields []string
	}{
		{"no :path", []string{":method", "GET", ":scheme", "https", ":authority", "localhost"}},
		{"two :path", []string{":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/echo", ":path", "/admin/"}},
		{"pseudo after regular", []string{":method", "GET", ":scheme", "https", "x-a", "b", ":authority", "localhost", ":path", "/echo"}},
		{"unknown pseudo", []string{":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/echo", ":evil", "1"}},
		{"CRLF in :path", []string{":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/echo HTTP/1.1\r\nHost: x\r\n\r\nGET /admin/"}},
		{"CRLF in :method", []string{":method", "GET /admin/ HTTP/1.1\r\n", ":scheme", "https", ":authority", "localhost", ":path", "/echo"}},
	}
	for _, tc := range blocks {
		t.Run(tc.name, func(t *testing.T) {
			before := l.h.Stats().Requests
			res := c.wait(c.send(c.block(tc.fields...), true), 5*time.Second)
			if !res.reset && res.status != 400 {
				t.Errorf("got %+v, want a reset or 400", res)
			}
			if res.goaway || res.closed {
				t.Fatalf("connection lost: %+v", res)
			}
			if got := l.h.Stats().Requests - before; got != 0 {
				t.Errorf("handler ran %d times, want 0", got)
			}
		})
	}
	if rec.saw("smuggled") || rec.saw("admin") {
		t.Errorf("a rejected request reached the backend")
	}
	if got := rec.n.Load(); got != int64(len(tests)) {
		t.Errorf("backend got %d requests, want %d (the valid ones)", got, len(tests))
	}
}
