package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/kclb/kclb/affinity"
	"github.com/kclb/kclb/backend"
	"github.com/kclb/kclb/balancer"
	"github.com/kclb/kclb/config"
	"github.com/kclb/kclb/pathpolicy"
	"github.com/kclb/kclb/proxy"
	"github.com/kclb/kclb/tlsconf"
)

// newLogger builds the process logger from the global section.
func newLogger(g config.Global, w *os.File) *slog.Logger {
	opts := &slog.HandlerOptions{Level: g.LogLevel.SlogLevel()}
	if g.LogFormat == config.LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

var _ proxy.Router = affinity.Router{}

// poolSpecs converts configured servers to backend specs.
func poolSpecs(cfg *config.Config) []backend.Spec {
	specs := make([]backend.Spec, 0, len(cfg.Backend.Servers))
	for _, s := range cfg.Backend.Servers {
		maxconn := s.MaxConn
		if maxconn == 0 {
			maxconn = cfg.Backend.DefaultMaxConn
		}
		specs = append(specs, backend.Spec{
			Name: s.Name, Addr: s.Address, Mgmt: s.Management, Route: s.Route,
			Weight: s.Weight, MaxConn: maxconn,
		})
	}
	return specs
}

// buildRouter makes the routing policy: the configured balancer, wrapped
// by affinity when enabled.
func buildRouter(cfg *config.Config) (proxy.Router, *affinity.Affinity, error) {
	name := "least_request"
	if cfg.Backend.Balance == config.BalanceRoundRobin {
		name = "round_robin"
	}
	sel, err := balancer.New(name)
	if err != nil {
		return nil, nil, err
	}
	if !cfg.Affinity.Enabled {
		return proxy.BalancerRouter{Selector: sel}, nil, nil
	}
	a, err := affinity.New(affinity.Options{
		CookieName:       cfg.Affinity.Cookie,
		MaxAge:           cfg.Affinity.MaxAge.Duration,
		Secret:           cfg.Affinity.Key,
		AuthSessionRoute: cfg.Affinity.AuthSessionRoute,
		Learn:            cfg.Affinity.LearnRoutes,
	}, sel)
	if err != nil {
		return nil, nil, fmt.Errorf("affinity: %w", err)
	}
	return affinity.Router{A: a}, a, nil
}

// buildHandler makes the proxy handler for cfg over pool.
func buildHandler(cfg *config.Config, pool *backend.Pool, router proxy.Router, obs proxy.Observer, logger *slog.Logger) (*proxy.Handler, error) {
	var access *slog.Logger
	if cfg.Global.AccessLog {
		access = logger.With("log", "access")
	}
	retries := cfg.Limits.Retries
	if !cfg.Limits.Redispatch || retries == 0 {
		retries = -1
	}
	return proxy.New(proxy.Options{
		Pool:   pool,
		Router: router,
		Policy: pathpolicy.New(pathpolicy.Options{
			Public:        cfg.Paths.Public,
			AllowJS:       cfg.Paths.AllowJS,
			DenyRobots:    !cfg.Paths.AllowRobots,
			AdminNetworks: cfg.Paths.AdminNetworks,
		}),
		BlockedStatus:          cfg.Paths.BlockedStatus,
		Headers:                proxy.HeaderFamily(cfg.Backend.ProxyHeaders),
		TrustedProxies:         cfg.Backend.TrustedProxies,
		Security:               proxy.NewSecurityHeaders(cfg.Headers.HSTS, cfg.Headers.ContentTypeOptions, cfg.Headers.ReferrerPolicy, cfg.Headers.FrameOptions),
		FrameExempt:            cfg.Headers.FrameExempt,
		Retries:                retries,
		ConnectTimeout:         cfg.Timeouts.Connect.Duration,
		ServerTimeout:          cfg.Timeouts.Server.Duration,
		QueueTimeout:           cfg.Timeouts.Queue.Duration,
		QueueSize:              cfg.Limits.QueueSize,
		IdleTimeout:            cfg.Timeouts.BackendIdle.Duration,
		MaxResponseHeaderBytes: int64(cfg.Limits.MaxResponseHeaderBytes),
		AccessLog:              access,
		Logger:                 logger,
		Observer:               obs,
	})
}

// tlsStore loads the configured certificates, or returns nil when there
// are none.
func tlsStore(cfg *config.Config) (*tlsconf.Store, error) {
	if len(cfg.TLS.Certificates) == 0 {
		return nil, nil
	}
	pairs := make([]tlsconf.Pair, 0, len(cfg.TLS.Certificates))
	for _, c := range cfg.TLS.Certificates {
		pairs = append(pairs, tlsconf.Pair{CertFile: c.Cert, KeyFile: c.Key})
	}
	return tlsconf.NewStore(pairs, tlsconf.Options{MinVersion: cfg.TLS.MinVersion.ID(), HTTP2: true})
}

// frontend is one public listener and its server.
type frontend struct {
	spec config.Listener
	name string
	raw  net.Listener // the socket itself (handed to a new binary on upgrade)
	ln   net.Listener // raw behind the global maxconn limit
	srv  *http.Server
	tls  bool
}

// openFrontends binds listeners (taking inherited sockets by bind address
// first, after a binary upgrade) and builds their servers, all serving
// through in.router and counted in in.conns. On error the ones already
// opened are closed.
func (in *instance) openFrontends(ctx context.Context, cfg *config.Config, listeners []config.Listener, inherited map[string]net.Listener) ([]*frontend, error) {
	var h http.Handler = in.router
	tlsBase, sem, logger := in.tlsBase(), in.sem, in.logger
	var out []*frontend
	fail := func(err error) ([]*frontend, error) {
		for _, f := range out {
			f.ln.Close()
		}
		return nil, err
	}
	redirectPort := 0
	for _, l := range cfg.Listeners {
		if l.TLS {
			if _, p, err := net.SplitHostPort(l.Bind); err == nil {
				fmt.Sscan(p, &redirectPort)
			}
			break
		}
	}
	for _, l := range listeners {
		ln, ok := inherited[l.Bind]
		if ok {
			delete(inherited, l.Bind)
		} else {
			var err error
			if ln, err = proxy.Listen(ctx, l.Bind, l.Freebind); err != nil {
				return fail(fmt.Errorf("listener %q: %w", l.Name, err))
			}
		}
		raw := ln
		if sem != nil {
			ln = proxy.LimitListener(ln, sem)
		}
		so := proxy.ServerOptions{
			Handler:              h,
			HTTP2:                l.HTTP2,
			HeaderTimeout:        cfg.Timeouts.ClientHeader.Duration,
			ClientTimeout:        cfg.Timeouts.Client.Duration,
			WriteTimeout:         cfg.Timeouts.Client.Duration + cfg.Timeouts.Server.Duration,
			KeepAlive:            cfg.Timeouts.KeepAlive.Duration,
			MaxHeaderBytes:       cfg.Limits.MaxRequestHeaderBytes,
			MaxConcurrentStreams: cfg.Limits.H2MaxConcurrentStreams,
			ErrorLog:             logger.With("listener", l.Name),
			Conns:                in.conns,
		}
		if l.TLS {
			if tlsBase == nil {
				return fail(fmt.Errorf("listener %q: tls without certificates", l.Name))
			}
			tc := tlsBase.Clone()
			if l.HTTP2 {
				tc.NextProtos = []string{"h2", "http/1.1"}
			} else {
				tc.NextProtos = []string{"http/1.1"}
			}
			so.TLS = tc
		} else if l.RedirectHTTPS {
			port := l.RedirectPort
			if port == 0 {
				port = redirectPort
			}
			so.Handler = proxy.RedirectHandler(port)
		}
		out = append(out, &frontend{spec: l, name: l.Name, raw: raw, ln: ln, srv: proxy.NewServer(so), tls: l.TLS})
	}
	return out, nil
}

// serve runs f until its server is shut down.
func (f *frontend) serve() error {
	var err error
	if f.tls {
		err = f.srv.ServeTLS(f.ln, "", "")
	} else {
		err = f.srv.Serve(f.ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("listener %q: %w", f.name, err)
}

// shutdownAll stops accepting on every frontend and waits up to grace for
// requests in flight, then closes what is left.
func shutdownAll(fronts []*frontend, grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var wg sync.WaitGroup
	for _, f := range fronts {
		wg.Go(func() {
			if err := f.srv.Shutdown(ctx); err != nil {
				f.srv.Close()
			}
		})
	}
	wg.Wait()
}
