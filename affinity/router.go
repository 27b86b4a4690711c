package affinity

import (
	"net/http"

	"github.com/kclb/kclb/backend"
	"github.com/kclb/kclb/balancer"
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

// StripRequest removes the affinity cookie from h.
func (rt Router) StripRequest(h http.Header) { rt.A.StripRequest(h) }

// Respond applies Affinity.Respond for a response from s.
func (rt Router) Respond(h http.Header, s *backend.Server, setCookie, secure bool) {
	rt.A.Respond(h, Decision{Server: s, SetCookie: setCookie}, secure)
}
