package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kclb/kclb/internal/handoff"
	"github.com/kclb/kclb/internal/sdnotify"
)

// startupUnwind bounds how long an interrupted startup may take to
// release what it opened before Run returns anyway.
const startupUnwind = 1500 * time.Millisecond

// Run runs spec until ctx is cancelled, then shuts down gracefully: VRRP
// resigns and releases the VIPs first, then listeners stop accepting and
// requests in flight get the shutdown grace period. SIGHUP reloads (with
// o.Load); SIGUSR2 hands the sockets to the binary now installed at this
// process's path (a zero-downtime upgrade), after which Run returns nil
// once the requests in flight here are done.
//
// Startup fails fast (issue 18, item 1): any error, or ctx ending,
// releases at once what was opened and returns an error naming the step;
// a process started by a binary upgrade tells its predecessor why before
// it returns. If ctx ends while a startup step is stuck in a system call
// no context reaches (a certificate on a hung NFS mount), Run returns
// after startupUnwind without waiting for it.
func Run(ctx context.Context, spec *Spec, o Options) error {
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- serve(ctx, spec, o, ready) }() // Run waits for it but for a stuck startup
	select {
	case err := <-done:
		return err
	case <-ready:
		return <-done
	case <-ctx.Done():
	}
	select {
	case err := <-done:
		return err
	case <-ready:
		return <-done
	case <-time.After(startupUnwind):
		return fmt.Errorf("%w while starting; a startup step did not return within %v, exiting without cleanup",
			context.Cause(ctx), startupUnwind)
	}
}

// During runs one startup step that may block where no context reaches
// (opening or reading a file) and returns its result, or, as soon as ctx
// ends, an error naming the step and the cause ("interrupted by SIGTERM
// while reading the TLS certificates"). In that case f keeps running in
// its goroutine, which is abandoned: the caller is on its way to exit.
func During[T any](ctx context.Context, step string, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	if err := ctx.Err(); err != nil {
		var zero T
		return zero, fmt.Errorf("%w while %s", context.Cause(ctx), step)
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("%w while %s", context.Cause(ctx), step)
	}
}

// serve is Run once the caller stopped watching for a stuck startup.
// ready is closed once the listeners serve; after that, every end of the
// process is the graceful shutdown.
func serve(ctx context.Context, spec *Spec, o Options, ready chan<- struct{}) (err error) {
	// Catch SIGHUP and SIGUSR2 from the start: their default action would
	// end the process while it is still starting.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	usr2 := make(chan os.Signal, 1)
	signal.Notify(usr2, syscall.SIGUSR2)
	defer signal.Stop(usr2)

	inh, err := handoff.Take()
	defer func() {
		if err != nil {
			inh.Fail(err)
		}
	}()
	if err != nil {
		return err
	}
	if err := preflight(spec); err != nil {
		return err
	}
	d, err := During(ctx, "reading the TLS certificates", func() (*Daemon, error) { return Build(spec, o) })
	if err != nil {
		return err
	}
	if err := d.Start(ctx, inh); err != nil {
		// Startup failed before any client was served: release what
		// was opened at once.
		d.Stop(time.Second)
		return err
	}
	// From here on clients are served: whatever ends the process ends it
	// with the graceful shutdown.
	close(ready)
	runErr := d.finishStartup(ctx, inh)
	if runErr == nil {
		runErr = d.mainLoop(ctx, hup, usr2)
	}
	if ctx.Err() != nil && errors.Is(runErr, context.Cause(ctx)) {
		runErr = nil // SIGTERM while serving: a normal stop
	}
	// shutdown_grace = 0 means no grace: close at once.
	grace := d.current().ShutdownGrace
	if runErr != nil {
		d.logger.Error("shutting down after a fatal error", "err", runErr, "grace", grace.String())
	} else {
		d.logger.Info("shutting down", "grace", grace.String())
	}
	sdnotify.Stopping()
	d.Stop(grace)
	return runErr
}

// Start starts serving: the health checks, the admin API and the public
// listeners, taking the sockets inh holds first (after a binary upgrade;
// nil for a normal start). VRRP starts later (finishStartup), once the
// first health round is done. Steps that can block end when ctx does. On
// error, call Stop to release what was opened.
func (d *Daemon) Start(ctx context.Context, inh *handoff.Inherited) error {
	if inh == nil {
		inh = &handoff.Inherited{}
	}
	spec := d.current()
	if _, err := During(ctx, "starting the health checks", func() (struct{}, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		return struct{}{}, d.startCheckerLocked(d.runCtx, spec, d.aff)
	}); err != nil {
		return err
	}
	if _, err := During(ctx, "opening the admin API", func() (struct{}, error) {
		return struct{}{}, d.startAdmin(inh)
	}); err != nil {
		return err
	}
	fronts, err := d.listeners.open(ctx, spec.Listeners, inh.Take)
	if err != nil {
		return err
	}
	for key, ln := range inh.Rest() {
		d.logger.Warn("upgrade: inherited listener not in the configuration; closing it", "listener", key)
		ln.Close()
	}
	d.mu.Lock()
	d.listeners.set(fronts)
	d.listeners.serve(&d.wg, fronts, d.listenerFailed)
	d.mu.Unlock()
	return nil
}

// listenerFailed ends the process after a public listener failed.
func (d *Daemon) listenerFailed(f *frontend, err error) {
	// issue 17, item 6d: name the listener before the shutdown.
	d.logger.Error("listener failed; shutting down", "listener", f.plan.Name, "addr", f.ln.Addr().String(), "err", err)
	d.listenersOK.Store(false)
	d.signalVRRP()
	d.errc <- err
}

// Stop shuts the daemon down: every VRRP instance resigns (the VIPs are
// released), the listeners stop accepting and requests in flight get up
// to grace, then every goroutine is stopped and waited for.
func (d *Daemon) Stop(grace time.Duration) {
	d.vrrp.Stop()
	shutdown(d.listeners.list(), grace)
	d.cancel()
	d.wg.Wait()
	d.Handler().Close()
}

// finishStartup completes the startup of a process that already serves:
// the first health round, the binary-upgrade hand-over (for a new
// process), VRRP, and READY=1 to systemd.
func (d *Daemon) finishStartup(ctx context.Context, inh *handoff.Inherited) error {
	spec := d.current()
	if err := d.waitFirstHealthRound(ctx, spec); err != nil {
		return err
	}
	masters, err := inh.Handshake(ctx, handoff.Timeout)
	switch {
	case ctx.Err() != nil:
		return err
	case err != nil:
		// The old process may still hold the VIP; start VRRP anyway.
		d.logger.Error("upgrade hand-over", "err", err)
	case inh.Upgrade():
		d.adoptAdmin()
	}
	d.mu.Lock()
	err = d.vrrp.Reconcile(d.spec.VRRP, masters)
	d.mu.Unlock()
	if err != nil {
		return err
	}
	if err := sdnotify.Ready(); err != nil {
		d.logger.Warn("systemd notify", "err", err)
	}
	return nil
}

// mainLoop runs until ctx ends, a goroutine reports a fatal error, or a
// binary upgrade handed over. SIGHUP reloads; SIGUSR2 starts an upgrade
// in the background, so the loop keeps answering the watchdog and SIGTERM
// while the new process starts.
func (d *Daemon) mainLoop(ctx context.Context, hup, usr2 <-chan os.Signal) error {
	d.beat()
	wd := &sdnotify.Watchdog{Logger: d.logger}
	d.wg.Go(func() { wd.Run(d.runCtx, d.alive) })
	d.wg.Go(func() { d.stapler.Run(d.runCtx) })
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
			d.beat()
		case <-hup:
			d.Reload(d.runCtx)
		case <-usr2:
			if upgrading != nil {
				d.logger.Warn("upgrade: already in progress; SIGUSR2 ignored")
				continue
			}
			upgrading = make(chan error, 1)
			d.wg.Go(func() { upgrading <- d.upgrade(ctx) })
		case err := <-upgrading:
			upgrading = nil
			if err != nil {
				d.logger.Error("upgrade failed; this process keeps serving", "err", err)
				continue
			}
			return nil
		case err := <-d.errc:
			return err
		}
	}
}

// beat records that the main loop is alive.
func (d *Daemon) beat() { d.lastBeat.Store(time.Now().UnixNano()) }

// alive reports whether the process makes progress, for systemd's
// watchdog: the main loop ticked recently, the listeners serve, and every
// VRRP instance's goroutine still runs.
func (d *Daemon) alive() bool {
	if time.Since(time.Unix(0, d.lastBeat.Load())) > 3*time.Second || !d.listenersOK.Load() {
		return false
	}
	return d.vrrp.Running()
}

// waitFirstHealthRound waits until every server with a management
// address has been checked once (bounded by one interval plus the
// timeout), so READY=1 means kclb knows its backends. It returns early
// with an error when ctx ends or a goroutine reports a fatal error.
func (d *Daemon) waitFirstHealthRound(ctx context.Context, spec *Spec) error {
	if !spec.Checks.Active {
		return nil
	}
	deadline := time.Now().Add(spec.Checks.Health.Interval + spec.Checks.Health.Timeout + time.Second)
	poll := time.NewTicker(20 * time.Millisecond) // the checker has no round signal
	defer poll.Stop()
	for time.Now().Before(deadline) {
		checked := true
		for _, s := range d.pool.Servers() {
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
		case err := <-d.errc:
			return err
		case <-poll.C:
		}
	}
	return nil
}

// Reload re-reads the configuration (Options.Load) and swaps it in,
// telling systemd about it; on failure the error is logged and returned
// (to `kclb reload`) and the running configuration stays in force. ctx
// bounds the opening of new listeners only.
func (d *Daemon) Reload(ctx context.Context) error {
	sdnotify.Reloading()
	defer sdnotify.Ready()
	err := d.reload(ctx)
	if err != nil {
		d.reloadsFailed.Add(1)
		d.logger.Error("reload failed; the running configuration stays in force", "err", err)
		return err
	}
	d.reloadsOK.Add(1)
	return nil
}

// reload loads and swaps.
func (d *Daemon) reload(ctx context.Context) error {
	d.logger.Info("reloading configuration", "file", d.current().Source.Path)
	if d.opts.Load == nil {
		return errors.New("reload: no configuration loader")
	}
	spec, err := d.opts.Load()
	if err != nil {
		return err
	}
	return d.Swap(ctx, spec)
}
