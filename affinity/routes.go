package affinity

import (
	"maps"
	"strings"
	"time"

	"github.com/kclb/kclb/internal/backend"
)

// Where a server's route (its Keycloak node name) comes from, most
// trusted first:
//
//  1. Server.Route, configured.
//  2. Learn: the `node` label of the server's own vendor_cluster_size
//     metric, read by the health checker from the management port. The
//     node says who it is; nothing a client or another node writes
//     changes it.
//  3. The AUTH_SESSION_ID suffixes the server sets, and only while 1 and
//     2 say nothing. Keycloak 26.1+ often writes a suffix naming another
//     node (keycloak#43933: right with probability 2/cluster-size), and
//     older Keycloak wrote the session owner's name, not necessarily the
//     answering node's. So a suffix is taken as the server's own name only
//     when the server keeps writing it and nobody else does: the server's
//     last learnAfter suffixes were all that route, and no other server
//     wrote it within contestWindow. A learned route that another server
//     writes is dropped at once. Under #43933 every route is written by
//     several servers, so nothing is learned from cookies and the
//     AUTH_SESSION_ID hint is simply unused; the metrics (2) still give
//     the right table.
//
// A Keycloak node has one name, so a server has at most one learned route:
// learning a new one (a restart with a generated name) replaces the old.
const (
	// learnAfter is how many consecutive responses of one server must
	// carry the same suffix before it is learned from cookies.
	learnAfter = 8
	// contestWindow is how long a route written by two servers cannot be
	// learned from cookies.
	contestWindow = 10 * time.Minute
	// maxLearnedRoutes bounds the route table and the bookkeeping maps.
	// Keycloak nodes with generated names get a new route at every
	// restart, and discovery may churn server names, so the tables are
	// pruned instead of growing for ever.
	maxLearnedRoutes = 1024
)

// routeEntry is where a learned route points.
type routeEntry struct {
	name string // server name
	// explicit is set by Learn (the node label of vendor_cluster_size):
	// authoritative, and never changed by Set-Cookie observations.
	explicit bool
}

// serverRoute is a server's learned route, the inverse of routeEntry.
type serverRoute struct {
	route    string
	explicit bool
}

// routeTable is an immutable snapshot of learned routes.
type routeTable struct {
	m        map[string]routeEntry  // route -> server
	byServer map[string]serverRoute // server name -> its route
}

func newRouteTable(m map[string]routeEntry) *routeTable {
	t := &routeTable{m: m, byServer: make(map[string]serverRoute, len(m))}
	for r, e := range m {
		t.byServer[e.name] = serverRoute{route: r, explicit: e.explicit}
	}
	return t
}

// streak is a server's run of responses carrying the same suffix.
type streak struct {
	route string
	n     int
}

// routeSeen is what Set-Cookie observations told about one route.
type routeSeen struct {
	writer    string // server that wrote it last
	contested int64  // Unix seconds when a second server wrote it; 0 never
}

// Learn records that route (a Keycloak node name, the AUTH_SESSION_ID
// suffix) belongs to s. It is authoritative: the latest call wins, it
// replaces any other route of s, and routes learned this way are not
// changed by Set-Cookie observations. Meant for the health checker (the
// `node` label of vendor_cluster_size). Empty routes, routes longer than
// 255 bytes and a nil s are ignored.
func (a *Affinity) Learn(route string, s *backend.Server) {
	if s == nil || route == "" || len(route) > maxRouteLen {
		return
	}
	name := s.Name()
	if e, ok := a.routes.Load().m[route]; ok && e.explicit && e.name == name {
		return
	}
	a.routeMu.Lock()
	defer a.routeMu.Unlock()
	delete(a.streaks, name)
	a.storeRouteLocked(route, routeEntry{name: name, explicit: true})
}

// observe records that s answered with an AUTH_SESSION_ID whose suffix is
// route, and learns or drops routes by the rules above. The common cases
// (a suffix that is the server's known route; a foreign suffix when every
// route involved is configured or from Learn) take no lock.
func (a *Affinity) observe(route string, s *backend.Server) {
	name := s.Name()
	if own := s.Route(); own != "" {
		if route != own {
			a.conflicts.Add(1) // a configured server wrote another name
			a.contest(route, name)
		}
		return
	}
	t := a.routes.Load()
	mine, known := t.byServer[name]
	e, taken := t.m[route]
	switch {
	case known && mine.route == route:
		return // its own route, learned already
	case known && mine.explicit:
		// The node named itself in its metrics: this suffix is not it.
		a.conflicts.Add(1)
		if !taken || !e.explicit {
			a.contest(route, name)
		}
		return
	}
	a.routeMu.Lock()
	defer a.routeMu.Unlock()
	// route may share the memory of a response head that is reused
	// after the response (the proxy's upstream): what is kept is a copy.
	route = strings.Clone(route)
	if taken && e.explicit {
		// Another server's route, from its metrics: not this one's
		// name, and the end of its streak.
		a.conflicts.Add(1)
		delete(a.streaks, name)
		return
	}
	now := a.opts.Now().Unix()
	if a.markWriterLocked(route, name, now) {
		a.conflicts.Add(1)
		delete(a.streaks, name)
		return
	}
	st := a.streaks[name]
	if st.route != route {
		st = streak{route: route}
	}
	st.n++
	if len(a.streaks) >= maxLearnedRoutes {
		clear(a.streaks)
	}
	a.streaks[name] = st
	if st.n < learnAfter || now-a.seen[route].contested < int64(contestWindow/time.Second) {
		return
	}
	t = a.routes.Load()
	if _, taken := t.m[route]; taken {
		return // learned meanwhile, or explicit: leave it
	}
	if mine, known := t.byServer[name]; known && mine.explicit {
		return
	}
	a.storeRouteLocked(route, routeEntry{name: name})
}

// contest records that name wrote route: when route was written or
// learned for another server, it is marked contested and an observed
// mapping is dropped.
func (a *Affinity) contest(route, name string) {
	a.routeMu.Lock()
	defer a.routeMu.Unlock()
	route = strings.Clone(route) // kept: see observe
	a.markWriterLocked(route, name, a.opts.Now().Unix())
}

// markWriterLocked notes that name wrote route at now. If another server
// wrote it before, or it is learned (from cookies) for another server,
// the route becomes contested, that mapping is dropped, and it returns
// true. a.routeMu must be held.
func (a *Affinity) markWriterLocked(route, name string, now int64) bool {
	sn, ok := a.seen[route]
	e, taken := a.routes.Load().m[route]
	conflict := ok && sn.writer != name || taken && e.name != name
	if !ok && len(a.seen) >= maxLearnedRoutes {
		a.pruneSeenLocked(now)
	}
	sn.writer = name
	if conflict {
		sn.contested = now
		if taken && !e.explicit && e.name != name {
			a.deleteRouteLocked(route)
		}
	}
	a.seen[route] = sn
	return conflict
}

// pruneSeenLocked makes room in a.seen: routes whose contest has expired
// go first, then, if that freed nothing, everything. a.routeMu must be
// held.
func (a *Affinity) pruneSeenLocked(now int64) {
	for r, sn := range a.seen {
		if now-sn.contested >= int64(contestWindow/time.Second) {
			delete(a.seen, r)
		}
	}
	if len(a.seen) >= maxLearnedRoutes {
		clear(a.seen)
	}
}

// storeRouteLocked publishes a copy of the route table with route set to
// e, and any other route of the same server removed. a.routeMu must be
// held.
func (a *Affinity) storeRouteLocked(route string, e routeEntry) {
	old := a.routes.Load()
	next := make(map[string]routeEntry, len(old.m)+1)
	maps.Copy(next, old.m)
	if prev, ok := old.byServer[e.name]; ok && prev.route != route {
		delete(next, prev.route)
	}
	if _, ok := next[route]; !ok && len(next) >= maxLearnedRoutes {
		// Evict one route, preferring one that was only observed.
		victim, found := "", false
		for r, v := range next {
			victim, found = r, true
			if !v.explicit {
				break
			}
		}
		if found {
			delete(next, victim)
		}
	}
	next[route] = e
	a.routes.Store(newRouteTable(next))
	a.learned.Add(1)
}

// deleteRouteLocked publishes a copy of the route table without route.
// a.routeMu must be held.
func (a *Affinity) deleteRouteLocked(route string) {
	old := a.routes.Load()
	next := maps.Clone(old.m)
	delete(next, route)
	a.routes.Store(newRouteTable(next))
	a.learned.Add(1)
}

// Routes returns the learned routes (from Learn and Set-Cookie) as
// route -> server name, for the status API. Routes configured on servers
// (Server.Route) are not included; they take precedence over learned ones.
func (a *Affinity) Routes() map[string]string {
	t := a.routes.Load()
	out := make(map[string]string, len(t.m))
	for r, e := range t.m {
		out[r] = e.name
	}
	return out
}

// resolveRoute returns the server in servers that owns route: the one
// configured with that Route, else the one it was learned for. It does
// not allocate.
func (a *Affinity) resolveRoute(route string, servers []*backend.Server) *backend.Server {
	for _, s := range servers {
		if s.Route() == route {
			return s
		}
	}
	if e, ok := a.routes.Load().m[route]; ok {
		return byName(servers, e.name)
	}
	return nil
}

// resolveID returns the server in servers whose cookie id is id, or nil.
func (a *Affinity) resolveID(id string, servers []*backend.Server) *backend.Server {
	name, ok := a.ids.Load().idName[id]
	if !ok {
		// A validly signed id we have not computed yet: a server added
		// since, or a cookie issued by the peer kclb.
		a.ensureIDs(servers)
		if name, ok = a.ids.Load().idName[id]; !ok {
			return nil
		}
	}
	return byName(servers, name)
}

// ensureIDs makes sure every server in servers has a cookie id in the id
// table. It allocates only when one is missing.
func (a *Affinity) ensureIDs(servers []*backend.Server) {
	t := a.ids.Load()
	missing := false
	for _, s := range servers {
		if _, ok := t.nameID[s.Name()]; !ok {
			missing = true
			break
		}
	}
	if !missing {
		return
	}
	a.idMu.Lock()
	defer a.idMu.Unlock()
	t = a.ids.Load()
	keep := len(t.nameID) <= 2*len(servers)+32 // else prune departed servers
	next := &idTable{
		idName: make(map[string]string, len(servers)),
		nameID: make(map[string]string, len(servers)),
		slots:  make(map[string]*cookieSlots, len(servers)),
	}
	if keep {
		maps.Copy(next.idName, t.idName)
		maps.Copy(next.nameID, t.nameID)
		maps.Copy(next.slots, t.slots)
	}
	for _, s := range servers {
		name := s.Name()
		if _, ok := next.nameID[name]; ok {
			continue
		}
		id, ok := t.nameID[name]
		if !ok {
			id = a.codec.id(name)
		}
		next.nameID[name] = id
		next.idName[id] = name
		if sl := t.slots[name]; sl != nil {
			next.slots[name] = sl
		} else {
			next.slots[name] = new(cookieSlots)
		}
	}
	a.ids.Store(next)
}

// idTable is an immutable snapshot of cookie ids of the servers seen so far.
type idTable struct {
	idName map[string]string       // cookie id -> server name
	nameID map[string]string       // server name -> cookie id
	slots  map[string]*cookieSlots // server name -> its last issued cookies
}

// idSlots returns the cookie id of s and its issued-cookie slots,
// computing and caching them if needed.
func (a *Affinity) idSlots(s *backend.Server) (string, *cookieSlots) {
	name := s.Name()
	t := a.ids.Load()
	if id, ok := t.nameID[name]; ok {
		return id, t.slots[name]
	}
	a.idMu.Lock()
	defer a.idMu.Unlock()
	t = a.ids.Load()
	if id, ok := t.nameID[name]; ok {
		return id, t.slots[name]
	}
	id := a.codec.id(name)
	next := &idTable{
		idName: make(map[string]string, len(t.idName)+1),
		nameID: make(map[string]string, len(t.nameID)+1),
		slots:  make(map[string]*cookieSlots, len(t.slots)+1),
	}
	maps.Copy(next.idName, t.idName)
	maps.Copy(next.nameID, t.nameID)
	maps.Copy(next.slots, t.slots)
	next.idName[id] = name
	next.nameID[name] = id
	next.slots[name] = new(cookieSlots)
	a.ids.Store(next)
	return id, next.slots[name]
}

func byName(servers []*backend.Server, name string) *backend.Server {
	for _, s := range servers {
		if s.Name() == name {
			return s
		}
	}
	return nil
}
