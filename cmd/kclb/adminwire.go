package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kclb/kclb/internal/admin"
	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/config"
	"github.com/kclb/kclb/internal/discovery"
	"github.com/kclb/kclb/internal/metrics"
	"github.com/kclb/kclb/proxy"
	"github.com/kclb/kclb/internal/ratelimit"
	"github.com/kclb/kclb/vrrp"
)

// observer is the proxy's metrics sink: the Prometheus collectors plus
// the admin server once it exists (for its refused-mutation counter).
type observer struct {
	*metrics.Metrics
	admin atomic.Pointer[admin.Server]
}

// newObserver returns the metrics sink for the proxy handler.
func (in *instance) newObserver() (proxy.Observer, error) {
	o := &observer{}
	m, err := metrics.New(metrics.Options{
		Pool:         in.pool,
		Version:      version,
		Started:      in.started,
		Proxy:        in.proxyStats,
		Conns:        in.conns.Counts,
		Affinity:     in.Affinity,
		VRRP:         in.vrrpMetrics,
		Certificates: in.certMetrics,
		Reloads: func() metrics.Reloads {
			return metrics.Reloads{OK: in.reloadsOK.Load(), Failed: in.reloadsFailed.Load()}
		},
		ConfigHash: func() string { return in.Config().Hash },
		AdminUnauthorized: func() uint64 {
			if s := o.admin.Load(); s != nil {
				return s.Unauthorized()
			}
			return 0
		},
	})
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if err := m.Registry().Register(metrics.NewRateLimitCollector(func() []ratelimit.RuleStats {
		if h := in.Handler(); h != nil {
			return h.RateLimiter().Stats()
		}
		return nil
	})); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if err := m.Registry().Register(metrics.NewProxyProtocolCollector(&in.proxyConns)); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	o.Metrics = m
	return o, nil
}

// observeCheck feeds health-check latencies to the metrics
// (health.Options.Observe).
func (in *instance) observeCheck(s *backend.Server, d time.Duration, ok bool) {
	if o, _ := in.observer.(*observer); o != nil {
		o.ObserveCheck(s, d, ok)
		if a := o.admin.Load(); a != nil {
			a.ObserveCheck(s, d, ok)
		}
	}
}

// certMetrics lists the loaded certificates for the metrics package.
func (in *instance) certMetrics() []metrics.Certificate {
	st := in.store.Load()
	if st == nil {
		return nil
	}
	infos := st.Certificates()
	out := make([]metrics.Certificate, 0, len(infos))
	for _, c := range infos {
		mc := metrics.Certificate{File: c.CertFile, NotAfter: c.NotAfter, OCSPThisUpdate: c.OCSPThisUpdate}
		if len(c.Names) > 0 {
			mc.Name = c.Names[0]
		}
		out = append(out, mc)
	}
	return out
}

// proxyStats returns the handler counters since start: the handler in
// force plus every handler a reload replaced (issue 18, item 6: they used
// to restart from zero on every reload).
func (in *instance) proxyStats() proxy.Stats {
	in.mu.Lock()
	defer in.mu.Unlock()
	total := in.retiredStats
	for _, h := range in.replaced {
		total = addStats(total, h.Stats())
	}
	if in.handler != nil {
		total = addStats(total, in.handler.Stats())
	}
	return total
}

// retireHandlerLocked keeps the counters of h, which a reload just
// replaced: h still counts the requests it had in flight, so its live
// counters are summed until after, when no request that began on it can
// still run; then they are folded into retiredStats and h is let go.
// in.mu must be held.
func (in *instance) retireHandlerLocked(h *proxy.Handler, after time.Duration) {
	in.replaced = append(in.replaced, h)
	time.AfterFunc(after, func() {
		in.mu.Lock()
		defer in.mu.Unlock()
		if i := slices.Index(in.replaced, h); i >= 0 {
			in.retiredStats = addStats(in.retiredStats, h.Stats())
			in.replaced = slices.Delete(in.replaced, i, i+1)
		}
	})
}

// addStats returns a+b field by field. It sums every uint64 field by
// reflection, so a counter added to proxy.Stats cannot be forgotten here.
func addStats(a, b proxy.Stats) proxy.Stats {
	va, vb := reflect.ValueOf(&a).Elem(), reflect.ValueOf(b)
	for i := range va.NumField() {
		if f := va.Field(i); f.Kind() == reflect.Uint64 {
			f.SetUint(f.Uint() + vb.Field(i).Uint())
		}
	}
	return a
}

// vrrpStates are the VRRP state names exported as a state set.
var vrrpStates = []vrrp.State{vrrp.StateInit, vrrp.StateBackup, vrrp.StateMaster, vrrp.StateFault}

// vrrpMetrics converts the VRRP status for the metrics package.
func (in *instance) vrrpMetrics() []metrics.VRRP {
	st := in.vrrpStatus()
	out := make([]metrics.VRRP, 0, len(st))
	names := make([]string, len(vrrpStates))
	for i, s := range vrrpStates {
		names[i] = strings.ToLower(s.String())
	}
	healths := []string{vrrp.HealthOK.String(), vrrp.HealthDegraded.String(), vrrp.HealthDown.String()}
	for _, s := range st {
		drops := make(map[string]uint64, len(s.Drops))
		for r, n := range s.Drops {
			drops[r.String()] = n
		}
		out = append(out, metrics.VRRP{Instance: s.Name, State: strings.ToLower(s.State.String()),
			States: names, Priority: int(s.Priority), Transitions: s.Transitions,
			Health: s.Health.String(), Healths: healths,
			AdvertsSent: s.AdvertsSent, AdvertsReceived: s.AdvertsReceived, AdvertsAsMaster: s.AdvertsAsMaster,
			Resignations: s.Resignations, Errors: s.Errors, Drops: drops, MaxTimerLagSeconds: s.MaxTimerLag.Seconds()})
	}
	return out
}

// adminVRRP converts the VRRP status for the status API.
func (in *instance) adminVRRP() []admin.VRRPStatus {
	st := in.vrrpStatus()
	if len(st) == 0 {
		return nil
	}
	out := make([]admin.VRRPStatus, 0, len(st))
	for _, s := range st {
		v := admin.VRRPStatus{Name: s.Name, State: strings.ToLower(s.State.String()),
			Priority: int(s.Priority), ConfiguredPriority: int(s.ConfiguredPriority),
			Healthy: s.Healthy, Health: s.Health.String(), Standby: s.Standby, Since: s.Since, Transitions: s.Transitions,
			AdvertsSent: s.AdvertsSent, AdvertsReceived: s.AdvertsReceived, AdvertsAsMaster: s.AdvertsAsMaster,
			Resignations: s.Resignations, Errors: s.Errors,
			MaxTimerLagMillis: float64(s.MaxTimerLag.Microseconds()) / 1000}
		for r, n := range s.Drops {
			if n > 0 {
				if v.Drops == nil {
					v.Drops = make(map[string]uint64)
				}
				v.Drops[r.String()] = n
			}
		}
		if s.Master.IsValid() {
			v.Master = s.Master.String()
		}
		out = append(out, v)
	}
	return out
}

// adminListeners lists the public listeners for the status API.
func (in *instance) adminListeners() []admin.Listener {
	var out []admin.Listener
	for _, f := range in.Frontends() {
		out = append(out, admin.Listener{Name: f.name, Addr: f.ln.Addr().String(), TLS: f.tls})
	}
	return out
}

// startAdmin starts the operator interface (admin API, stats page,
// metrics) on the configured Unix socket and TCP address, after applying
// the admin states persisted in the state file. Its goroutines are added
// to wg and stop when ctx ends. Changes to [admin] need a restart.
//
// After a binary upgrade the admin listeners come from inh (the old
// process's sockets, so the socket file is never re-created and no
// command is refused during the hand-over); otherwise they are opened.
func (in *instance) startAdmin(ctx context.Context, wg *sync.WaitGroup, inh *inherited) error {
	cfg := in.Config()
	ac := cfg.Admin
	var state *admin.StateFile
	if cfg.Global.StateFile != "" {
		state = admin.NewStateFile(cfg.Global.StateFile)
	}
	token := ""
	if ac.TCP != "" {
		b, err := os.ReadFile(ac.TokenFile)
		if err != nil {
			return fmt.Errorf("admin.token_file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return fmt.Errorf("admin.token_file: %s is empty", ac.TokenFile)
		}
	}
	opts := admin.Options{
		Pool:         in.pool,
		Name:         cfg.Global.Name,
		Version:      version,
		Started:      in.started,
		Listeners:    in.adminListeners,
		Proxy:        in.proxyStats,
		Affinity:     in.Affinity,
		VRRP:         in.adminVRRP,
		State:        state,
		Token:        token,
		PublicRead:   ac.PublicRead,
		Hosts:        ac.Hosts,
		ActiveChecks: cfg.Health.Enabled,
		Reload:       in.reloadNotify,
		Handover:     in.handover,
		Logger:       in.logger.With("component", "admin"),
	}
	o, _ := in.observer.(*observer)
	if o != nil {
		opts.Metrics = o.Handler()
		opts.Traffic = func(s *backend.Server) admin.Traffic {
			t := o.Traffic(s)
			return admin.Traffic{BytesIn: t.BytesIn, BytesOut: t.BytesOut, Responses: admin.CodeCounts{
				Informational: t.Codes[1], Success: t.Codes[2], Redirect: t.Codes[3], ClientError: t.Codes[4], ServerError: t.Codes[5]}}
		}
	}
	startPair := in.pairHooks(&opts)
	srv, err := admin.New(opts)
	if err != nil {
		return err
	}
	if o != nil {
		o.admin.Store(srv)
	}
	if _, err := srv.Restore(); err != nil {
		// Refusing to start would turn a damaged state file into an
		// outage; say loudly that persisted states were not applied.
		in.logger.Error("admin states from the state file NOT applied; every server starts ready", "err", err)
	}

	wg.Go(func() { srv.Run(ctx) })

	var lns []keyedListener
	closeAll := func() {
		for _, k := range lns {
			k.ln.Close()
		}
	}
	serveOn := func(k keyedListener, trusted bool) {
		lns = append(lns, k)
		wg.Go(func() {
			if err := srv.Serve(ctx, k.ln, trusted); err != nil && !in.adminReleased.Load() {
				in.logger.Error("admin listener failed", "listener", k.key, "err", err)
			}
		})
	}
	if ac.Socket != "" {
		key := adminUnixKey + ac.Socket
		ln := inh.take(key)
		if ln == nil {
			var err error
			if ln, err = listenAdminSocket(ac); err != nil {
				return err
			}
			in.logger.Info("admin API listening", "socket", ac.Socket, "mode", ac.SocketMode.String())
		} else {
			in.logger.Info("admin API listening (inherited from the previous process)", "socket", ac.Socket)
		}
		serveOn(keyedListener{key: key, ln: ln}, true)
	}
	if ac.TCP != "" {
		key := adminTCPKey + ac.TCP
		ln := inh.take(key)
		if ln == nil {
			var err error
			if ln, err = net.Listen("tcp", ac.TCP); err != nil {
				closeAll()
				return fmt.Errorf("admin.tcp: %w", err)
			}
		}
		in.logger.Info("admin API listening", "tcp", ln.Addr().String())
		serveOn(keyedListener{key: key, ln: ln}, false)
	}
	in.mu.Lock()
	in.admins = lns
	in.mu.Unlock()
	return startPair(ctx, wg, srv, inh)
}

// handedAdmin returns the admin listeners, for a binary upgrade.
func (in *instance) handedAdmin() []keyedListener {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]keyedListener(nil), in.admins...)
}

// releaseAdmin stops accepting on the admin listeners after a binary
// upgrade handed them over. The socket file stays: the new process serves
// on the same socket. Requests already accepted finish.
func (in *instance) releaseAdmin() {
	in.adminReleased.Store(true)
	for _, k := range in.handedAdmin() {
		if u, ok := k.ln.(*net.UnixListener); ok {
			u.SetUnlinkOnClose(false)
		}
		closeWaking(k.ln)
	}
}

// adoptAdmin makes this process remove the admin socket file when it
// stops, once it owns the socket (after the hand-over completed): a
// listener built from an inherited descriptor would leave it behind.
func (in *instance) adoptAdmin() {
	for _, k := range in.handedAdmin() {
		if u, ok := k.ln.(*net.UnixListener); ok {
			u.SetUnlinkOnClose(true)
		}
	}
}

// listenAdminSocket opens the admin Unix socket with the configured mode
// and group. A stale socket file left by a crashed kclb is replaced; a
// socket another process still answers on is an error.
func listenAdminSocket(ac config.Admin) (net.Listener, error) {
	path := ac.Socket
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("admin.socket: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("admin.socket: %s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("admin.socket: %s is in use by another process", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("admin.socket: remove stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin.socket: %w", err)
	}
	mode := fs.FileMode(ac.SocketMode)
	if mode == 0 {
		mode = 0o660
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin.socket_mode: %w", err)
	}
	if ac.SocketGroup != "" {
		gid, err := lookupGroup(ac.SocketGroup)
		if err == nil {
			err = os.Chown(path, -1, gid)
		}
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("admin.socket_group: %w", err)
		}
	}
	return ln, nil
}

// lookupGroup resolves a group name or numeric id.
func lookupGroup(name string) (int, error) {
	if id, err := strconv.Atoi(name); err == nil {
		return id, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, err
	}
	id, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, errors.New("group " + name + " has a non-numeric id " + g.Gid)
	}
	return id, nil
}

// adminServer returns the running admin server, or nil before startAdmin.
func (in *instance) adminServer() *admin.Server {
	if o, _ := in.observer.(*observer); o != nil {
		return o.admin.Load()
	}
	return nil
}

// persistingMembership is the pool as DNS discovery sees it: a server it
// adds gets its persisted admin state at once, so a server drained
// before a kclb restart stays drained when discovery finds it again.
type persistingMembership struct {
	*backend.Pool
	in *instance
}

// Add implements discovery.Pool.
func (m persistingMembership) Add(spec backend.Spec) *backend.Server {
	s := m.Pool.Add(spec)
	if a := m.in.adminServer(); a != nil {
		a.ApplyPersisted(spec.Name)
	}
	return s
}

var _ discovery.Pool = persistingMembership{}

// discoveryMembership returns the pool for discovery.New.
func (in *instance) discoveryMembership() discovery.Pool {
	return persistingMembership{Pool: in.pool, in: in}
}

// reapplyAdminState applies persisted admin states to servers that joined
// the pool after start (call it after a reload changed the membership).
func (in *instance) reapplyAdminState() {
	a := in.adminServer()
	if a == nil {
		return
	}
	for _, s := range in.pool.Servers() {
		a.ApplyPersisted(s.Name())
	}
}
