// Package proxy is kclb's HTTP forwarding mechanism: the handler that
// applies the path policy and forwarded-header rules to a client request,
// asks a Router for a backend server, forwards the request over a pooled
// keep-alive HTTP/1.1 connection (retrying on another server when that is
// safe), and writes the response back with the security headers Keycloak
// did not set itself. It also builds the http.Servers for kclb's public
// listeners.
//
// Policies are values: routing arrives through the Router interface
// (affinity, or a plain balancer.Selector via BalancerRouter), path rules
// through a *pathpolicy.Policy. The package never reads configuration.
package proxy

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kclb/kclb/internal/accesslog"
	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/balancer"
	"github.com/kclb/kclb/internal/pathpolicy"
	"github.com/kclb/kclb/internal/ratelimit"
)

// Router chooses the server for one attempt of a request and annotates
// the response. Implementations must be safe for concurrent use.
type Router interface {
	// Route returns the server for r, skipping tried, and whether the
	// response must (re)issue the affinity cookie. A nil server means no
	// server is available.
	Route(r *http.Request, servers []*backend.Server, tried *balancer.Tried) (s *backend.Server, setCookie bool)
	// StripRequest removes the router's own state (its cookie) from the
	// headers forwarded to the backend.
	StripRequest(h http.Header)
	// Respond adjusts the response headers from server s: learn routes,
	// set the affinity cookie when setCookie is true.
	Respond(h http.Header, s *backend.Server, setCookie, secure bool)
}

// ResponseFielder is implemented by a Router whose Respond reads and
// changes only the response fields ResponseFields names (canonical
// names). The header Respond gets may then hold just those fields, and
// kclb's own HTTP/1.1 server writes the backend's others as they came,
// with no header map between the two connections. A Router without it
// sees every field.
type ResponseFielder interface {
	ResponseFields() []string
}

// Explainer is implemented by a Router that can say which rule chose the
// server (for the access log's route field). RouteExplained is Route
// plus that reason; the handler calls it instead of Route when the
// Router has it. Routers without it are logged as balanced.
type Explainer interface {
	RouteExplained(r *http.Request, servers []*backend.Server, tried *balancer.Tried) (s *backend.Server, setCookie bool, how accesslog.Route)
}

// BalancerRouter adapts a balancer.Selector to Router for deployments
// without affinity.
type BalancerRouter struct{ Selector balancer.Selector }

// Route implements Router.
func (b BalancerRouter) Route(r *http.Request, servers []*backend.Server, tried *balancer.Tried) (*backend.Server, bool) {
	return b.Selector.Select(r, servers, tried), false
}

// StripRequest implements Router; it does nothing.
func (BalancerRouter) StripRequest(http.Header) {}

// Respond implements Router; it does nothing.
func (BalancerRouter) Respond(http.Header, *backend.Server, bool, bool) {}

// ResponseFields implements ResponseFielder: Respond touches no field.
func (BalancerRouter) ResponseFields() []string { return nil }

// HeaderFamily selects which forwarded headers kclb sets, matching
// Keycloak's proxy-headers option.
type HeaderFamily uint8

const (
	// XForwarded sets X-Forwarded-For/-Proto/-Host/-Port (the default).
	XForwarded HeaderFamily = iota
	// Forwarded sets RFC 7239 Forwarded.
	Forwarded
)

// Options configures a Handler. Zero fields take the defaults named (the
// Default constants); Validate checks the rules New applies.
type Options struct {
	// Pool holds the backend servers. Required.
	Pool *backend.Pool
	// Router picks servers. Required.
	Router Router
	// Policy decides which paths are public. Nil allows every path
	// (for tests only).
	Policy *pathpolicy.Policy
	// RateLimit, if non-nil, limits request rates per client address on
	// the canonical path; a refused request gets 429 with Retry-After.
	RateLimit *ratelimit.Limiter
	// BlockedStatus answers paths the policy blocks: 404 (default) or 403.
	// /admin/ from outside the admin networks always gets 403.
	BlockedStatus int
	// Headers is the forwarded-header family. Default XForwarded.
	Headers HeaderFamily
	// TrustedProxies are peers whose forwarded headers are kept and
	// extended instead of stripped. Empty trusts nobody.
	TrustedProxies []netip.Prefix
	// Security lists response headers added when the backend did not set
	// them. Nil means none.
	Security []SecurityHeader
	// FrameExempt lists path substrings whose responses never get
	// framing headers (X-Frame-Options, frame-ancestors CSP). Nil means
	// DefaultFrameExempt.
	FrameExempt []string
	// Retries is how many further servers a request may be tried on
	// after a connect failure (or a reset before any response for an
	// idempotent request). Default 3; negative means none.
	Retries int
	// ConnectTimeout bounds dialing a backend. Default 5 s.
	ConnectTimeout time.Duration
	// ServerTimeout bounds the wait for a backend's response headers and
	// every wait for more bytes of its response body. Default 50 s.
	ServerTimeout time.Duration
	// QueueTimeout bounds a request's whole wait for a connection slot,
	// over every server it is tried on (the time a client waits before
	// its 503). Default 5 s.
	QueueTimeout time.Duration
	// BodyBufferBytes is the request body size read completely, under
	// BodyTimeout, before a server slot is taken or a backend connection
	// opened; of a larger body that many bytes are read first and the
	// rest streams. Default 64 KiB (Keycloak's form posts and token
	// requests); negative streams every body from the start.
	BodyBufferBytes int64
	// BodyTimeout bounds reading the buffered part of a request body.
	// Default 10 s.
	BodyTimeout time.Duration
	// BodyWaitsPerClient bounds the requests of one client address that
	// may wait for their body at once; more are answered 429. Default 16;
	// negative means no bound.
	BodyWaitsPerClient int
	// ClientTimeout is the listener's client timeout: the read deadline
	// restored for the streamed rest of a large body. Default 50 s.
	ClientTimeout time.Duration
	// QueueSize bounds the requests waiting per server. Default 1024;
	// negative means no queue (503 at once when a server is at maxconn).
	QueueSize int
	// IdleTimeout closes idle pooled backend connections. Default 90 s.
	IdleTimeout time.Duration
	// MaxIdlePerServer bounds pooled idle connections per server.
	// Default 512.
	MaxIdlePerServer int
	// MaxResponseHeaderBytes bounds a backend's response headers.
	// Default 1 MiB (Keycloak's login responses carry large cookies).
	MaxResponseHeaderBytes int64
	// AccessLog, if non-nil, receives one record per request. Nil (the
	// default) logs nothing and costs nothing.
	AccessLog *accesslog.Logger
	// Logger receives operational messages. Nil discards them.
	Logger *slog.Logger
	// Observer, if non-nil, is told about every request (for metrics).
	Observer Observer
	// PublicHost is the Host (host or host:port) given to HTTP/1.0 and
	// HTTP/2 requests that name none. Empty answers them 400. HTTP/1.1
	// requests without a Host are always 400 (RFC 9112 3.2), and kclb
	// never uses a backend address as Host.
	PublicHost string
	// ForwardTrailers passes request and response trailers on, except
	// those naming hop-by-hop, forwarding, tracing, client-certificate,
	// framing or security fields (trailerAllowed). False (the default)
	// drops every trailer.
	ForwardTrailers bool
	// ClientCertHeader is how a client certificate verified in the TLS
	// handshake is forwarded. Default CertRFC9440. Client-sent
	// certificate headers never reach the backend from a TLS connection.
	ClientCertHeader CertHeader
	// StdlibTransport forwards with net/http's Transport instead of
	// kclb's own HTTP/1.1 backend client (the default, which needs no
	// goroutines per connection). It is a fallback for debugging.
	StdlibTransport bool
}

// Observer receives per-request events. Implementations must be fast and
// safe for concurrent use.
type Observer interface {
	// Request is called once per finished request with the record the
	// access log writes (status, timings, bytes; passed by value so that
	// it stays on the handler's stack). s is nil when no server answered.
	Request(s *backend.Server, rec accesslog.Record)
	// Blocked is called for every request the path policy refused.
	Blocked(v pathpolicy.Verdict)
}

// DefaultFrameExempt are the Keycloak pages that other origins frame on
// purpose (the JS adapter's session iframe and third-party cookie check).
var DefaultFrameExempt = []string{"/login-status-iframe.html", "/3p-cookies/"}

// Stats counts what the handler did. All fields are totals since start.
type Stats struct {
	Requests     uint64 // requests handled
	Blocked      uint64 // refused by the path policy (any verdict)
	Retries      uint64 // attempts after the first
	NoServer     uint64 // 503: no server available
	QueueFull    uint64 // 503: every candidate's queue was full or timed out
	BadGateway   uint64 // 502 answered
	Timeouts     uint64 // 504 answered
	ClientAborts uint64 // client went away before the response completed
	Truncated    uint64 // backend failed mid-body; client stream aborted
	BadRequests  uint64 // 400/408: malformed method, target or Host, or a request body malformed, cut off or too slow
	BodyLimited  uint64 // 429: the client address had BodyWaitsPerClient requests waiting for their body
}

// Handler forwards client requests to backend servers.
type Handler struct {
	opts      Options
	transport roundTripCloser
	up        *upstream // transport, unless StdlibTransport
	forwarded forwardRules
	explain   Explainer // opts.Router, when it explains its choices
	listed    bool      // opts.Router is a ResponseFielder: heads may come listed

	requests, blocked, retries, noServer, queueFull atomic.Uint64
	badGateway, timeouts, clientAborts, truncated   atomic.Uint64
	badRequests, bodyLimited                        atomic.Uint64

	waits *waitTable // requests waiting for their body, per client address
}

// New returns a Handler. It returns an error if a required option is
// missing.
func New(opts Options) (*Handler, error) {
	if opts.Pool == nil || opts.Router == nil {
		return nil, errors.New("proxy: Pool and Router are required")
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	if opts.BlockedStatus == 0 {
		opts.BlockedStatus = DefaultBlockedStatus
	}
	if opts.FrameExempt == nil {
		opts.FrameExempt = DefaultFrameExempt
	}
	if opts.Retries == 0 {
		opts.Retries = DefaultRetries
	}
	if opts.Retries < 0 {
		opts.Retries = 0
	}
	setDefault(&opts.ConnectTimeout, DefaultConnectTimeout)
	setDefault(&opts.ServerTimeout, DefaultServerTimeout)
	setDefault(&opts.QueueTimeout, DefaultQueueTimeout)
	if opts.BodyBufferBytes == 0 {
		opts.BodyBufferBytes = DefaultBodyBufferBytes
	}
	setDefault(&opts.BodyTimeout, DefaultBodyTimeout)
	if opts.BodyWaitsPerClient == 0 {
		opts.BodyWaitsPerClient = DefaultBodyWaitsPerClient
	}
	setDefault(&opts.ClientTimeout, DefaultClientTimeout)
	switch {
	case opts.QueueSize == 0:
		opts.QueueSize = DefaultQueueSize
	case opts.QueueSize < 0:
		opts.QueueSize = 0
	}
	setDefault(&opts.IdleTimeout, DefaultIdleTimeout)
	setDefault(&opts.MaxIdlePerServer, DefaultMaxIdlePerServer)
	setDefault(&opts.MaxResponseHeaderBytes, DefaultMaxResponseHeaderBytes)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{
		opts:      opts,
		forwarded: forwardRules{family: opts.Headers, trusted: opts.TrustedProxies, certs: opts.ClientCertHeader},
		waits:     newWaitTable(opts.BodyWaitsPerClient),
	}
	h.explain, _ = opts.Router.(Explainer)
	var scope []string
	if rf, ok := opts.Router.(ResponseFielder); ok {
		h.listed = true
		for _, k := range rf.ResponseFields() {
			scope = append(scope, http.CanonicalHeaderKey(k))
		}
	}
	if !opts.StdlibTransport {
		h.up = newUpstream(upstreamOptions{
			scope:                  scope,
			ConnectTimeout:         opts.ConnectTimeout,
			HeaderTimeout:          opts.ServerTimeout,
			IdleTimeout:            opts.IdleTimeout,
			MaxIdlePerServer:       opts.MaxIdlePerServer,
			MaxResponseHeaderBytes: opts.MaxResponseHeaderBytes,
		})
		h.transport = h.up
		return h, nil
	}
	dialer := &net.Dialer{Timeout: opts.ConnectTimeout, KeepAlive: 30 * time.Second}
	h.transport = &http.Transport{
		DialContext:            dialer.DialContext,
		MaxIdleConns:           0,
		MaxIdleConnsPerHost:    opts.MaxIdlePerServer,
		IdleConnTimeout:        opts.IdleTimeout,
		ResponseHeaderTimeout:  opts.ServerTimeout,
		MaxResponseHeaderBytes: opts.MaxResponseHeaderBytes,
		DisableCompression:     true,
		ForceAttemptHTTP2:      false,
		WriteBufferSize:        16 << 10,
		ReadBufferSize:         16 << 10,
	}
	return h, nil
}

// roundTripCloser is the backend client: upstream or http.Transport.
type roundTripCloser interface {
	http.RoundTripper
	CloseIdleConnections()
}

// Close releases idle backend connections.
func (h *Handler) Close() { h.transport.CloseIdleConnections() }

// Stats returns the handler's counters.
func (h *Handler) Stats() Stats {
	return Stats{
		Requests: h.requests.Load(), Blocked: h.blocked.Load(), Retries: h.retries.Load(),
		NoServer: h.noServer.Load(), QueueFull: h.queueFull.Load(), BadGateway: h.badGateway.Load(),
		Timeouts: h.timeouts.Load(), ClientAborts: h.clientAborts.Load(), Truncated: h.truncated.Load(),
		BadRequests: h.badRequests.Load(), BodyLimited: h.bodyLimited.Load(),
	}
}

// Pool returns the pool the handler forwards to.
func (h *Handler) Pool() *backend.Pool { return h.opts.Pool }

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// admit's frame (the checks, the header rewrites, the body read) is
	// gone while forward runs: with it, a proxied request's frames
	// outgrow the 4 KiB stack the goroutine starts with.
	rec, body, path, secure, start, ok := h.admit(w, r)
	if !ok {
		return
	}
	code, s, abort := h.forward(w, r, body, path, secure, rec)
	rec.Status = code
	if body != nil {
		rec.BytesIn = body.n.Load()
	}
	h.finish(s, rec, start)
	if abort {
		// The backend failed mid-body: mark the client stream as broken
		// rather than ending it cleanly. Only after every slot and
		// counter is settled: the panic unwinds past them.
		panic(http.ErrAbortHandler)
	}
}

// admit checks r and prepares it to be forwarded: the request line, Host
// and framing rules, the path policy, rate limits, forwarded headers and
// request id, the backend URL, and the body read into its buffer. When a
// check refuses r it answers it and returns ok false.
func (h *Handler) admit(w http.ResponseWriter, r *http.Request) (rec *accesslog.Record, body *retryBody, path string, secure bool, start time.Time, ok bool) {
	sc := scratchOf(w)
	if sc != nil && !sc.start.IsZero() {
		start, sc.start = sc.start, time.Time{} // when the head began (kclb's HTTP/1.1 server)
	} else {
		start = time.Now()
	}
	if sc != nil {
		sc.began = start
	}
	h.requests.Add(1)
	peer := sc.peerOf(r)
	client := peer.Addr().Unmap()
	// rec is the request's access-log record: every exit fills it and
	// hands it to finish. It lives in the request's scratch, not on this
	// stack: the frames a proxied request goes through must fit the 4 KiB
	// a goroutine's stack starts with once grown (docs/architecture.md).
	if sc != nil {
		rec = &sc.rec
	} else {
		rec = new(accesslog.Record)
	}
	rec.Reset()
	rec.Client = netip.AddrPortFrom(client, peer.Port())
	rec.TLS, rec.Method, rec.Proto = r.TLS, r.Method, r.Proto
	// Everything written into the backend's request line and Host must be
	// valid HTTP/1.1: HTTP/2 pseudo-headers arrive unchecked (issue 12,
	// items 1-3).
	if !validMethod(r.Method) || !validTarget(r.RequestURI) {
		rec.Method = "" // not logged as received: it may be anything
		h.badHead(w, r, rec, start)
		return nil, nil, "", false, start, false
	}
	switch hostRule(r.ProtoMajor, r.ProtoMinor, r.Host, h.opts.PublicHost) {
	case hostReject:
		h.badHead(w, r, rec, start)
		return nil, nil, "", false, start, false
	case hostPublic:
		r.Host = h.opts.PublicHost
	}
	rec.Host = r.Host
	switch framingRule(r.ProtoMajor, r.ProtoMinor, len(r.TransferEncoding) > 0) {
	case framingRejectClose:
		h.badHead(w, r, rec, start)
		return nil, nil, "", false, start, false
	case framingCloseAfter:
		// RFC 9112 6.1: a request framed by Transfer-Encoding may have
		// carried a Content-Length too (net/http drops it silently); the
		// connection must not be reused after the response, so a front
		// proxy that framed by Content-Length cannot smuggle a request
		// (refused requests included).
		w.Header().Set("Connection", "close")
	}
	if closeHTTP10(r.ProtoMajor, r.ProtoMinor) {
		// net/http removes Transfer-Encoding from HTTP/1.0 requests
		// before kclb sees them, so their framing cannot be checked:
		// never read another request after one (issue 12, item 7).
		w.Header().Set("Connection", "close")
	}

	rec.Path, rec.Query = r.URL.Path, r.URL.RawQuery
	// Upgrade is a hop-by-hop field: a head noted free of them has none.
	if r.Method == http.MethodConnect || !(sc != nil && sc.hopFree) && upgradeRequested(r.Header) {
		h.notImplemented(w, r, rec, start)
		return nil, nil, "", false, start, false
	}

	path = r.URL.Path
	if h.opts.Policy != nil {
		canon, verdict := h.opts.Policy.Check(r.URL.EscapedPath(), client)
		if verdict != pathpolicy.Allow {
			h.refuse(w, r, verdict, rec, start)
			return nil, nil, "", false, start, false
		}
		path = canon
	}
	rec.Path = path
	if d := h.opts.RateLimit.Check(path, r.Method, client, start); d.Limited {
		h.rateLimited(w, r, d, rec, start)
		return nil, nil, "", false, start, false
	}

	secure = r.TLS != nil
	h.forwarded.prepare(r, client, secure, sc)
	requestID(r, sc)
	rec.ID = r.Header["X-Request-Id"][0]

	// The inbound request becomes the outbound one: no copies.
	if sc != nil {
		sc.url = url.URL{Scheme: "http", Path: path, RawQuery: r.URL.RawQuery}
		r.URL = &sc.url
	} else {
		r.URL = &url.URL{Scheme: "http", Path: path, RawQuery: r.URL.RawQuery}
	}
	r.RequestURI = ""
	r.Close = false
	r.TransferEncoding = nil
	if _, ok := r.Header["User-Agent"]; !ok {
		// Present but empty: neither head writer adds Go's own.
		r.Header["User-Agent"] = nil
	}
	if r.ProtoMajor == 2 && r.ContentLength == 0 {
		// END_STREAM on HEADERS (or content-length: 0): bodiless, like
		// the same request over HTTP/1.1, so kclb's own head writer
		// sends it and a busy node's 503 can be redispatched.
		r.Body = http.NoBody
	}
	if r.Trailer != nil && !h.opts.ForwardTrailers {
		r.Trailer = nil
	}
	if r.Body != nil && r.Body != http.NoBody {
		body = &retryBody{rc: r.Body}
		if len(r.Trailer) > 0 {
			body.trailer = r.Trailer
			for k := range r.Trailer {
				if trailerAllowed(k) {
					body.declared = append(body.declared, k)
				} else {
					delete(r.Trailer, k)
				}
			}
		}
		r.Body = body
		if h.opts.BodyBufferBytes > 0 {
			if !h.readBody(w, r, body, rec, start) {
				return nil, nil, "", false, start, false
			}
			if body.full && len(body.buf) == 0 && body.trailer == nil {
				// An empty body (a chunked GET): bodiless after all.
				body.closeUnderlying()
				r.Body, body = http.NoBody, nil
			}
		}
	}
	return rec, body, path, secure, start, true
}

// forward runs the attempts for one request and writes the response. It
// returns the status sent to the client (0 if the client went away), the
// server that answered, if any, and whether the client stream must be
// aborted because the backend failed mid-body.
//
// forward fills rec's server, route, retries and timing fields (see
// accesslog.Record) and BytesOut.
func (h *Handler) forward(w http.ResponseWriter, r *http.Request, body *retryBody, path string, secure bool, rec *accesslog.Record) (int, *backend.Server, bool) {
	var tried *balancer.Tried
	sc := scratchOf(w)
	if sc != nil {
		tried = &sc.tried
		*tried = balancer.Tried{}
	} else {
		tried = new(balancer.Tried)
	}
	ctx := r.Context()
	pool := h.opts.Pool
	queueFailed := false
	var lastErr error
	var last *backend.Server
	// QueueTimeout bounds the wait over all servers tried, not each.
	var queueDeadline time.Time
	for attempt := 0; attempt <= h.opts.Retries; attempt++ {
		var s *backend.Server
		var setCookie bool
		how := accesslog.RouteBalanced
		if h.explain != nil {
			s, setCookie, how = h.explain.RouteExplained(r, pool.Servers(), tried)
		} else {
			s, setCookie = h.opts.Router.Route(r, pool.Servers(), tried)
		}
		if s == nil {
			break
		}
		if attempt > 0 {
			h.retries.Add(1)
			rec.Retries = attempt
			how = accesslog.RouteRedispatched
			if last != nil {
				last.CountRedispatch()
			}
		}
		rec.Route = how
		tried.Add(s)
		last = s
		// The router has read its cookie; Keycloak must not see it.
		h.opts.Router.StripRequest(r.Header)
		wait := h.opts.QueueTimeout
		// The first attempt's queue wait starts with the request (the
		// microseconds of its checks count as queue time).
		var t0 time.Time
		if attempt == 0 && sc != nil {
			t0 = sc.began
		}
		if t0.IsZero() {
			t0 = time.Now()
		}
		if queueDeadline.IsZero() {
			queueDeadline = t0.Add(wait)
		} else if wait = queueDeadline.Sub(t0); wait <= 0 {
			wait = time.Nanosecond // a free slot is still taken at once
		}
		queued, err := s.AcquireAt(ctx, h.opts.QueueSize, wait, t0)
		if err != nil {
			rec.Queue += time.Since(t0)
			if ctx.Err() != nil {
				h.clientAborts.Add(1)
				return 0, s, false
			}
			queueFailed = true
			continue
		}
		t1 := t0 // a slot taken at once: no clock reading
		if queued {
			t1 = time.Now()
		}
		if sc != nil {
			// The backend client's reading of the clock for a pooled
			// connection: a queue wait must not age its checks.
			sc.began = t1
		}
		rec.Queue += t1.Sub(t0)
		r.URL.Host = s.Addr()
		resp, dialed, err := h.roundTrip(r, w)
		if dialed >= 0 {
			rec.Connect = max(rec.Connect, 0) + dialed
		}
		if err == nil {
			rec.UpstreamHeader = time.Since(t1) - max(dialed, 0)
		}
		if err != nil {
			s.Release()
			if body != nil && body.clientErr() != nil {
				// The client's body broke (bad chunk, cut off, too slow):
				// not the server's fault, and not replayable. Checked
				// before the context: net/http cancels it on any failed
				// read from the client, and the client that is still
				// there must not get an empty 200.
				body.closeUnderlying()
				return h.clientError(w, r, body.clientErr()), s, false
			}
			if ctx.Err() != nil {
				h.clientAborts.Add(1)
				return 0, s, false
			}
			lastErr = err
			if unreachable(err) {
				pool.ObserveFailure(s, errorCause(err))
			} else {
				// A timeout or a broken exchange says nothing about the
				// node being reachable; it must not eject the node.
				pool.CountError(s)
			}
			if retriable(r, body, err) {
				continue
			}
			return h.gatewayError(w, err), s, false
		}
		if resp.StatusCode == http.StatusServiceUnavailable && attempt < h.opts.Retries &&
			body == nil && idempotent(r.Method) && hasOther(pool.Servers(), tried) {
			// Keycloak answers 503 when busy: try another node.
			resp.Body.Close()
			s.Release()
			pool.ObserveSuccess(s)
			continue
		}
		pool.ObserveSuccess(s)
		code, abort := h.respond(w, r, resp, s, setCookie, secure, path, rec)
		s.Release()
		if body != nil {
			body.closeUnderlying()
		}
		return code, s, abort
	}
	if body != nil {
		body.closeUnderlying()
	}
	if lastErr != nil {
		return h.gatewayError(w, lastErr), last, false
	}
	if queueFailed {
		h.queueFull.Add(1)
	} else {
		h.noServer.Add(1)
	}
	writeError(w, http.StatusServiceUnavailable)
	return http.StatusServiceUnavailable, nil, false
}

// roundTrip sends one attempt to the backend. With kclb's own client,
// 103 Early Hints are passed on to HTTP/1.1 and HTTP/2 clients (never
// to HTTP/1.0 ones, RFC 9110 15.2). dialed is the time spent opening
// connections (0 when a pooled one was reused), -1 when unknown (the
// net/http transport).
func (h *Handler) roundTrip(r *http.Request, w http.ResponseWriter) (resp *http.Response, dialed time.Duration, err error) {
	if h.up == nil {
		resp, err = h.transport.RoundTrip(r)
		return resp, -1, err
	}
	// With a server that lends scratch (kclb's HTTP/1.1 server), the
	// response head's strings share the request's scratch, which stays
	// the request's until it ended; what keeps a string of the head
	// longer (affinity's learned routes) copies it.
	var head *[]byte
	var began time.Time
	if sc := scratchOf(w); sc != nil {
		head, began = &sc.head, sc.began
	}
	_, list := w.(listAdopter)
	hints := w
	if !r.ProtoAtLeast(1, 1) {
		hints = nil
	}
	resp, err = h.up.roundTrip(r, hints, &dialed, head, list && h.listed && head != nil, began)
	return resp, dialed, err
}

// sendEarlyHints writes a 103 response carrying the backend's 103 fields
// (Link, above all) to w, and removes them again so they do not reach
// the final response.
func sendEarlyHints(w http.ResponseWriter, hdr http.Header) {
	dst := w.Header()
	var buf [8]string
	added := buf[:0]
	for k, vv := range hdr {
		if _, exists := dst[k]; exists || hopByHopName(k) || k == "Content-Length" {
			continue
		}
		dst[k] = vv
		added = append(added, k)
	}
	if len(added) == 0 {
		return
	}
	w.WriteHeader(http.StatusEarlyHints)
	for _, k := range added {
		delete(dst, k)
	}
}

// upgradeRequested reports whether h asks for a protocol switch kclb
// refuses (upgradeRule); an h2c offer alone is dropped with the other
// hop-by-hop headers.
func upgradeRequested(h http.Header) bool {
	for _, v := range h["Upgrade"] {
		if upgradeRule(v) {
			return true
		}
	}
	return false
}

// hasOther reports whether an untried server could take the request.
func hasOther(servers []*backend.Server, tried *balancer.Tried) bool {
	for _, s := range servers {
		if s.Available() && !tried.Has(s) {
			return true
		}
	}
	return false
}

// respond copies resp to w. It returns the status written and whether
// the backend failed mid-body (the caller must then abort the client
// stream).
func (h *Handler) respond(w http.ResponseWriter, r *http.Request, resp *http.Response, s *backend.Server, setCookie, secure bool, path string, rec *accesslog.Record) (int, bool) {
	defer resp.Body.Close()
	fb, reused := resp.Body.(*upFastBody)
	// absent: the names the header is known not to have (fastHead noted
	// the backend's, and an adopted header holds nothing else).
	absent := seenUnknown
	if reused {
		absent = seenAll &^ fb.c.fast.seen
	}
	if absent&seenHop == 0 {
		removeHopByHop(resp.Header)
	}
	dst := w.Header()
	if reused && fb.c.fast.listed {
		if la, ok := w.(listAdopter); ok && len(dst) == 0 {
			h.adoptListed(la, fb.c.fast, frameExempt(path, h.opts.FrameExempt), secure)
			h.opts.Router.Respond(w.Header(), s, setCookie, secure)
			return h.respondBody(w, r, resp, s, rec)
		}
		fb.c.fast.toMap()
	}
	if ad, ok := w.(headerAdopter); ok && reused && len(dst) == 0 {
		// The backend connection reuses its header map and value slice
		// once the body is closed (deferred above), which can be before
		// w writes its head: w takes them over instead, and gives the
		// connection its own empty ones for the next exchange.
		f := fb.c.fast
		f.hdr, f.vals = ad.adoptHeader(f.hdr, f.vals)
		dst = w.Header()
	} else if reused {
		// Without adoption the field values are copied.
		sc := scratchOf(w)
		if sc != nil {
			clear(sc.vals[:cap(sc.vals)]) // drop the last request's strings
			sc.vals = sc.vals[:0]
		}
		for k, vv := range resp.Header {
			dst[k] = sc.ownValues(vv)
		}
		absent = seenUnknown // dst may have had fields of its own
	} else {
		for k, vv := range resp.Header {
			dst[k] = vv
		}
	}
	addSecurityHeaders(dst, h.opts.Security, frameExempt(path, h.opts.FrameExempt), secure, absent)
	h.opts.Router.Respond(dst, s, setCookie, secure)
	return h.respondBody(w, r, resp, s, rec)
}

// adoptListed makes a listed head f (its header map with the Router's
// fields, and its list with the others plus the security headers the
// backend did not send) the header of w.
func (h *Handler) adoptListed(w listAdopter, f *upFast, exempt, secure bool) {
	for i := range h.opts.Security {
		sh := &h.opts.Security[i]
		if (sh.TLSOnly && !secure) || listedHas(f, sh.Name, sh.bit) {
			continue
		}
		if sh.Framing && (exempt || (f.seen&seenCSP != 0 && listedFrameAncestors(f))) {
			continue
		}
		vv := sh.vals
		if vv == nil {
			vv = []string{sh.Value}
		}
		f.put(h.up, sh.Name, vv)
	}
	f.hdr, f.vals = w.adoptHeader(f.hdr, f.vals)
	f.list = w.adoptList(f.list, f.cl, f.date)
	f.listed = false
}

// listedHas reports whether the listed head f has a field k, whose
// seenBit is bit.
func listedHas(f *upFast, k string, bit uint16) bool {
	if bit != 0 {
		return f.seen&bit != 0
	}
	if _, ok := f.hdr[k]; ok {
		return true
	}
	for _, fl := range f.list {
		if fl.k == k {
			return true
		}
	}
	return false
}

// listedFrameAncestors is cspHasFrameAncestors for a listed head.
func listedFrameAncestors(f *upFast) bool {
	for _, fl := range f.list {
		if fl.k == "Content-Security-Policy" && strings.Contains(fl.v, "frame-ancestors") {
			return true
		}
	}
	return cspHasFrameAncestors(f.hdr)
}

// respondBody writes the response head prepared in w's header and copies
// resp's body to w.
func (h *Handler) respondBody(w http.ResponseWriter, r *http.Request, resp *http.Response, s *backend.Server, rec *accesslog.Record) (int, bool) {
	dst := w.Header()
	w.WriteHeader(resp.StatusCode)
	if r.Method == http.MethodHead {
		return resp.StatusCode, false
	}
	stream := resp.ContentLength < 0
	// ServerTimeout also bounds every wait for more body bytes: a backend
	// that stalls mid-body must not hold the client, a goroutine and a
	// server slot forever. Closing the body fails the pending read.
	var idle *time.Timer
	if it, ok := resp.Body.(idleTimeouter); ok {
		it.setIdleTimeout(h.opts.ServerTimeout) // kclb's upstream times its reads itself
	} else {
		idle = time.AfterFunc(h.opts.ServerTimeout, func() { resp.Body.Close() })
	}
	n, err := copyBody(w, resp.Body, stream, idle, h.opts.ServerTimeout)
	if idle != nil {
		idle.Stop()
	}
	rec.BytesOut = n
	if err == nil && h.opts.ForwardTrailers {
		for k, vv := range resp.Trailer {
			if trailerAllowed(k) {
				dst[http.TrailerPrefix+k] = vv
			}
		}
	}
	if err != nil {
		if errors.Is(err, errClientWrite) || r.Context().Err() != nil {
			// The client went away or hit its write timeout; net/http
			// cancels the request, which also fails the backend read.
			h.clientAborts.Add(1)
		} else {
			h.truncated.Add(1)
			h.opts.Pool.CountError(s)
			return resp.StatusCode, true
		}
	}
	return resp.StatusCode, false
}

var errClientWrite = errors.New("proxy: client write failed")

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyBody streams src to w with a pooled buffer, flushing after every
// chunk when stream is true (unknown length: SSE, chunked pages). idle,
// if not nil, runs for d during every read from src and is stopped
// otherwise. It returns the bytes written to w.
func copyBody(w http.ResponseWriter, src io.Reader, stream bool, idle *time.Timer, d time.Duration) (written int64, err error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	flusher, _ := w.(http.Flusher)
	for {
		if idle != nil {
			idle.Reset(d) // only reads are timed: a slow client is not the backend's fault
		}
		n, rerr := src.Read(buf)
		if idle != nil {
			idle.Stop()
		}
		if n > 0 {
			m, werr := w.Write(buf[:n])
			written += int64(m)
			if werr != nil {
				return written, errClientWrite
			}
			if stream && flusher != nil {
				flusher.Flush()
			}
		}
		if rerr == io.EOF {
			return written, nil
		}
		if rerr != nil {
			return written, rerr
		}
	}
}

// gatewayError answers a failed forward with 502 or 504.
func (h *Handler) gatewayError(w http.ResponseWriter, err error) int {
	code := http.StatusBadGateway
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		code = http.StatusGatewayTimeout
		h.timeouts.Add(1)
	} else {
		h.badGateway.Add(1)
	}
	h.opts.Logger.Debug("backend request failed", "err", err)
	writeError(w, code)
	return code
}

// clientError answers a request whose body could not be read from the
// client: 408 after a read timeout, 400 otherwise. The connection is
// closed after the answer, since its framing is no longer trustworthy;
// on HTTP/2 only the stream ends (net/http would take Connection: close
// for a GOAWAY of the whole connection).
func (h *Handler) clientError(w http.ResponseWriter, r *http.Request, err error) int {
	h.badRequests.Add(1)
	code := http.StatusBadRequest
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		code = http.StatusRequestTimeout
	}
	h.opts.Logger.Debug("client request body failed", "err", err)
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
	writeError(w, code)
	return code
}

// badHead answers 400 to a request whose method, target or Host cannot
// be forwarded. HTTP/1 connections are closed after it; on HTTP/2 only
// the stream ends.
func (h *Handler) badHead(w http.ResponseWriter, r *http.Request, rec *accesslog.Record, start time.Time) {
	h.badRequests.Add(1)
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
	writeError(w, http.StatusBadRequest)
	rec.Status = http.StatusBadRequest
	rec.ID = clientID(r)
	h.finish(nil, rec, start)
}

// notImplemented answers 501 to a protocol switch (Upgrade, WebSocket)
// or CONNECT: kclb forwards plain HTTP requests only.
func (h *Handler) notImplemented(w http.ResponseWriter, r *http.Request, rec *accesslog.Record, start time.Time) {
	const text = "501 Not Implemented: kclb does not forward protocol upgrades (WebSocket) or CONNECT\n"
	hd := w.Header()
	hd.Set("Content-Type", "text/plain; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Content-Length", strconv.Itoa(len(text)))
	if r.ProtoMajor == 1 {
		// The client meant to leave HTTP behind on this connection.
		hd.Set("Connection", "close")
	}
	w.WriteHeader(http.StatusNotImplemented)
	io.WriteString(w, text)
	rec.Status = http.StatusNotImplemented
	rec.ID = clientID(r)
	h.finish(nil, rec, start)
}

// rateLimited answers 429 to a request a rate-limit rule refused; the
// rule counts it.
func (h *Handler) rateLimited(w http.ResponseWriter, r *http.Request, d ratelimit.Decision, rec *accesslog.Record, start time.Time) {
	addSecurityHeaders(w.Header(), h.opts.Security, false, r.TLS != nil, seenUnknown)
	w.Header().Set("Retry-After", strconv.FormatInt(d.RetryAfterSeconds(), 10))
	rec.ID = clientID(r)
	h.finishLocal(w, rec, start, http.StatusTooManyRequests)
}

// RateLimiter returns the handler's rate limiter (nil when none).
func (h *Handler) RateLimiter() *ratelimit.Limiter { return h.opts.RateLimit }

// refuse answers a request the path policy did not allow.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, v pathpolicy.Verdict, rec *accesslog.Record, start time.Time) {
	h.blocked.Add(1)
	code := h.opts.BlockedStatus
	switch v {
	case pathpolicy.AdminDenied:
		code = http.StatusForbidden
	case pathpolicy.Invalid:
		code = http.StatusBadRequest
	}
	if h.opts.Observer != nil {
		h.opts.Observer.Blocked(v)
	}
	addSecurityHeaders(w.Header(), h.opts.Security, false, r.TLS != nil, seenUnknown)
	writeError(w, code)
	rec.Status = code
	rec.ID = clientID(r)
	h.finish(nil, rec, start)
}

// clientID returns the client's X-Request-Id if it is one kclb would
// forward, for the access log of requests refused before an id is
// assigned.
func clientID(r *http.Request) string {
	if v := r.Header["X-Request-Id"]; len(v) == 1 && validRequestID(v[0]) {
		return v[0]
	}
	return ""
}

// finish is the one place a request's record leaves the handler: the
// Observer (metrics) and the access log get it, with its total time.
// Any server front end that bypasses ServeHTTP must fill the same
// fields (accesslog.Record) and call it.
func (h *Handler) finish(s *backend.Server, rec *accesslog.Record, start time.Time) {
	if h.opts.Observer == nil && h.opts.AccessLog == nil {
		return
	}
	rec.Total = time.Since(start)
	if s != nil {
		rec.Server = s.Name()
	} else {
		rec.Route = accesslog.RouteNone
	}
	if h.opts.Observer != nil {
		h.opts.Observer.Request(s, *rec)
	}
	h.opts.AccessLog.Log(rec)
}

// writeError writes a small plain-text error page that names no internal
// address.
func writeError(w http.ResponseWriter, code int) {
	h := w.Header()
	for _, k := range []string{"Content-Length", "Content-Encoding", "Etag", "Last-Modified", "Set-Cookie"} {
		delete(h, k)
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	if code == http.StatusServiceUnavailable {
		h.Set("Retry-After", "5")
	}
	text := strconv.Itoa(code) + " " + http.StatusText(code) + "\n"
	h.Set("Content-Length", strconv.Itoa(len(text)))
	w.WriteHeader(code)
	io.WriteString(w, text)
}

// retryBody lets a request body survive a failed attempt: the transport's
// Close is ignored, and the proxy knows whether any byte was consumed (in
// which case the request cannot be replayed).
type retryBody struct {
	rc io.ReadCloser
	// trailer is the request's Trailer map when trailers are forwarded,
	// and declared the names in it that trailerAllowed accepted: at the
	// end of the body, once net/http has merged what the client sent
	// into the map, every other name is removed before the backend
	// request's trailers are written.
	trailer  http.Header
	declared []string
	read     atomic.Bool
	n        atomic.Int64          // bytes read from the client
	err      atomic.Pointer[error] // first read error other than EOF

	// buf holds the body bytes read before forwarding (buffer); off is
	// how many of them were sent, full whether buf is the whole body.
	// Used by the goroutine forwarding the request only.
	buf  []byte
	off  int
	full bool
}

func (b *retryBody) Read(p []byte) (int, error) {
	if b.off < len(b.buf) {
		n := copy(p, b.buf[b.off:])
		b.off += n
		b.read.Store(true)
		return n, nil
	}
	if b.full {
		return 0, io.EOF
	}
	n, err := b.readRC(p)
	// An empty body (EOF at once) can be replayed: only bytes taken
	// from the client make a request unrepeatable. HTTP/2 requests and
	// chunked HTTP/1.1 requests carry such bodies on plain GETs.
	if n > 0 || (err != nil && err != io.EOF) {
		b.read.Store(true)
	}
	return n, err
}

// readRC reads from the client's body, filtering the trailers at its end
// and recording the first error.
func (b *retryBody) readRC(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF && b.trailer != nil {
		for k := range b.trailer {
			if !slices.Contains(b.declared, k) {
				delete(b.trailer, k)
			}
		}
	}
	if n > 0 {
		b.n.Add(int64(n))
	}
	if err != nil && err != io.EOF {
		b.err.CompareAndSwap(nil, &err)
	}
	return n, err
}

// clientErr returns the error reading the client's body failed with, or
// nil.
func (b *retryBody) clientErr() error {
	if p := b.err.Load(); p != nil {
		return *p
	}
	return nil
}

func (b *retryBody) Close() error { return nil }

func (b *retryBody) closeUnderlying() { b.rc.Close() }

// retriable reports whether a failed attempt may be repeated on another
// server: always after a connect failure (nothing was sent), and for
// idempotent requests whose body was not consumed when the backend reset
// before answering.
func retriable(r *http.Request, body *retryBody, err error) bool {
	if body != nil && body.read.Load() {
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		// A response-header timeout: the request may have been processed.
		return false
	}
	return idempotent(r.Method) && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE))
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// unreachable reports whether a failed forward says that the node is
// unreachable, the only failures passive health counts: the connect
// failed (refused, timed out, no route), or a new connection was reset or
// closed before any byte of a response. Answers the node chose to send,
// response timeouts (a slow endpoint), broken responses and the client's
// own failures never count: a client could otherwise eject nodes at will.
func unreachable(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" || errors.Is(err, errNoResponse)
}

// errorCause names a backend error for health reasons without leaking
// more than its kind.
func errorCause(err error) string {
	var op *net.OpError
	switch {
	case errors.As(err, &op) && op.Op == "dial":
		return "connect: " + syscallName(err)
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed before response"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "protocol error"
}

func syscallName(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "failed"
}
