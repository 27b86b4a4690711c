package proxy

import (
	"net/http"
	"net/netip"
	"net/url"
	"time"
	"unsafe"

	"github.com/kclb/kclb/internal/accesslog"
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
	// peer is the connection's peer, set by the server per request (a
	// request whose RemoteAddr is not peer.remote parses its own).
	peer *peerInfo
	// hopFree, set by the server per request, says the request's head
	// had no hop-by-hop field (seenHop): the Handler then skips
	// removing them. False when unknown.
	hopFree bool

	// rec is the request's access-log record (Handler.ServeHTTP).
	rec accesslog.Record
	// start, when set by the server, is when the request's head began:
	// the Handler takes it as the request's start instead of reading the
	// clock again.
	start time.Time
	// began is when the request began (start, or the Handler's reading
	// of the clock), for the whole request: what needs a time only
	// within microseconds (a queue deadline, a pooled connection's head
	// deadline) takes it instead of reading the clock again.
	began time.Time

	// head holds the backend's response head for the request: the
	// Response's strings share it (upstream.roundTrip), so a lender
	// must not reuse the scratch before the response was written.
	head []byte
	// vals holds the values of the backend's response header fields
	// for the client's header map (ownValues).
	vals []string
}

// ownValues returns a copy of a backend response's field values that
// the client's response may keep after the backend body is closed: the
// slices of a Response parsed by kclb's backend client belong to the
// backend connection, which reuses them for its next exchange once the
// body is closed, and a ResponseWriter may serialize its header only
// after that (a small body held back with the head, or net/http's
// HTTP/2 server writing it from its own goroutine). With scratch the
// copy shares sc.vals, reused per request; without, it is allocated.
func (sc *reqScratch) ownValues(vv []string) []string {
	if sc == nil {
		return append([]string(nil), vv...)
	}
	i := len(sc.vals)
	sc.vals = append(sc.vals, vv...)
	return sc.vals[i:len(sc.vals):len(sc.vals)]
}

// headerAdopter is implemented by kclb's ResponseWriters: adoptHeader
// makes h (with vals, the array its field values share) the writer's
// header, and returns the writer's previous header, which must be
// empty, with a spare array of at least len(vals) values, for the
// backend connection h came from. The writer then owns h until its next
// request, and the connection never touches it again: a response parsed
// by kclb's backend client reaches the client without a copy of its
// header map.
type headerAdopter interface {
	adoptHeader(h http.Header, vals []string) (http.Header, []string)
}

// listAdopter is implemented by a headerAdopter that also writes a
// listed head (upFast.listed): adoptList makes list the fields the
// writer writes besides its header map (the map never has their names),
// declared the head's Content-Length (-1 if none; the list carries the
// field itself) and date whether the list has a Date, and returns the
// writer's previous list, emptied, for the backend connection.
type listAdopter interface {
	headerAdopter
	adoptList(list []respField, declared int64, date bool) []respField
}

// spareHeader is the state of a headerAdopter: the value array that
// goes with its header map.
type spareHeader struct{ vals []string }

// swap implements adoptHeader for a writer whose header is *hdr.
func (sp *spareHeader) swap(hdr *http.Header, h http.Header, vals []string) (http.Header, []string) {
	old, spare := *hdr, sp.vals
	if len(spare) < len(vals) {
		spare = make([]string, len(vals)) // first use
	}
	*hdr, sp.vals = h, vals
	return old, spare
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

// peerInfo is a client connection's peer, parsed once per connection:
// the RemoteAddr string its requests carry, that address, the client
// address (unmapped) and its string form.
type peerInfo struct {
	remote    string
	addr      netip.AddrPort
	client    netip.Addr
	clientStr string
}

// newPeerInfo parses remote, a RemoteAddr.
func newPeerInfo(remote string) *peerInfo {
	p := &peerInfo{remote: remote}
	p.addr, _ = netip.ParseAddrPort(remote)
	p.client = p.addr.Addr().Unmap()
	p.clientStr = p.client.String()
	return p
}

// peerOf returns the peer address of r: from the connection's peerInfo
// when the server set it for this RemoteAddr, else parsed.
func (sc *reqScratch) peerOf(r *http.Request) netip.AddrPort {
	if sc != nil && sc.peer != nil && sc.peer.remote == r.RemoteAddr {
		return sc.peer.addr
	}
	a, _ := netip.ParseAddrPort(r.RemoteAddr)
	return a
}

// clientString returns a.String(), computed once per connection.
func (sc *reqScratch) clientString(a netip.Addr) string {
	if sc == nil {
		return a.String()
	}
	if sc.peer != nil && sc.peer.client == a {
		return sc.peer.clientStr
	}
	if sc.clientStr == "" || sc.client != a {
		sc.client, sc.clientStr = a, a.String()
	}
	return sc.clientStr
}

// idString returns the hex request ID in sc.id as a string that shares
// its memory: valid until the next request on the connection.
func (sc *reqScratch) idString() string { return unsafe.String(&sc.id[0], len(sc.id)) }
