package daemon

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kclb/kclb/internal/admin"
	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/metrics"
	"github.com/kclb/kclb/internal/ratelimit"
	"github.com/kclb/kclb/proxy"
	"github.com/kclb/kclb/vrrp"
)

// observer is the proxy's metrics sink: the Prometheus collectors plus
// the admin server once it exists (for its refused-mutation counter).
type observer struct {
	*metrics.Metrics
	admin atomic.Pointer[admin.Server]
}

// newObserver returns the metrics sink for the proxy handler.
func (d *Daemon) newObserver() (proxy.Observer, error) {
	o := &observer{}
	m, err := metrics.New(metrics.Options{
		Pool:         d.pool,
		Version:      d.opts.Version,
		Started:      d.started,
		Proxy:        d.proxyStats,
		Conns:        d.conns.Counts,
		Affinity:     d.Affinity,
		VRRP:         func() []metrics.VRRP { return vrrpMetrics(d.vrrp.Status()) },
		Certificates: d.certMetrics,
		Reloads: func() metrics.Reloads {
			return metrics.Reloads{OK: d.reloadsOK.Load(), Failed: d.reloadsFailed.Load()}
		},
		ConfigHash: func() string { return d.current().Source.Hash },
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
		if h := d.Handler(); h != nil {
			return h.RateLimiter().Stats()
		}
		return nil
	})); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if err := m.Registry().Register(metrics.NewProxyProtocolCollector(&d.proxyConns)); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	o.Metrics = m
	return o, nil
}

// adminServer returns the running admin server, or nil before startAdmin.
func (d *Daemon) adminServer() *admin.Server {
	if o, _ := d.observer.(*observer); o != nil {
		return o.admin.Load()
	}
	return nil
}

// observeCheck feeds health-check latencies to the metrics
// (health.Options.Observe).
func (d *Daemon) observeCheck(s *backend.Server, dur time.Duration, ok bool) {
	if o, _ := d.observer.(*observer); o != nil {
		o.ObserveCheck(s, dur, ok)
		if a := o.admin.Load(); a != nil {
			a.ObserveCheck(s, dur, ok)
		}
	}
}

// certMetrics lists the loaded certificates for the metrics package.
func (d *Daemon) certMetrics() []metrics.Certificate {
	st := d.store.Load()
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
func (d *Daemon) proxyStats() proxy.Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	total := d.retiredStats
	for _, h := range d.replaced {
		total = addStats(total, h.Stats())
	}
	if d.handler != nil {
		total = addStats(total, d.handler.Stats())
	}
	return total
}

// retireHandlerLocked keeps the counters of h, which a reload just
// replaced: h still counts the requests it had in flight, so its live
// counters are summed until after, when no request that began on it can
// still run; then they are folded into retiredStats and h is let go.
// d.mu must be held.
func (d *Daemon) retireHandlerLocked(h *proxy.Handler, after time.Duration) {
	d.replaced = append(d.replaced, h)
	time.AfterFunc(after, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if i := slices.Index(d.replaced, h); i >= 0 {
			d.retiredStats = addStats(d.retiredStats, h.Stats())
			d.replaced = slices.Delete(d.replaced, i, i+1)
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
func vrrpMetrics(st []vrrp.Status) []metrics.VRRP {
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
func adminVRRP(st []vrrp.Status) []admin.VRRPStatus {
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
func (d *Daemon) adminListeners() []admin.Listener {
	var out []admin.Listener
	for _, f := range d.listeners.list() {
		out = append(out, admin.Listener{Name: f.plan.Name, Addr: f.ln.Addr().String(), TLS: f.plan.TLS})
	}
	return out
}
