package main

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/kclb/kclb/internal/config"
	"github.com/kclb/kclb/vrrp"
)

// vrrpRunner is one running VRRP instance and the goroutine that owns it.
type vrrpRunner struct {
	cfg    config.VRRPInstance
	inst   *vrrp.Instance
	cancel context.CancelFunc
	done   chan struct{}
}

// report passes the edge's health to the instance; an instance with
// track_weight = 0 does not track it and is always told HealthOK (the
// vrrp package would otherwise enter Fault, keepalived's weight-0 meaning).
func (r *vrrpRunner) report(h vrrp.Health) {
	if !vrrpTracks(r.cfg) {
		h = vrrp.HealthOK
	}
	r.inst.SetHealth(h)
}

// startVRRPLocked makes the running VRRP instances match list: instances
// whose configuration is unchanged keep running untouched (no spurious
// transition); changed ones are restarted; removed ones resign. in.mu
// must be held.
func (in *instance) startVRRPLocked(list []config.VRRPInstance) error {
	var old []*vrrpRunner
	if p := in.vrrps.Load(); p != nil {
		old = *p
	}
	var next, fresh []*vrrpRunner
	kept := make(map[*vrrpRunner]bool)
	for _, c := range list {
		var keep *vrrpRunner
		for _, r := range old {
			if !kept[r] && reflect.DeepEqual(r.cfg, c) {
				keep = r
				break
			}
		}
		if keep != nil {
			kept[keep] = true
			next = append(next, keep)
			continue
		}
		o := vrrpOptions(c)
		o.Logger = in.logger.With("component", "vrrp", "instance", c.Name)
		o.Inherit = slices.Contains(in.inheritVRRP, c.Name)
		inst, err := vrrp.New(o)
		if err != nil {
			return fmt.Errorf("vrrp instance %q: %w", c.Name, err)
		}
		fresh = append(fresh, &vrrpRunner{cfg: c, inst: inst, done: make(chan struct{})})
	}
	for _, r := range old {
		if !kept[r] {
			r.stop()
		}
	}
	for _, r := range fresh {
		ctx, cancel := context.WithCancel(context.Background())
		r.cancel = cancel
		r.report(in.health())
		in.wg.Go(func() { in.runVRRP(ctx, r) })
		next = append(next, r)
	}
	in.vrrps.Store(&next)
	return nil
}

// runVRRP runs r until it is stopped. Besides the edges signalVRRP
// delivers at once, the current health is re-asserted every advert
// interval so track_fall/track_rise count consecutive intervals, as
// keepalived's vrrp_script does.
func (in *instance) runVRRP(ctx context.Context, r *vrrpRunner) {
	defer close(r.done)
	every := r.cfg.AdvertInt.Duration
	if every <= 0 {
		every = time.Second
	}
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				r.report(in.health())
			}
		}
	}()
	if err := r.inst.Run(ctx); err != nil && ctx.Err() == nil {
		in.errc <- fmt.Errorf("vrrp instance %q: %w", r.cfg.Name, err)
	}
}

// stop makes r resign (priority 0 advert, VIPs removed) and waits for it.
func (r *vrrpRunner) stop() {
	r.cancel()
	<-r.done
}

// stopVRRP stops every VRRP instance; it returns once all VIPs are
// released.
func (in *instance) stopVRRP() {
	if p := in.vrrps.Swap(nil); p != nil {
		for _, r := range *p {
			r.stop()
		}
	}
}

// detachVRRP stops every VRRP instance without resigning or removing the
// VIPs (for a binary upgrade) and returns the names of those that were
// Master.
func (in *instance) detachVRRP() []string {
	var masters []string
	if p := in.vrrps.Swap(nil); p != nil {
		for _, r := range *p {
			if r.inst.Detach() {
				masters = append(masters, r.cfg.Name)
			}
			r.stop()
		}
	}
	return masters
}

// signalVRRP passes the current health to every VRRP instance.
func (in *instance) signalVRRP() {
	if p := in.vrrps.Load(); p != nil {
		h := in.health()
		for _, r := range *p {
			r.report(h)
		}
	}
}

// vrrpStatus returns the status of every VRRP instance (for the operator
// interface).
func (in *instance) vrrpStatus() []vrrp.Status {
	p := in.vrrps.Load()
	if p == nil {
		return nil
	}
	out := make([]vrrp.Status, 0, len(*p))
	for _, r := range *p {
		out = append(out, r.inst.Status())
	}
	return out
}
