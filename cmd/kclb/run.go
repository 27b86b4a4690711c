package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kclb/kclb/affinity"
	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/config"
	"github.com/kclb/kclb/internal/discovery"
	"github.com/kclb/kclb/health"
	"github.com/kclb/kclb/proxy"
	"github.com/kclb/kclb/internal/proxyproto"
	"github.com/kclb/kclb/internal/sdnotify"
	"github.com/kclb/kclb/tlsconf"
	"github.com/kclb/kclb/vrrp"
)

// cmdRun runs the proxy until SIGINT or SIGTERM. Signal handling is
// installed first, so that SIGINT and SIGTERM end the process at every
// stage of startup (startup.go).
func cmdRun(args []string, stderr io.Writer) error {
	ctx, stop := interruptContext()
	defer stop()
	fs := newFlagSet("run", stderr, "[-c FILE]")
	path := fs.String("c", defaultConfig, "configuration `FILE`")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	cfg, err := during(ctx, "loading the configuration "+*path, func() (*config.Config, error) { return config.Load(*path) })
	if err != nil {
		return err
	}
	logger := newLogger(cfg.Global, os.Stderr)
	return runUntilStarted(ctx, func(ready chan<- struct{}) error { return serve(ctx, cfg, logger, ready) })
}

// instance is one running kclb: the runtime objects built from the
// configuration. The pool (with every server's health and admin state)
// lives as long as the process; handler, routing policy, certificates,
// listeners, health checker and VRRP instances are replaced on reload.
type instance struct {
	logger  *slog.Logger
	started time.Time

	pool     *backend.Pool
	router   *proxy.Switch  // public listeners serve through it
	observer proxy.Observer // metrics sink for the proxy; nil means none
	store    atomic.Pointer[tlsconf.Store]
	stapler  *tlsconf.Stapler // OCSP staples of whatever store is current
	sem      chan struct{}    // global maxconn slots; nil for no limit
	conns    *proxy.ConnStats // client connections of every public listener
	// proxyConns counts the connections PROXY-protocol listeners refused.
	proxyConns proxyproto.Counters

	// available is the pool's last "a server can take a client" edge;
	// listenersOK turns false when a public listener fails.
	available, listenersOK atomic.Bool
	// lastBeat is when the main loop last proved it runs (unix nanos).
	lastBeat atomic.Int64
	// reloadsOK and reloadsFailed count reloads by result (metrics).
	reloadsOK, reloadsFailed atomic.Uint64
	// vrrps are the running VRRP instances; an atomic pointer because the
	// pool's availability hook reads it while the pool's lock is held.
	vrrps atomic.Pointer[[]*vrrpRunner]

	mu      sync.Mutex // guards the fields below
	cfg     *config.Config
	aff     *affinity.Affinity // nil when affinity is off
	rt      proxy.Router
	handler *proxy.Handler
	// replaced are handlers a reload swapped out whose requests may still
	// run; retiredStats sums the counters of those let go since.
	replaced     []*proxy.Handler
	retiredStats proxy.Stats
	fronts       []*frontend
	checker      context.CancelFunc // stops the running health checker
	// inheritVRRP names the VRRP instances to start as Master on VIPs
	// already in place (after a binary upgrade from a Master).
	inheritVRRP []string
	wg          *sync.WaitGroup // owns every long-lived goroutine of serve
	errc        chan error      // goroutines report fatal errors here
	admins      []keyedListener // the admin listeners (handed over on upgrade)

	// adminReleased is set once the admin listeners were handed to a new
	// binary: their Serve loops ending is then expected.
	adminReleased atomic.Bool
}

// Config returns the configuration in force.
func (in *instance) Config() *config.Config {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.cfg
}

// Handler returns the proxy handler in force.
func (in *instance) Handler() *proxy.Handler {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.handler
}

// Affinity returns the affinity policy in force, or nil.
func (in *instance) Affinity() *affinity.Affinity {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.aff
}

// Frontends returns the public listeners.
func (in *instance) Frontends() []*frontend {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.fronts
}

// newInstance builds the runtime for cfg without opening sockets.
func newInstance(cfg *config.Config, logger *slog.Logger) (*instance, error) {
	for _, w := range cfg.Warnings {
		logger.Warn("config", "warning", w)
	}
	in := &instance{logger: logger, started: time.Now(), cfg: cfg, router: new(proxy.Switch), conns: new(proxy.ConnStats)}
	in.listenersOK.Store(true)
	if n := connSlots(cfg); n > 0 {
		in.sem = make(chan struct{}, n)
	}
	store, err := tlsStore(cfg)
	if err != nil {
		return nil, err
	}
	in.store.Store(store)
	in.stapler = tlsconf.NewStapler(in.store.Load, tlsconf.StaplerOptions{Logger: logger})
	po := poolOptions(cfg)
	po.OnHealth, po.OnAvailable = in.onHealth, in.onAvailable
	in.pool, err = backend.NewPool(poolSpecs(cfg), po)
	if err != nil {
		return nil, err
	}
	if in.rt, in.aff, err = buildRouter(cfg); err != nil {
		return nil, err
	}
	if in.observer, err = in.newObserver(); err != nil {
		return nil, err
	}
	if in.handler, err = buildHandler(cfg, in.pool, in.rt, in.observer, logger, nil); err != nil {
		return nil, err
	}
	in.router.Store(in.handler)
	return in, nil
}

// onHealth logs every server health transition and panic-mode edge.
func (in *instance) onHealth(s *backend.Server, from, to backend.Health, reason string, panicMode bool) {
	if s == nil {
		if panicMode {
			in.logger.Warn("panic mode on: routing to every live server", "reason", reason)
		} else {
			in.logger.Info("panic mode off", "reason", reason)
		}
		in.signalVRRP() // panic mode changes the tracked health
		return
	}
	in.logger.Info("server health", "server", s.Name(), "from", from.String(), "to", to.String(), "reason", reason)
	if o, _ := in.observer.(*observer); o != nil {
		if a := o.admin.Load(); a != nil {
			a.ObserveHealth(s, from, to)
		}
	}
}

// onAvailable receives the pool's "some server can take a client" edge
// (called with the pool's lock held) and forwards it to VRRP.
func (in *instance) onAvailable(up bool) {
	in.available.Store(up)
	in.logger.Info("backend availability", "any_available", up)
	in.signalVRRP()
}

// health is the signal VRRP tracks (issue 17, item 6b): down when a
// listener failed or no backend can take a client, degraded in panic mode
// (every Keycloak node unready in this edge's view but some live), ok
// otherwise. Each step costs track_weight, so the edge with the better
// view holds the VIP and two edges with the same view keep their order.
func (in *instance) health() vrrp.Health {
	switch {
	case !in.available.Load() || !in.listenersOK.Load():
		return vrrp.HealthDown
	case in.pool.Panic():
		return vrrp.HealthDegraded
	}
	return vrrp.HealthOK
}

// startChecker sets the pool's slow start and starts active health checks
// and DNS discovery for cfg, replacing the running ones. in.mu must be held.
func (in *instance) startCheckerLocked(ctx context.Context, cfg *config.Config, aff *affinity.Affinity) error {
	if in.checker != nil {
		in.checker()
		in.checker = nil
	}
	plan := checkOptions(cfg)
	in.pool.SetSlowstart(plan.Slowstart)
	if !plan.Active && plan.Discovery == nil {
		return nil
	}
	ho := plan.Health
	ho.Logger, ho.Observe = in.logger, in.observeCheck
	if aff != nil {
		ho.OnRoute = aff.Learn
	}
	checker, err := health.New(in.pool.Servers, in.pool, ho)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	var disc *discovery.DNS
	if plan.Discovery != nil {
		do := *plan.Discovery
		do.Logger = in.logger
		if disc, err = discovery.New(in.discoveryMembership(), do); err != nil {
			return fmt.Errorf("discovery: %w", err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	in.checker = cancel
	if plan.Active {
		in.wg.Go(func() {
			if err := checker.Run(cctx); err != nil {
				in.errc <- fmt.Errorf("health: %w", err)
			}
		})
	}
	if disc != nil {
		in.wg.Go(func() {
			if err := disc.Run(cctx); err != nil {
				in.errc <- fmt.Errorf("discovery: %w", err)
			}
		})
	}
	return nil
}

// tlsBase returns the TLS configuration for HTTPS listeners: certificates
// come from whatever store is current, so a reload that changes the
// certificate list applies to new handshakes on the listeners already open.
func (in *instance) tlsBase() *tls.Config {
	st := in.store.Load()
	if st == nil {
		return nil
	}
	tc := st.TLSConfig()
	tc.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if s := in.store.Load(); s != nil {
			return s.GetCertificate(h)
		}
		return nil, errors.New("no certificate configured")
	}
	return tc
}

// startFrontends serves fronts and records them. in.mu must be held.
func (in *instance) startFrontendsLocked(fronts []*frontend) {
	for _, f := range fronts {
		in.wg.Go(func() {
			if err := f.serve(); err != nil {
				// issue 17, item 6d: name the listener before the shutdown.
				in.logger.Error("listener failed; shutting down", "listener", f.name, "addr", f.ln.Addr().String(), "err", err)
				in.listenersOK.Store(false)
				in.signalVRRP()
				in.errc <- err
			}
		})
		in.logger.Info("listening", "listener", f.name, "addr", f.ln.Addr().String(), "tls", f.tls, "http1", f.srv.HTTP1(), "http2", f.srv.HTTP2())
	}
}

// serve runs kclb with cfg until ctx is cancelled, then shuts down
// gracefully: VRRP resigns and releases the VIPs first, then listeners
// stop accepting and requests in flight get the shutdown grace period.
// ready, if non-nil, is closed once the listeners serve; after that,
// every end of the process is the graceful shutdown.
//
// Startup fails fast: any error, or ctx ending, releases at once what was
// opened and returns; a process started by a binary upgrade tells its
// predecessor why before it returns.
func serve(ctx context.Context, cfg *config.Config, logger *slog.Logger, ready chan<- struct{}) (err error) {
	// Catch SIGHUP and SIGUSR2 from the start: their default action would
	// end the process while it is still starting.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	usr2 := make(chan os.Signal, 1)
	signal.Notify(usr2, syscall.SIGUSR2)
	defer signal.Stop(usr2)

	handover, err := takeInherited()
	defer func() {
		if err != nil {
			handover.fail(err)
		}
	}()
	if err != nil {
		return err
	}
	if err := preflightVRRP(cfg); err != nil {
		return err
	}
	in, err := during(ctx, "reading the TLS certificates", func() (*instance, error) { return newInstance(cfg, logger) })
	if err != nil {
		return err
	}

	runCtx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	in.wg = &wg
	in.errc = make(chan error, 16)
	serving := false
	defer func() {
		if !serving {
			// Startup failed before any client was served: release
			// what was opened at once.
			in.stopVRRP()
			shutdownAll(in.Frontends(), time.Second)
		}
		cancel()
		wg.Wait()
		in.Handler().Close()
	}()

	if _, err := during(ctx, "starting the health checks", func() (struct{}, error) {
		in.mu.Lock()
		defer in.mu.Unlock()
		return struct{}{}, in.startCheckerLocked(runCtx, cfg, in.aff)
	}); err != nil {
		return err
	}
	if _, err := during(ctx, "opening the admin API", func() (struct{}, error) {
		return struct{}{}, in.startAdmin(runCtx, &wg, handover)
	}); err != nil {
		return err
	}
	fronts, err := in.openFrontends(ctx, cfg, cfg.Listeners, handover.listeners)
	if err != nil {
		return err
	}
	for key, ln := range handover.listeners {
		logger.Warn("upgrade: inherited listener not in the configuration; closing it", "listener", key)
		ln.Close()
	}
	in.mu.Lock()
	in.fronts = fronts
	in.startFrontendsLocked(fronts)
	in.mu.Unlock()
	// From here on clients are served: whatever ends the process ends it
	// with the graceful shutdown.
	serving = true
	if ready != nil {
		close(ready)
	}
	runErr := in.finishStartup(ctx, cfg, handover)
	if runErr == nil {
		runErr = in.mainLoop(ctx, runCtx, hup, usr2)
	}
	if ctx.Err() != nil && errors.Is(runErr, context.Cause(ctx)) {
		runErr = nil // SIGTERM while serving: a normal stop
	}
	// global.shutdown_grace = "0s" means no grace: close at once.
	grace := in.Config().Global.ShutdownGrace.Duration
	if runErr != nil {
		logger.Error("shutting down after a fatal error", "err", runErr, "grace", grace.String())
	} else {
		logger.Info("shutting down", "grace", grace.String())
	}
	sdnotify.Stopping()
	in.stopVRRP()
	shutdownAll(in.Frontends(), grace)
	return runErr
}

// finishStartup completes the startup of a process that already serves:
// the first health round, the binary-upgrade hand-over (for a new
// process), VRRP, and READY=1 to systemd.
func (in *instance) finishStartup(ctx context.Context, cfg *config.Config, handover *inherited) error {
	if err := in.waitFirstHealthRound(ctx, cfg); err != nil {
		return err
	}
	masters, err := handover.childHandshake(ctx)
	switch {
	case ctx.Err() != nil:
		return err
	case err != nil:
		// The old process may still hold the VIP; start VRRP anyway.
		in.logger.Error("upgrade hand-over", "err", err)
	case handover.sync != nil:
		in.adoptAdmin()
	}
	in.mu.Lock()
	in.inheritVRRP = masters
	err = in.startVRRPLocked(cfg.VRRP.Instances)
	in.inheritVRRP = nil
	in.mu.Unlock()
	if err != nil {
		return err
	}
	if err := sdnotify.Ready(); err != nil {
		in.logger.Warn("systemd notify", "err", err)
	}
	return nil
}

// mainLoop runs until ctx ends, a goroutine reports a fatal error, or a
// binary upgrade handed over. SIGHUP reloads; SIGUSR2 starts an upgrade
// in the background, so the loop keeps answering the watchdog and SIGTERM
// while the new process starts.
func (in *instance) mainLoop(ctx, runCtx context.Context, hup, usr2 <-chan os.Signal) error {
	in.beat()
	wd := &sdnotify.Watchdog{Logger: in.logger}
	in.wg.Go(func() { wd.Run(runCtx, in.alive) })
	in.wg.Go(func() { in.stapler.Run(runCtx) })
	beat := time.NewTicker(time.Second)
	defer beat.Stop()
	var upgrading chan error // non-nil while a binary upgrade runs
	for {
		select {
		case <-ctx.Done():
			if upgrading != nil {
				// The upgrade sees ctx too: it kills the new process
				// unless the hand-over is already complete.
				<-upgrading
			}
			return nil
		case <-beat.C:
			in.beat()
		case <-hup:
			in.reloadNotify(runCtx)
		case <-usr2:
			if upgrading != nil {
				in.logger.Warn("upgrade: already in progress; SIGUSR2 ignored")
				continue
			}
			upgrading = make(chan error, 1)
			in.wg.Go(func() { upgrading <- in.upgrade(ctx) })
		case err := <-upgrading:
			upgrading = nil
			if err != nil {
				in.logger.Error("upgrade failed; this process keeps serving", "err", err)
				continue
			}
			return nil
		case err := <-in.errc:
			return err
		}
	}
}

// beat records that the main loop is alive.
func (in *instance) beat() { in.lastBeat.Store(time.Now().UnixNano()) }

// alive reports whether the process makes progress, for systemd's
// watchdog: the main loop ticked recently, the listeners serve, and every
// VRRP instance's goroutine still runs.
func (in *instance) alive() bool {
	if time.Since(time.Unix(0, in.lastBeat.Load())) > 3*time.Second || !in.listenersOK.Load() {
		return false
	}
	if p := in.vrrps.Load(); p != nil {
		for _, r := range *p {
			select {
			case <-r.done:
				return false
			default:
			}
		}
	}
	return true
}

// waitFirstHealthRound waits until every server with a management
// address has been checked once (bounded by one interval plus the
// timeout), so READY=1 means kclb knows its backends. It returns early
// with an error when ctx ends or a goroutine reports a fatal error.
func (in *instance) waitFirstHealthRound(ctx context.Context, cfg *config.Config) error {
	if !cfg.Health.Enabled {
		return nil
	}
	deadline := time.Now().Add(cfg.Health.Interval.Duration + cfg.Health.Timeout.Duration + time.Second)
	poll := time.NewTicker(20 * time.Millisecond) // the checker has no round signal
	defer poll.Stop()
	for time.Now().Before(deadline) {
		checked := true
		for _, s := range in.pool.Servers() {
			if s.Mgmt() != "" && s.Detail().LastCheck.IsZero() {
				checked = false
				break
			}
		}
		if checked {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w while waiting for the first health round", context.Cause(ctx))
		case err := <-in.errc:
			return err
		case <-poll.C:
		}
	}
	return nil
}

// reloadNotify reloads the configuration, telling systemd about it; on
// failure the error is logged and returned (to `kclb reload`) and the
// running configuration stays in force.
func (in *instance) reloadNotify(ctx context.Context) error {
	sdnotify.Reloading()
	defer sdnotify.Ready()
	if err := in.reload(ctx); err != nil {
		in.reloadsFailed.Add(1)
		in.logger.Error("reload failed; the running configuration stays in force", "err", err)
		return err
	}
	in.reloadsOK.Add(1)
	return nil
}
