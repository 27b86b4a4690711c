// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)): a service started with Type=notify tells the service
// manager when it is ready, reloading or stopping, and keeps the
// manager's watchdog (WatchdogSec=) fed while it is healthy.
//
// Messages are newline-separated VAR=VALUE assignments sent as one
// datagram to the Unix socket named by $NOTIFY_SOCKET. When the variable
// is unset (kclb not started by systemd, or in a test) every function is a
// no-op that returns nil, so callers never need to check how they were
// started.
//
// The package reads the environment on every call and keeps no state.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Notification states understood by systemd. Send them with Notify, or
// use the helper of the same name.
const (
	// StateReady tells systemd that start-up (or a reload) is complete.
	StateReady = "READY=1"
	// StateReloading tells systemd that a configuration reload began; it
	// must be followed by StateReady when the reload is done.
	StateReloading = "RELOADING=1"
	// StateStopping tells systemd that shutdown began.
	StateStopping = "STOPPING=1"
	// StateWatchdog is the watchdog keep-alive ping.
	StateWatchdog = "WATCHDOG=1"
)

// ErrUnsupportedSocket is returned by Notify when $NOTIFY_SOCKET names a
// socket type other than an AF_UNIX path or abstract name (systemd also
// allows "vsock:" addresses, which kclb never runs under).
var ErrUnsupportedSocket = errors.New("sdnotify: unsupported NOTIFY_SOCKET address")

// Notify sends state, one or more newline-separated VAR=VALUE assignments,
// to the socket named by $NOTIFY_SOCKET. It returns nil without sending
// anything when the variable is unset or empty. A name starting with '@'
// is an abstract socket. Errors are wrapped with the socket name.
func Notify(state string) error {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil
	}
	if name[0] != '/' && name[0] != '@' {
		return fmt.Errorf("%w: %q", ErrUnsupportedSocket, name)
	}
	// Go's net package maps a leading '@' to the abstract namespace.
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sdnotify: dial %s: %w", name, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sdnotify: send to %s: %w", name, err)
	}
	return nil
}

// Ready sends READY=1: start-up is complete (listeners bound, first
// health round done), or a reload announced by Reloading has finished.
func Ready() error { return Notify(StateReady) }

// Reloading sends RELOADING=1 with MONOTONIC_USEC, the current
// CLOCK_MONOTONIC time in microseconds that systemd 253 and later require
// for Type=notify-reload; with Type=notify the extra field is ignored.
// Send Ready when the reload has finished, whether it succeeded or not.
func Reloading() error {
	s := StateReloading
	if us, ok := monotonicUsec(); ok {
		s += "\nMONOTONIC_USEC=" + strconv.FormatInt(us, 10)
	}
	return Notify(s)
}

// Stopping sends STOPPING=1: shutdown began.
func Stopping() error { return Notify(StateStopping) }

// WatchdogPing sends one WATCHDOG=1 keep-alive ping. Use the Watchdog type
// to send them periodically. (The name differs from the other helpers'
// because Watchdog is that type.)
func WatchdogPing() error { return Notify(StateWatchdog) }

// Status sends STATUS=msg, a one-line status shown by systemctl status.
// Newlines in msg are replaced by spaces.
func Status(msg string) error {
	return Notify("STATUS=" + strings.ReplaceAll(msg, "\n", " "))
}

// MainPID sends MAINPID=pid: the process pid takes over as the service's
// main process. A process handing its listeners to a new binary (the
// SIGUSR2 upgrade) sends it before it exits; otherwise systemd treats its
// exit as the end of the service and stops the new process with it. Only
// the current main process may send it under NotifyAccess=main.
func MainPID(pid int) error { return Notify("MAINPID=" + strconv.Itoa(pid)) }

// ChildEnv returns env (in os.Environ form) without WATCHDOG_PID, for a
// process that will take over as the main process: with the old
// process's id in WATCHDOG_PID, WatchdogInterval would report the
// watchdog off in the child and systemd would kill it for missing pings.
// NOTIFY_SOCKET and WATCHDOG_USEC are kept.
func ChildEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, "WATCHDOG_PID=") {
			out = append(out, kv)
		}
	}
	return out
}

// WatchdogInterval returns systemd's watchdog timeout from $WATCHDOG_USEC
// and true when the watchdog is enabled for this process: the variable
// holds a positive number and $WATCHDOG_PID, if set, is this process's id.
// It returns 0 and false otherwise. Pings must arrive more often than the
// interval; Watchdog.Run sends them at half of it.
func WatchdogInterval() (time.Duration, bool) {
	us, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || us <= 0 {
		return 0, false
	}
	if p := os.Getenv("WATCHDOG_PID"); p != "" {
		pid, err := strconv.Atoi(p)
		if err != nil || pid != os.Getpid() {
			return 0, false
		}
	}
	return time.Duration(us) * time.Microsecond, true
}
