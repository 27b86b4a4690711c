package vrrp

import (
	"fmt"
	"net/netip"
	"time"
)

// State is a VRRP router state (RFC 5798 §6.4) plus keepalived's FAULT.
type State uint8

// States. The zero value is StateInit.
const (
	// StateInit is Initialize: not started yet, or stopped.
	StateInit State = iota
	// StateBackup watches the Master's adverts and takes over when they stop.
	StateBackup
	// StateMaster holds the VIPs and sends adverts.
	StateMaster
	// StateFault is entered when the interface goes down or tracking with weight 0 reports
	// unhealthy: the VIPs are released and no adverts are sent until the cause is gone
	// (keepalived's FAULT).
	StateFault
)

// String returns the keepalived name of the state: INIT, BACKUP, MASTER or FAULT.
func (s State) String() string {
	switch s {
	case StateInit:
		return "INIT"
	case StateBackup:
		return "BACKUP"
	case StateMaster:
		return "MASTER"
	case StateFault:
		return "FAULT"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// ActionKind says what an Action asks the driver of a Machine to do.
type ActionKind uint8

// Action kinds.
const (
	// ActSendAdvert: send one advert with Action.Priority.
	ActSendAdvert ActionKind = iota + 1
	// ActAddVIP: configure the VIPs on the interface (and acquire them from a VIPHook).
	ActAddVIP
	// ActRemoveVIP: remove the VIPs (and release them through a VIPHook).
	ActRemoveVIP
	// ActGARP: send Action.Count gratuitous ARPs for each VIP.
	ActGARP
	// ActTransition: the state changed from Action.From to Action.To.
	ActTransition
)

// String returns a short lowercase name of the kind.
func (k ActionKind) String() string {
	switch k {
	case ActSendAdvert:
		return "send-advert"
	case ActAddVIP:
		return "add-vip"
	case ActRemoveVIP:
		return "remove-vip"
	case ActGARP:
		return "garp"
	case ActTransition:
		return "transition"
	}
	return fmt.Sprintf("ActionKind(%d)", uint8(k))
}

// Action is one side effect requested by a Machine. Only the fields named by Kind are set.
type Action struct {
	Kind     ActionKind
	Priority uint8 // ActSendAdvert
	Count    int   // ActGARP
	From, To State // ActTransition
}

// String formats the action for test failure messages and logs.
func (a Action) String() string {
	switch a.Kind {
	case ActSendAdvert:
		return fmt.Sprintf("send-advert(%d)", a.Priority)
	case ActGARP:
		return fmt.Sprintf("garp(%d)", a.Count)
	case ActTransition:
		return fmt.Sprintf("transition(%v->%v)", a.From, a.To)
	}
	return a.Kind.String()
}

// Advert is the part of a received, validated advertisement that the state machine uses.
type Advert struct {
	// Src is the IPv4 source address of the sender (its primary address).
	Src netip.Addr
	// Priority is the advertised priority; 0 means the Master resigns.
	Priority uint8
	// Interval is the advertised interval; version 3 backups learn it.
	Interval time.Duration
}

// MachineConfig configures a Machine. Options are converted into it by New.
type MachineConfig struct {
	// Version is 2 or 3. In version 2 the Backup does not learn the Master's interval and
	// Skew_Time is (256-Priority)/256 seconds.
	Version int
	// Priority is the configured priority, 1..255; 255 makes this node the address owner.
	Priority uint8
	// AdvertInterval is Advertisement_Interval; it must be positive.
	AdvertInterval time.Duration
	// LocalAddr is this node's primary address (IPv4, or the IPv6 link-local address of an
	// IPv6 instance), used for the equal-priority tie-break: the numerically higher wins.
	LocalAddr netip.Addr
	// Preempt lets a higher-priority Backup take over from a lower-priority Master
	// (RFC Preempt_Mode). false is keepalived's nopreempt. The owner (255) always preempts.
	Preempt bool
	// PreemptDelay postpones preemption: a lower-priority Master is tolerated for this long
	// after it is first seen, then Master_Down_Interval runs as usual. 0 means no delay.
	PreemptDelay time.Duration
	// GARPRepeat is the number of gratuitous ARPs per burst on becoming Master. 0 sends none.
	GARPRepeat int
	// GARPDelay is the delay before the second burst after becoming Master. 0 means none.
	GARPDelay time.Duration
	// GARPRefresh is the interval of one-ARP refreshes while Master. 0 means none.
	GARPRefresh time.Duration
	// TrackWeight is subtracted from Priority once per step of worse tracked health:
	// once for HealthDegraded, twice for HealthDown (the result is at least 1). 0 puts the
	// machine into StateFault whenever the tracked health is not HealthOK instead. Ignored
	// for priority 255.
	TrackWeight uint8
	// TrackRise and TrackFall are the numbers of consecutive healthy or unhealthy reports
	// needed to change the tracked health. Values below 1 mean 1.
	TrackRise, TrackFall int
	// StartAsMaster makes Start enter Master at once instead of Backup. It
	// is only for a process that takes over, on the same node, from a
	// Master that stopped advertising without resigning (a binary
	// upgrade): the peers keep seeing adverts from the same address.
	StartAsMaster bool
}

// Machine is the VRRP state machine of one virtual router (RFC 5798 §6.4). It is pure: every
// method takes the current time, no method blocks or starts goroutines, and side effects are
// returned as Actions for the caller to carry out in order. The driver calls Tick at
// Deadline. A Machine is not safe for concurrent use. Create it with NewMachine.
type Machine struct {
	cfg   MachineConfig
	state State
	track tracker

	masterAdverInterval time.Duration
	master              netip.Addr // the current Master, as far as known

	adverAt    time.Time // Master: next advert
	downAt     time.Time // Backup: Master_Down_Timer
	garpAt     time.Time // Master: next GARP burst or refresh
	garpSecond bool      // Master: the pending GARP burst is the second one (GARPRepeat ARPs)
	lowerSince time.Time // Backup: when a lower-priority Master was first seen (preempt delay)
	assertAt   time.Time // Master: last re-assertion after a lower-priority advert
	// garpAssertAt is when the last re-assertion GARP burst was sent.
	garpAssertAt time.Time
	lastAdvert   time.Time // when Receive was last called
	linkDown     bool      // the interface is down (SetLink)
	standby      bool      // a planned handover is in force (SetStandby)
}

// NewMachine validates cfg and returns a Machine in StateInit.
func NewMachine(cfg MachineConfig) (*Machine, error) {
	if cfg.Version != 2 && cfg.Version != 3 {
		return nil, fmt.Errorf("vrrp: version %d: want 2 or 3", cfg.Version)
	}
	if cfg.Priority == 0 {
		return nil, fmt.Errorf("vrrp: priority 0 is reserved for resigning Masters")
	}
	if cfg.AdvertInterval <= 0 {
		return nil, fmt.Errorf("vrrp: advert interval %v must be positive", cfg.AdvertInterval)
	}
	if !cfg.LocalAddr.Is4() && (!cfg.LocalAddr.Is6() || cfg.LocalAddr.Is4In6()) {
		return nil, fmt.Errorf("vrrp: local address %v is not IPv4 or IPv6", cfg.LocalAddr)
	}
	m := &Machine{cfg: cfg, masterAdverInterval: cfg.AdvertInterval}
	m.track = newTracker(cfg.TrackRise, cfg.TrackFall)
	return m, nil
}

// State returns the current state.
func (m *Machine) State() State { return m.state }

// Master returns the address of the current Master: LocalAddr when this node is Master, the
// sender of the last accepted advert when Backup, and the zero Addr when unknown.
func (m *Machine) Master() netip.Addr { return m.master }

// LastAdvert returns when the last advert was received (accepted or ignored), zero if none.
func (m *Machine) LastAdvert() time.Time { return m.lastAdvert }

// Healthy reports whether the tracked health (after rise/fall hysteresis) is HealthOK.
func (m *Machine) Healthy() bool { return m.track.level == HealthOK }

// Health returns the tracked health (after rise/fall hysteresis).
func (m *Machine) Health() Health { return m.track.level }

// Priority returns the effective priority: the configured one, lowered by TrackWeight for
// each step of worse tracked health (at least 1; the owner's 255 never changes).
func (m *Machine) Priority() uint8 {
	p := m.cfg.Priority
	if p != 255 && m.standby {
		return 1
	}
	if p == 255 || m.track.level == HealthOK {
		return p
	}
	drop := int(m.cfg.TrackWeight) * int(m.track.level)
	if drop >= int(p) {
		return 1
	}
	return p - uint8(drop)
}

// MasterAdverInterval returns Master_Adver_Interval: the interval learned from the Master
// (version 3) or the configured one.
func (m *Machine) MasterAdverInterval() time.Duration { return m.masterAdverInterval }

// SkewTime returns Skew_Time for the effective priority.
func (m *Machine) SkewTime() time.Duration {
	p := time.Duration(256 - int(m.Priority()))
	if m.cfg.Version == 2 {
		return p * time.Second / 256
	}
	return p * m.masterAdverInterval / 256
}

// MasterDownInterval returns Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time.
func (m *Machine) MasterDownInterval() time.Duration {
	return 3*m.masterAdverInterval + m.SkewTime()
}

// Deadline returns when Tick must be called next; the zero Time means no timer runs.
func (m *Machine) Deadline() time.Time {
	switch m.state {
	case StateBackup:
		return m.downAt
	case StateMaster:
		if !m.garpAt.IsZero() && m.garpAt.Before(m.adverAt) {
			return m.garpAt
		}
		return m.adverAt
	}
	return time.Time{}
}

// MasterDownDue reports whether Tick at now would make a Backup take over because the
// Master_Down_Timer expired. The driver uses it to first drain adverts already queued.
func (m *Machine) MasterDownDue(now time.Time) bool {
	return m.state == StateBackup && !now.Before(m.downAt)
}

// Start leaves StateInit: the owner (priority 255) becomes Master at once, everybody else
// Backup with Master_Down_Timer running. A machine that is unhealthy with TrackWeight 0
// goes to StateFault. Start in any other state does nothing.
func (m *Machine) Start(now time.Time) []Action {
	if m.state != StateInit {
		return nil
	}
	m.masterAdverInterval = m.cfg.AdvertInterval
	if m.faulty() {
		return m.transition(nil, StateFault)
	}
	if m.cfg.Priority == 255 || m.cfg.StartAsMaster {
		return m.becomeMaster(now, nil)
	}
	return m.becomeBackup(now, nil, netip.Addr{})
}

// Shutdown stops the machine: a Master sends a priority-0 advert and removes the VIPs. The
// machine ends in StateInit and may be started again.
func (m *Machine) Shutdown(now time.Time) []Action {
	var acts []Action
	switch m.state {
	case StateInit:
		return nil
	case StateMaster:
		acts = append(acts, Action{Kind: ActSendAdvert, Priority: 0}, Action{Kind: ActRemoveVIP})
	}
	m.clearTimers()
	m.master = netip.Addr{}
	return m.transition(acts, StateInit)
}

// Tick runs the timers that are due at now.
func (m *Machine) Tick(now time.Time) []Action {
	var acts []Action
	switch m.state {
	case StateBackup:
		if !now.Before(m.downAt) {
			acts = m.becomeMaster(now, acts)
		}
	case StateMaster:
		if !now.Before(m.adverAt) {
			acts = append(acts, Action{Kind: ActSendAdvert, Priority: m.Priority()})
			m.adverAt = m.adverAt.Add(m.cfg.AdvertInterval)
			if !m.adverAt.After(now) { // we were late (paused): do not send a burst
				m.adverAt = now.Add(m.cfg.AdvertInterval)
			}
		}
		if !m.garpAt.IsZero() && !now.Before(m.garpAt) {
			n := 1
			if m.garpSecond {
				n = m.cfg.GARPRepeat
			}
			if n > 0 {
				acts = append(acts, Action{Kind: ActGARP, Count: n})
			}
			m.garpSecond = false
			m.garpAt = time.Time{}
			if m.cfg.GARPRefresh > 0 {
				m.garpAt = now.Add(m.cfg.GARPRefresh)
			}
		}
	}
	return acts
}

// Receive handles a validated advert for this virtual router (RFC 5798 §6.4.2, §6.4.3).
func (m *Machine) Receive(now time.Time, a Advert) []Action {
	if m.cfg.Priority == 255 {
		return nil // RFC 5798 §7.1: the owner discards adverts
	}
	local := m.Priority()
	m.lastAdvert = now
	switch m.state {
	case StateBackup:
		if a.Priority == 0 {
			m.downAt = now.Add(m.SkewTime())
			return nil
		}
		accept := !m.cfg.Preempt || a.Priority >= local
		if !accept && m.cfg.PreemptDelay > 0 {
			if m.lowerSince.IsZero() {
				m.lowerSince = now
			}
			accept = now.Before(m.lowerSince.Add(m.cfg.PreemptDelay))
		} else if a.Priority >= local {
			m.lowerSince = time.Time{}
		}
		if accept {
			if m.cfg.Version == 3 {
				m.masterAdverInterval = a.Interval
			}
			m.downAt = now.Add(m.MasterDownInterval())
			m.master = a.Src
		}
		return nil
	case StateMaster:
		if a.Priority == 0 {
			m.adverAt = now.Add(m.cfg.AdvertInterval)
			return []Action{{Kind: ActSendAdvert, Priority: local}}
		}
		if a.Priority > local || (a.Priority == local && addrGreater(a.Src, m.cfg.LocalAddr)) {
			if m.cfg.Version == 3 {
				m.masterAdverInterval = a.Interval
			}
			return m.becomeBackup(now, []Action{{Kind: ActRemoveVIP}}, a.Src)
		}
		// A lower-priority Master exists (split brain healing, or a peer that lost our
		// adverts): re-assert at once with an advert and GARPs, at most once per interval.
		if !m.assertAt.IsZero() && now.Before(m.assertAt.Add(m.cfg.AdvertInterval)) {
			return nil
		}
		m.assertAt = now
		m.adverAt = now.Add(m.cfg.AdvertInterval)
		acts := []Action{{Kind: ActSendAdvert, Priority: local}}
		// GARPs at most every max(GARPDelay, AdvertInterval), like keepalived's
		// garp_lower_prio_delay, so a flood of adverts cannot turn into an ARP flood.
		gap := max(m.cfg.GARPDelay, m.cfg.AdvertInterval)
		if m.cfg.GARPRepeat > 0 && (m.garpAssertAt.IsZero() || !now.Before(m.garpAssertAt.Add(gap))) {
			m.garpAssertAt = now
			acts = append(acts, Action{Kind: ActGARP, Count: m.cfg.GARPRepeat})
		}
		return acts
	}
	return nil
}

// SetHealthy is SetHealth with HealthOK for true and HealthDegraded for false: one
// TrackWeight step, keepalived's vrrp_script weight.
func (m *Machine) SetHealthy(now time.Time, ok bool) []Action {
	if ok {
		return m.SetHealth(now, HealthOK)
	}
	return m.SetHealth(now, HealthDegraded)
}

// SetHealth feeds one health report into rise/fall tracking. When the tracked health
// changes, the effective priority changes (a Master announces it at once) or, with
// TrackWeight 0, the machine enters or leaves StateFault.
func (m *Machine) SetHealth(now time.Time, h Health) []Action {
	before := m.Priority()
	if !m.track.observe(h) {
		return nil
	}
	if acts, changed := m.reconcileFault(now); changed {
		return acts
	}
	if m.state == StateMaster && m.Priority() != before {
		m.adverAt = now.Add(m.cfg.AdvertInterval)
		return []Action{{Kind: ActSendAdvert, Priority: m.Priority()}}
	}
	return nil
}

// Standby reports whether a planned handover is in force (SetStandby).
func (m *Machine) Standby() bool { return m.standby }

// SetStandby starts or ends a planned handover. On: the effective priority becomes 1 (the
// lowest), and a Master resigns at once like at Shutdown (a priority-0 advert, the VIPs
// removed) and becomes Backup, so the peer takes over after its Skew_Time; as a Backup at
// priority 1 it does not preempt, but still takes over if the peer falls silent. Off: the
// priority returns; with Preempt a higher-priority Backup then takes the VIP back after
// Master_Down_Interval. The owner (priority 255) cannot hand over: SetStandby returns nil
// and changes nothing for it.
func (m *Machine) SetStandby(now time.Time, on bool) []Action {
	if m.cfg.Priority == 255 || m.standby == on {
		return nil
	}
	m.standby = on
	switch {
	case on && m.state == StateMaster:
		m.clearTimers()
		acts := []Action{{Kind: ActSendAdvert, Priority: 0}, {Kind: ActRemoveVIP}}
		// A fresh Backup: it waits a full Master_Down_Interval for the peer's adverts.
		return m.becomeBackup(now, acts, netip.Addr{})
	case !on && m.state == StateBackup:
		// Ignore nothing from now on: the next advert of a lower-priority Master lets the
		// Master_Down timer run out (preemption), one of a higher one resets it.
		m.lowerSince = time.Time{}
	}
	return nil
}

// SetLink reports whether the interface is up (administratively up and with carrier). While
// it is down the machine is in StateFault, like keepalived: a Master sends a priority-0
// advert (if it still can) and removes the VIPs. When the link returns the machine starts
// over as Backup (or Master, for the owner). Before Start it only records the state.
func (m *Machine) SetLink(now time.Time, up bool) []Action {
	if m.linkDown == !up {
		return nil
	}
	m.linkDown = !up
	acts, _ := m.reconcileFault(now)
	return acts
}

// reconcileFault enters or leaves StateFault after a tracking or link change.
func (m *Machine) reconcileFault(now time.Time) ([]Action, bool) {
	switch {
	case m.faulty() && (m.state == StateMaster || m.state == StateBackup):
		var acts []Action
		if m.state == StateMaster {
			acts = append(acts, Action{Kind: ActSendAdvert, Priority: 0}, Action{Kind: ActRemoveVIP})
		}
		m.clearTimers()
		m.master = netip.Addr{}
		return m.transition(acts, StateFault), true
	case !m.faulty() && m.state == StateFault:
		if m.cfg.Priority == 255 {
			return m.becomeMaster(now, nil), true
		}
		return m.becomeBackup(now, nil, netip.Addr{}), true
	}
	return nil, false
}

// faulty reports whether the machine belongs in StateFault: the link is down, or tracking
// with weight 0 reports anything but HealthOK (never for the owner).
func (m *Machine) faulty() bool {
	return m.linkDown || (m.cfg.TrackWeight == 0 && m.cfg.Priority != 255 && m.track.level != HealthOK)
}

func (m *Machine) becomeMaster(now time.Time, acts []Action) []Action {
	acts = append(acts, Action{Kind: ActSendAdvert, Priority: m.Priority()}, Action{Kind: ActAddVIP})
	if m.cfg.GARPRepeat > 0 {
		acts = append(acts, Action{Kind: ActGARP, Count: m.cfg.GARPRepeat})
	}
	m.clearTimers()
	m.adverAt = now.Add(m.cfg.AdvertInterval)
	switch {
	case m.cfg.GARPDelay > 0 && m.cfg.GARPRepeat > 0:
		m.garpAt, m.garpSecond = now.Add(m.cfg.GARPDelay), true
	case m.cfg.GARPRefresh > 0:
		m.garpAt = now.Add(m.cfg.GARPRefresh)
	}
	m.master = m.cfg.LocalAddr
	return m.transition(acts, StateMaster)
}

func (m *Machine) becomeBackup(now time.Time, acts []Action, master netip.Addr) []Action {
	m.clearTimers()
	if !master.IsValid() {
		m.masterAdverInterval = m.cfg.AdvertInterval
	}
	m.downAt = now.Add(m.MasterDownInterval())
	m.master = master
	return m.transition(acts, StateBackup)
}

func (m *Machine) clearTimers() {
	m.adverAt, m.downAt, m.garpAt, m.lowerSince, m.assertAt, m.garpAssertAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	m.garpSecond = false
}

func (m *Machine) transition(acts []Action, to State) []Action {
	from := m.state
	m.state = to
	if from == to {
		return acts
	}
	return append(acts, Action{Kind: ActTransition, From: from, To: to})
}

// addrGreater reports whether a is numerically greater than b (both IPv4).
func addrGreater(a, b netip.Addr) bool { return a.Compare(b) > 0 }
