// Package discovery keeps a backend pool's membership in line with a DNS
// name: every address the name resolves to (A and AAAA records) becomes a
// server, and a server whose address vanished is drained, then removed.
// It changes the pool only through the small Pool interface and knows
// nothing of health checks: a discovered server with a management address
// is handed to the pool as Starting, and the health checker brings it into
// rotation like any other.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/kclb/kclb/internal/backend"
)

// Resolver looks up the addresses of a name. *net.Resolver satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

var _ Resolver = (*net.Resolver)(nil)

// Pool is the membership a DNS reconciles. *backend.Pool satisfies it.
type Pool interface {
	// Servers returns the current members; the slice is not modified.
	Servers() []*backend.Server
	// Add inserts a server, or returns the existing one of that name.
	Add(spec backend.Spec) *backend.Server
	// Remove deletes the server called name.
	Remove(name string) bool
	// SetAdmin sets the admin state of the server called name.
	SetAdmin(name string, a backend.AdminState) error
	// CompareAndSetHealth records h and d for s only if s's health is
	// still old (used once, to mark a new server Starting).
	CompareAndSetHealth(s *backend.Server, old, h backend.Health, d backend.Detail) bool
}

var _ Pool = (*backend.Pool)(nil)

// Options configures a DNS.
type Options struct {
	// Name is the DNS name to resolve. Required. Servers are named
	// "<Name>-<ip>" (without a trailing dot in Name).
	Name string
	// Network is "ip" (A and AAAA), "ip4" (A) or "ip6" (AAAA). Empty
	// means "ip".
	Network string
	// Port is the traffic port of every discovered server. Required.
	Port uint16
	// MgmtPort is the management port (Keycloak's 9000). Zero means no
	// management address: no active checks. When set, new servers start
	// in HealthStarting and enter rotation only after Rise passing checks.
	MgmtPort uint16
	// Template supplies Weight and MaxConn for discovered servers; its
	// Name, Addr, Mgmt and Route are ignored.
	Template backend.Spec
	// Interval between lookups. Zero means 30s.
	Interval time.Duration
	// Timeout bounds one lookup (real time). Zero means 5s.
	Timeout time.Duration
	// Grace is how long a vanished server may drain before it is removed
	// even with requests in flight. Zero means 60s.
	Grace time.Duration
	// DrainPoll is how often draining servers are checked for zero
	// requests in flight. Zero means 1s.
	DrainPoll time.Duration
	// Resolver performs lookups. Nil means net.DefaultResolver.
	Resolver Resolver
	// Logger receives membership changes (info) and lookup failures
	// (warn, once per streak). Nil means slog.Default().
	Logger *slog.Logger
}

// DNS keeps the servers of a pool in line with a DNS name: it adds a
// server for every new address and drains, then removes, servers whose
// address vanished. It only ever touches servers named "<Name>-<ip>".
// A failed lookup, or one with no addresses, changes nothing. Create it
// with New; it does nothing until Run.
type DNS struct {
	opts   Options
	prefix string // "<Name>-" without Name's trailing dot
	pool   Pool
	log    *slog.Logger

	// owned and lastErr belong to Run's goroutine.
	owned   map[string]*member
	lastErr string
}

// member is a server discovery manages.
type member struct {
	addr     netip.Addr
	draining bool
	since    time.Time // drain start
	// weDrained is set when discovery (not an operator) put the server
	// in drain, so it may put it back to ready if the address returns.
	weDrained bool
}

// New validates opts and returns a DNS that reconciles pool.
func New(pool Pool, opts Options) (*DNS, error) {
	name := strings.TrimSuffix(opts.Name, ".")
	if name == "" {
		return nil, errors.New("discovery: Name is required")
	}
	if opts.Port == 0 {
		return nil, fmt.Errorf("discovery %s: Port is required", name)
	}
	switch opts.Network {
	case "":
		opts.Network = "ip"
	case "ip", "ip4", "ip6":
	default:
		return nil, fmt.Errorf("discovery %s: Network %q: want ip, ip4 or ip6", name, opts.Network)
	}
	if opts.Interval <= 0 {
		opts.Interval = 30 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Grace <= 0 {
		opts.Grace = 60 * time.Second
	}
	if opts.DrainPoll <= 0 {
		opts.DrainPoll = time.Second
	}
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &DNS{
		opts:   opts,
		prefix: name + "-",
		pool:   pool,
		log:    opts.Logger.With("component", "discovery", "name", name),
		owned:  make(map[string]*member),
	}, nil
}

// Run resolves the name every Interval and applies the result until ctx
// is cancelled; it then returns nil. Servers already in the pool under
// discovery's naming scheme (from an earlier DNS) are adopted. Run must
// not be called twice at the same time.
func (d *DNS) Run(ctx context.Context) error {
	for _, s := range d.pool.Servers() {
		if a, ok := d.addrOf(s.Name()); ok {
			d.owned[s.Name()] = &member{addr: a}
		}
	}
	next := time.Now()
	for {
		now := time.Now()
		if !now.Before(next) {
			d.resolve(ctx)
			next = now.Add(d.opts.Interval)
		}
		d.reap(now)
		wake := next
		if d.draining() {
			for _, t := range []time.Time{now.Add(d.opts.DrainPoll), d.graceEnd()} {
				if t.Before(wake) {
					wake = t
				}
			}
		}
		wait := wake.Sub(now)
		if wait <= 0 {
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// resolve performs one lookup and applies it.
func (d *DNS) resolve(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	addrs, err := d.opts.Resolver.LookupNetIP(ctx, d.opts.Network, d.opts.Name)
	if err == nil && len(addrs) == 0 {
		err = errors.New("no addresses")
	}
	if err != nil {
		if msg := err.Error(); msg != d.lastErr {
			d.lastErr = msg
			d.log.Warn("lookup failed; keeping current servers", "err", err)
		}
		return
	}
	if d.lastErr != "" {
		d.lastErr = ""
		d.log.Info("lookup recovered")
	}
	now := time.Now()
	seen := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		if seen[a] {
			continue
		}
		seen[a] = true
		d.ensure(a)
	}
	names := make([]string, 0, len(d.owned))
	for name := range d.owned {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		m := d.owned[name]
		if seen[m.addr] || m.draining {
			continue
		}
		m.draining, m.since = true, now
		s := d.lookup(name)
		if s != nil && s.Admin() == backend.AdminReady {
			if err := d.pool.SetAdmin(name, backend.AdminDrain); err == nil {
				m.weDrained = true
			}
		}
		d.log.Info("address vanished; draining server", "server", name, "grace", d.opts.Grace)
	}
}

// ensure makes sure the server for a exists and is not draining.
func (d *DNS) ensure(a netip.Addr) {
	name := d.prefix + a.String()
	if m, ok := d.owned[name]; ok {
		if m.draining {
			m.draining = false
			if m.weDrained {
				m.weDrained = false
				if err := d.pool.SetAdmin(name, backend.AdminReady); err != nil {
					d.log.Warn("cannot undo drain", "server", name, "err", err)
				}
			}
			d.log.Info("address returned; server kept", "server", name)
		}
		if d.lookup(name) != nil {
			return
		}
	}
	spec := backend.Spec{
		Name:    name,
		Addr:    netip.AddrPortFrom(a, d.opts.Port).String(),
		Weight:  d.opts.Template.Weight,
		MaxConn: d.opts.Template.MaxConn,
	}
	if d.opts.MgmtPort != 0 {
		spec.Mgmt = netip.AddrPortFrom(a, d.opts.MgmtPort).String()
	}
	existed := d.lookup(name) != nil
	s := d.pool.Add(spec)
	d.owned[name] = &member{addr: a}
	if existed {
		return
	}
	if spec.Mgmt != "" {
		d.pool.CompareAndSetHealth(s, backend.HealthUp, backend.HealthStarting,
			backend.Detail{Reason: "discovered via DNS; waiting for passing checks"})
	}
	d.log.Info("address appeared; server added", "server", name, "addr", spec.Addr)
}

// reap removes draining servers that are idle or out of grace.
func (d *DNS) reap(now time.Time) {
	for name, m := range d.owned {
		if !m.draining {
			continue
		}
		s := d.lookup(name)
		if s == nil {
			delete(d.owned, name)
			continue
		}
		inflight := s.InFlight()
		if inflight > 0 && now.Sub(m.since) < d.opts.Grace {
			continue
		}
		d.pool.Remove(name)
		delete(d.owned, name)
		d.log.Info("drained server removed", "server", name, "in_flight", inflight)
	}
}

func (d *DNS) draining() bool {
	for _, m := range d.owned {
		if m.draining {
			return true
		}
	}
	return false
}

// graceEnd is the earliest end of a grace period among draining servers.
func (d *DNS) graceEnd() time.Time {
	var end time.Time
	for _, m := range d.owned {
		if m.draining {
			if e := m.since.Add(d.opts.Grace); end.IsZero() || e.Before(end) {
				end = e
			}
		}
	}
	return end
}

// lookup returns the pool's server called name, or nil.
func (d *DNS) lookup(name string) *backend.Server {
	for _, s := range d.pool.Servers() {
		if s.Name() == name {
			return s
		}
	}
	return nil
}

// addrOf parses the address out of a server name of discovery's scheme.
func (d *DNS) addrOf(name string) (netip.Addr, bool) {
	rest, ok := strings.CutPrefix(name, d.prefix)
	if !ok {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(rest)
	return a, err == nil
}
