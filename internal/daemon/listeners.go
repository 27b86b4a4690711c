package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kclb/kclb/internal/proxyproto"
	"github.com/kclb/kclb/proxy"
	"github.com/kclb/kclb/tlsconf"
)

// listenerSet is the set of public listeners: it opens them (taking
// inherited sockets first after a binary upgrade), tells a reload which to
// keep, open and close, stops accepting on purpose, and shuts them down.
// Every listener serves through handler and counts in conns.
type listenerSet struct {
	handler   http.Handler
	tlsBase   func() *tls.Config                      // nil config: no certificates
	clientCAs func(file string) func() *x509.CertPool // for client_auth
	// tickets, if not nil, prepares the TLS configuration of the
	// listeners opened (the pair's shared session-ticket keys).
	tickets func(*tls.Config) error
	sem     chan struct{} // global maxconn slots; nil for no limit
	conns   *proxy.ConnStats
	// proxyConns counts connections PROXY-protocol listeners refused.
	proxyConns *proxyproto.Counters
	logger     *slog.Logger

	mu     sync.Mutex // guards fronts
	fronts []*frontend
}

// frontend is one public listener and its server.
type frontend struct {
	plan ListenerPlan
	raw  net.Listener // the socket itself (handed to a new binary on upgrade)
	ln   net.Listener // raw behind the PROXY protocol and the maxconn limit
	srv  *proxy.Server
	// held is raw again, for a handover to hold new connections on
	// (and to remove the filter from those it accepts meanwhile).
	held *proxy.HeldListener
	// released is set by stopAccepting: Serve ending on the closed
	// listener is then expected, not a listener failure.
	released atomic.Bool
}

// ident is what decides whether a reload keeps the listener.
func (p ListenerPlan) ident() any {
	if p.Ident != nil {
		return p.Ident
	}
	return p
}

// list returns the listeners in force.
func (s *listenerSet) list() []*frontend {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fronts
}

// set records fronts as the listeners in force.
func (s *listenerSet) set(fronts []*frontend) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fronts = fronts
}

// open binds the listeners of plans (taking the socket take returns for
// a bind address first, when take is not nil) and builds their servers;
// they do not accept yet. On error the ones already opened are closed.
func (s *listenerSet) open(ctx context.Context, plans []ListenerPlan, take func(bind string) net.Listener) ([]*frontend, error) {
	tlsBase := s.tlsBase()
	if tlsBase != nil && s.tickets != nil {
		if err := s.tickets(tlsBase); err != nil {
			return nil, err
		}
	}
	var out []*frontend
	fail := func(err error) ([]*frontend, error) {
		closeAll(out)
		return nil, err
	}
	for _, p := range plans {
		var ln net.Listener
		if take != nil {
			ln = take(p.Bind)
		}
		if ln == nil {
			var err error
			if ln, err = proxy.Listen(ctx, p.Bind, p.Freebind); err != nil {
				return fail(listenError(p.Name, p.Bind, err))
			}
		}
		raw := ln
		held := proxy.NewHeldListener(raw)
		ln = held
		if p.Proxy != nil {
			po := *p.Proxy
			po.Counters = s.proxyConns
			ln = proxyproto.NewListener(ln, po)
		}
		if s.sem != nil {
			ln = proxy.LimitListener(ln, s.sem)
		}
		so := p.Server
		so.Handler = s.handler
		so.ErrorLog = s.logger.With("listener", p.Name)
		so.Conns = s.conns
		if p.TLS {
			if tlsBase == nil {
				raw.Close()
				return fail(fmt.Errorf("listener %q: tls without certificates", p.Name))
			}
			tc := tlsBase.Clone()
			tc.NextProtos = p.NextProtos
			so.TLS = tlsconf.WithClientAuth(tc, p.ClientAuth, s.clientCAs(p.ClientCA))
		} else if p.RedirectPort != 0 {
			so.Handler = proxy.RedirectHandler(p.RedirectPort)
		}
		out = append(out, &frontend{plan: p, raw: raw, ln: ln, held: held, srv: proxy.NewServer(so)})
	}
	return out, nil
}

// listenError turns the error of opening the listener called name on
// bind into one short line: `listener "https": listen 127.0.0.1:443:
// address already in use`. The system error stays wrapped.
func listenError(name, bind string, err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return fmt.Errorf("listener %q: listen %s: %w", name, bind, errno)
	}
	return fmt.Errorf("listener %q: %w", name, err)
}

// closeAll closes the sockets of listeners that never served.
func closeAll(fronts []*frontend) {
	for _, f := range fronts {
		f.ln.Close()
	}
}

// listenerDiff is what a reload does with the listeners.
type listenerDiff struct {
	// keep are open listeners the new plans keep as they are.
	keep []*frontend
	// drop are open listeners the new plans do not have.
	drop []*frontend
	// early are new plans to open before the reload commits; late are
	// new plans on the address of a dropped listener, opened once it
	// released the address.
	early, late []ListenerPlan
}

// diff compares the open listeners with plans.
func (s *listenerSet) diff(plans []ListenerPlan) listenerDiff {
	var d listenerDiff
	for _, f := range s.list() {
		if slices.ContainsFunc(plans, func(p ListenerPlan) bool { return reflect.DeepEqual(p.ident(), f.plan.ident()) }) {
			d.keep = append(d.keep, f)
		} else {
			d.drop = append(d.drop, f)
		}
	}
	for _, p := range plans {
		if slices.ContainsFunc(d.keep, func(f *frontend) bool { return reflect.DeepEqual(f.plan.ident(), p.ident()) }) {
			continue
		}
		if slices.ContainsFunc(d.drop, func(f *frontend) bool { return f.plan.Bind == p.Bind }) {
			d.late = append(d.late, p)
		} else {
			d.early = append(d.early, p)
		}
	}
	return d
}

// serve starts a goroutine in wg for every listener of fronts; failed
// is called with the error of a listener whose server stopped for any
// reason but a shutdown or stopAccepting.
func (s *listenerSet) serve(wg *sync.WaitGroup, fronts []*frontend, failed func(*frontend, error)) {
	for _, f := range fronts {
		wg.Go(func() {
			if err := f.serve(); err != nil {
				failed(f, err)
			}
		})
		s.logger.Info("listening", "listener", f.plan.Name, "addr", f.ln.Addr().String(), "tls", f.plan.TLS, "http1", f.srv.HTTP1(), "http2", f.srv.HTTP2())
	}
}

// serve runs f until its server is shut down.
func (f *frontend) serve() error {
	var err error
	if f.plan.TLS {
		err = f.srv.ServeTLS(f.ln, "", "")
	} else {
		err = f.srv.Serve(f.ln)
	}
	if errors.Is(err, http.ErrServerClosed) || (f.released.Load() && errors.Is(err, net.ErrClosed)) {
		return nil
	}
	return fmt.Errorf("listener %q: %w", f.plan.Name, err)
}

// stopAccepting closes the listener on purpose (a reload dropped it, or
// a binary upgrade handed its socket over); connections already accepted
// are served on.
func (f *frontend) stopAccepting() {
	f.released.Store(true)
	f.ln.Close()
}

// shutdown stops accepting on every listener of fronts and waits up to
// grace for requests in flight, then closes what is left.
func shutdown(fronts []*frontend, grace time.Duration) {
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
