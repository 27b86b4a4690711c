package backend

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrQueueFull is returned by Server.Acquire when the server is at its
// connection limit and its wait queue is full.
var ErrQueueFull = errors.New("backend: queue full")

// PoolOptions defaults, applied by NewPool to zero fields.
const (
	// DefaultMaxEjectionPercent is about a third of the servers.
	DefaultMaxEjectionPercent = 34
	// DefaultPassiveFails is the failure streak that ejects a server.
	DefaultPassiveFails = 3
	// DefaultEjectionTime is Envoy's base_ejection_time.
	DefaultEjectionTime = 30 * time.Second
)

// FieldError is one problem with one PoolOptions field; Validate returns
// them joined (errors.Join). Field names the Go field, Msg says what is
// wrong without repeating it, in words that also read right after a
// configuration key.
type FieldError struct {
	Field string
	Msg   string
}

// Error returns "Field: Msg".
func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// DefaultWeight is Spec.Weight's default; MaxWeight bounds it.
const (
	DefaultWeight = 100
	MaxWeight     = 1000
)

// Validate checks the rules NewPool applies to a server's spec and
// returns nil or the *FieldErrors joined. Zero Weight stands for
// DefaultWeight, zero MaxConn for no limit.
func (sp Spec) Validate() error {
	var errs []error
	if sp.Weight < 0 || sp.Weight > MaxWeight {
		errs = append(errs, &FieldError{Field: "Weight", Msg: fmt.Sprintf("%d is out of range 1..%d", sp.Weight, MaxWeight)})
	}
	if sp.MaxConn < 0 {
		errs = append(errs, &FieldError{Field: "MaxConn", Msg: fmt.Sprintf("%d is less than 0", sp.MaxConn)})
	}
	return errors.Join(errs...)
}

// Validate checks the rules NewPool applies to o and returns nil or the
// *FieldErrors joined. Zero fields stand for their defaults; negative
// PassiveFails (passive ejection off), EjectionTime (never) and
// Slowstart (none) are valid.
func (o PoolOptions) Validate() error {
	var errs []error
	if !(o.PanicThreshold >= 0 && o.PanicThreshold <= 1) {
		errs = append(errs, &FieldError{Field: "PanicThreshold", Msg: fmt.Sprintf("%g is not a fraction in 0..1", o.PanicThreshold)})
	}
	if o.MaxEjectionPercent < 0 || o.MaxEjectionPercent > 100 {
		errs = append(errs, &FieldError{Field: "MaxEjectionPercent", Msg: fmt.Sprintf("%d is out of range 1..100", o.MaxEjectionPercent)})
	}
	return errors.Join(errs...)
}

// ErrQueueTimeout is returned by Server.Acquire when no connection slot
// freed up within the queue timeout.
var ErrQueueTimeout = errors.New("backend: queue timeout")

// Acquire takes one of the server's connection slots, waiting in a queue
// of at most queueMax requests for up to timeout. It returns ErrQueueFull,
// ErrQueueTimeout or the context's error when no slot was taken. Every
// successful Acquire must be paired with Release.
func (s *Server) Acquire(ctx context.Context, queueMax int, timeout time.Duration) error {
	_, err := s.AcquireAt(ctx, queueMax, timeout, time.Now())
	return err
}

// AcquireAt is Acquire for a request that starts at now (the caller's
// clock reading, which LastUse reports); queued reports whether it
// waited in the queue, so a caller that did not need not read the
// clock again.
func (s *Server) AcquireAt(ctx context.Context, queueMax int, timeout time.Duration, now time.Time) (queued bool, err error) {
	s.lastUse.Store(now.UnixNano())
	if s.slots == nil {
		s.inflight.Add(1)
		s.requests.Add(1)
		return false, nil
	}
	select {
	case s.slots <- struct{}{}:
		s.inflight.Add(1)
		s.requests.Add(1)
		return false, nil
	default:
	}
	if s.queued.Add(1) > int64(queueMax) {
		s.queued.Add(-1)
		return false, ErrQueueFull
	}
	defer s.queued.Add(-1)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case s.slots <- struct{}{}:
		s.inflight.Add(1)
		s.requests.Add(1)
		return true, nil
	case <-t.C:
		return true, ErrQueueTimeout
	case <-ctx.Done():
		return true, ctx.Err()
	}
}

// Release returns a slot taken by Acquire.
func (s *Server) Release() {
	s.inflight.Add(-1)
	if s.slots != nil {
		<-s.slots
	}
}

// PoolOptions tunes a Pool. The zero value is usable.
type PoolOptions struct {
	// PanicThreshold is the fraction (0..1) of Up servers below which the
	// pool enters panic mode and routes to servers that are Down but
	// still live. Zero means panic only when no server is Up.
	PanicThreshold float64
	// PassiveFails is the number of consecutive failures on real traffic
	// that say the server is unreachable (failed connects, resets before
	// any response byte) that eject it: it becomes Down, which panic mode
	// may still use; only active liveness checks make a server Dead.
	// Zero means DefaultPassiveFails (3); negative disables passive ejection.
	PassiveFails int
	// MaxEjectionPercent bounds the servers (outside maintenance) that
	// passive ejection holds out at the same time, in percent, rounded
	// down but at least one; and passive ejection never takes out the
	// last Up server that takes new clients. Like Envoy's
	// max_ejection_percent, it keeps a fault the clients can provoke from
	// emptying the pool. Zero means 34 (one of three servers, two of
	// six); at most 100.
	MaxEjectionPercent int
	// EjectionTime ends a passive ejection that no active check has
	// looked at since (the server has no management address, or checks
	// are off): the server is Up again, and a new streak of failures
	// ejects it again. A checked server returns only after Rise passes.
	// Zero means DefaultEjectionTime (30 s); negative means never.
	EjectionTime time.Duration
	// Slowstart is how long a server takes to ramp its weight from 0 to
	// full after it becomes Up (from Down, Dead or Starting, whoever
	// reported it) or joins the running pool Up (Add, or a new name in
	// Reconcile). The servers NewPool creates start at full weight. Zero
	// means no slow start; SetSlowstart changes it later.
	Slowstart time.Duration
	// OnAvailable is called on edges of "at least one server can take a
	// new client" (the signal VRRP tracks). It is called with the pool's
	// lock held: it must not call back into the pool. Nil means none.
	OnAvailable func(up bool)
	// OnHealth is called once for every health transition of a server,
	// with the reason, and when panic mode starts or ends (s nil). Same
	// locking rule as OnAvailable. Nil means none.
	OnHealth func(s *Server, from, to Health, reason string, panicMode bool)
}

// Pool is the set of servers behind kclb. Membership changes (discovery,
// reload) swap an immutable slice, so readers never lock.
type Pool struct {
	opts    PoolOptions
	servers atomic.Pointer[[]*Server]
	panic   atomic.Bool // shared with every server
	// backups is set while no non-backup server is Up and ready: the
	// backup servers take traffic. Shared with every server.
	backups atomic.Bool
	// slowstart is the ramp length in nanoseconds; shared with every
	// server.
	slowstart atomic.Int64

	mu        sync.Mutex // serialises state changes and edge detection
	available bool       // last value reported to OnAvailable

	ejectionsCapped atomic.Uint64 // passive ejections refused by MaxEjectionPercent
}

// NewPool returns a pool holding servers built from specs. Names must be
// unique and non-empty.
func NewPool(specs []Spec, opts PoolOptions) (*Pool, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	if opts.PassiveFails == 0 {
		opts.PassiveFails = DefaultPassiveFails
	}
	if opts.MaxEjectionPercent == 0 {
		opts.MaxEjectionPercent = DefaultMaxEjectionPercent
	}
	if opts.EjectionTime == 0 {
		opts.EjectionTime = DefaultEjectionTime
	}
	p := &Pool{opts: opts}
	p.slowstart.Store(int64(max(opts.Slowstart, 0)))
	list := make([]*Server, 0, len(specs))
	seen := make(map[string]bool, len(specs))
	for _, sp := range specs {
		if sp.Name == "" {
			return nil, errors.New("backend: server without a name")
		}
		if seen[sp.Name] {
			return nil, fmt.Errorf("backend: duplicate server name %q", sp.Name)
		}
		if err := sp.Validate(); err != nil {
			return nil, fmt.Errorf("backend: server %q: %w", sp.Name, err)
		}
		seen[sp.Name] = true
		list = append(list, p.newServer(sp))
	}
	p.servers.Store(&list)
	p.mu.Lock()
	p.recomputeLocked()
	p.mu.Unlock()
	return p, nil
}

// newServer returns a member server: it shares the pool's panic and
// backup flags.
func (p *Pool) newServer(sp Spec) *Server {
	s := NewServer(sp, &p.panic)
	s.backups = &p.backups
	s.slowstart = &p.slowstart
	return s
}

// SetSlowstart sets the slow-start ramp for servers that become Up from
// now on (a reload); ramps in progress take the new length at once. Zero
// or negative means none.
func (p *Pool) SetSlowstart(d time.Duration) { p.slowstart.Store(int64(max(d, 0))) }

// startRampLocked begins slow start for s at now when the pool has one.
// p.mu must be held.
func (p *Pool) startRampLocked(s *Server, now time.Time) {
	if p.slowstart.Load() > 0 {
		s.rampFrom.Store(now.UnixNano())
	}
}

// Backups reports whether the backup servers are in use: no non-backup
// server is Up and takes new clients.
func (p *Pool) Backups() bool { return p.backups.Load() }

// Servers returns the current members. The slice must not be modified.
func (p *Pool) Servers() []*Server { return *p.servers.Load() }

// Lookup returns the server called name, or nil.
func (p *Pool) Lookup(name string) *Server {
	for _, s := range p.Servers() {
		if s.spec.Name == name {
			return s
		}
	}
	return nil
}

// Panic reports whether panic mode is in force.
func (p *Pool) Panic() bool { return p.panic.Load() }

// AnyAvailable reports whether at least one server takes new clients.
func (p *Pool) AnyAvailable() bool {
	for _, s := range p.Servers() {
		if s.Available() {
			return true
		}
	}
	return false
}

// SetHealth records a health verdict for s with its explanation. detail
// replaces the stored Detail; Since is set by the pool on transitions.
func (p *Pool) SetHealth(s *Server, h Health, d Detail) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setHealthLocked(s, h, d)
}

// setHealthLocked applies a verdict and fires the hooks on a transition.
// p.mu must be held.
func (p *Pool) setHealthLocked(s *Server, h Health, d Detail) {
	s.mu.Lock()
	from := Health(s.health.Load())
	now := time.Now()
	if from != h {
		d.Since = now
	} else {
		d.Since = s.detail.Since
	}
	s.detail = d
	s.mu.Unlock()
	if from == h {
		return
	}
	s.health.Store(uint32(h))
	s.ejected.Store(false) // a passive ejection sets it after the transition
	if h != HealthUp {
		s.passiveFails.Store(0)
		s.rampFrom.Store(0)
	} else {
		p.startRampLocked(s, now)
	}
	if p.opts.OnHealth != nil {
		p.opts.OnHealth(s, from, h, d.Reason, p.panic.Load())
	}
	p.recomputeLocked()
}

// SetAdmin sets the admin state of the server called name.
func (p *Pool) SetAdmin(name string, a AdminState) error {
	s := p.Lookup(name)
	if s == nil {
		return fmt.Errorf("backend: unknown server %q", name)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s.SetAdmin(a)
	p.recomputeLocked()
	return nil
}

// ObserveSuccess records a successful exchange with s on real traffic.
func (p *Pool) ObserveSuccess(s *Server) {
	if s.passiveFails.Load() != 0 {
		s.passiveFails.Store(0)
	}
}

// ObserveFailure records a failed exchange with s on real traffic that
// says the server is unreachable (a failed connect, a reset before any
// response byte). After PassiveFails consecutive failures the server is
// marked Down at once, unless MaxEjectionPercent of the servers are
// passively ejected already or s is the last Up server taking new
// clients; active checks bring it back, or EjectionTime when none runs.
// Other failures go to CountError.
func (p *Pool) ObserveFailure(s *Server, cause string) {
	s.errors.Add(1)
	if p.opts.PassiveFails < 0 {
		return
	}
	n := s.passiveFails.Add(1)
	if n < int64(p.opts.PassiveFails) || s.Health() != HealthUp {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.Health() != HealthUp {
		return
	}
	if !p.mayEjectLocked(s) {
		p.ejectionsCapped.Add(1)
		return
	}
	d := s.Detail()
	d.Reason = fmt.Sprintf("passive: %d consecutive failures, last: %s", n, cause)
	d.Passes = 0
	p.setHealthLocked(s, HealthDown, d)
	s.ejected.Store(true)
	if p.opts.EjectionTime > 0 {
		at := time.Now()
		time.AfterFunc(p.opts.EjectionTime, func() { p.endEjection(s, at) })
	}
}

// endEjection returns s to Up when it is still held out by the passive
// ejection made at, no active check has reported on it since, and it is
// still a member.
func (p *Pool) endEjection(s *Server, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !s.ejected.Load() || s.Health() != HealthDown || !slices.Contains(*p.servers.Load(), s) {
		return
	}
	d := s.Detail()
	if d.LastCheck.After(at) {
		return // the checker watches it: Rise passes bring it back
	}
	d.Reason = fmt.Sprintf("passive ejection ended after %s without active checks", p.opts.EjectionTime)
	p.setHealthLocked(s, HealthUp, d)
}

// mayEjectLocked reports whether passive ejection may take s out now:
// fewer than the allowed share of the servers are passively ejected, and
// another Up server takes new clients. p.mu must be held.
func (p *Pool) mayEjectLocked(s *Server) bool {
	total, ejected, others := 0, 0, 0
	for _, x := range *p.servers.Load() {
		if x.Admin() == AdminMaint {
			continue
		}
		total++
		if x.ejected.Load() {
			ejected++
		}
		if x != s && x.Admin() == AdminReady && x.Health() == HealthUp {
			others++
		}
	}
	return others > 0 && ejected < max(1, total*p.opts.MaxEjectionPercent/100)
}

// EjectionsCapped returns how many passive ejections were refused, since
// the pool was made, because the servers left would have been too few.
func (p *Pool) EjectionsCapped() uint64 { return p.ejectionsCapped.Load() }

// CountError records a failed request on s that does not count against
// its health (for example a client that went away).
func (p *Pool) CountError(s *Server) { s.errors.Add(1) }

// Add inserts a server (discovery), which starts Up and in slow start. It
// returns the existing server when one with the same name is present.
func (p *Pool) Add(spec Spec) *Server {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := *p.servers.Load()
	for _, s := range cur {
		if s.spec.Name == spec.Name {
			return s
		}
	}
	s := p.newServer(spec)
	p.startRampLocked(s, time.Now())
	next := append(slices.Clip(cur), s)
	p.servers.Store(&next)
	p.recomputeLocked()
	return s
}

// Reconcile makes the pool's members match specs (a configuration
// reload): servers whose spec is unchanged are kept as they are; a server
// whose spec changed under the same name is replaced by a new one that
// inherits its admin state, health and slow start; new names are added
// (Up, in slow start) and missing ones removed. Requests in flight finish on the servers they started on.
func (p *Pool) Reconcile(specs []Spec) error {
	seen := make(map[string]bool, len(specs))
	for _, sp := range specs {
		if sp.Name == "" {
			return errors.New("backend: server without a name")
		}
		if seen[sp.Name] {
			return fmt.Errorf("backend: duplicate server name %q", sp.Name)
		}
		seen[sp.Name] = true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := *p.servers.Load()
	next := make([]*Server, 0, len(specs))
	now := time.Now()
	for _, sp := range specs {
		if sp.Weight <= 0 {
			sp.Weight = 100
		}
		i := slices.IndexFunc(cur, func(s *Server) bool { return s.spec.Name == sp.Name })
		switch {
		case i >= 0 && cur[i].spec == sp:
			next = append(next, cur[i])
		case i >= 0:
			old := cur[i]
			s := p.newServer(sp)
			s.admin.Store(old.admin.Load())
			s.health.Store(old.health.Load())
			s.ejected.Store(old.ejected.Load())
			s.rampFrom.Store(old.rampFrom.Load())
			s.detail = old.Detail()
			next = append(next, s)
		default:
			s := p.newServer(sp)
			p.startRampLocked(s, now)
			next = append(next, s)
		}
	}
	p.servers.Store(&next)
	p.recomputeLocked()
	return nil
}

// Remove deletes the server called name. Requests already forwarded to it
// finish normally. It reports whether the server was present.
func (p *Pool) Remove(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := *p.servers.Load()
	i := slices.IndexFunc(cur, func(s *Server) bool { return s.spec.Name == name })
	if i < 0 {
		return false
	}
	next := slices.Delete(slices.Clone(cur), i, i+1)
	p.servers.Store(&next)
	p.recomputeLocked()
	return true
}

// recomputeLocked updates panic mode and fires the availability edge.
// p.mu must be held.
func (p *Pool) recomputeLocked() {
	servers := *p.servers.Load()
	// Backup servers count only while they are in use: when no other
	// server is Up and ready (before panic mode, which then looks at
	// both kinds).
	var up, total, bUp, bTotal int
	primary := false
	for _, s := range servers {
		if s.Admin() == AdminMaint {
			continue
		}
		isUp := s.Health() == HealthUp
		if s.spec.Backup {
			bTotal++
			if isUp {
				bUp++
			}
			continue
		}
		total++
		if isUp {
			up++
			primary = primary || s.Admin() == AdminReady
		}
	}
	p.backups.Store(!primary)
	if !primary {
		up, total = up+bUp, total+bTotal
	}
	panicMode := total > 0 && (up == 0 || float64(up)/float64(total) < p.opts.PanicThreshold)
	if p.panic.Swap(panicMode) != panicMode && p.opts.OnHealth != nil {
		reason := fmt.Sprintf("%d of %d servers ready", up, total)
		p.opts.OnHealth(nil, 0, 0, reason, panicMode)
	}
	avail := false
	for _, s := range servers {
		if s.Available() {
			avail = true
			break
		}
	}
	if avail != p.available {
		p.available = avail
		if p.opts.OnAvailable != nil {
			p.opts.OnAvailable(avail)
		}
	}
}
