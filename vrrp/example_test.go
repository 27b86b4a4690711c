package vrrp_test

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kclb/kclb/vrrp"
)

// This is how a program wires an Instance: health edges go to SetHealthy, SIGTERM cancels
// Run (which sends a priority-0 advert and removes the VIP before returning).
func Example() {
	inst, err := vrrp.New(vrrp.Options{
		Interface:      "eth0",
		VRID:           51,
		Priority:       150,
		AdvertInterval: time.Second,
		VIPs:           []netip.Prefix{netip.MustParsePrefix("203.0.113.100/24")},
		Preempt:        true,
		TrackWeight:    60, // unhealthy: 150 -> 90, below a healthy peer at 100
		Logger:         slog.Default(),
	})
	if err != nil {
		slog.Error("vrrp config", "err", err)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	poolUp := func(up bool) { inst.SetHealthy(up) } // e.g. the backend pool's edge callback
	_ = poolUp

	if err := inst.Run(ctx); err != nil {
		slog.Error("vrrp", "err", err)
	}
	st := inst.Status()
	slog.Info("vrrp stopped", "state", st.State, "transitions", st.Transitions)
}
