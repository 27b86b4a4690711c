package main

// Startup fails fast (issue 18, item 1). Every startup error ends `kclb
// run` with one line naming the cause and a non-zero status, and SIGINT or
// SIGTERM end the process at every stage of startup: signal handling is
// installed before anything else, every step that can block takes the
// context or runs under during, and cmdRun does not wait for a step stuck
// in a system call no context reaches (a certificate on a hung NFS mount,
// a FIFO) for longer than startupUnwind.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kclb/kclb/internal/config"
	"github.com/kclb/kclb/vrrp"
)

// startupUnwind bounds how long an interrupted startup may take to
// release what it opened before the process exits anyway.
const startupUnwind = 1500 * time.Millisecond

// errInterrupted is the cause of a context ended by SIGINT or SIGTERM.
type errInterrupted struct{ sig os.Signal }

func (e errInterrupted) Error() string {
	if s, ok := e.sig.(syscall.Signal); ok {
		return "interrupted by " + unix.SignalName(s)
	}
	return "interrupted by " + e.sig.String()
}

// interruptContext returns a context that SIGINT or SIGTERM cancel with
// errInterrupted as the cause, and catches SIGHUP and SIGUSR2 so their
// default action (exit) cannot end a process that is still starting
// (serve handles them once it runs). stop releases the signals and the
// goroutine that watches them.
func interruptContext() (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	early := make(chan os.Signal, 1)
	signal.Notify(early, syscall.SIGHUP, syscall.SIGUSR2) // dropped: serve registers its own
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		select {
		case s := <-sigs:
			cancel(errInterrupted{s})
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		signal.Stop(early)
		close(done)
		<-exited
		cancel(nil)
	}
}

// during runs one startup step that may block where no context reaches
// (opening or reading a file) and returns its result, or, as soon as ctx
// ends, an error naming the step and the cause ("interrupted by SIGTERM
// while reading the TLS certificates"). In that case f keeps running in
// its goroutine, which is abandoned: the caller is on its way to exit.
func during[T any](ctx context.Context, step string, f func() (T, error)) (T, error) {
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

// runUntilStarted runs serve with cfg. Once serve has started, it returns
// whatever serve returns (a graceful shutdown may take the shutdown grace
// period). If ctx ends while serve is still starting, serve gets
// startupUnwind to release what it opened; a step stuck in a system call
// does not hold the process longer.
func runUntilStarted(ctx context.Context, serve func(ready chan<- struct{}) error) error {
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- serve(ready) }()
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

// checkVRRP builds every configured VRRP instance without opening
// anything, so `kclb check` refuses what `kclb run` would refuse.
func checkVRRP(cfg *config.Config) error {
	for _, c := range cfg.VRRP.Instances {
		if _, err := vrrp.New(vrrpOptions(c)); err != nil {
			return fmt.Errorf("vrrp instance %q: %w", c.Name, err)
		}
	}
	return nil
}

// preflightVRRP is checkVRRP plus what only the machine can tell: every
// instance's interface exists, and an IPv6 instance's interface has the
// link-local address its adverts are sent from. It runs before any socket
// is opened.
func preflightVRRP(cfg *config.Config) error {
	if err := checkVRRP(cfg); err != nil {
		return err
	}
	for _, c := range cfg.VRRP.Instances {
		ifi, err := net.InterfaceByName(c.Interface)
		if err != nil {
			var oe *net.OpError
			if errors.As(err, &oe) && oe.Err != nil {
				err = oe.Err
			}
			return fmt.Errorf("vrrp instance %q: interface %q: %w", c.Name, c.Interface, err)
		}
		if len(c.VIPs) > 0 && c.VIPs[0].Addr().Is6() && !hasLinkLocal(ifi) {
			return fmt.Errorf("vrrp instance %q: interface %q has no IPv6 link-local address; IPv6 VRRP adverts are sent from it (RFC 5798 §5.1.2.1): is IPv6 disabled on it?", c.Name, c.Interface)
		}
	}
	return nil
}

// hasLinkLocal reports whether ifi has an IPv6 link-local unicast address.
func hasLinkLocal(ifi *net.Interface) bool {
	addrs, err := ifi.Addrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() == nil && n.IP.IsLinkLocalUnicast() {
			return true
		}
	}
	return false
}

// oneLine flattens a multi-line error message for the hand-over dialogue.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
