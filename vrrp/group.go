package vrrp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// GroupOptions configures a Group.
type GroupOptions struct {
	// Logger, when not nil, is each instance's logger (with its
	// component and name) unless its Options name one.
	Logger *slog.Logger
	// Health returns the health the instances track; it is asked when
	// an instance starts and every advert interval (so track_fall and
	// track_rise count consecutive intervals, as keepalived's
	// vrrp_script does). It must not block. If nil, HealthOK.
	Health func() Health
	// OnError receives the error of an instance whose Run failed while
	// it was meant to run (a socket error). It must not block for long.
	// If nil, such errors are dropped.
	OnError func(error)
}

// Group is the set of VRRP instances a node runs: Reconcile makes it
// match a list of Options, keeping unchanged instances running untouched.
// It owns one goroutine per instance that runs it and one that re-sends
// the tracked health every advert interval; Stop and Detach wait for
// both. The zero value is not usable: call NewGroup.
type Group struct {
	opts GroupOptions
	// mu serialises Reconcile, Stop and Detach.
	mu sync.Mutex
	// members is read without mu (SetHealth runs under the caller's
	// locks, such as a backend pool's hook).
	members atomic.Pointer[[]*member]
}

// member is one running instance and its goroutines.
type member struct {
	opts   Options
	inst   *Instance
	cancel context.CancelFunc
	wg     sync.WaitGroup
	done   chan struct{} // closed when Run returned
}

// NewGroup returns an empty group.
func NewGroup(o GroupOptions) *Group {
	return &Group{opts: o}
}

// health returns what m is told: an instance with TrackWeight 0 does
// not track and is always told HealthOK (the state machine would
// otherwise enter Fault, keepalived's weight-0 meaning).
func (g *Group) health(m *member) Health {
	if m.opts.TrackWeight == 0 || g.opts.Health == nil {
		return HealthOK
	}
	return g.opts.Health()
}

// Reconcile makes the running instances match list. Instances whose
// Options are deeply equal to a running one's keep running untouched (no
// spurious transition); changed ones are restarted; removed ones resign.
// inherit names the new instances to start as Master on VIPs already in
// place (Options.Inherit, after a binary upgrade from a Master). On an
// error (an instance New refuses) nothing changes.
func (g *Group) Reconcile(list []Options, inherit []string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var old []*member
	if p := g.members.Load(); p != nil {
		old = *p
	}
	var next, fresh []*member
	kept := make(map[*member]bool)
	for _, o := range list {
		i := slices.IndexFunc(old, func(m *member) bool { return !kept[m] && reflect.DeepEqual(m.opts, o) })
		if i >= 0 {
			kept[old[i]] = true
			next = append(next, old[i])
			continue
		}
		run := o
		run.Inherit = slices.Contains(inherit, o.Name)
		if run.Logger == nil && g.opts.Logger != nil {
			run.Logger = g.opts.Logger.With("component", "vrrp", "instance", o.Name)
		}
		inst, err := New(run)
		if err != nil {
			return fmt.Errorf("vrrp instance %q: %w", o.Name, err)
		}
		fresh = append(fresh, &member{opts: o, inst: inst, done: make(chan struct{})})
	}
	for _, m := range old {
		if !kept[m] {
			m.stop()
		}
	}
	for _, m := range fresh {
		g.start(m)
		next = append(next, m)
	}
	g.members.Store(&next)
	return nil
}

// start runs m: its instance, and the periodic re-send of the health.
func (g *Group) start(m *member) {
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.inst.SetHealth(g.health(m))
	every := m.opts.AdvertInterval
	if every <= 0 {
		every = time.Second
	}
	m.wg.Go(func() {
		defer close(m.done)
		if err := m.inst.Run(ctx); err != nil && ctx.Err() == nil && g.opts.OnError != nil {
			g.opts.OnError(fmt.Errorf("vrrp instance %q: %w", m.opts.Name, err))
		}
	})
	m.wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				m.inst.SetHealth(g.health(m))
			}
		}
	})
}

// stop makes m resign (priority-0 advert, VIPs removed) unless it was
// detached, and waits for its goroutines.
func (m *member) stop() {
	m.cancel()
	m.wg.Wait()
}

// list returns the running members.
func (g *Group) list() []*member {
	if p := g.members.Load(); p != nil {
		return *p
	}
	return nil
}

// Len returns the number of running instances.
func (g *Group) Len() int { return len(g.list()) }

// SetHealth passes h to every instance that tracks the health. It takes
// no lock and may be called from any goroutine.
func (g *Group) SetHealth(h Health) {
	for _, m := range g.list() {
		if m.opts.TrackWeight == 0 {
			m.inst.SetHealth(HealthOK)
		} else {
			m.inst.SetHealth(h)
		}
	}
}

// Handover starts (on) or ends a planned handover on every instance
// (Instance.Handover); the errors of all instances are joined.
func (g *Group) Handover(on bool) error {
	var errs []error
	for _, m := range g.list() {
		if err := m.inst.Handover(on); err != nil {
			errs = append(errs, fmt.Errorf("vrrp instance %q: %w", m.opts.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Status returns the status of every instance, in the order of the
// last Reconcile.
func (g *Group) Status() []Status {
	ms := g.list()
	if len(ms) == 0 {
		return nil
	}
	out := make([]Status, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.inst.Status())
	}
	return out
}

// Running reports whether every instance's goroutine still runs (for a
// watchdog).
func (g *Group) Running() bool {
	for _, m := range g.list() {
		select {
		case <-m.done:
			return false
		default:
		}
	}
	return true
}

// Stop makes every instance resign; it returns once every VIP is
// released and every goroutine ended. The group may be reconciled again.
func (g *Group) Stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p := g.members.Swap(nil); p != nil {
		for _, m := range *p {
			m.stop()
		}
	}
}

// Detach stops every instance without resigning or removing the VIPs
// (for a binary upgrade: the new process inherits them) and returns the
// names of those that were Master.
func (g *Group) Detach() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var masters []string
	if p := g.members.Swap(nil); p != nil {
		for _, m := range *p {
			if m.inst.Detach() {
				masters = append(masters, m.opts.Name)
			}
			m.stop()
		}
	}
	return masters
}
