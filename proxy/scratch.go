package proxy

import (
	"net/http"
	"net/netip"
	"net/url"
	"unsafe"

	"github.com/kclb/kclb/internal/balancer"
)

// reqScratch is memory a front end lends the Handler for one request, so
// that what the Handler builds per request (the backend URL, the tried
// set, the forwarded values, a request ID) costs no allocation. kclb's
// HTTP/1.1 server keeps one per connection (requests on a connection
// are sequential); other ResponseWriters lend none and the Handler
// allocates as before. Nothing built in it may be kept after the
// response: the next request on the connection overwrites it.
type reqScratch struct {
	url   url.URL
	tried balancer.Tried
	fwd   [4]string

	id     [32]byte
	idVals [1]string

	// The client address as a string, for the connection's peer.
	client    netip.Addr
	clientStr string

	// head holds the backend's response head for the request: the
	// Response's strings share it (upstream.roundTrip), so a lender
	// must not reuse the scratch before the response was written.
	head []byte
}

// scratchLender is implemented by ResponseWriters that lend a reqScratch.
type scratchLender interface{ requestScratch() *reqScratch }

// scratchOf returns w's scratch, or nil.
func scratchOf(w http.ResponseWriter) *reqScratch {
	if l, ok := w.(scratchLender); ok {
		return l.requestScratch()
	}
	return nil
}

// clientString returns a.String(), computed once per connection.
func (sc *reqScratch) clientString(a netip.Addr) string {
	if sc == nil {
		return a.String()
	}
	if sc.clientStr == "" || sc.client != a {
		sc.client, sc.clientStr = a, a.String()
	}
	return sc.clientStr
}

// idString returns the hex request ID in sc.id as a string that shares
// its memory: valid until the next request on the connection.
func (sc *reqScratch) idString() string { return unsafe.String(&sc.id[0], len(sc.id)) }
