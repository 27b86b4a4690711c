package main

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/kclb/kclb/internal/config"
	"github.com/kclb/kclb/internal/ratelimit"
	"github.com/kclb/kclb/tlsconf"
)

// reload re-reads the configuration file and applies it. Everything is
// validated and built first (configuration, certificates, routing policy,
// handler, new listeners); only then is the new runtime swapped in. On any
// error the running configuration stays in force and the error is
// returned.
//
// What survives a reload: listeners whose definition is unchanged (their
// open connections are untouched), every server whose name stays (health,
// admin state, counters), the affinity identity when [affinity] is
// unchanged (learned routes), VRRP instances whose settings are unchanged.
// Listener-level timeouts and limits apply to listeners opened by the
// reload; the keys restartOnlyChanges names keep their running values
// until a restart, and the reload logs which ones changed.
func (in *instance) reload(ctx context.Context) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	old := in.cfg
	in.logger.Info("reloading configuration", "file", old.Path)
	cfg, err := config.Load(old.Path)
	if err != nil {
		return err
	}
	if cfg.Affinity.Secret == "" && cfg.Affinity.SecretFile == "" {
		// A generated key must survive reloads, or every affinity
		// cookie would turn invalid at once.
		cfg.Affinity.Key = old.Affinity.Key
	}
	for _, w := range cfg.Warnings {
		in.logger.Warn("config", "warning", w)
	}
	if keys := restartOnlyChanges(old, cfg); len(keys) > 0 {
		in.logger.Warn("reload: these settings keep their running values until kclb restarts", "keys", strings.Join(keys, ","))
	}

	// Certificates: re-read the same files, or load a new set.
	var newStore *tlsconf.Store
	curStore := in.store.Load()
	_, oldTLS := tlsOptions(old)
	_, newTLS := tlsOptions(cfg)
	if curStore != nil && slices.Equal(cfg.TLS.Certificates, old.TLS.Certificates) && cfg.TLS.MinVersion == old.TLS.MinVersion &&
		slices.Equal(oldTLS.ClientCAFiles, newTLS.ClientCAFiles) && oldTLS.OCSPStapling == newTLS.OCSPStapling {
		if err := curStore.Reload(); err != nil {
			return fmt.Errorf("reload certificates: %w", err)
		}
	} else if newStore, err = tlsStore(cfg); err != nil {
		return err
	}

	// Routing policy: keep affinity (and its learned routes) when unchanged.
	rt, aff := in.rt, in.aff
	if !reflect.DeepEqual(cfg.Affinity, old.Affinity) || cfg.Backend.Balance != old.Backend.Balance {
		if rt, aff, err = buildRouter(cfg); err != nil {
			return err
		}
	}
	// Rate limits: unchanged rules keep their clients' state and counts.
	var keepLimits *ratelimit.Limiter
	if reflect.DeepEqual(rateLimitOptions(cfg), rateLimitOptions(old)) {
		keepLimits = in.handler.RateLimiter()
	}
	h, err := buildHandler(cfg, in.pool, rt, in.observer, in.logger, keepLimits)
	if err != nil {
		return err
	}

	// Listeners: keep identical ones, open added ones before committing.
	var keep, drop []*frontend
	var add []config.Listener
	for _, f := range in.fronts {
		if slices.ContainsFunc(cfg.Listeners, func(l config.Listener) bool { return reflect.DeepEqual(l, f.spec) }) {
			keep = append(keep, f)
		} else {
			drop = append(drop, f)
		}
	}
	for _, l := range cfg.Listeners {
		if !slices.ContainsFunc(keep, func(f *frontend) bool { return reflect.DeepEqual(f.spec, l) }) {
			add = append(add, l)
		}
	}
	// A changed listener on the same address must release it first.
	sameBind := func(l config.Listener) bool {
		return slices.ContainsFunc(drop, func(f *frontend) bool { return f.spec.Bind == l.Bind })
	}
	var early, late []config.Listener
	for _, l := range add {
		if sameBind(l) {
			late = append(late, l)
		} else {
			early = append(early, l)
		}
	}
	if newStore != nil {
		in.store.Store(newStore)
	}
	added, err := in.openFrontends(ctx, cfg, early, nil)
	if err != nil {
		if newStore != nil {
			in.store.Store(curStore)
		}
		return err
	}

	// Commit.
	if err := in.pool.Reconcile(poolSpecs(cfg)); err != nil {
		for _, f := range added {
			f.ln.Close()
		}
		if newStore != nil {
			in.store.Store(curStore)
		}
		return err
	}
	in.reapplyAdminState()
	oldHandler := in.handler
	in.cfg, in.rt, in.aff, in.handler = cfg, rt, aff, h
	in.router.Store(h)
	oldHandler.Close()
	// Requests that began on the old handler end within the client and
	// server timeouts (or the grace period); its counters are kept.
	in.retireHandlerLocked(oldHandler, max(cfg.Timeouts.Client.Duration+cfg.Timeouts.Server.Duration, cfg.Global.ShutdownGrace.Duration)+time.Second)
	// Stop accepting on removed listeners now; their requests in flight
	// finish in the background.
	for _, f := range drop {
		f.stopAccepting()
	}
	grace := cfg.Global.ShutdownGrace.Duration
	in.wg.Go(func() { shutdownAll(drop, grace) })
	if len(late) > 0 {
		more, err := in.openFrontends(ctx, cfg, late, nil)
		if err != nil {
			in.logger.Error("reload: reopening changed listeners failed", "err", err)
		}
		added = append(added, more...)
	}
	in.startFrontendsLocked(added)
	in.fronts = append(keep, added...)
	if err := in.startCheckerLocked(ctx, cfg, aff); err != nil {
		in.logger.Error("reload: health checker", "err", err)
	}
	if err := in.startVRRPLocked(cfg.VRRP.Instances); err != nil {
		in.logger.Error("reload: vrrp", "err", err)
	}
	in.stapler.Kick()
	in.logger.Info("configuration reloaded", "listeners_kept", len(keep), "listeners_opened", len(added), "listeners_closed", len(drop))
	return nil
}
