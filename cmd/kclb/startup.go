package main

// Startup fails fast (issue 18, item 1): SIGINT and SIGTERM are caught
// before anything else, so they end `kclb run` at every stage of startup
// with one line naming the cause (daemon.Run honours the context).

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

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
// (daemon.Run handles them once it runs). stop releases the signals and the
// goroutine that watches them.
func interruptContext() (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	early := make(chan os.Signal, 1)
	signal.Notify(early, syscall.SIGHUP, syscall.SIGUSR2) // dropped: daemon.Run registers its own
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
