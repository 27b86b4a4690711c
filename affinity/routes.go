package affinity

import (
	"maps"

	"github.com/kclb/kclb/backend"
)

// Bounds on the copy-on-write tables. Keycloak nodes with generated names
// get a new route at every restart, and discovery may churn server names,
// so both tables are pruned instead of growing for ever.
const (
	maxLearnedRoutes = 1024
	// relearnAfter is how many consecutive Set-Cookie observations of a
	// route from another server it takes to move a learned route. One
	// stray cookie (Keycloak 26.1+ sometimes names a node other than the
	// one answering, keycloak#43933) must not flip a good mapping.
	relearnAfter = 3
)

// routeEntry is where a learned route points.
type routeEntry struct {
	name string // server name
	// explicit is set by Learn (health checks, the node label of
	// vendor_cluster_size): authoritative, and not overridden by
	// Set-Cookie observations.
	explicit bool
}

// routeTable is an immutable snapshot of learned routes.
type routeTable struct {
	m map[string]routeEntry
}

// pendingRoute counts consecutive observations that contradict a learned
// route.
type pendingRoute struct {
	name string
	n    int
}

// idTable is an immutable snapshot of cookie ids of the servers seen so far.
type idTable struct {
	idName map[string]string // cookie id -> server name
	nameID map[string]string // server name -> cookie id
}

// Learn records that route (a Keycloak node name, the AUTH_SESSION_ID
// suffix) belongs to s. It is authoritative: the latest call wins, and
// routes learned this way are not moved by Set-Cookie observations. Meant
// for the health checker (the `node` label of vendor_cluster_size). Empty
// routes, routes longer than 255 bytes and a nil s are ignored.
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
	delete(a.pending, route)
	a.storeRouteLocked(route, routeEntry{name: name, explicit: true})
}

// observe records that s answered with an AUTH_SESSION_ID whose suffix is
// route. A new route is learned at once; a route already learned for
// another server moves only after relearnAfter consecutive observations,
// and never when it was set by Learn.
func (a *Affinity) observe(route string, s *backend.Server) {
	name := s.Name()
	if e, ok := a.routes.Load().m[route]; ok && e.name == name {
		if a.pendingN.Load() == 0 {
			return // hot path: already known, nothing contested
		}
		a.routeMu.Lock()
		if _, ok := a.pending[route]; ok {
			delete(a.pending, route)
			a.pendingN.Store(int64(len(a.pending)))
		}
		a.routeMu.Unlock()
		return
	}
	a.routeMu.Lock()
	defer a.routeMu.Unlock()
	e, ok := a.routes.Load().m[route]
	switch {
	case ok && e.name == name:
		return
	case !ok:
		a.storeRouteLocked(route, routeEntry{name: name})
		return
	case e.explicit:
		a.conflicts.Add(1)
		return
	}
	a.conflicts.Add(1)
	p := a.pending[route]
	if p.name != name {
		p = pendingRoute{name: name}
	}
	p.n++
	if p.n < relearnAfter {
		if len(a.pending) < maxLearnedRoutes {
			a.pending[route] = p
		}
		a.pendingN.Store(int64(len(a.pending)))
		return
	}
	delete(a.pending, route)
	a.pendingN.Store(int64(len(a.pending)))
	a.storeRouteLocked(route, routeEntry{name: name})
}

// storeRouteLocked publishes a copy of the route table with route set to
// e. a.routeMu must be held.
func (a *Affinity) storeRouteLocked(route string, e routeEntry) {
	old := a.routes.Load().m
	next := make(map[string]routeEntry, len(old)+1)
	maps.Copy(next, old)
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
	a.routes.Store(&routeTable{m: next})
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
	}
	if keep {
		maps.Copy(next.idName, t.idName)
		maps.Copy(next.nameID, t.nameID)
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
	}
	a.ids.Store(next)
}

// idOf returns the cookie id of s, computing and caching it if needed.
func (a *Affinity) idOf(s *backend.Server) string {
	if id, ok := a.ids.Load().nameID[s.Name()]; ok {
		return id
	}
	a.idMu.Lock()
	defer a.idMu.Unlock()
	t := a.ids.Load()
	name := s.Name()
	if id, ok := t.nameID[name]; ok {
		return id
	}
	id := a.codec.id(name)
	next := &idTable{
		idName: make(map[string]string, len(t.idName)+1),
		nameID: make(map[string]string, len(t.nameID)+1),
	}
	maps.Copy(next.idName, t.idName)
	maps.Copy(next.nameID, t.nameID)
	next.idName[id] = name
	next.nameID[name] = id
	a.ids.Store(next)
	return id
}

func byName(servers []*backend.Server, name string) *backend.Server {
	for _, s := range servers {
		if s.Name() == name {
			return s
		}
	}
	return nil
}
