package proxy

import (
	"io"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/kclb/kclb/internal/accesslog"
)

// Request bodies are read before a server slot is taken (issue 12,
// item 6): a client that sends its body slowly must not hold a slot, a
// backend connection and a Keycloak worker while it does. A body of at
// most Options.BodyBufferBytes is read completely into memory under
// Options.BodyTimeout and then sent with a Content-Length; of a larger
// body that many bytes are read first and the rest streams behind them.
// While it reads, the request counts against a per-client-address cap
// (Options.BodyWaitsPerClient), so that one address cannot park
// thousands of connections there either.

// bodyChunk is the first read buffer for a body of unknown length (and
// the largest first buffer for a declared one); it doubles up to the
// bound as bytes arrive, so memory follows what the client really sent.
const bodyChunk = 16 << 10

// buffer reads up to limit bytes of the body from b.rc into b.buf.
// declared is the request's Content-Length (-1 if unknown). It returns
// whether the whole body is in b.buf, or the error the read failed with
// (also recorded as b.clientErr).
func (b *retryBody) buffer(declared, limit int64) (bool, error) {
	size := int64(bodyChunk)
	if declared >= 0 {
		size = min(declared, limit, bodyChunk)
		if declared <= limit {
			size = declared // one allocation of the exact size: the common case
		}
	}
	buf := make([]byte, 0, max(size, 1))
	for int64(len(buf)) < limit {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(int64(2*cap(buf)), limit))
			copy(grown, buf)
			buf = grown
		}
		n, err := b.readRC(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			b.buf, b.full = buf, true
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
	b.buf = buf
	if declared == int64(len(buf)) {
		// All of it; only the EOF is still to be read.
		var one [1]byte
		n, err := b.readRC(one[:])
		if n == 0 && err == io.EOF {
			b.full = true
			return true, nil
		}
		if n > 0 {
			b.buf = append(b.buf, one[0])
		} else if err != nil {
			return false, err
		}
	}
	return false, nil
}

// waitTable counts, per client address, the requests waiting for their
// body. Memory is bounded by the number of requests waiting: an entry
// goes away when its count returns to zero. The zero value is unusable;
// a nil *waitTable admits everyone.
type waitTable struct {
	max int32

	mu sync.Mutex // guards n
	n  map[netip.Addr]int32
}

func newWaitTable(max int) *waitTable {
	if max <= 0 {
		return nil
	}
	return &waitTable{max: int32(max), n: make(map[netip.Addr]int32)}
}

// acquire admits one more waiting request from a, or reports false when
// a already has max of them.
func (t *waitTable) acquire(a netip.Addr) bool {
	if t == nil {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.n[a]
	if c >= t.max {
		return false
	}
	t.n[a] = c + 1
	return true
}

// release ends a wait acquire admitted.
func (t *waitTable) release(a netip.Addr) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.n[a] - 1; c > 0 {
		t.n[a] = c
	} else {
		delete(t.n, a)
	}
}

// readBody buffers r's body before any server is chosen. It returns
// false when it has answered the request itself: 429 when the client
// address has too many requests waiting for their body, 400/408 when the
// body failed or did not arrive within BodyTimeout.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, body *retryBody, rec *accesslog.Record, start time.Time) bool {
	client := rec.Client.Addr()
	// A body that has already arrived whole (kclb's HTTP/1.1 server read
	// it with the head, as it does for Keycloak's form posts) cannot
	// wait, so it takes no place in the per-address cap: clients behind
	// one NAT address are limited only by bodies that really trickle.
	waits := h.waits
	if ib, ok := body.rc.(interface{ inBuffer() bool }); ok && ib.inBuffer() {
		waits = nil
	}
	if !waits.acquire(client) {
		h.bodyLimited.Add(1)
		body.closeUnderlying()
		hd := w.Header()
		if r.ProtoMajor == 1 {
			hd.Set("Connection", "close")
		}
		hd.Set("Retry-After", "1")
		h.finishLocal(w, rec, start, http.StatusTooManyRequests)
		return false
	}
	rc := http.NewResponseController(w)
	// Never later than the client timeout would have allowed.
	deadline := time.Now().Add(h.opts.BodyTimeout)
	if end := start.Add(h.opts.ClientTimeout); end.Before(deadline) {
		deadline = end
	}
	rc.SetReadDeadline(deadline)
	full, err := body.buffer(r.ContentLength, h.opts.BodyBufferBytes)
	waits.release(client)
	if err != nil {
		// Count the body's failure as the client's, as forward does.
		body.closeUnderlying()
		rec.Status = h.clientError(w, r, err)
		rec.BytesIn = body.n.Load()
		h.finish(nil, rec, start)
		return false
	}
	if full {
		if body.trailer == nil {
			// Framed by length for the backend, whatever the client used.
			r.ContentLength = int64(len(body.buf))
		}
		return true
	}
	// The rest streams under the client timeout, as before.
	rc.SetReadDeadline(start.Add(h.opts.ClientTimeout))
	return true
}

// finishLocal writes kclb's own error page with code and reports the
// request to the observer and the access log.
func (h *Handler) finishLocal(w http.ResponseWriter, rec *accesslog.Record, start time.Time, code int) {
	writeError(w, code)
	rec.Status = code
	h.finish(nil, rec, start)
}
