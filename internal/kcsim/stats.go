package kcsim

import "sync/atomic"

// PathClass groups traffic requests for the per-class counters.
type PathClass uint8

// Path classes, in the order Stats reports them.
const (
	ClassOther        PathClass = iota // anything not listed below (404s included)
	ClassWellKnown                     // /realms/{realm}/.well-known/openid-configuration
	ClassAuth                          // /realms/{realm}/protocol/openid-connect/auth
	ClassLoginActions                  // /realms/{realm}/login-actions/...
	ClassToken                         // /realms/{realm}/protocol/openid-connect/token
	ClassIframe                        // login-status-iframe.html and 3p-cookies pages
	ClassRealm                         // other /realms/{realm}/... Keycloak endpoints
	ClassResources                     // /resources/..., /js/..., /robots.txt
	ClassAdmin                         // / and /admin/...
	ClassHello                         // /realms/{realm}/hello (benchmarks)
	ClassTestHook                      // /echo, /bigheader, /stream
	numClasses
)

var classNames = [numClasses]string{
	"other", "well-known", "auth", "login-actions", "token", "iframe",
	"realm", "resources", "admin", "hello", "test-hook",
}

// String returns the class name used as key in Stats.ByClass.
func (c PathClass) String() string {
	if c < numClasses {
		return classNames[c]
	}
	return "unknown"
}

// counters are the node's atomic counters.
type counters struct {
	requests  atomic.Int64
	logins    atomic.Int64
	misroutes atomic.Int64
	tokens    atomic.Int64
	byClass   [numClasses]atomic.Int64
}

// Stats is a snapshot of a node's counters since New.
type Stats struct {
	// Requests counts traffic-port requests.
	Requests int64 `json:"requests"`
	// Logins counts completed logins (successful authenticate POSTs).
	Logins int64 `json:"logins"`
	// Misroutes counts, in Strict mode, authenticate POSTs carrying an auth
	// session this node did not create whose route is not this node (with
	// WrongRoute set: any auth session this node did not create), and
	// codes redeemed on a node that did not issue them.
	Misroutes int64 `json:"misroutes"`
	// Tokens counts successful token endpoint responses.
	Tokens int64 `json:"tokens"`
	// ByClass counts traffic requests per PathClass name.
	ByClass map[string]int64 `json:"by_class"`
}

// Stats returns the current counters.
func (n *Node) Stats() Stats {
	s := Stats{
		Requests:  n.stats.requests.Load(),
		Logins:    n.stats.logins.Load(),
		Misroutes: n.stats.misroutes.Load(),
		Tokens:    n.stats.tokens.Load(),
		ByClass:   make(map[string]int64, numClasses),
	}
	for i := range n.stats.byClass {
		s.ByClass[PathClass(i).String()] = n.stats.byClass[i].Load()
	}
	return s
}
