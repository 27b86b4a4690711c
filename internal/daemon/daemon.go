package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kclb/kclb/affinity"
	"github.com/kclb/kclb/health"
	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/balancer"
	"github.com/kclb/kclb/internal/discovery"
	"github.com/kclb/kclb/internal/proxyproto"
	"github.com/kclb/kclb/internal/ratelimit"
	"github.com/kclb/kclb/proxy"
	"github.com/kclb/kclb/tlsconf"
	"github.com/kclb/kclb/vrrp"
)

// Options are the daemon's process-wide settings.
type Options struct {
	// Logger is the process logger. If nil, slog.Default().
	Logger *slog.Logger
	// Version is the release version the metrics and status API show.
	Version string
	// Load re-reads the configuration for a reload (SIGHUP or the
	// admin API). If nil, reloads fail.
	Load func() (*Spec, error)
}

// Daemon is one running kclb: the runtime objects built from a Spec.
// The pool (with every server's health and admin state) lives as long as
// the daemon; handler, routing policy, certificates, listeners, health
// checker and VRRP instances are replaced by Swap.
type Daemon struct {
	logger  *slog.Logger
	opts    Options
	started time.Time

	pool     *backend.Pool
	router   *proxy.Switch  // public listeners serve through it
	observer proxy.Observer // metrics sink for the proxy; nil means none
	store    atomic.Pointer[tlsconf.Store]
	stapler  *tlsconf.Stapler // OCSP staples of whatever store is current
	conns    *proxy.ConnStats // client connections of every public listener
	// proxyConns counts the connections PROXY-protocol listeners refused.
	proxyConns proxyproto.Counters
	listeners  *listenerSet
	vrrp       *vrrp.Group

	// available is the pool's last "a server can take a client" edge;
	// listenersOK turns false when a public listener fails.
	available, listenersOK atomic.Bool
	// lastBeat is when the main loop last proved it runs (unix nanos).
	lastBeat atomic.Int64
	// reloadsOK and reloadsFailed count reloads by result (metrics).
	reloadsOK, reloadsFailed atomic.Uint64

	mu      sync.Mutex // guards the fields below
	spec    *Spec
	aff     *affinity.Affinity // nil when affinity is off
	rt      proxy.Router
	handler *proxy.Handler
	// replaced are handlers a reload swapped out whose requests may still
	// run; retiredStats sums the counters of those let go since.
	replaced     []*proxy.Handler
	retiredStats proxy.Stats
	checker      context.CancelFunc // stops the running health checker
	admins       []adminListener    // the admin listeners (handed over on upgrade)

	// runCtx ends at Stop: the context of every long-lived goroutine.
	runCtx context.Context
	cancel context.CancelFunc

	wg   sync.WaitGroup // owns every long-lived goroutine
	errc chan error     // goroutines report fatal errors here

	// adminReleased is set once the admin listeners were handed to a new
	// binary: their Serve loops ending is then expected.
	adminReleased atomic.Bool
}

// Build builds the runtime for spec without opening sockets or starting
// goroutines: certificates, pool, routing policy, metrics and handler.
func Build(spec *Spec, o Options) (*Daemon, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	logger := o.Logger
	for _, w := range spec.Source.Warnings {
		logger.Warn("config", "warning", w)
	}
	d := &Daemon{logger: logger, opts: o, started: time.Now(), spec: spec, router: new(proxy.Switch), conns: new(proxy.ConnStats),
		errc: make(chan error, 16)}
	d.listenersOK.Store(true)
	d.runCtx, d.cancel = context.WithCancel(context.Background())
	store, err := tlsStore(spec)
	if err != nil {
		return nil, err
	}
	d.store.Store(store)
	d.stapler = tlsconf.NewStapler(d.store.Load, tlsconf.StaplerOptions{Logger: logger})
	po := spec.Pool
	po.OnHealth, po.OnAvailable = d.onHealth, d.onAvailable
	d.pool, err = backend.NewPool(spec.Servers, po)
	if err != nil {
		return nil, err
	}
	if d.rt, d.aff, err = buildRouter(spec); err != nil {
		return nil, err
	}
	if d.observer, err = d.newObserver(); err != nil {
		return nil, err
	}
	if d.handler, err = d.buildHandler(spec, d.rt, nil); err != nil {
		return nil, err
	}
	d.router.Store(d.handler)
	var sem chan struct{}
	if spec.ConnSlots > 0 {
		sem = make(chan struct{}, spec.ConnSlots)
	}
	d.listeners = &listenerSet{
		handler: d.router, tlsBase: d.tlsBase, clientCAs: d.clientCAs, sem: sem,
		conns: d.conns, proxyConns: &d.proxyConns, logger: logger,
	}
	if spec.Pair != nil {
		d.listeners.tickets = func(tc *tls.Config) error { return shareTickets(tc, spec.Pair.SecretFile) }
	}
	d.vrrp = vrrp.NewGroup(vrrp.GroupOptions{Logger: logger, Health: d.health, OnError: func(err error) { d.errc <- err }})
	return d, nil
}

// Check builds what Build and Start would refuse without opening
// anything or starting a goroutine (for `kclb check`): the certificates
// and every VRRP instance.
func Check(spec *Spec) error {
	if _, err := tlsStore(spec); err != nil {
		return err
	}
	return vrrp.Check(spec.VRRP)
}

// preflight is Check's VRRP part plus what only the machine can tell:
// every instance's interface exists, and an IPv6 instance's interface has
// the link-local address its adverts are sent from. It runs before any
// socket is opened.
func preflight(spec *Spec) error {
	if err := vrrp.Check(spec.VRRP); err != nil {
		return err
	}
	for _, o := range spec.VRRP {
		ifi, err := net.InterfaceByName(o.Interface)
		if err != nil {
			var oe *net.OpError
			if errors.As(err, &oe) && oe.Err != nil {
				err = oe.Err
			}
			return fmt.Errorf("vrrp instance %q: interface %q: %w", o.Name, o.Interface, err)
		}
		if len(o.VIPs) > 0 && o.VIPs[0].Addr().Is6() && !hasLinkLocal(ifi) {
			return fmt.Errorf("vrrp instance %q: interface %q has no IPv6 link-local address; IPv6 VRRP adverts are sent from it (RFC 5798 §5.1.2.1): is IPv6 disabled on it?", o.Name, o.Interface)
		}
	}
	return nil
}

// hasLinkLocal reports whether ifi has an IPv6 link-local unicast address.
func hasLinkLocal(ifi *net.Interface) bool {
	addrs, err := ifi.Addrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() == nil && n.IP.IsLinkLocalUnicast() {
			return true
		}
	}
	return false
}

// current returns the Spec in force.
func (d *Daemon) current() *Spec {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.spec
}

// Handler returns the proxy handler in force.
func (d *Daemon) Handler() *proxy.Handler {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.handler
}

// Affinity returns the affinity policy in force, or nil.
func (d *Daemon) Affinity() *affinity.Affinity {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.aff
}

var _ proxy.Router = affinity.Router{}

// buildRouter makes the routing policy: the balancer, wrapped by
// affinity when enabled.
func buildRouter(spec *Spec) (proxy.Router, *affinity.Affinity, error) {
	sel, err := balancer.New(spec.Balancer)
	if err != nil {
		return nil, nil, err
	}
	if spec.Affinity == nil {
		return proxy.BalancerRouter{Selector: sel}, nil, nil
	}
	a, err := affinity.New(*spec.Affinity, sel)
	if err != nil {
		return nil, nil, fmt.Errorf("affinity: %w", err)
	}
	return affinity.Router{A: a}, a, nil
}

// buildHandler makes the proxy handler for spec. keep, if not nil, is the
// running handler's rate limiter, to be kept (with its clients' state
// and counters) because the rules are unchanged.
func (d *Daemon) buildHandler(spec *Spec, router proxy.Router, keep *ratelimit.Limiter) (*proxy.Handler, error) {
	o := spec.Handler
	o.Pool, o.Router, o.Observer, o.Logger = d.pool, router, d.observer, d.logger
	o.RateLimit = keep
	if keep == nil && len(spec.RateLimit.Rules) > 0 {
		lim, err := ratelimit.New(spec.RateLimit)
		if err != nil {
			return nil, err
		}
		o.RateLimit = lim
	}
	return proxy.New(o)
}

// tlsStore loads the certificates, or returns nil when there are none.
func tlsStore(spec *Spec) (*tlsconf.Store, error) {
	if len(spec.TLSPairs) == 0 {
		return nil, nil
	}
	return tlsconf.NewStore(spec.TLSPairs, spec.TLS)
}

// shareTickets makes the HTTPS listeners of a pair seal session tickets
// with keys derived from the pair's secret file, so that a client the VIP
// moves to the other instance resumes its session there
// (tlsconf.ShareSessionTickets).
func shareTickets(tc *tls.Config, secretFile string) error {
	secret, err := os.ReadFile(secretFile)
	if err != nil {
		return fmt.Errorf("pair.secret_file: %w", err)
	}
	if err := tlsconf.ShareSessionTickets(tc, bytes.TrimSpace(secret), nil); err != nil {
		return fmt.Errorf("pair.secret_file: %w", err)
	}
	return nil
}

// tlsBase returns the TLS configuration for HTTPS listeners: certificates
// come from whatever store is current, so a reload that changes the
// certificate list applies to new handshakes on the listeners already open.
func (d *Daemon) tlsBase() *tls.Config {
	st := d.store.Load()
	if st == nil {
		return nil
	}
	tc := st.TLSConfig()
	tc.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if s := d.store.Load(); s != nil {
			return s.GetCertificate(h)
		}
		return nil, errors.New("no certificate configured")
	}
	return tc
}

// clientCAs returns the lookup of file's CA pool in whatever store is
// current, so a reload that re-reads the CA applies to new handshakes on
// the listeners already open.
func (d *Daemon) clientCAs(file string) func() *x509.CertPool {
	return func() *x509.CertPool {
		if s := d.store.Load(); s != nil {
			return s.ClientCAs(file)
		}
		return nil
	}
}

// onHealth logs every server health transition and panic-mode edge.
func (d *Daemon) onHealth(s *backend.Server, from, to backend.Health, reason string, panicMode bool) {
	if s == nil {
		if panicMode {
			d.logger.Warn("panic mode on: routing to every live server", "reason", reason)
		} else {
			d.logger.Info("panic mode off", "reason", reason)
		}
		d.signalVRRP() // panic mode changes the tracked health
		return
	}
	d.logger.Info("server health", "server", s.Name(), "from", from.String(), "to", to.String(), "reason", reason)
	if a := d.adminServer(); a != nil {
		a.ObserveHealth(s, from, to)
	}
}

// onAvailable receives the pool's "some server can take a client" edge
// (called with the pool's lock held) and forwards it to VRRP.
func (d *Daemon) onAvailable(up bool) {
	d.available.Store(up)
	d.logger.Info("backend availability", "any_available", up)
	d.signalVRRP()
}

// health is the signal VRRP tracks (issue 17, item 6b): down when a
// listener failed or no backend can take a client, degraded in panic mode
// (every Keycloak node unready in this edge's view but some live), ok
// otherwise. Each step costs track_weight, so the edge with the better
// view holds the VIP and two edges with the same view keep their order.
func (d *Daemon) health() vrrp.Health {
	switch {
	case !d.available.Load() || !d.listenersOK.Load():
		return vrrp.HealthDown
	case d.pool.Panic():
		return vrrp.HealthDegraded
	}
	return vrrp.HealthOK
}

// signalVRRP passes the current health to every VRRP instance. It runs
// under the pool's lock: the group takes none.
func (d *Daemon) signalVRRP() {
	if d.vrrp != nil && d.vrrp.Len() > 0 {
		d.vrrp.SetHealth(d.health())
	}
}

// startCheckerLocked sets the pool's slow start and starts active health
// checks and DNS discovery for spec, replacing the running ones. d.mu must
// be held.
func (d *Daemon) startCheckerLocked(ctx context.Context, spec *Spec, aff *affinity.Affinity) error {
	if d.checker != nil {
		d.checker()
		d.checker = nil
	}
	plan := spec.Checks
	d.pool.SetSlowstart(plan.Slowstart)
	if !plan.Active && plan.Discovery == nil {
		return nil
	}
	ho := plan.Health
	ho.Logger, ho.Observe = d.logger, d.observeCheck
	if aff != nil {
		ho.OnRoute = aff.Learn
	}
	checker, err := health.New(d.pool.Servers, d.pool, ho)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	var disc *discovery.DNS
	if plan.Discovery != nil {
		do := *plan.Discovery
		do.Logger = d.logger
		if disc, err = discovery.New(d.discoveryMembership(), do); err != nil {
			return fmt.Errorf("discovery: %w", err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	d.checker = cancel
	if plan.Active {
		d.wg.Go(func() {
			if err := checker.Run(cctx); err != nil {
				d.errc <- fmt.Errorf("health: %w", err)
			}
		})
	}
	if disc != nil {
		d.wg.Go(func() {
			if err := disc.Run(cctx); err != nil {
				d.errc <- fmt.Errorf("discovery: %w", err)
			}
		})
	}
	return nil
}
