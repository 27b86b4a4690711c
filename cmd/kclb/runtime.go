package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kclb/kclb/affinity"
	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/balancer"
	"github.com/kclb/kclb/internal/config"
	"github.com/kclb/kclb/proxy"
	"github.com/kclb/kclb/internal/proxyproto"
	"github.com/kclb/kclb/internal/ratelimit"
	"github.com/kclb/kclb/tlsconf"
)

// newLogger builds the process logger from the global section.
func newLogger(g config.Global, w *os.File) *slog.Logger {
	ls := logOptions(g)
	opts := &slog.HandlerOptions{Level: ls.Level}
	if ls.JSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

var _ proxy.Router = affinity.Router{}

// buildRouter makes the routing policy: the configured balancer, wrapped
// by affinity when enabled.
func buildRouter(cfg *config.Config) (proxy.Router, *affinity.Affinity, error) {
	sel, err := balancer.New(balancerName(cfg))
	if err != nil {
		return nil, nil, err
	}
	ao := affinityOptions(cfg)
	if ao == nil {
		return proxy.BalancerRouter{Selector: sel}, nil, nil
	}
	a, err := affinity.New(*ao, sel)
	if err != nil {
		return nil, nil, fmt.Errorf("affinity: %w", err)
	}
	return affinity.Router{A: a}, a, nil
}

// buildHandler makes the proxy handler for cfg over pool. keep, if not
// nil, is the running handler's rate limiter, to be kept (with its
// clients' state and counters) because the rules are unchanged.
func buildHandler(cfg *config.Config, pool *backend.Pool, router proxy.Router, obs proxy.Observer, logger *slog.Logger, keep *ratelimit.Limiter) (*proxy.Handler, error) {
	o := handlerOptions(cfg, logger)
	o.Pool, o.Router, o.Observer = pool, router, obs
	o.RateLimit = keep
	if ro := rateLimitOptions(cfg); keep == nil && len(ro.Rules) > 0 {
		lim, err := ratelimit.New(ro)
		if err != nil {
			return nil, err
		}
		o.RateLimit = lim
	}
	return proxy.New(o)
}

// tlsStore loads the configured certificates, or returns nil when there
// are none.
func tlsStore(cfg *config.Config) (*tlsconf.Store, error) {
	pairs, opts := tlsOptions(cfg)
	if len(pairs) == 0 {
		return nil, nil
	}
	return tlsconf.NewStore(pairs, opts)
}

// clientCAs returns the lookup of file's CA pool in whatever store is
// current, so a reload that re-reads the CA applies to new handshakes on
// the listeners already open.
func (in *instance) clientCAs(file string) func() *x509.CertPool {
	return func() *x509.CertPool {
		if s := in.store.Load(); s != nil {
			return s.ClientCAs(file)
		}
		return nil
	}
}

// frontend is one public listener and its server.
type frontend struct {
	spec config.Listener
	name string
	raw  net.Listener // the socket itself (handed to a new binary on upgrade)
	ln   net.Listener // raw behind the global maxconn limit
	srv  *proxy.Server
	tls  bool
	// released is set by stopAccepting: Serve ending on the closed
	// listener is then expected, not a listener failure.
	released atomic.Bool
}

// stopAccepting closes the listener on purpose (a reload dropped it, or
// a binary upgrade handed its socket over); connections already accepted
// are served on.
func (f *frontend) stopAccepting() {
	f.released.Store(true)
	f.ln.Close()
}

// openFrontends binds listeners (taking inherited sockets by bind address
// first, after a binary upgrade) and builds their servers, all serving
// through in.router and counted in in.conns. On error the ones already
// opened are closed.
func (in *instance) openFrontends(ctx context.Context, cfg *config.Config, listeners []config.Listener, inherited map[string]net.Listener) ([]*frontend, error) {
	var h http.Handler = in.router
	tlsBase, sem, logger := in.tlsBase(), in.sem, in.logger
	if err := shareTickets(tlsBase, cfg.Pair); err != nil {
		return nil, err
	}
	var out []*frontend
	fail := func(err error) ([]*frontend, error) {
		for _, f := range out {
			f.ln.Close()
		}
		return nil, err
	}
	for i, p := range listenerPlans(cfg, listeners) {
		l := listeners[i]
		ln, ok := inherited[p.Bind]
		if ok {
			delete(inherited, p.Bind)
		} else {
			var err error
			if ln, err = proxy.Listen(ctx, p.Bind, p.Freebind); err != nil {
				return fail(listenError(p.Name, p.Bind, err))
			}
		}
		raw := ln
		if p.Proxy != nil {
			po := *p.Proxy
			po.Counters = &in.proxyConns
			ln = proxyproto.NewListener(ln, po)
		}
		if sem != nil {
			ln = proxy.LimitListener(ln, sem)
		}
		so := p.Server
		so.Handler = h
		so.ErrorLog = logger.With("listener", p.Name)
		so.Conns = in.conns
		if p.TLS {
			if tlsBase == nil {
				return fail(fmt.Errorf("listener %q: tls without certificates", p.Name))
			}
			tc := tlsBase.Clone()
			tc.NextProtos = p.NextProtos
			so.TLS = tlsconf.WithClientAuth(tc, p.ClientAuth, in.clientCAs(p.ClientCA))
		} else if p.RedirectPort != 0 {
			so.Handler = proxy.RedirectHandler(p.RedirectPort)
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
	if errors.Is(err, http.ErrServerClosed) || (f.released.Load() && errors.Is(err, net.ErrClosed)) {
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

// shareTickets makes the HTTPS listeners of a pair seal session tickets
// with keys derived from pair.secret_file, so that a client the VIP moves
// to the other instance resumes its session there (tlsconf.
// ShareSessionTickets). Without a pair, or without TLS, it does nothing.
func shareTickets(tc *tls.Config, p config.Pair) error {
	if tc == nil || p.Peer == "" {
		return nil
	}
	secret, err := os.ReadFile(p.SecretFile)
	if err != nil {
		return fmt.Errorf("pair.secret_file: %w", err)
	}
	if err := tlsconf.ShareSessionTickets(tc, bytes.TrimSpace(secret), nil); err != nil {
		return fmt.Errorf("pair.secret_file: %w", err)
	}
	return nil
}
