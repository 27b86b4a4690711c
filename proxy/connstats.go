package proxy

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// ConnStats counts what happens to client connections outside the
// Handler. net/http refuses malformed or oversized request heads (400,
// 431, 501) and drops heads that arrive too slowly before any handler
// runs, so Handler.Stats never sees them; ConnStats does, through the
// http.Server's ConnContext and ConnState hooks. Attach one to a server
// with ServerOptions.Conns. The zero value is ready to use and safe for
// concurrent use.
type ConnStats struct {
	accepted, rejected, unused atomic.Uint64
	open                       atomic.Int64
	conns                      sync.Map // net.Conn -> *connEntry
}

// ConnCounts is a snapshot of ConnStats. Counts are totals since the
// ConnStats was created, except Open.
type ConnCounts struct {
	// Accepted counts connections accepted.
	Accepted uint64
	// Open is the number of connections open now.
	Open int64
	// Rejected counts HTTP/1 connections that net/http closed after
	// request bytes arrived without the request reaching the handler: a
	// malformed, ambiguous or oversized request head (answered 400, 431
	// or 501) or a head that did not complete within the header timeout.
	Rejected uint64
	// Unused counts connections closed without a request ever reaching
	// the handler and without an HTTP/1 request head being read: idle
	// connections, failed TLS handshakes, HTTP/2 connections whose every
	// stream was refused by the protocol layer.
	Unused uint64
}

// connEntry is the per-connection state; the fields are atomics because
// HTTP/2 handlers run on other goroutines than the connection's.
type connEntry struct {
	pending atomic.Bool // an HTTP/1 head was read and no handler ran yet
	served  atomic.Bool // a handler ran on this connection
}

type connKey struct{}

// Counts returns the current counts.
func (cs *ConnStats) Counts() ConnCounts {
	return ConnCounts{
		Accepted: cs.accepted.Load(), Open: cs.open.Load(),
		Rejected: cs.rejected.Load(), Unused: cs.unused.Load(),
	}
}

// connContext is the http.Server ConnContext hook. A connection kclb's
// own server accepted and handed over (HTTP/2) keeps the entry it has.
func (cs *ConnStats) connContext(ctx context.Context, c net.Conn) context.Context {
	if v, ok := cs.conns.Load(c); ok {
		return context.WithValue(ctx, connKey{}, v)
	}
	return context.WithValue(ctx, connKey{}, cs.track(c))
}

// track counts a new connection and returns its entry.
func (cs *ConnStats) track(c net.Conn) *connEntry {
	e := new(connEntry)
	cs.conns.Store(c, e)
	cs.accepted.Add(1)
	cs.open.Add(1)
	return e
}

// connState is the http.Server ConnState hook.
func (cs *ConnStats) connState(c net.Conn, st http.ConnState) {
	v, ok := cs.conns.Load(c)
	if !ok {
		return
	}
	e := v.(*connEntry)
	switch st {
	case http.StateActive:
		// net/http reports Active once it has read request bytes, before
		// it decides whether the head is valid.
		e.pending.Store(true)
	case http.StateClosed, http.StateHijacked:
		cs.conns.Delete(c)
		cs.open.Add(-1)
		switch {
		case e.pending.Load():
			cs.rejected.Add(1)
		case !e.served.Load():
			cs.unused.Add(1)
		}
	}
}

// wrap marks the connection of every request that reaches h as served.
func (cs *ConnStats) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e, ok := r.Context().Value(connKey{}).(*connEntry); ok {
			e.served.Store(true)
			e.pending.Store(false)
		}
		h.ServeHTTP(w, r)
	})
}
