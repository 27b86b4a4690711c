package vrrp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults applied by New to zero Options fields.
const (
	DefaultPriority       = 100
	DefaultAdvertInterval = time.Second
	DefaultVersion        = 3
	DefaultGARPRepeat     = 5
	DefaultGARPDelay      = 5 * time.Second
)

// notifyTimeout bounds how long a notify command may run.
const notifyTimeout = 30 * time.Second

// hookTimeout bounds one VIPHook call.
const hookTimeout = 30 * time.Second

// VIPHook moves a VIP through an external API, for clouds where gratuitous ARP does not
// move addresses (for example an AWS secondary private IP). Acquire is called after the VIP
// was added locally on becoming Master, Release before it is removed on leaving Master.
// Calls are made from one goroutine, in order; errors are logged and counted in
// Status.Errors, and do not change the VRRP state.
type VIPHook interface {
	Acquire(ctx context.Context, vip netip.Prefix) error
	Release(ctx context.Context, vip netip.Prefix) error
}

// Observer is told about every state change, for metrics. Calls are made from one
// goroutine, in order, after the change; they must not block for long.
type Observer interface {
	OnTransition(instance string, from, to State)
}

// Options configures an Instance. Zero fields get the documented defaults (the exported
// Default constants); Interface, VRID and VIPs are required. Where a field can be switched
// off, its doc says how: 0 for the ones without a default (GARPRefresh, TrackWeight's
// tracking), a negative value for the ones whose 0 is the default (GARPRepeat, GARPDelay).
// Validate checks the rules New applies.
type Options struct {
	// Name identifies the instance in logs, Status and notify commands. Default "VI_<VRID>".
	Name string
	// Interface is the network interface the adverts and VIPs use, e.g. "eth0". Required.
	Interface string
	// VRID is the virtual router ID, 1..255; peers in one virtual router share it. Required.
	VRID int
	// Priority is 1..255; 255 makes this node the address owner. Default
	// DefaultPriority (100).
	Priority int
	// AdvertInterval is the advert interval. Version 3: 10 ms .. 40.95 s in multiples of
	// 10 ms; version 2: whole seconds. Default 1 s.
	AdvertInterval time.Duration
	// Version is the VRRP version, 3 (RFC 5798) or 2 (RFC 3768). Default 3.
	Version int
	// AuthPass is the VRRPv2 clear-text password (keepalived "auth_type PASS"), at most 8
	// bytes (the advert's authentication data). Empty means no authentication. Version 2 only.
	AuthPass string
	// VIPs are the virtual addresses with the prefix length to configure them with
	// (e.g. 203.0.113.100/24 as keepalived does, or /32; 2001:db8::100/64 or /128). 1..255
	// required, all of one family: IPv4 (VRRP over IPv4) or IPv6 (VRRPv3 over IPv6, RFC
	// 5798 §5.1.2, announced with unsolicited Neighbor Advertisements instead of
	// gratuitous ARP). IPv6 needs Version 3; its VIPs are added without duplicate address
	// detection (nodad) so they are usable at once.
	VIPs []netip.Prefix
	// UnicastPeers, if set, receive the adverts by unicast instead of the multicast group,
	// and adverts from other sources are dropped.
	UnicastPeers []netip.Addr
	// SourceAddr is the primary address used as advert source and for the tie-break.
	// Default: the first IPv4 address of Interface that is not a VIP; for IPv6 VIPs the
	// interface's link-local address (IPv6 adverts must come from one).
	SourceAddr netip.Addr
	// Preempt lets a higher-priority node take over from a lower-priority Master (the RFC
	// default). false means nopreempt. The owner (255) always preempts.
	Preempt bool
	// PreemptDelay tolerates a lower-priority Master for this long before preempting.
	PreemptDelay time.Duration
	// TrackWeight is subtracted from Priority once per step of worse health reported with
	// SetHealth (HealthDegraded once, HealthDown twice; SetHealthy(false) once). 0 means a
	// node whose health is not HealthOK goes to StateFault (releases the VIP and stops
	// sending). 0..254.
	TrackWeight int
	// TrackRise and TrackFall are the numbers of consecutive SetHealthy(true) or (false)
	// calls needed to change the tracked health. Default 1. Callers that only report edges
	// should keep 1.
	TrackRise, TrackFall int
	// GARPRepeat is the number of gratuitous ARPs (IPv6: unsolicited Neighbor
	// Advertisements) per burst on becoming Master. Default 5; negative sends none.
	GARPRepeat int
	// GARPDelay is the delay of the second burst. Default 5 s; negative means none.
	GARPDelay time.Duration
	// GARPRefresh sends one gratuitous ARP per VIP at this interval while Master. 0: off.
	GARPRefresh time.Duration
	// NotifyMaster, NotifyBackup and NotifyFault are commands run on entering the state,
	// split on spaces (no shell) and called with keepalived's generic notify arguments
	// appended: "INSTANCE" <Name> <MASTER|BACKUP|FAULT> <priority>. Empty: none.
	NotifyMaster, NotifyBackup, NotifyFault string
	// Logger receives transition logs and errors. If nil, nothing is logged.
	Logger *slog.Logger
	// Hook moves the VIPs through an external API. If nil, only the local interface is used.
	Hook VIPHook
	// Observer is told about every transition. If nil, nobody is.
	Observer Observer
	// Inherit takes over from a Master of this node that stopped with
	// Detach (a binary upgrade): the VIPs already on the interface are
	// kept and the instance starts as Master, so the peers never see a
	// gap. Default false: stale VIPs are removed and the instance starts
	// as Backup.
	Inherit bool
}

// DropReason classifies a received packet that was dropped without reaching the state machine.
type DropReason uint8

// Drop reasons, in the order the receive path checks them.
const (
	DropTTL         DropReason = iota // IP TTL is not 255 (RFC 5798 §7.1)
	DropOwn                           // our own advert looped back
	DropUnknownPeer                   // unicast peers are configured and the source is not one
	DropTruncated                     // shorter than its header or address count
	DropMalformed                     // bad version nibble, type or field value
	DropVersion                       // valid VRRP of the other version
	DropChecksum                      // checksum mismatch
	DropVRID                          // another virtual router
	DropAuth                          // VRRPv2 authentication type or password mismatch
	DropInterval                      // VRRPv2 advert interval differs from ours (RFC 3768 §7.1)
	DropOwner                         // we are the address owner (255): adverts are discarded
	numDropReasons
)

// String returns the reason as a snake_case metric label value.
func (r DropReason) String() string {
	switch r {
	case DropTTL:
		return "ttl"
	case DropOwn:
		return "own"
	case DropUnknownPeer:
		return "unknown_peer"
	case DropTruncated:
		return "truncated"
	case DropMalformed:
		return "malformed"
	case DropVersion:
		return "version"
	case DropChecksum:
		return "checksum"
	case DropVRID:
		return "vrid"
	case DropAuth:
		return "auth"
	case DropInterval:
		return "interval"
	case DropOwner:
		return "owner"
	}
	return fmt.Sprintf("DropReason(%d)", uint8(r))
}

// DropReasons lists all drop reasons, for registering metrics.
func DropReasons() []DropReason {
	r := make([]DropReason, numDropReasons)
	for i := range r {
		r[i] = DropReason(i)
	}
	return r
}

// Status is a snapshot of an Instance.
type Status struct {
	Name  string
	State State
	// Priority is the effective priority (after tracking); ConfiguredPriority the configured one.
	Priority, ConfiguredPriority uint8
	// Standby is true while a planned handover is in force (Instance.Handover): the
	// effective priority is 1.
	Standby bool
	// Healthy is true when the tracked health after rise/fall is HealthOK; Health is that
	// tracked health.
	Healthy bool
	Health  Health
	// Master is the current Master's address, zero if unknown.
	Master netip.Addr
	// MasterAdverInterval is the interval learned from the Master (version 3).
	MasterAdverInterval time.Duration
	// Since is when the current state was entered; zero before Run.
	Since time.Time
	// Transitions counts all state changes; TransitionsTo counts them by new state.
	Transitions   uint64
	TransitionsTo map[State]uint64
	// AdvertsSent and AdvertsReceived count adverts; received counts only valid ones.
	AdvertsSent, AdvertsReceived uint64
	// Drops counts dropped packets by reason; every reason is present.
	Drops map[DropReason]uint64
	// Errors counts failed side effects (VIP changes, GARPs, hooks, notify commands, sends).
	Errors uint64
	// AddrMismatches counts accepted adverts whose address list differs from our VIPs
	// (a misconfigured peer, RFC 5798 §7.1); they are logged at most every 10 s.
	AddrMismatches uint64
	// AdvertsAsMaster counts adverts received from another router while Master: a
	// resigning peer, a preemption, or a split brain being healed.
	AdvertsAsMaster uint64
	// Resignations counts priority-0 adverts received (a Master stopping gracefully).
	Resignations uint64
	// MaxTimerLag is the largest delay between a timer deadline (advert, Master_Down) and
	// the moment it ran. Values near the advert interval mean the process is starved of CPU
	// and false failovers become likely.
	MaxTimerLag time.Duration
}

// Instance runs one VRRP virtual router on one interface. Create it with New, start it with
// Run; SetHealthy and Status may be called from any goroutine at any time. Several
// instances (different VRIDs or interfaces) may run in one process.
type Instance struct {
	opts Options // defaults applied, immutable after New
	log  *slog.Logger
	open openFunc
	now  func() time.Time
	// pendingGrace bounds how long a Master_Down expiry waits for queued adverts.
	pendingGrace time.Duration
	authData     [authDataLen]byte

	running atomic.Bool
	// detached makes Run end without resigning or removing the VIPs.
	detached atomic.Bool
	wake     chan struct{} // capacity 1: the timer loop re-reads the deadline

	sent, received, errs           atomic.Uint64
	mismatches, asMaster, resigned atomic.Uint64
	warnLimit, resignLimit         logLimit // rate limits of the receive path's log lines
	drops                          [numDropReasons]atomic.Uint64
	deferrals                      atomic.Uint64 // Master_Down expiries postponed for queued adverts
	maxLag                         atomic.Int64  // MaxTimerLag in nanoseconds

	mu          sync.Mutex // guards the fields below and the order of adverts and queued effects
	m           *Machine
	since       time.Time
	transitions uint64
	transTo     map[State]uint64
	plat        *platform
	effects     chan effect // nil when not running
	notes       chan note   // nil when not running
	sendBuf     []byte
	pkt         Packet
}

// effect is one queued side effect for the effects goroutine.
type effect struct {
	kind  ActionKind
	count int
}

// note is one queued transition for the notify goroutine.
type note struct {
	from, to State
	prio     uint8
}

// New validates opts, applies defaults and returns an Instance in StateInit. The errors
// name the offending Options field.
func New(opts Options) (*Instance, error) {
	if err := opts.Validate(); err != nil {
		name := opts.Name
		if name == "" {
			name = "VI_" + strconv.Itoa(opts.VRID)
		}
		return nil, fmt.Errorf("vrrp %s: %w", name, err)
	}
	o := opts
	if o.Name == "" {
		o.Name = "VI_" + strconv.Itoa(o.VRID)
	}
	if o.Priority == 0 {
		o.Priority = DefaultPriority
	}
	if o.Version == 0 {
		o.Version = DefaultVersion
	}
	if o.AdvertInterval == 0 {
		o.AdvertInterval = DefaultAdvertInterval
	}
	v6 := isIPv6(o.VIPs)
	switch {
	case o.GARPRepeat == 0:
		o.GARPRepeat = DefaultGARPRepeat
	case o.GARPRepeat < 0:
		o.GARPRepeat = 0
	}
	switch {
	case o.GARPDelay == 0:
		o.GARPDelay = DefaultGARPDelay
	case o.GARPDelay < 0:
		o.GARPDelay = 0
	}
	o.VIPs = append([]netip.Prefix(nil), o.VIPs...)
	o.UnicastPeers = append([]netip.Addr(nil), o.UnicastPeers...)
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	local := o.SourceAddr
	if !local.IsValid() { // replaced by the interface address in Run
		local = netip.IPv4Unspecified()
		if v6 {
			local = netip.IPv6Unspecified()
		}
	}
	m, err := NewMachine(MachineConfig{
		Version: o.Version, Priority: uint8(o.Priority), AdvertInterval: o.AdvertInterval, LocalAddr: local,
		Preempt: o.Preempt || o.Priority == 255, PreemptDelay: o.PreemptDelay,
		GARPRepeat: o.GARPRepeat, GARPDelay: o.GARPDelay, GARPRefresh: o.GARPRefresh,
		TrackWeight: uint8(o.TrackWeight), TrackRise: o.TrackRise, TrackFall: o.TrackFall,
		StartAsMaster: o.Inherit,
	})
	if err != nil {
		return nil, fmt.Errorf("vrrp %s: %w", o.Name, err)
	}
	i := &Instance{
		opts:         o,
		log:          logger.With("vrrp_instance", o.Name, "vrid", o.VRID),
		open:         openPlatform,
		now:          time.Now,
		pendingGrace: 50 * time.Millisecond,
		wake:         make(chan struct{}, 1),
		m:            m,
		transTo:      make(map[State]uint64),
	}
	if o.Version == 2 && o.AuthPass != "" {
		copy(i.authData[:], o.AuthPass) // at most 8 bytes (Validate)
	}
	return i, nil
}

// ipv6 reports whether the instance runs VRRPv3 over IPv6 (its VIPs are IPv6).
func (i *Instance) ipv6() bool { return isIPv6(i.opts.VIPs) }

// isIPv6 reports whether vips (validated by New: one family) are IPv6.
func isIPv6(vips []netip.Prefix) bool {
	return len(vips) > 0 && vips[0].Addr().Is6() && !vips[0].Addr().Is4In6()
}

// group is the multicast group of the instance's family.
func (i *Instance) group() netip.Addr {
	if i.ipv6() {
		return MulticastGroup6()
	}
	return MulticastGroup()
}

// Name returns the instance name (Options.Name or its default).
func (i *Instance) Name() string { return i.opts.Name }

// Detach makes the next return of Run (when its context is cancelled)
// leave the VIPs in place and send no priority-0 advert, so that a new
// process started with Options.Inherit takes over without a gap. It
// reports whether the instance was Master (only then is inheriting
// right).
func (i *Instance) Detach() (wasMaster bool) {
	i.detached.Store(true)
	return i.Status().State == StateMaster
}

// SetHealthy is SetHealth(HealthOK) for true and SetHealth(HealthDegraded) for false.
func (i *Instance) SetHealthy(ok bool) {
	i.step(func(m *Machine, now time.Time) []Action { return m.SetHealthy(now, ok) })
}

// ErrOwnerHandover is returned by Handover for an address owner (priority 255), which
// always holds its addresses.
var ErrOwnerHandover = errors.New("vrrp: the address owner (priority 255) cannot hand over")

// Handover starts (on) or ends a planned handover; see Machine.SetStandby. On a Master it
// sends a priority-0 advert and removes the VIPs at once, so the peer takes over after
// its Skew_Time; the instance then stays Backup at priority 1 until Handover(false). It
// may be called before Run.
func (i *Instance) Handover(on bool) error {
	if i.opts.Priority == 255 {
		return ErrOwnerHandover
	}
	i.step(func(m *Machine, now time.Time) []Action { return m.SetStandby(now, on) })
	return nil
}

// SetHealth reports the health of what this node serves. Rise/fall hysteresis counts
// calls; when the tracked health changes the effective priority drops by TrackWeight per
// step worse than HealthOK (or the instance enters StateFault for weight 0) and a Master
// announces it at once. It may be called before Run; it never blocks on the network for
// long.
func (i *Instance) SetHealth(h Health) {
	i.step(func(m *Machine, now time.Time) []Action { return m.SetHealth(now, h) })
}

// Status returns a snapshot of the instance.
func (i *Instance) Status() Status {
	i.mu.Lock()
	s := Status{
		Name:                i.opts.Name,
		State:               i.m.State(),
		Priority:            i.m.Priority(),
		ConfiguredPriority:  uint8(i.opts.Priority),
		Healthy:             i.m.Healthy(),
		Health:              i.m.Health(),
		Standby:             i.m.Standby(),
		Master:              i.m.Master(),
		MasterAdverInterval: i.m.MasterAdverInterval(),
		Since:               i.since,
		Transitions:         i.transitions,
		TransitionsTo:       make(map[State]uint64, len(i.transTo)),
	}
	for k, v := range i.transTo {
		s.TransitionsTo[k] = v
	}
	i.mu.Unlock()
	s.AdvertsSent, s.AdvertsReceived, s.Errors = i.sent.Load(), i.received.Load(), i.errs.Load()
	s.AddrMismatches, s.AdvertsAsMaster, s.Resignations = i.mismatches.Load(), i.asMaster.Load(), i.resigned.Load()
	s.MaxTimerLag = time.Duration(i.maxLag.Load())
	s.Drops = make(map[DropReason]uint64, numDropReasons)
	for r := range numDropReasons {
		s.Drops[r] = i.drops[r].Load()
	}
	return s
}

// Run opens the interface, starts the virtual router and blocks until ctx is cancelled or
// the socket fails. On cancellation a Master sends a priority-0 advert and removes its
// VIPs (releasing them through the Hook), unless Detach was called: then it sends nothing
// more and leaves the VIPs in place. Run returns nil after the side effects and notify
// commands have finished. Run may be called once.
func (i *Instance) Run(ctx context.Context) error {
	if !i.running.CompareAndSwap(false, true) {
		return fmt.Errorf("vrrp %s: Run called twice", i.opts.Name)
	}
	plat, err := i.open(&i.opts)
	if err != nil {
		return fmt.Errorf("vrrp %s: open %s: %w", i.opts.Name, i.opts.Interface, err)
	}
	defer plat.conn.Close()
	defer plat.vips.Close()
	if i.opts.Priority != 255 && !i.opts.Inherit {
		// A crashed previous run may have left the VIPs behind.
		if err := plat.vips.Remove(i.opts.VIPs); err != nil {
			i.log.Warn("vrrp: removing stale VIPs", "err", err)
		}
	}

	ctx, cancelWatch := context.WithCancel(ctx)
	defer cancelWatch()
	var wg sync.WaitGroup
	effects := make(chan effect, 256)
	notes := make(chan note, 256)
	wg.Add(2)
	go func() { defer wg.Done(); i.runEffects(ctx, plat, effects) }()
	go func() { defer wg.Done(); i.runNotes(notes) }()

	i.mu.Lock()
	i.plat, i.effects, i.notes = plat, effects, notes
	if !i.opts.SourceAddr.IsValid() {
		i.m.cfg.LocalAddr = plat.local
	}
	i.mu.Unlock()
	i.log.Info("vrrp: starting", "interface", i.opts.Interface, "source", plat.local,
		"priority", i.opts.Priority, "version", i.opts.Version, "advert_interval", i.opts.AdvertInterval)

	if plat.linkUp != nil {
		wg.Add(1)
		go func() { defer wg.Done(); i.watchLink(ctx, plat.linkUp) }()
	}
	var recvErr error
	recvDone := make(chan struct{})
	go func() { recvErr = i.receiveLoop(plat); close(recvDone) }()

	i.step((*Machine).Start)
	runErr := i.timerLoop(ctx, plat, recvDone, &recvErr)

	cancelWatch()
	if i.detached.Load() {
		// Handing over to a new process of this node (Detach): no
		// priority-0 advert, the VIPs and the hook's claim stay, so the
		// peers see nothing but the next advert, from the new process.
		i.log.Info("vrrp: detached; VIPs left in place for the next process", "state", i.Status().State)
	} else {
		i.step((*Machine).Shutdown)
	}
	i.mu.Lock()
	i.effects, i.notes = nil, nil
	i.mu.Unlock()
	close(effects)
	close(notes)
	wg.Wait()
	plat.conn.Close()
	<-recvDone
	i.log.Info("vrrp: stopped")
	return runErr
}

// timerLoop is the advert sender and timer goroutine. It only waits on its own timer, so a
// busy receive path cannot delay adverts.
// recvErr is valid once recvDone is closed.
func (i *Instance) timerLoop(ctx context.Context, plat *platform, recvDone <-chan struct{}, recvErr *error) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var deferredSince time.Time
	for {
		i.mu.Lock()
		dl := i.m.Deadline()
		i.mu.Unlock()
		d := time.Hour
		if !dl.IsZero() {
			d = dl.Sub(i.now())
		}
		timer.Reset(d)
		select {
		case <-ctx.Done():
			return nil
		case <-recvDone:
			return fmt.Errorf("vrrp %s: receive: %w", i.opts.Name, *recvErr)
		case <-i.wake:
			continue
		case <-timer.C:
		}
		now := i.now()
		if lag := now.Sub(dl); !dl.IsZero() && int64(lag) > i.maxLag.Load() {
			i.maxLag.Store(int64(lag)) // only this goroutine stores
		}
		i.mu.Lock()
		due := i.m.MasterDownDue(now)
		i.mu.Unlock()
		if due && plat.conn.Pending() {
			// An advert is queued but the receive goroutine has not run yet (for example
			// after a GC pause or CPU starvation): let it run before declaring the Master dead.
			if deferredSince.IsZero() {
				deferredSince = now
			}
			if now.Sub(deferredSince) < i.pendingGrace {
				i.deferrals.Add(1)
				select {
				case <-i.wake:
				case <-time.After(time.Millisecond):
				case <-ctx.Done():
					return nil
				}
				continue
			}
		}
		deferredSince = time.Time{}
		i.step((*Machine).Tick)
	}
}

// watchLink polls the interface state and feeds changes into the Machine until ctx is done.
// Polling (every advert interval, 100 ms .. 1 s) keeps this goroutine simple to stop.
func (i *Instance) watchLink(ctx context.Context, linkUp func() (bool, error)) {
	every := min(max(i.opts.AdvertInterval, 100*time.Millisecond), time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	last, known := true, false
	for {
		up, err := linkUp()
		switch {
		case err != nil:
			i.warnf("vrrp: link state", "err", err)
		case !known || up != last:
			if known || !up {
				i.log.Info("vrrp: link state changed", "interface", i.opts.Interface, "up", up)
			}
			last, known = up, true
			i.step(func(m *Machine, now time.Time) []Action { return m.SetLink(now, up) })
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// receiveLoop reads and validates adverts until the socket is closed.
func (i *Instance) receiveLoop(plat *platform) error {
	buf := make([]byte, 1500)
	var p Packet
	for {
		n, h, err := plat.conn.ReadFrom(buf)
		if err != nil {
			return err
		}
		a, ok := i.validate(buf[:n], h, &p, plat.local)
		if !ok {
			continue
		}
		i.received.Add(1)
		if a.Priority == 0 {
			i.resigned.Add(1)
			// Rate-limited: a stranger replaying priority-0 adverts must not flood the log
			// (they are all counted in Status.Resignations).
			if ok, held := i.resignLimit.allow(time.Now(), logEvery); ok {
				i.log.Info("vrrp: received priority 0 advert (master resigned)", "src", a.Src, "suppressed_since_last", held)
			}
		}
		i.step(func(m *Machine, now time.Time) []Action {
			if m.State() == StateMaster {
				i.asMaster.Add(1)
				i.log.Debug("vrrp: advert received while master", "src", a.Src, "priority", a.Priority)
			}
			return m.Receive(now, a)
		})
	}
}

// validate checks a received message in RFC 5798 §7.1 order and counts drops.
func (i *Instance) validate(b []byte, h ipInfo, p *Packet, local netip.Addr) (Advert, bool) {
	drop := func(r DropReason) (Advert, bool) {
		i.drops[r].Add(1)
		return Advert{}, false
	}
	if h.TTL != 255 {
		return drop(DropTTL)
	}
	if h.Src == local {
		return drop(DropOwn)
	}
	if len(i.opts.UnicastPeers) > 0 && !containsAddr(i.opts.UnicastPeers, h.Src) {
		return drop(DropUnknownPeer)
	}
	p.IPv6 = i.ipv6()
	if err := p.UnmarshalBinary(b); err != nil {
		if errors.Is(err, ErrTruncated) {
			return drop(DropTruncated)
		}
		return drop(DropMalformed)
	}
	if int(p.Version) != i.opts.Version {
		return drop(DropVersion)
	}
	if err := VerifyChecksum(b, h.Src, h.Dst); err != nil {
		i.warnf("vrrp: dropped advert with bad checksum", "src", h.Src, "err", err)
		return drop(DropChecksum)
	}
	if int(p.VRID) != i.opts.VRID {
		return drop(DropVRID)
	}
	if p.Version == 2 {
		want := uint8(AuthNone)
		if i.opts.AuthPass != "" {
			want = AuthSimple
		}
		if p.AuthType != want || (want == AuthSimple && p.AuthData != i.authData) {
			return drop(DropAuth)
		}
		if p.Interval != i.opts.AdvertInterval {
			return drop(DropInterval)
		}
	}
	if i.opts.Priority == 255 {
		return drop(DropOwner)
	}
	if !sameAddrs(p.Addrs, i.opts.VIPs) {
		i.mismatches.Add(1)
		i.warnf("vrrp: advert address list differs from ours (misconfigured peer?)", "src", h.Src, "addrs", p.Addrs)
	}
	return Advert{Src: h.Src, Priority: p.Priority, Interval: p.Interval}, true
}

// sameAddrs reports whether addrs are the addresses of vips, in any order.
func sameAddrs(addrs []netip.Addr, vips []netip.Prefix) bool {
	if len(addrs) != len(vips) {
		return false
	}
	for _, v := range vips {
		if !containsAddr(addrs, v.Addr()) {
			return false
		}
	}
	return true
}

// logEvery is how often a rate-limited log line of the receive path may appear.
const logEvery = 10 * time.Second

// warnf logs a warning about received packets at most every logEvery, so a flood cannot
// flood the log.
func (i *Instance) warnf(msg string, args ...any) {
	if ok, held := i.warnLimit.allow(time.Now(), logEvery); ok {
		i.log.Warn(msg, append(args, "suppressed_since_last", held)...)
	}
}

// logLimit lets a log line through at most once per period and counts the ones it held
// back. The zero value lets the first line through.
type logLimit struct {
	last atomic.Int64  // unix nanos of the last line let through; 0 before the first
	held atomic.Uint64 // lines held back since then
}

// allow reports whether a line may be logged at now and, if so, how many were held back
// since the last one.
func (l *logLimit) allow(now time.Time, every time.Duration) (bool, uint64) {
	n, last := now.UnixNano(), l.last.Load()
	if (last != 0 && n-last < int64(every)) || !l.last.CompareAndSwap(last, n) {
		l.held.Add(1)
		return false, 0
	}
	return true, l.held.Swap(0)
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}

// step runs one Machine call under the lock and carries out its actions: adverts are sent
// at once (so their order matches the machine's), other effects are queued in order.
func (i *Instance) step(f func(m *Machine, now time.Time) []Action) {
	i.mu.Lock()
	now := i.now()
	before := i.m.Deadline()
	acts := f(i.m, now)
	moved := !i.m.Deadline().Equal(before)
	for _, a := range acts {
		switch a.Kind {
		case ActSendAdvert:
			i.sendAdvertLocked(a.Priority)
		case ActAddVIP, ActRemoveVIP, ActGARP:
			if i.effects != nil {
				i.effects <- effect{kind: a.Kind, count: a.Count}
			}
		case ActTransition:
			i.transitions++
			i.transTo[a.To]++
			i.since = now
			args := []any{"from", a.From, "to", a.To, "priority", i.m.Priority(), "master", i.m.Master()}
			if a.From == StateBackup && a.To == StateMaster {
				// Diagnose unexpected takeovers: how long the peer had been silent.
				if la := i.m.LastAdvert(); !la.IsZero() {
					args = append(args, "since_last_advert", now.Sub(la).Round(time.Millisecond))
				}
				args = append(args, "deferred_expiries", i.deferrals.Load())
			}
			i.log.Info("vrrp: transition", args...)
			if i.notes != nil {
				select {
				case i.notes <- note{from: a.From, to: a.To, prio: i.m.Priority()}:
				default: // the Observer or notify commands are stuck: never block the state machine
					i.errs.Add(1)
					i.log.Error("vrrp: notify queue full, transition not notified", "to", a.To)
				}
			}
		}
	}
	i.mu.Unlock()
	if moved || len(acts) > 0 { // the timer loop must re-read the deadline (e.g. priority 0 shortened it)
		select {
		case i.wake <- struct{}{}:
		default:
		}
	}
}

// sendAdvertLocked sends one advert to the group or to every unicast peer. i.mu is held.
func (i *Instance) sendAdvertLocked(prio uint8) {
	if i.plat == nil {
		return
	}
	i.pkt = Packet{Version: uint8(i.opts.Version), VRID: uint8(i.opts.VRID), Priority: prio, IPv6: i.ipv6(),
		Interval: i.opts.AdvertInterval, Addrs: i.pkt.Addrs[:0], Src: i.m.cfg.LocalAddr}
	for _, v := range i.opts.VIPs {
		i.pkt.Addrs = append(i.pkt.Addrs, v.Addr())
	}
	if i.opts.Version == 2 && i.opts.AuthPass != "" {
		i.pkt.AuthType, i.pkt.AuthData = AuthSimple, i.authData
	}
	dsts := i.opts.UnicastPeers
	if len(dsts) == 0 {
		dsts = []netip.Addr{i.group()}
	}
	for _, dst := range dsts {
		i.pkt.Dst = dst
		var err error
		if i.sendBuf, err = i.pkt.AppendBinary(i.sendBuf[:0]); err == nil {
			err = i.plat.conn.WriteTo(i.sendBuf, dst)
		}
		if err != nil {
			i.errs.Add(1)
			i.log.Warn("vrrp: send advert", "dst", dst, "err", err)
			continue
		}
		i.sent.Add(1)
	}
}

// runEffects carries out VIP, GARP and hook effects in order until effects is closed.
func (i *Instance) runEffects(ctx context.Context, plat *platform, effects <-chan effect) {
	hookCtx := context.WithoutCancel(ctx) // releases must still run during shutdown
	for e := range effects {
		var err error
		switch e.kind {
		case ActAddVIP:
			if err = plat.vips.Add(i.opts.VIPs); err == nil && i.opts.Hook != nil {
				for _, v := range i.opts.VIPs {
					hctx, cancel := context.WithTimeout(hookCtx, hookTimeout)
					if herr := i.opts.Hook.Acquire(hctx, v); herr != nil {
						err = errors.Join(err, fmt.Errorf("hook acquire %v: %w", v, herr))
					}
					cancel()
				}
			}
		case ActRemoveVIP:
			if i.opts.Hook != nil {
				for _, v := range i.opts.VIPs {
					hctx, cancel := context.WithTimeout(hookCtx, hookTimeout)
					if herr := i.opts.Hook.Release(hctx, v); herr != nil {
						err = errors.Join(err, fmt.Errorf("hook release %v: %w", v, herr))
					}
					cancel()
				}
			}
			if rerr := plat.vips.Remove(i.opts.VIPs); rerr != nil {
				err = errors.Join(err, rerr)
			}
		case ActGARP:
			err = plat.vips.GARP(i.opts.VIPs, e.count)
		}
		if err != nil {
			i.errs.Add(1)
			i.log.Error("vrrp: "+e.kind.String(), "err", err)
		}
	}
}

// runNotes tells the Observer and runs notify commands in order until notes is closed.
func (i *Instance) runNotes(notes <-chan note) {
	for n := range notes {
		if i.opts.Observer != nil {
			i.opts.Observer.OnTransition(i.opts.Name, n.from, n.to)
		}
		var cmd string
		switch n.to {
		case StateMaster:
			cmd = i.opts.NotifyMaster
		case StateBackup:
			cmd = i.opts.NotifyBackup
		case StateFault:
			cmd = i.opts.NotifyFault
		}
		if cmd == "" {
			continue
		}
		if err := runNotify(cmd, i.opts.Name, n.to, n.prio); err != nil {
			i.errs.Add(1)
			i.log.Error("vrrp: notify command", "state", n.to, "err", err)
		}
	}
}

// runNotify runs a notify command with keepalived's generic notify arguments.
func runNotify(cmdline, name string, to State, prio uint8) error {
	f := strings.Fields(cmdline)
	args := append(f[1:], "INSTANCE", name, to.String(), strconv.Itoa(int(prio)))
	ctx, cancel := context.WithTimeout(context.Background(), notifyTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, f[0], args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w (output %q)", f[0], err, truncate(out, 200))
	}
	return nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}
