package affinity

import (
	"net/http"

	"github.com/kclb/kclb/internal/accesslog"
	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/balancer"
)

// Router adapts an Affinity to the proxy's routing interface
// (proxy.Router): Route picks the server for one attempt, StripRequest
// removes the affinity cookie before the request leaves, Respond learns
// routes and sets the cookie. It is a value wrapper; the zero value is not
// usable.
type Router struct{ A *Affinity }

// Route returns the server for r and whether the response must carry a
// (new) affinity cookie.
func (rt Router) Route(r *http.Request, servers []*backend.Server, tried *balancer.Tried) (*backend.Server, bool) {
	d := rt.A.Pick(r, servers, tried)
	return d.Server, d.SetCookie
}

// RouteExplained is Route plus the rule that chose the server, for the
// access log (proxy.Explainer): the KC_ROUTE cookie, the AUTH_SESSION_ID
// route, the balancer, or a redispatch away from the pinned server.
func (rt Router) RouteExplained(r *http.Request, servers []*backend.Server, tried *balancer.Tried) (*backend.Server, bool, accesslog.Route) {
	d := rt.A.Pick(r, servers, tried)
	how := accesslog.RouteBalanced
	switch {
	case d.Server == nil:
		how = accesslog.RouteNone
	case d.Redispatched:
		how = accesslog.RouteRedispatched
	case d.Source == SourceCookie:
		how = accesslog.RouteKCRoute
	case d.Source == SourceAuthSession:
		how = accesslog.RouteAuthSession
	}
	return d.Server, d.SetCookie, how
}

// StripRequest removes the affinity cookie from h.
func (rt Router) StripRequest(h http.Header) { rt.A.StripRequest(h) }

// ResponseFields names the response fields Respond reads or changes
// (proxy.ResponseFielder): Set-Cookie (routes learned from
// AUTH_SESSION_ID, the KC_ROUTE cookie) and Cache-Control (a response
// that sets the cookie is made private).
func (Router) ResponseFields() []string { return responseFields }

var responseFields = []string{"Set-Cookie", "Cache-Control"}

// Respond applies Affinity.Respond for a response from s.
func (rt Router) Respond(h http.Header, s *backend.Server, setCookie, secure bool) {
	rt.A.Respond(h, Decision{Server: s, SetCookie: setCookie}, secure)
}
