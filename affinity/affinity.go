// Package affinity keeps a Keycloak client on the server that holds its
// login: it wraps a fallback balancer.Selector and adds two kinds of
// stickiness.
//
//   - kclb's own cookie (KC_ROUTE by default), the primary mechanism,
//     inserted on the first response to a client without valid affinity,
//     like HAProxy's `cookie insert indirect nocache`: it names the server
//     by an opaque id, carries a signed expiry, is stripped before the
//     request reaches Keycloak, and the response that sets it is marked
//     Cache-Control: private.
//   - The route in Keycloak's AUTH_SESSION_ID (or AUTH_SESSION_ID_LEGACY)
//     cookie: everything after the first dot, meant to be the node name of
//     the login's owner. It is only a hint: Keycloak 26.1+ often writes
//     another node's name (keycloak#43933) and plans to stop writing it
//     (keycloak#48699). It maps to a server through Server.Route, Learn
//     (the node's own name from its metrics) or, failing both, a suffix
//     that server alone keeps writing (see routes.go).
//
// Precedence: a valid KC_ROUTE naming a server that can take the attempt
// > an AUTH_SESSION_ID route naming a known, Available server > fallback.
// A pinned server that no longer accepts pinned clients (down,
// maintenance) or that this request already failed on is replaced (by the
// hint's server, else the fallback's choice) and the cookie is re-issued
// (a redispatch). A draining server keeps its pinned clients, but their
// cookie is never refreshed and no new cookie names it, so every pin to it
// ends within MaxAge. The decision for a request that carries valid
// cookies does not allocate.
package affinity

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/balancer"
)

// Cookie names Keycloak uses for the auth session.
const (
	authSessionCookie = "AUTH_SESSION_ID"
	legacyCookie      = "AUTH_SESSION_ID_LEGACY"
)

// maxRouteCookies bounds how many KC_ROUTE occurrences in one request are
// verified (a parent-domain cookie may shadow ours).
const maxRouteCookies = 4

// Options configures an Affinity.
type Options struct {
	// CookieName is kclb's affinity cookie. Default DefaultCookieName
	// ("KC_ROUTE"). It must be a valid cookie name, must not start with
	// AUTH_SESSION_ID (that clobbers Keycloak's cookie and causes redirect
	// loops, keycloak#29741) and must not be another of Keycloak's cookies.
	CookieName string
	// MaxAge is the lifetime of the cookie, sent as Max-Age and enforced
	// from the signed expiry. Default DefaultMaxAge (6h); a whole number
	// of seconds, at least 1s. A client still
	// pinned when less than half of it remains gets a fresh cookie.
	MaxAge time.Duration
	// Session sends the cookie without Max-Age, so the browser keeps it
	// only until it closes; the signed expiry still bounds a pin at
	// MaxAge and is renewed the same way. Default false.
	Session bool
	// Secret signs cookies; required, at least 16 bytes. kclb instances
	// that take over from each other must share it.
	Secret []byte
	// AuthSessionRoute uses the AUTH_SESSION_ID route as a hint for
	// requests without a usable KC_ROUTE. False ignores the route.
	AuthSessionRoute bool
	// Learn learns a server's route from the AUTH_SESSION_ID cookies it
	// sets, when neither Server.Route nor the Learn method gave one and
	// the server alone keeps writing the same suffix. False relies on
	// Server.Route and the Learn method only.
	Learn bool
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Source says which rule chose the server. The zero value is
// SourceBalancer.
type Source uint8

const (
	// SourceBalancer: the fallback policy chose (new client, invalid
	// affinity, or redispatch).
	SourceBalancer Source = iota
	// SourceCookie: the KC_ROUTE cookie named the server.
	SourceCookie
	// SourceAuthSession: the AUTH_SESSION_ID route named the server (no
	// usable KC_ROUTE).
	SourceAuthSession

	// NumSources is the number of Source values (for Stats.Hits).
	NumSources = 3
)

// String returns "balancer", "cookie" or "auth_session".
func (s Source) String() string {
	switch s {
	case SourceBalancer:
		return "balancer"
	case SourceCookie:
		return "cookie"
	case SourceAuthSession:
		return "auth_session"
	}
	return "unknown"
}

// MissReason says why affinity carried by a request was ignored.
type MissReason uint8

const (
	// MissMalformed: the KC_ROUTE value does not have our layout.
	MissMalformed MissReason = iota
	// MissSignature: the KC_ROUTE MAC does not verify (tampered, or
	// another secret).
	MissSignature
	// MissExpired: the KC_ROUTE signed expiry has passed, or lies further
	// ahead than MaxAge allows.
	MissExpired
	// MissUnknownServer: a valid KC_ROUTE names no current server.
	MissUnknownServer
	// MissUnknownRoute: an AUTH_SESSION_ID route maps to no current server.
	MissUnknownRoute

	// NumMissReasons is the number of MissReason values (for Stats.Misses).
	NumMissReasons = 5
)

// String returns "malformed", "signature", "expired", "unknown_server" or
// "unknown_route".
func (m MissReason) String() string {
	switch m {
	case MissMalformed:
		return "malformed"
	case MissSignature:
		return "signature"
	case MissExpired:
		return "expired"
	case MissUnknownServer:
		return "unknown_server"
	case MissUnknownRoute:
		return "unknown_route"
	}
	return "unknown"
}

// Decision is the routing result for one attempt. It is a plain value.
// The zero value means "no server".
type Decision struct {
	// Server is the chosen server, nil when none is eligible.
	Server *backend.Server
	// Source is the rule that chose Server.
	Source Source
	// SetCookie: the response must carry a (new) KC_ROUTE cookie for
	// Server; Respond adds it.
	SetCookie bool
	// Redispatched: the client was pinned to a server that could not take
	// this attempt and Server is the fallback's replacement.
	Redispatched bool
}

// Stats are the affinity counters since New.
type Stats struct {
	// Hits counts decisions by Source (indexed by Source).
	Hits [NumSources]uint64
	// Misses counts ignored cookies and routes by MissReason (indexed by
	// MissReason); at most one cookie miss and one route miss per attempt.
	Misses [NumMissReasons]uint64
	// NoServer counts attempts for which no server was eligible.
	NoServer uint64
	// Redispatches counts pinned clients sent elsewhere.
	Redispatches uint64
	// RoutesLearned counts changes to the learned route table.
	RoutesLearned uint64
	// RouteConflicts counts AUTH_SESSION_ID routes set by a server that
	// name another server (keycloak#43933): a route other than the
	// server's configured or Learn one, a route learned for another
	// server, or one another server wrote too.
	RouteConflicts uint64
	// Routes is the number of learned routes now.
	Routes int
}

// Affinity is the sticky-session policy. Create it with New; it is safe
// for concurrent use.
type Affinity struct {
	opts     Options
	maxAge   int64 // seconds
	fallback balancer.Selector
	codec    *codec
	cookieSA string // attributes after the value (cookieAttributes)

	ids  atomic.Pointer[idTable]
	idMu sync.Mutex // serialises id table updates

	routes  atomic.Pointer[routeTable]
	routeMu sync.Mutex           // guards streaks and seen; serialises route table updates
	streaks map[string]streak    // server name -> its run of identical suffixes
	seen    map[string]routeSeen // route -> who wrote it, when contested

	hits         [NumSources]atomic.Uint64
	misses       [NumMissReasons]atomic.Uint64
	noServer     atomic.Uint64
	redispatches atomic.Uint64
	learned      atomic.Uint64
	conflicts    atomic.Uint64
}

var _ balancer.Selector = (*Affinity)(nil)

// New returns an Affinity that sends new clients where fallback says. It
// returns an error for a missing fallback, a secret shorter than 16
// bytes, an invalid or AUTH_SESSION_ID-like cookie name, or a MaxAge
// below one second.
func New(opts Options, fallback balancer.Selector) (*Affinity, error) {
	if fallback == nil {
		return nil, errors.New("affinity: no fallback selector")
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("affinity: %w", err)
	}
	if opts.CookieName == "" {
		opts.CookieName = DefaultCookieName
	}
	if opts.MaxAge == 0 {
		opts.MaxAge = DefaultMaxAge
	}
	if len(opts.Secret) < 16 {
		return nil, fmt.Errorf("affinity: cookie secret has %d bytes, need at least 16", len(opts.Secret))
	}
	opts.Secret = append([]byte(nil), opts.Secret...)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	a := &Affinity{
		opts:     opts,
		maxAge:   int64(opts.MaxAge / time.Second),
		fallback: fallback,
		codec:    newCodec(opts.Secret),
		streaks:  make(map[string]streak),
		seen:     make(map[string]routeSeen),
	}
	a.cookieSA = cookieAttributes(a.maxAge, opts.Session)
	a.ids.Store(&idTable{idName: map[string]string{}, nameID: map[string]string{}, slots: map[string]*cookieSlots{}})
	a.routes.Store(newRouteTable(map[string]routeEntry{}))
	return a, nil
}

// usable reports whether a pinned client may use s for this attempt.
func usable(s *backend.Server, tried *balancer.Tried) bool {
	return s.AcceptsPinned() && !tried.Has(s)
}

// Pick decides where this attempt of r goes among servers, skipping those
// in tried (nil means none). Servers are resolved by name against servers,
// so a server removed from the pool is never returned.
//
// A valid KC_ROUTE naming a server that AcceptsPinned and is not in tried
// wins; its cookie is refreshed (SetCookie) when less than half of MaxAge
// is left, unless the server is not Available (draining: its pins must
// run out). Otherwise an AUTH_SESSION_ID route naming a known server that
// is Available and not in tried is followed, with a new cookie; a route
// naming a draining, down or unknown server is ignored. Otherwise the
// fallback chooses. When the KC_ROUTE server could not take the attempt
// and another was chosen, the decision is Redispatched; Pick calls
// CountRedispatch on the pinned server unless it is in tried (the
// caller's retry loop counts those).
//
// Of several AUTH_SESSION_ID cookies the first is used: RFC 6265 section
// 5.4 has browsers send the most specific path first, which is Keycloak's
// realm path; a re-issued cookie replaces the old one in the browser. Of
// several KC_ROUTE cookies the first that verifies is used. Pick does not
// modify r.
func (a *Affinity) Pick(r *http.Request, servers []*backend.Server, tried *balancer.Tried) Decision {
	var (
		auth, legacy string
		routeVals    [maxRouteCookies]string
		nRoute       int
	)
	sc := newPairScanner(r.Header["Cookie"])
	for {
		name, value, ok := sc.next()
		if !ok {
			break
		}
		switch name {
		case a.opts.CookieName:
			if nRoute < maxRouteCookies {
				routeVals[nRoute] = value
				nRoute++
			}
		case authSessionCookie:
			// RFC 6265 5.4: the most specific path comes first, and
			// Keycloak's is the realm path: the first one wins.
			if auth == "" {
				auth = value
			}
		case legacyCookie:
			if legacy == "" {
				legacy = value
			}
		}
	}

	var pinned *backend.Server // the KC_ROUTE server, when it cannot take the attempt
	if nRoute > 0 {
		now := a.opts.Now().Unix()
		reason := MissMalformed
		var cookieSrv *backend.Server
		fresh := false
		for _, v := range routeVals[:nRoute] {
			id, exp, why, ok := a.codec.decode(v, now)
			if ok && exp-now > a.maxAge+60 { // issued under a longer MaxAge
				why, ok = MissExpired, false
			}
			if !ok {
				reason = why
				continue
			}
			if s := a.resolveID(id, servers); s != nil {
				cookieSrv, fresh = s, exp-now > a.maxAge/2
				break
			}
			reason = MissUnknownServer
		}
		switch {
		case cookieSrv == nil:
			a.misses[reason].Add(1)
		case usable(cookieSrv, tried):
			a.hits[SourceCookie].Add(1)
			// A draining server's pins are honoured, never extended.
			return Decision{Server: cookieSrv, Source: SourceCookie, SetCookie: !fresh && cookieSrv.Available()}
		default:
			pinned = cookieSrv
		}
	}

	if a.opts.AuthSessionRoute {
		if auth == "" {
			auth = legacy
		}
		if route, ok := ParseAuthSessionRoute(auth); ok {
			switch s := a.resolveRoute(route, servers); {
			case s == nil:
				a.misses[MissUnknownRoute].Add(1)
			case s.Available() && !tried.Has(s):
				a.hits[SourceAuthSession].Add(1)
				return a.redispatch(Decision{Server: s, Source: SourceAuthSession, SetCookie: true}, pinned, tried)
			}
		}
	}

	s := a.selectFallback(r, servers, tried)
	if s == nil {
		a.noServer.Add(1)
		return Decision{}
	}
	a.hits[SourceBalancer].Add(1)
	return a.redispatch(Decision{Server: s, Source: SourceBalancer, SetCookie: true}, pinned, tried)
}

// selectFallback asks the fallback policy for a server. kclb's own
// policies are called directly: tried does not escape through them. Any
// other Selector gets a copy of tried, since a pointer passed to an
// interface method escapes and the caller's Tried must stay on its stack
// for Pick to be allocation-free.
func (a *Affinity) selectFallback(r *http.Request, servers []*backend.Server, tried *balancer.Tried) *backend.Server {
	switch f := a.fallback.(type) {
	case *balancer.RoundRobin:
		return f.Select(r, servers, tried)
	case balancer.LeastRequest:
		return f.Select(r, servers, tried)
	case *balancer.LeastRequest:
		return f.Select(r, servers, tried)
	}
	tc := new(balancer.Tried)
	if tried != nil {
		*tc = *tried
	}
	return a.fallback.Select(r, servers, tc)
}

// redispatch marks d Redispatched and counts it when the client was
// pinned to another server than d.Server.
func (a *Affinity) redispatch(d Decision, pinned *backend.Server, tried *balancer.Tried) Decision {
	if pinned == nil || pinned == d.Server {
		return d
	}
	if !tried.Has(pinned) {
		// A pin in tried already failed this request: the caller's
		// retry loop counts that redispatch.
		pinned.CountRedispatch()
	}
	a.redispatches.Add(1)
	d.Redispatched = true
	return d
}

// Select implements balancer.Selector: it returns Pick(r, servers,
// tried).Server. Cookies are not issued on this path; use Pick and Respond
// for that.
func (a *Affinity) Select(r *http.Request, servers []*backend.Server, tried *balancer.Tried) *backend.Server {
	return a.Pick(r, servers, tried).Server
}

// StripRequest removes the affinity cookie from the Cookie header(s) of an
// outgoing request, in place, so Keycloak never sees it. Other cookies are
// kept byte for byte; a Cookie header left empty is removed. h must not be
// shared with the incoming request.
func (a *Affinity) StripRequest(h http.Header) {
	vals, ok := h["Cookie"]
	if !ok {
		return
	}
	out := vals[:0]
	changed := false
	for _, v := range vals {
		nv, c := stripCookie(v, a.opts.CookieName)
		changed = changed || c
		if nv != "" {
			out = append(out, nv)
		}
	}
	if !changed {
		return
	}
	if len(out) == 0 {
		delete(h, "Cookie")
		return
	}
	clear(vals[len(out):])
	h["Cookie"] = out
}

// Respond adjusts the response headers h of an attempt decided by d.
// With Options.Learn and d.Server set, the AUTH_SESSION_ID (or _LEGACY)
// routes the server sets are observed (once per distinct route per
// response) to learn its route by the rules in routes.go. When d.SetCookie
// is set and d.Server's admin state is ready, or draining for a new pin
// decided before the drain began (a login in progress there; a refresh is
// never issued for a draining server), it appends
// the affinity cookie for d.Server (Max-Age, Path=/, HttpOnly, and on
// HTTPS, when secure is true, Secure and SameSite=None; browsers reject
// SameSite=None without Secure, so plain HTTP gets the default SameSite)
// and makes sure the response is not stored by shared caches: it adds
// Cache-Control: private unless the backend already said private or
// no-store, dropping a "public" directive.
func (a *Affinity) Respond(h http.Header, d Decision, secure bool) {
	if d.Server == nil {
		return
	}
	if a.opts.Learn {
		prev := ""
		for _, v := range h["Set-Cookie"] {
			name, value := setCookieNameValue(v)
			if name != authSessionCookie && name != legacyCookie {
				continue
			}
			// Keycloak sets AUTH_SESSION_ID and _LEGACY with the same
			// value: one observation.
			if route, ok := ParseAuthSessionRoute(value); ok && route != prev {
				a.observe(route, d.Server)
				prev = route
			}
		}
	}
	if !d.SetCookie {
		return
	}
	switch d.Server.Admin() {
	case backend.AdminReady:
	case backend.AdminDrain:
		// A new client placed there before the drain began has its
		// login in progress on the server: without the pin its next
		// step would go elsewhere (the AUTH_SESSION_ID route names a
		// draining server, which is ignored). A refresh is never issued.
		if d.Source == SourceCookie {
			return
		}
	default:
		return
	}
	ic := a.issue(d.Server, a.opts.Now().Unix()+a.maxAge, secure)
	if vals := h["Set-Cookie"]; len(vals) > 0 {
		h["Set-Cookie"] = append(vals, ic.vals[0])
	} else {
		h["Set-Cookie"] = ic.vals[:1:1] // shared: an append copies it
	}
	markPrivate(h)
}

// issuedCookie is a Set-Cookie value Respond made for one server, one
// expiry second and one scheme: every response issuing the same cookie
// in the same second reuses it, so a new visitor's response costs no
// MAC and no allocation. vals holds the value alone; it is shared by the
// header maps it is put into, read-only.
type issuedCookie struct {
	exp  int64
	vals []string
}

// cookieSlots holds the last cookie issued for a server, over HTTP and
// over HTTPS.
type cookieSlots struct {
	plain, secure atomic.Pointer[issuedCookie]
}

// issue returns the Set-Cookie value naming s, valid until exp, from its
// slot when the slot holds that second's.
func (a *Affinity) issue(s *backend.Server, exp int64, secure bool) *issuedCookie {
	id, slots := a.idSlots(s)
	slot := &slots.plain
	if secure {
		slot = &slots.secure
	}
	if ic := slot.Load(); ic != nil && ic.exp == exp {
		return ic
	}
	var b strings.Builder
	b.Grow(len(a.opts.CookieName) + 1 + maxValue + len(a.cookieSA) + 24)
	b.WriteString(a.opts.CookieName)
	b.WriteByte('=')
	b.WriteString(a.codec.encode(id, exp))
	b.WriteString(a.cookieSA)
	if secure {
		b.WriteString("; Secure; SameSite=None")
	}
	ic := &issuedCookie{exp: exp, vals: []string{b.String()}}
	slot.Store(ic)
	return ic
}

// markPrivate makes h's Cache-Control forbid shared caching.
func markPrivate(h http.Header) {
	vals := h["Cache-Control"]
	if len(vals) == 0 {
		h["Cache-Control"] = []string{"private"}
		return
	}
	var kept []string
	public := false
	for _, v := range vals {
		for d := range strings.SplitSeq(v, ",") {
			d = trimOWS(d)
			if d == "" {
				continue
			}
			name := d
			if i := strings.IndexByte(d, '='); i >= 0 {
				name = trimOWS(d[:i])
			}
			switch {
			case strings.EqualFold(name, "private"), strings.EqualFold(name, "no-store"):
				return
			case strings.EqualFold(name, "public"):
				public = true
				continue
			}
			kept = append(kept, d)
		}
	}
	if !public {
		h["Cache-Control"] = append(vals, "private")
		return
	}
	h["Cache-Control"] = []string{strings.Join(append(kept, "private"), ", ")}
}

// Stats returns the counters.
func (a *Affinity) Stats() Stats {
	var st Stats
	for i := range st.Hits {
		st.Hits[i] = a.hits[i].Load()
	}
	for i := range st.Misses {
		st.Misses[i] = a.misses[i].Load()
	}
	st.NoServer = a.noServer.Load()
	st.Redispatches = a.redispatches.Load()
	st.RoutesLearned = a.learned.Load()
	st.RouteConflicts = a.conflicts.Load()
	st.Routes = len(a.routes.Load().m)
	return st
}
