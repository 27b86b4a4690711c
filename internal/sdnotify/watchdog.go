package sdnotify

import (
	"context"
	"log/slog"
	"time"
)

// Watchdog keeps systemd's service watchdog (WatchdogSec=) fed while the
// service is healthy. The zero value uses WatchdogInterval and Notify.
type Watchdog struct {
	// Interval is the watchdog timeout. Pings are sent every Interval/2.
	// If zero, WatchdogInterval is consulted; when the watchdog is not
	// enabled for this process, Run returns at once.
	Interval time.Duration
	// Notify sends one state. If nil, the package's Notify is used.
	Notify func(state string) error
	// Logger receives failed pings at warn level. If nil, nothing is logged.
	Logger *slog.Logger
}

// Run sends WATCHDOG=1 at once and then every Interval/2, each time only
// if alive returns true, until ctx is done; it then returns nil. alive
// should check that the service's main loops still make progress: while it
// returns false no pings are sent, so systemd kills and restarts a wedged
// process after Interval. A nil alive counts as always true. A failed ping
// is logged and does not stop the loop.
func (w *Watchdog) Run(ctx context.Context, alive func() bool) error {
	interval := w.Interval
	if interval <= 0 {
		var ok bool
		if interval, ok = WatchdogInterval(); !ok {
			return nil
		}
	}
	notify := w.Notify
	if notify == nil {
		notify = Notify
	}
	period := interval / 2
	if period <= 0 {
		period = interval
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		if alive == nil || alive() {
			if err := notify(StateWatchdog); err != nil && w.Logger != nil {
				w.Logger.Warn("systemd watchdog ping failed", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
