package admin

import (
	"context"
	"fmt"
	"time"

	"github.com/kclb/kclb/internal/backend"
)

// Stamp is the version of one server's last admin change, as the state
// file keeps it and the pair (internal/peer) exchanges it. Versions come
// from a hybrid logical clock: larger than every version this instance has
// seen and at least the wall clock in milliseconds, so the later change
// wins even between instances that lost their state files. Equal versions
// are ordered by Node. The zero Stamp (version 0) loses to every change.
type Stamp struct {
	// Admin is "ready", "drain" or "maint".
	Admin string `json:"admin"`
	// Version orders changes of one server.
	Version uint64 `json:"version"`
	// Node is the [global] name of the instance the change was made on.
	Node string `json:"node,omitempty"`
}

// Newer reports whether s was written after o: a larger version, or the
// same version from a node whose name sorts after o's.
func (s Stamp) Newer(o Stamp) bool {
	if s.Version != o.Version {
		return s.Version > o.Version
	}
	return s.Node > o.Node
}

// PeerResult is what happened to an admin change on the pair's other
// instance (ChangeResult.Peer).
type PeerResult struct {
	// Peer is the other instance's pair address.
	Peer string `json:"peer"`
	// Applied is true when the peer acknowledged the change.
	Applied bool `json:"applied"`
	// Error says why the peer could not be told; empty when Applied.
	Error string `json:"error,omitempty"`
}

// PairStatus is the pair channel's view, for GET /v1/status.
type PairStatus struct {
	// Peer is the other instance's pair address; PeerName its [global] name
	// once it answered.
	Peer     string `json:"peer"`
	PeerName string `json:"peer_name,omitempty"`
	// Reachable is true when the last exchange with the peer succeeded;
	// LastContact is when one last did (zero: never); Error is the last
	// failure's reason.
	Reachable   bool      `json:"reachable"`
	LastContact time.Time `json:"last_contact,omitzero"`
	Error       string    `json:"error,omitempty"`
	// PeerView is the admin state of every server in the peer's pool, as
	// of LastContact.
	PeerView map[string]string `json:"peer_view,omitempty"`
	// Drift lists the parts of the configuration that must match across the
	// pair but differ (servers, affinity_key, vrrp, paths, headers); empty
	// when they match or the peer was never reached.
	Drift []string `json:"drift,omitempty"`
	// Dropped counts messages refused by reason (bad_mac, replay, stale,
	// malformed, reflected).
	Dropped map[string]uint64 `json:"dropped,omitempty"`
}

// next returns the version for a change made now. s.mu must be held.
func (s *Server) nextVersionLocked() uint64 {
	v := uint64(time.Now().UnixMilli())
	for _, sp := range s.state.Stamps {
		if sp.Version >= v {
			v = sp.Version + 1
		}
	}
	return v
}

// stampLocked records the change of name to a. s.mu must be held.
func (s *Server) stampLocked(name string, a backend.AdminState) {
	if s.state.Stamps == nil {
		s.state.Stamps = map[string]Stamp{}
	}
	s.state.Stamps[name] = Stamp{Admin: a.String(), Version: s.nextVersionLocked(), Node: s.opts.Node}
}

// Stamps returns the versioned admin state of every server the state
// names (including servers not in the pool); a state written before
// stamps existed counts as version 0.
func (s *Server) Stamps() map[string]Stamp {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Stamp, len(s.state.Stamps)+len(s.state.Servers))
	for name, a := range s.state.Servers {
		out[name] = Stamp{Admin: a}
	}
	for name, sp := range s.state.Stamps {
		out[name] = sp
	}
	return out
}

// View returns the admin state of every server in the pool.
func (s *Server) View() map[string]string {
	servers := s.opts.Pool.Servers()
	out := make(map[string]string, len(servers))
	for _, srv := range servers {
		out[srv.Name()] = srv.Admin().String()
	}
	return out
}

// Merge applies every stamp in remote that is newer than this instance's
// own for that server: the pool's server takes the state (a server not in
// the pool keeps it for when it joins, as in Restore), and the state file
// is written once. It returns the names whose state changed. Stamps
// naming an unknown admin state are skipped.
func (s *Server) Merge(remote map[string]Stamp) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var changed []string
	for name, r := range remote {
		a, ok := backend.ParseAdminState(r.Admin)
		if !ok || name == "" {
			continue
		}
		local, ok := s.state.Stamps[name]
		if !ok {
			if v, drained := s.state.Servers[name]; drained {
				local = Stamp{Admin: v}
			} else {
				local = Stamp{Admin: backend.AdminReady.String()}
			}
		}
		if !r.Newer(local) {
			continue
		}
		if s.state.Stamps == nil {
			s.state.Stamps = map[string]Stamp{}
		}
		s.state.Stamps[name] = r
		if s.state.Servers == nil {
			s.state.Servers = map[string]string{}
		}
		if a == backend.AdminReady {
			delete(s.state.Servers, name)
		} else {
			s.state.Servers[name] = a.String()
		}
		changed = append(changed, name)
	}
	if len(changed) == 0 {
		return nil, nil
	}
	// The state file first: a crash between the two leaves the file
	// ahead of the pool, which Restore then applies.
	var err error
	if s.opts.State != nil {
		s.state.Updated = time.Now().UTC()
		if serr := s.opts.State.Save(s.state); serr != nil {
			err = fmt.Errorf("%w: %w", ErrNotPersisted, serr)
		}
	}
	for _, name := range changed {
		r := remote[name]
		a, _ := backend.ParseAdminState(r.Admin)
		srv := s.opts.Pool.Lookup(name)
		if srv == nil || srv.Admin() == a {
			continue
		}
		from := srv.Admin()
		if s.opts.Pool.SetAdmin(name, a) == nil {
			s.mutations.Add(1)
			s.opts.Logger.Info("admin state changed", "server", name, "from", from.String(), "to", a.String(), "via", "peer", "by", r.Node)
		}
	}
	return changed, err
}

// replicate tells the peer about a change, when there is a pair.
func (s *Server) replicate(ctx context.Context) *PeerResult {
	if s.opts.Replicate == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res := s.opts.Replicate(ctx)
	return &res
}
