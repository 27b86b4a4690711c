package proxy

import (
	"net/http"
	"strconv"
)

// respBody is the body accounting kclb's two ResponseWriters (HTTP/1.1
// and HTTP/2) share: what the response allows, what the Handler has
// written of it, and what is held back before the head.
type respBody struct {
	noBody    bool   // HEAD, 1xx, 204, 304: body bytes are dropped
	head      bool   // the request was HEAD
	committed bool   // the head is written (HTTP/1.1: in the write buffer; HTTP/2: HEADERS queued)
	declared  int64  // the Handler's Content-Length; -1 if none
	written   int64  // body bytes the Handler has written
	pend      []byte // body bytes held back before the head (to give it a length)
	werr      error  // the first write error
}

// take applies a Write of p to the accounting: done with n and err when
// Write must return now (an earlier write error, bytes dropped for a
// HEAD, a body the response does not take or past its declared length,
// or p held back in pend, up to hold bytes, while the head waits);
// otherwise p is counted and is the caller's to send.
func (b *respBody) take(p []byte, hold int) (n int, done bool, err error) {
	switch {
	case b.werr != nil:
		return 0, true, b.werr
	case b.noBody && b.head:
		return len(p), true, nil
	case b.noBody:
		return 0, true, http.ErrBodyNotAllowed
	case b.declared >= 0 && b.written+int64(len(p)) > b.declared:
		return 0, true, http.ErrContentLength
	}
	b.written += int64(len(p))
	if !b.committed && len(b.pend)+len(p) <= hold {
		b.pend = append(b.pend, p...)
		return len(p), true, nil
	}
	return 0, false, nil
}

// declare takes the Handler's Content-Length from hdr when its head is
// written: one valid value is the declared length; any other is removed
// from hdr, and the length stays unknown.
func (b *respBody) declare(hdr http.Header) {
	cl, ok := hdr["Content-Length"]
	if !ok {
		return
	}
	n := int64(-1)
	if len(cl) == 1 {
		if v, err := strconv.ParseInt(cl[0], 10, 64); err == nil && v >= 0 {
			n = v
		}
	}
	if n < 0 {
		delete(hdr, "Content-Length")
	}
	b.declared = n
}
