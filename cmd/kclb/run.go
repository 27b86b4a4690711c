package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/kclb/kclb/affinity"
	"github.com/kclb/kclb/backend"
	"github.com/kclb/kclb/config"
	"github.com/kclb/kclb/health"
	"github.com/kclb/kclb/proxy"
	"github.com/kclb/kclb/tlsconf"
)

// cmdCheck validates a configuration like `haproxy -c`.
func cmdCheck(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "/etc/kclb/config.toml", "configuration file")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	if _, err := tlsStore(cfg); err != nil {
		return fmt.Errorf("%s: %w", *path, err)
	}
	fmt.Fprintf(stdout, "configuration file %s is valid\n", *path)
	return nil
}

// cmdRun runs the proxy until SIGINT or SIGTERM.
func cmdRun(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "/etc/kclb/config.toml", "configuration file")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return serve(ctx, cfg, newLogger(cfg.Global, os.Stderr), nil)
}

// instance is one running kclb: the runtime objects built from the
// configuration. The pool, affinity identity and TLS store live as long
// as the process; the handler is rebuilt on reload.
type instance struct {
	logger  *slog.Logger
	started time.Time

	pool     *backend.Pool
	router   *proxy.Switch  // public listeners serve through it
	observer proxy.Observer // metrics sink for the proxy; nil means none
	store    *tlsconf.Store
	aff      *affinity.Affinity // nil when affinity is off

	mu      sync.Mutex // guards the fields below
	cfg     *config.Config
	handler *proxy.Handler
	fronts  []*frontend
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
	in := &instance{logger: logger, started: time.Now(), cfg: cfg, router: new(proxy.Switch)}
	var err error
	if in.store, err = tlsStore(cfg); err != nil {
		return nil, err
	}
	in.pool, err = backend.NewPool(poolSpecs(cfg), backend.PoolOptions{
		PanicThreshold: cfg.Health.PanicThreshold,
		PassiveFails:   cfg.Health.PassiveFails,
		OnHealth:       in.onHealth,
		OnAvailable:    in.onAvailable,
	})
	if err != nil {
		return nil, err
	}
	router, aff, err := buildRouter(cfg)
	if err != nil {
		return nil, err
	}
	in.aff = aff
	if in.observer, err = in.newObserver(); err != nil {
		return nil, err
	}
	if in.handler, err = buildHandler(cfg, in.pool, router, in.observer, logger); err != nil {
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
		return
	}
	in.logger.Info("server health", "server", s.Name(), "from", from.String(), "to", to.String(), "reason", reason)
}

// onAvailable receives the pool's "some server can take a client" edge.
func (in *instance) onAvailable(up bool) {
	in.logger.Info("backend availability", "any_available", up)
}

// healthOptions converts the [health] section.
func (in *instance) healthOptions(cfg *config.Config) health.Options {
	o := health.Options{
		Path:               cfg.Health.Path,
		LivePath:           cfg.Health.LivePath,
		StartedPath:        cfg.Health.StartedPath,
		Scheme:             cfg.Health.Scheme.String(),
		CAFile:             cfg.Health.CAFile,
		InsecureSkipVerify: cfg.Health.InsecureSkipVerify,
		Interval:           cfg.Health.Interval.Duration,
		Timeout:            cfg.Health.Timeout.Duration,
		Rise:               cfg.Health.Rise,
		Fall:               cfg.Health.Fall,
		Slowstart:          cfg.Health.Slowstart.Duration,
		MaxBodyBytes:       int64(cfg.Health.MaxBodyBytes),
		Logger:             in.logger.With("component", "health"),
	}
	if cfg.Health.Slowstart.Duration == 0 {
		o.Slowstart = -1
	}
	if in.aff != nil {
		o.OnRoute = in.aff.Learn
	}
	return o
}

// serve runs kclb with cfg until ctx is cancelled, then shuts down
// gracefully. ready, if non-nil, is closed once the listeners are bound.
func serve(ctx context.Context, cfg *config.Config, logger *slog.Logger, ready chan<- struct{}) error {
	in, err := newInstance(cfg, logger)
	if err != nil {
		return err
	}
	defer in.Handler().Close()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	errc := make(chan error, 16)
	if cfg.Health.Enabled {
		checker, err := health.New(in.pool.Servers, in.pool, in.healthOptions(cfg))
		if err != nil {
			return fmt.Errorf("health: %w", err)
		}
		wg.Go(func() { errc <- checker.Run(runCtx) })
	}

	if err := in.startAdmin(runCtx, &wg); err != nil {
		return err
	}
	fronts, err := openFrontends(ctx, cfg, in.router, in.store, logger)
	if err != nil {
		return err
	}
	in.mu.Lock()
	in.fronts = fronts
	in.mu.Unlock()
	for _, f := range fronts {
		wg.Go(func() { errc <- f.serve() })
		logger.Info("listening", "listener", f.name, "addr", f.ln.Addr().String(), "tls", f.tls)
	}
	if ready != nil {
		close(ready)
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			in.reloadCertificates()
		case err := <-errc:
			if err != nil && !errors.Is(err, context.Canceled) {
				runErr = err
				break loop
			}
		}
	}
	grace := cfg.Global.ShutdownGrace.Duration
	if grace <= 0 {
		grace = 30 * time.Second
	}
	logger.Info("shutting down", "grace", grace.String())
	shutdownAll(in.Frontends(), grace)
	cancel()
	return runErr
}

// reloadCertificates re-reads every certificate; on error the current
// ones stay in use.
func (in *instance) reloadCertificates() {
	if in.store == nil {
		return
	}
	if err := in.store.Reload(); err != nil {
		in.logger.Error("reload certificates failed; keeping the current ones", "err", err)
		return
	}
	in.logger.Info("certificates reloaded")
}
