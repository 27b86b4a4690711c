package daemon

// Zero-downtime binary upgrade. SIGUSR2 makes the running kclb start the
// binary now installed at its own path with the same arguments, handing
// it the listening sockets (internal/handoff): the public listeners, the
// admin Unix socket and the admin TCP listener. The admin socket file is
// never removed or re-created:
//
//  1. the old process starts the new one with the listeners;
//  2. the new process builds its runtime on the inherited sockets,
//     serves, finishes its first health round and says "ready" (or
//     "failed <reason>" before it exits);
//  3. the old process detaches its VRRP instances (they stop advertising
//     but neither resign nor remove the VIPs), stops accepting on every
//     listener (leaving the socket file in place), and says "released"
//     with the names of the instances that were Master;
//  4. the new process starts VRRP, those instances directly as Master on
//     the VIPs already in place, so the peer never sees a gap longer than
//     the hand-over (a few milliseconds); the old one finishes the
//     requests in flight within the shutdown grace period and exits 0.
//
// If the new process fails or does not say "ready" within
// handoff.Timeout, the old one logs why, kills it and keeps serving. The
// old process runs its side in the background: its main loop keeps
// answering systemd's watchdog and SIGTERM throughout.

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/kclb/kclb/internal/handoff"
	"github.com/kclb/kclb/internal/sdnotify"
)

// upgrade is the old process's side. It returns nil once the new process
// serves on the listeners and this one has stopped VRRP and accepting; the
// caller then drains and exits. On error (or when ctx ends first) the new
// process is killed and this one keeps serving.
func (d *Daemon) upgrade(ctx context.Context) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	fronts := d.listeners.list()
	handed := d.handedAdmin()
	for _, f := range fronts {
		handed = append(handed, handoff.Listener{Key: f.plan.Bind, Ln: f.raw})
	}
	child, err := handoff.Start(exe, os.Args[1:], sdnotify.ChildEnv(os.Environ()), handed, os.Stdout, os.Stderr)
	if err != nil {
		return err
	}
	d.logger.Info("upgrade: new process started", "pid", child.Pid(), "binary", exe)
	if err := child.AwaitReady(ctx, handoff.Timeout); err != nil {
		return err
	}
	// The new process serves on the same sockets: detach VRRP (the VIPs
	// stay), stop accepting here, then let it take VRRP over.
	masters := d.vrrp.Detach()
	for _, f := range fronts {
		f.stopAccepting()
	}
	d.releaseAdmin()
	if err := child.Release(masters); err != nil {
		return err
	}
	// Under systemd the new process becomes the service's main process.
	if err := sdnotify.MainPID(child.Pid()); err != nil {
		d.logger.Warn("upgrade: telling systemd the new main pid", "err", err)
	}
	d.logger.Info("upgrade: handed over to the new process", "pid", child.Pid(), "vrrp_masters", strings.Join(masters, ","))
	return nil
}
