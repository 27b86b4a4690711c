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
	"syscall"
	"time"

	"github.com/kclb/kclb/backend"
	"github.com/kclb/kclb/config"
	"github.com/kclb/kclb/health"
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

// serve runs kclb with cfg until ctx is cancelled, then shuts down
// gracefully. ready, if non-nil, is closed once the listeners are bound.
func serve(ctx context.Context, cfg *config.Config, logger *slog.Logger, ready chan<- struct{}) error {
	for _, w := range cfg.Warnings {
		logger.Warn("config", "warning", w)
	}
	store, err := tlsStore(cfg)
	if err != nil {
		return err
	}
	pool, err := backend.NewPool(poolSpecs(cfg), backend.PoolOptions{
		PanicThreshold: cfg.Health.PanicThreshold,
		PassiveFails:   cfg.Health.PassiveFails,
		OnHealth: func(s *backend.Server, from, to backend.Health, reason string, panicMode bool) {
			if s == nil {
				if panicMode {
					logger.Warn("panic mode on: routing to every live server", "reason", reason)
				} else {
					logger.Info("panic mode off", "reason", reason)
				}
				return
			}
			logger.Info("server health", "server", s.Name(), "from", from.String(), "to", to.String(), "reason", reason)
		},
		OnAvailable: func(up bool) {
			logger.Info("backend availability", "any_available", up)
		},
	})
	if err != nil {
		return err
	}
	router, aff, err := buildRouter(cfg)
	if err != nil {
		return err
	}
	h, err := buildHandler(cfg, pool, router, logger)
	if err != nil {
		return err
	}
	defer h.Close()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 8)
	if cfg.Health.Enabled {
		hopts := health.Options{
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
			Logger:             logger.With("component", "health"),
		}
		if aff != nil {
			hopts.OnRoute = aff.Learn
		}
		checker, err := health.New(pool.Servers, pool, hopts)
		if err != nil {
			return fmt.Errorf("health: %w", err)
		}
		go func() { errc <- checker.Run(runCtx) }()
	}

	fronts, err := openFrontends(ctx, cfg, h, store, logger)
	if err != nil {
		return err
	}
	for _, f := range fronts {
		go func() { errc <- f.serve() }()
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
			if store == nil {
				continue
			}
			if err := store.Reload(); err != nil {
				logger.Error("reload certificates failed; keeping the current ones", "err", err)
			} else {
				logger.Info("certificates reloaded")
			}
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
	shutdownAll(fronts, grace)
	cancel()
	return runErr
}
