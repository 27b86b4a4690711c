package daemon

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/kclb/kclb/internal/ratelimit"
	"github.com/kclb/kclb/tlsconf"
)

// Swap applies spec to the running daemon (a reload). Everything is
// validated and built first (certificates, routing policy, handler, new
// listeners); only then is the new runtime swapped in. On any error the
// running Spec stays in force and the error is returned. ctx bounds the
// opening of new listeners; the goroutines started live until Stop.
//
// What survives a Swap: listeners whose Ident is unchanged (their open
// connections are untouched), every server whose name stays (health,
// admin state, counters), the affinity policy when its options and the
// balancer are unchanged (learned routes), the rate limiter when its
// rules are (clients' state), VRRP instances whose options are unchanged.
// Listener-level timeouts and limits apply to listeners opened by the
// Swap; the settings Spec.RestartOnly names keep their running values
// until a restart, and the Swap logs which ones changed.
func (d *Daemon) Swap(ctx context.Context, spec *Spec) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.spec
	if spec.AffinityKeyGenerated {
		// A generated key must survive reloads, or every affinity
		// cookie would turn invalid at once.
		spec.AffinityKey = old.AffinityKey
		if spec.Affinity != nil {
			spec.Affinity.Secret = old.AffinityKey
		}
	}
	for _, w := range spec.Source.Warnings {
		d.logger.Warn("config", "warning", w)
	}
	if keys := RestartOnlyChanges(old, spec); len(keys) > 0 {
		d.logger.Warn("reload: these settings keep their running values until kclb restarts", "keys", strings.Join(keys, ","))
	}

	// Certificates: re-read the same files, or load a new set.
	var newStore *tlsconf.Store
	curStore := d.store.Load()
	var err error
	if curStore != nil && reflect.DeepEqual(spec.TLSPairs, old.TLSPairs) && reflect.DeepEqual(spec.TLS, old.TLS) {
		if err := curStore.Reload(); err != nil {
			return fmt.Errorf("reload certificates: %w", err)
		}
	} else if newStore, err = tlsStore(spec); err != nil {
		return err
	}

	// Routing policy: keep affinity (and its learned routes) when unchanged.
	rt, aff := d.rt, d.aff
	if !reflect.DeepEqual(spec.Affinity, old.Affinity) || spec.Balancer != old.Balancer {
		if rt, aff, err = buildRouter(spec); err != nil {
			return err
		}
	}
	// Rate limits: unchanged rules keep their clients' state and counts.
	var keepLimits *ratelimit.Limiter
	if reflect.DeepEqual(spec.RateLimit, old.RateLimit) {
		keepLimits = d.handler.RateLimiter()
	}
	h, err := d.buildHandler(spec, rt, keepLimits)
	if err != nil {
		return err
	}

	// Listeners: keep identical ones, open added ones before committing.
	diff := d.listeners.diff(spec.Listeners)
	if newStore != nil {
		d.store.Store(newStore)
	}
	added, err := d.listeners.open(ctx, diff.early, nil)
	if err != nil {
		if newStore != nil {
			d.store.Store(curStore)
		}
		return err
	}

	// Commit.
	if err := d.pool.Reconcile(spec.Servers); err != nil {
		closeAll(added)
		if newStore != nil {
			d.store.Store(curStore)
		}
		return err
	}
	d.reapplyAdminState()
	oldHandler := d.handler
	d.spec, d.rt, d.aff, d.handler = spec, rt, aff, h
	d.router.Store(h)
	oldHandler.Close()
	// Requests that began on the old handler end within the client and
	// server timeouts (or the grace period); its counters are kept.
	d.retireHandlerLocked(oldHandler, max(spec.Handler.ClientTimeout+spec.Handler.ServerTimeout, spec.ShutdownGrace)+time.Second)
	// Stop accepting on removed listeners now; their requests in flight
	// finish in the background.
	for _, f := range diff.drop {
		f.stopAccepting()
	}
	grace := spec.ShutdownGrace
	d.wg.Go(func() { shutdown(diff.drop, grace) })
	if len(diff.late) > 0 {
		more, err := d.listeners.open(ctx, diff.late, nil)
		if err != nil {
			d.logger.Error("reload: reopening changed listeners failed", "err", err)
		}
		added = append(added, more...)
	}
	d.listeners.serve(&d.wg, added, d.listenerFailed)
	d.listeners.set(append(diff.keep, added...))
	if err := d.startCheckerLocked(d.runCtx, spec, aff); err != nil {
		d.logger.Error("reload: health checker", "err", err)
	}
	if err := d.vrrp.Reconcile(spec.VRRP, nil); err != nil {
		d.logger.Error("reload: vrrp", "err", err)
	}
	d.stapler.Kick()
	d.logger.Info("configuration reloaded", "listeners_kept", len(diff.keep), "listeners_opened", len(added), "listeners_closed", len(diff.drop))
	return nil
}
