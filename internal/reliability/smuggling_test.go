package reliability

import (
	"strings"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/backend"
)

// smuggled is appended to every request of TestSmugglingHTTP1: a second
// request that must never reach a backend through a desynchronised
// connection.
const smuggled = "GET /echo?smuggled=1 HTTP/1.1\r\nHost: a\r\n\r\n"

// Outcomes of a smuggling attempt.
const (
	refused   = iota // net/http refuses the head: ConnStats.Rejected, nothing forwarded
	badBody          // the handler got a broken body: Stats.BadRequests, 400
	reframed         // accepted and re-framed by kclb; the connection is closed after it
	forwarded        // a valid request (lenient but RFC-allowed parsing)
)

func TestSmugglingHTTP1(t *testing.T) {
	rec := startRecorder(t)
	l := startLB(t, lbOptions{backends: []backend.Spec{{Addr: rec.addr}}})
	const post = "POST /echo HTTP/1.1\r\nHost: a\r\n"
	tests := []struct {
		name    string
		req     string
		status  int
		outcome int
	}{
		{"content-length and transfer-encoding", post + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 200, reframed},
		{"transfer-encoding then content-length", post + "Transfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n", 200, reframed},
		{"conflicting content-length", post + "Content-Length: 1\r\nContent-Length: 2\r\n\r\nAB", 400, refused},
		{"content-length list", post + "Content-Length: 1, 2\r\n\r\nAB", 400, refused},
		{"content-length sign", post + "Content-Length: +1\r\n\r\nA", 400, refused},
		{"content-length negative", post + "Content-Length: -1\r\n\r\n", 400, refused},
		{"content-length hex", post + "Content-Length: 0x1\r\n\r\nA", 400, refused},
		{"te chunked comma", post + "Transfer-Encoding: chunked ,\r\n\r\n0\r\n\r\n", 501, refused},
		{"te xchunked", post + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501, refused},
		{"te twice", post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501, refused},
		{"te gzip chunked", post + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, refused},
		{"te identity", post + "Transfer-Encoding: identity\r\nContent-Length: 1\r\n\r\nA", 501, refused},
		{"te tab in name", post + "Transfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n", 400, refused},
		{"te space before colon", post + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400, refused},
		{"te tab before value", post + "Transfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n", 200, reframed},
		{"te upper case", post + "Transfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n", 200, reframed},
		{"te obs-fold", post + "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 200, reframed},
		// Faulty framing (RFC 9112 6.1; issue 12, item 7).
		{"te on http/1.0", "POST /echo HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, refused},
		{"bare LF line endings", "GET /echo HTTP/1.1\nHost: a\nConnection: close\n\n", 200, forwarded},
		{"bare CR in header", "GET /echo HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", 400, refused},
		{"NUL in header value", "GET /echo HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400, refused},
		{"two Host headers", "GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, refused},
		{"no Host header", "GET /echo HTTP/1.1\r\n\r\n", 400, refused},
		{"chunk size not hex", post + "Transfer-Encoding: chunked\r\n\r\nzz\r\nAB\r\n0\r\n\r\n", 400, badBody},
		{"chunk size negative", post + "Transfer-Encoding: chunked\r\n\r\n-1\r\nAB\r\n0\r\n\r\n", 400, badBody},
		{"chunk size overflow", post + "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nAB\r\n0\r\n\r\n", 400, badBody},
		{"chunk size 0x prefix", post + "Transfer-Encoding: chunked\r\n\r\n0x2\r\nAB\r\n0\r\n\r\n", 400, badBody},
		{"chunk data overrun", post + "Transfer-Encoding: chunked\r\n\r\n2\r\nABXX0\r\n\r\n", 400, badBody},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, beforeConns, beforeRec := l.h.Stats(), l.conns.Counts(), rec.n.Load()
			res := rawHTTP(t, l.addr, tc.req+smuggled, 5*time.Second)
			if got := res.status(); got != tc.status {
				t.Errorf("status %d, want %d (response %q)", got, tc.status, res.data)
			}
			if !res.closed {
				t.Errorf("connection left open after %q", res.data)
			}
			if n := strings.Count(res.data, "HTTP/1."); n != 1 {
				t.Errorf("%d responses on the connection, want 1: %q", n, res.data)
			}
			l.idle(t)
			after, afterConns, afterRec := l.h.Stats(), l.conns.Counts(), rec.n.Load()
			if rec.saw("smuggled") {
				t.Fatalf("the smuggled request reached the backend")
			}
			rejected := afterConns.Rejected - beforeConns.Rejected
			bad := after.BadRequests - before.BadRequests
			reached := afterRec - beforeRec
			switch tc.outcome {
			case refused:
				if rejected != 1 || reached != 0 || after.Requests != before.Requests {
					t.Errorf("refused: ConnStats.Rejected +%d (want +1), handler requests +%d (want 0), backend requests +%d (want 0)",
						rejected, after.Requests-before.Requests, reached)
				}
			case badBody:
				if bad != 1 || rejected != 0 {
					t.Errorf("broken body: Stats.BadRequests +%d (want +1), Rejected +%d (want 0)", bad, rejected)
				}
				// The backend may have seen the head of the request before
				// the body broke; it never sees a complete one.
			case reframed:
				if !strings.Contains(res.data, "Connection: close") || reached != 1 {
					t.Errorf("re-framed: want Connection: close and one request at the backend, got %d: %q", reached, res.data)
				}
			case forwarded:
				if reached != 1 {
					t.Errorf("forwarded: backend requests +%d, want 1", reached)
				}
			}
		})
	}
	if s := l.pool.Servers()[0]; s.Health() != backend.HealthUp {
		t.Errorf("server %v after smuggling attempts, want up", s.Health())
	}
}
