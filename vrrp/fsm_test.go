package vrrp

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

var (
	addrA = netip.MustParseAddr("203.0.113.11")
	addrB = netip.MustParseAddr("203.0.113.12")
	addrC = netip.MustParseAddr("203.0.113.13")
)

// Event constructors for the transition tables. Each returns the Machine call to make.
type event func(m *Machine, now time.Time) []Action

func start() event    { return (*Machine).Start }
func tick() event     { return (*Machine).Tick }
func shutdown() event { return (*Machine).Shutdown }
func link(up bool) event {
	return func(m *Machine, now time.Time) []Action { return m.SetLink(now, up) }
}
func health(ok bool) event {
	return func(m *Machine, now time.Time) []Action { return m.SetHealthy(now, ok) }
}
func advert(src netip.Addr, prio uint8, interval time.Duration) event {
	return func(m *Machine, now time.Time) []Action {
		return m.Receive(now, Advert{Src: src, Priority: prio, Interval: interval})
	}
}

// Expected actions, short forms.
func send(p uint8) Action { return Action{Kind: ActSendAdvert, Priority: p} }
func garp(n int) Action   { return Action{Kind: ActGARP, Count: n} }
func trans(from, to State) Action {
	return Action{Kind: ActTransition, From: from, To: to}
}

var (
	addVIP = Action{Kind: ActAddVIP}
	rmVIP  = Action{Kind: ActRemoveVIP}
)

// noDeadline marks a step whose Deadline must be the zero Time; anyDeadline skips the check.
const (
	noDeadline  = time.Duration(-1)
	anyDeadline = time.Duration(-2)
)

type step struct {
	at       time.Duration // since the test's epoch (the fake clock)
	ev       event
	want     []Action
	state    State
	deadline time.Duration // when Tick is due next, since the epoch
	master   netip.Addr    // if valid, the expected Master()
	prio     uint8         // if non-zero, the expected effective priority
}

func baseConfig() MachineConfig {
	return MachineConfig{Version: 3, Priority: 100, AdvertInterval: time.Second, LocalAddr: addrA,
		Preempt: true, GARPRepeat: 5, GARPDelay: 5 * time.Second}
}

// Timer values for priority 100 at interval 1 s: Skew_Time = 156/256 s.
const (
	skew100 = 609375 * time.Microsecond
	mdi100  = 3*time.Second + skew100
	// At a learned interval of 100 ms: Skew 15.6/256... = 60.9375 ms.
	skew100fast = 60937500 * time.Nanosecond
	mdi100fast  = 300*time.Millisecond + skew100fast
)

func TestMachineTransitions(t *testing.T) {
	withCfg := func(f func(*MachineConfig)) MachineConfig { c := baseConfig(); f(&c); return c }
	tests := []struct {
		name  string
		cfg   MachineConfig
		steps []step
	}{
		{
			name: "backup waits Master_Down_Interval then takes over",
			cfg:  baseConfig(),
			steps: []step{
				{at: 0, ev: start(), want: []Action{trans(StateInit, StateBackup)}, state: StateBackup, deadline: mdi100},
				{at: mdi100 - time.Nanosecond, ev: tick(), state: StateBackup, deadline: mdi100},
				{at: mdi100, ev: tick(), want: []Action{send(100), addVIP, garp(5), trans(StateBackup, StateMaster)},
					state: StateMaster, deadline: mdi100 + time.Second, master: addrA},
				{at: mdi100 + time.Second, ev: tick(), want: []Action{send(100)}, state: StateMaster, deadline: mdi100 + 2*time.Second},
			},
		},
		{
			name: "owner 255 becomes master at once and ignores adverts",
			cfg:  withCfg(func(c *MachineConfig) { c.Priority = 255 }),
			steps: []step{
				{at: 0, ev: start(), want: []Action{send(255), addVIP, garp(5), trans(StateInit, StateMaster)},
					state: StateMaster, deadline: time.Second},
				{at: 100 * time.Millisecond, ev: advert(addrC, 255, time.Second), state: StateMaster, deadline: time.Second},
				{at: 200 * time.Millisecond, ev: health(false), state: StateMaster, prio: 255, deadline: anyDeadline},
			},
		},
		{
			name: "v3 backup learns Master_Adver_Interval",
			cfg:  baseConfig(),
			steps: []step{
				{at: 0, ev: start(), want: []Action{trans(StateInit, StateBackup)}, state: StateBackup, deadline: mdi100},
				{at: time.Second, ev: advert(addrB, 150, 100*time.Millisecond), state: StateBackup,
					deadline: time.Second + mdi100fast, master: addrB},
				{at: time.Second + mdi100fast, ev: tick(), want: []Action{send(100), addVIP, garp(5), trans(StateBackup, StateMaster)},
					state: StateMaster, deadline: 2*time.Second + mdi100fast},
			},
		},
		{
			name: "v2 backup keeps its own interval and skew in seconds",
			cfg:  withCfg(func(c *MachineConfig) { c.Version = 2; c.AdvertInterval = 2 * time.Second }),
			steps: []step{
				{at: 0, ev: start(), want: []Action{trans(StateInit, StateBackup)}, state: StateBackup, deadline: 6*time.Second + skew100},
				{at: time.Second, ev: advert(addrB, 150, time.Second), state: StateBackup, deadline: 7*time.Second + skew100},
			},
		},
		{
			name: "priority 0 advert: backup takes over after Skew_Time",
			cfg:  baseConfig(),
			steps: []step{
				{at: 0, ev: start(), want: []Action{trans(StateInit, StateBackup)}, state: StateBackup, deadline: mdi100},
				{at: time.Second, ev: advert(addrB, 150, time.Second), state: StateBackup, deadline: time.Second + mdi100},
				{at: 2 * time.Second, ev: advert(addrB, 0, time.Second), state: StateBackup, deadline: 2*time.Second + skew100},
				{at: 2*time.Second + skew100, ev: tick(), want: []Action{send(100), addVIP, garp(5), trans(StateBackup, StateMaster)}, state: StateMaster, deadline: anyDeadline},
			},
		},
		{
			name: "preempt: lower priority adverts are ignored, backup preempts",
			cfg:  baseConfig(),
			steps: []step{
				{at: 0, ev: start(), want: []Action{trans(StateInit, StateBackup)}, state: StateBackup, deadline: mdi100},
				{at: time.Second, ev: advert(addrB, 50, time.Second), state: StateBackup, deadline: mdi100},
				{at: 2 * time.Second, ev: advert(addrB, 50, time.Second), state: StateBackup, deadline: mdi100},
				{at: mdi100, ev: tick(), want: []Action{send(100), addVIP, garp(5), trans(StateBackup, StateMaster)}, state: StateMaster, deadline: anyDeadline},
			},
		},
		{
			name: "equal priority in backup is accepted regardless of address",
			cfg:  baseConfig(),
			steps: []step{
				{at: 0, ev: start(), want: []Action{trans(StateInit, StateBackup)}, state: StateBackup, deadline: mdi100},
				{at: time.Second, ev: advert(netip.MustParseAddr("203.0.113.1"), 100, time.Second), state: StateBackup, deadline: time.Second + mdi100},
			},
		},
		{
			name: "nopreempt: lower priority master is kept",
			cfg:  withCfg(func(c *MachineConfig) { c.Preempt = false }),
			steps: []step{
				{at: 0, ev: start(), want: []Action{trans(StateInit, StateBackup)}, state: StateBackup, deadline: mdi100},
				{at: time.Second, ev: advert(addrB, 50, time.Second), state: StateBackup, deadline: time.Second + mdi100, master: addrB},
				{at: 2 * time.Second, ev: advert(addrB, 50, time.Second), state: StateBackup, deadline: 2*time.Second + mdi100},
			},
		},
		{
			name: "preempt delay tolerates a lower master, then MDI runs",
			cfg:  withCfg(func(c *MachineConfig) { c.PreemptDelay = 2 * time.Second }),
			steps: []step{
				{at: 0, ev: start(), want: []Action{trans(StateInit, StateBackup)}, state: StateBackup, deadline: mdi100},
				{at: time.Second, ev: advert(addrB, 50, time.Second), state: StateBackup, deadline: time.Second + mdi100},
				{at: 2 * time.Second, ev: advert(addrB, 50, time.Second), state: StateBackup, deadline: 2*time.Second + mdi100},
				{at: 3*time.Second - time.Nanosecond, ev: advert(addrB, 50, time.Second), state: StateBackup, deadline: 3*time.Second - time.Nanosecond + mdi100},
				{at: 3 * time.Second, ev: advert(addrB, 50, time.Second), state: StateBackup, deadline: 3*time.Second - time.Nanosecond + mdi100},
				{at: 3*time.Second - time.Nanosecond + mdi100, ev: tick(), want: []Action{send(100), addVIP, garp(5), trans(StateBackup, StateMaster)}, state: StateMaster, deadline: anyDeadline},
			},
		},
		{
			name: "preempt delay restarts after a higher master was seen",
			cfg:  withCfg(func(c *MachineConfig) { c.PreemptDelay = 2 * time.Second }),
			steps: []step{
				{at: 0, ev: start(), want: []Action{trans(StateInit, StateBackup)}, state: StateBackup, deadline: mdi100},
				{at: time.Second, ev: advert(addrB, 50, time.Second), state: StateBackup, deadline: time.Second + mdi100},
				{at: 2 * time.Second, ev: advert(addrB, 150, time.Second), state: StateBackup, deadline: 2*time.Second + mdi100},
				{at: 4 * time.Second, ev: advert(addrB, 50, time.Second), state: StateBackup, deadline: 4*time.Second + mdi100},
				{at: 5 * time.Second, ev: advert(addrB, 50, time.Second), state: StateBackup, deadline: 5*time.Second + mdi100},
			},
		},
		{
			name: "master: higher priority, tie-break, lower priority and priority 0",
			cfg:  withCfg(func(c *MachineConfig) { c.LocalAddr = addrB }),
			steps: []step{
				{at: 0, ev: start(), want: []Action{trans(StateInit, StateBackup)}, state: StateBackup, deadline: mdi100},
				{at: mdi100, ev: tick(), want: []Action{send(100), addVIP, garp(5), trans(StateBackup, StateMaster)}, state: StateMaster, deadline: mdi100 + time.Second},
				// equal priority, lower address: we win and re-assert with advert + GARP
				{at: 4 * time.Second, ev: advert(addrA, 100, time.Second), want: []Action{send(100), garp(5)}, state: StateMaster, deadline: 5 * time.Second},
				// again within one interval: rate limited
				{at: 4*time.Second + 500*time.Millisecond, ev: advert(addrA, 99, time.Second), state: StateMaster, deadline: 5 * time.Second},
				// after one interval: advert again, but no GARPs until GARPDelay (5 s) has passed
				{at: 4*time.Second + 520*time.Millisecond + 500*time.Millisecond, ev: advert(addrA, 99, time.Second), want: []Action{send(100)}, state: StateMaster, deadline: 6*time.Second + 20*time.Millisecond},
				// priority 0 from a resigning peer: send at once
				{at: 5*time.Second + 100*time.Millisecond, ev: advert(addrA, 0, time.Second), want: []Action{send(100)}, state: StateMaster, deadline: 6*time.Second + 100*time.Millisecond},
				// 5 s after the last burst: advert and GARPs again
				{at: 9*time.Second + 100*time.Millisecond, ev: advert(addrA, 99, time.Second), want: []Action{send(100), garp(5)}, state: StateMaster, deadline: mdi100 + 5*time.Second}, // the pending second takeover burst
				// equal priority, higher address: we yield and learn its interval
				{at: 9*time.Second + 200*time.Millisecond, ev: advert(addrC, 100, 100*time.Millisecond), want: []Action{rmVIP, trans(StateMaster, StateBackup)},
					state: StateBackup, deadline: 9*time.Second + 200*time.Millisecond + mdi100fast, master: addrC},
			},
		},
		{
			name: "master yields to a strictly higher priority with a lower address",
			cfg:  withCfg(func(c *MachineConfig) { c.LocalAddr = addrC }),
			steps: []step{
				{at: 0, ev: start(), want: []Action{trans(StateInit, StateBackup)}, state: StateBackup, deadline: mdi100},
				{at: mdi100, ev: tick(), want: []Action{send(100), addVIP, garp(5), trans(StateBackup, StateMaster)}, state: StateMaster, deadline: anyDeadline},
				{at: 4 * time.Second, ev: advert(addrA, 101, time.Second), want: []Action{rmVIP, trans(StateMaster, StateBackup)}, state: StateBackup, deadline: 4*time.Second + mdi100, master: addrA},
			},
		},
		{
			name: "IPv6: the tie-break compares link-local sources",
			cfg:  withCfg(func(c *MachineConfig) { c.LocalAddr = netip.MustParseAddr("fe80::12") }),
			steps: []step{
				{at: 0, ev: start(), want: []Action{trans(StateInit, StateBackup)}, state: StateBackup, deadline: mdi100},
				{at: mdi100, ev: tick(), want: []Action{send(100), addVIP, garp(5), trans(StateBackup, StateMaster)}, state: StateMaster, deadline: anyDeadline},
				// equal priority, lower link-local address: we stay Master and re-assert
				{at: 4 * time.Second, ev: advert(netip.MustParseAddr("fe80::11"), 100, time.Second), want: []Action{send(100), garp(5)}, state: StateMaster, deadline: anyDeadline},
				// equal priority, higher link-local address: we yield
				{at: 6 * time.Second, ev: advert(netip.MustParseAddr("fe80::13"), 100, time.Second), want: []Action{rmVIP, trans(StateMaster, StateBackup)},
					state: StateBackup, deadline: 6*time.Second + mdi100, master: netip.MustParseAddr("fe80::13")},
			},
		},
		{
			name: "shutdown as master sends priority 0 and removes the VIP",
			cfg:  withCfg(func(c *MachineConfig) { c.Priority = 255 }),
			steps: []step{
				{at: 0, ev: start(), want: []Action{send(255), addVIP, garp(5), trans(StateInit, StateMaster)}, state: StateMaster, deadline: time.Second},
				{at: time.Second / 2, ev: shutdown(), want: []Action{send(0), rmVIP, trans(StateMaster, StateInit)}, state: StateInit, deadline: noDeadline},
				{at: time.Second, ev: shutdown(), state: StateInit, deadline: noDeadline},
			},
		},
		{
			name: "shutdown as backup sends nothing",
			cfg:  baseConfig(),
			steps: []step{
				{at: 0, ev: start(), want: []Action{trans(StateInit, StateBackup)}, state: StateBackup, deadline: mdi100},
				{at: time.Second, ev: shutdown(), want: []Action{trans(StateBackup, StateInit)}, state: StateInit, deadline: noDeadline},
				{at: 2 * time.Second, ev: start(), want: []Action{trans(StateInit, StateBackup)}, state: StateBackup, deadline: 2*time.Second + mdi100},
			},
		},
		{
			name: "GARP: second burst after GARPDelay, then refresh",
			cfg:  withCfg(func(c *MachineConfig) { c.Priority = 255; c.GARPRefresh = 30 * time.Second }),
			steps: []step{
				{at: 0, ev: start(), want: []Action{send(255), addVIP, garp(5), trans(StateInit, StateMaster)}, state: StateMaster, deadline: time.Second},
				{at: 5 * time.Second, ev: tick(), want: []Action{send(255), garp(5)}, state: StateMaster, deadline: 6 * time.Second},
				{at: 35 * time.Second, ev: tick(), want: []Action{send(255), garp(1)}, state: StateMaster, deadline: 36 * time.Second},
			},
		},
		{
			name: "GARP: no second burst and no refresh when disabled",
			cfg:  withCfg(func(c *MachineConfig) { c.Priority = 255; c.GARPDelay = 0 }),
			steps: []step{
				{at: 0, ev: start(), want: []Action{send(255), addVIP, garp(5), trans(StateInit, StateMaster)}, state: StateMaster, deadline: time.Second},
				{at: 5 * time.Second, ev: tick(), want: []Action{send(255)}, state: StateMaster, deadline: 6 * time.Second},
			},
		},
		{
			name: "a late tick sends one advert, not a burst",
			cfg:  withCfg(func(c *MachineConfig) { c.Priority = 255; c.GARPDelay = 0 }),
			steps: []step{
				{at: 0, ev: start(), want: []Action{send(255), addVIP, garp(5), trans(StateInit, StateMaster)}, state: StateMaster, deadline: time.Second},
				{at: 3500 * time.Millisecond, ev: tick(), want: []Action{send(255)}, state: StateMaster, deadline: 4500 * time.Millisecond},
			},
		},
		{
			name: "tracking with weight: fall and rise hysteresis change the advertised priority",
			cfg:  withCfg(func(c *MachineConfig) { c.Priority = 255; c.TrackWeight = 30; c.TrackFall = 2; c.TrackRise = 2 }),
			steps: []step{
				{at: 0, ev: start(), want: []Action{send(255), addVIP, garp(5), trans(StateInit, StateMaster)}, state: StateMaster, prio: 255, deadline: anyDeadline},
				{at: 10 * time.Millisecond, ev: health(false), state: StateMaster, prio: 255, deadline: anyDeadline},
			},
		},
		{
			name: "tracking with weight on a master",
			cfg:  withCfg(func(c *MachineConfig) { c.TrackWeight = 30; c.TrackFall = 2; c.TrackRise = 2 }),
			steps: []step{
				{at: 0, ev: start(), want: []Action{trans(StateInit, StateBackup)}, state: StateBackup, deadline: mdi100},
				{at: mdi100, ev: tick(), want: []Action{send(100), addVIP, garp(5), trans(StateBackup, StateMaster)}, state: StateMaster, deadline: anyDeadline},
				{at: 4 * time.Second, ev: health(false), state: StateMaster, prio: 100, deadline: anyDeadline},
				{at: 4100 * time.Millisecond, ev: health(true), state: StateMaster, prio: 100, deadline: anyDeadline},
				{at: 4200 * time.Millisecond, ev: health(false), state: StateMaster, prio: 100, deadline: anyDeadline},
				{at: 4300 * time.Millisecond, ev: health(false), want: []Action{send(70)}, state: StateMaster, prio: 70, deadline: 5300 * time.Millisecond},
				{at: 4400 * time.Millisecond, ev: health(false), state: StateMaster, prio: 70, deadline: 5300 * time.Millisecond},
				// a priority-80 backup now wins
				{at: 4500 * time.Millisecond, ev: advert(addrB, 80, time.Second), want: []Action{rmVIP, trans(StateMaster, StateBackup)}, state: StateBackup, prio: 70, deadline: anyDeadline},
				{at: 5 * time.Second, ev: health(true), state: StateBackup, prio: 70, deadline: anyDeadline},
				{at: 6 * time.Second, ev: health(true), state: StateBackup, prio: 100, deadline: anyDeadline},
				// and we preempt it again: its adverts are now ignored
				{at: 6500 * time.Millisecond, ev: advert(addrB, 80, time.Second), state: StateBackup, deadline: 4500*time.Millisecond + 3*time.Second + 186*time.Second/256},
			},
		},
		{
			name: "tracking weight larger than priority clamps to 1",
			cfg:  withCfg(func(c *MachineConfig) { c.TrackWeight = 200 }),
			steps: []step{
				{at: 0, ev: start(), want: []Action{trans(StateInit, StateBackup)}, state: StateBackup, deadline: mdi100},
				{at: time.Second, ev: health(false), state: StateBackup, prio: 1, deadline: mdi100},
			},
		},
		{
			name: "tracking with weight 0 faults and recovers",
			cfg:  baseConfig(),
			steps: []step{
				{at: 0, ev: start(), want: []Action{trans(StateInit, StateBackup)}, state: StateBackup, deadline: mdi100},
				{at: mdi100, ev: tick(), want: []Action{send(100), addVIP, garp(5), trans(StateBackup, StateMaster)}, state: StateMaster, deadline: anyDeadline},
				{at: 4 * time.Second, ev: health(false), want: []Action{send(0), rmVIP, trans(StateMaster, StateFault)}, state: StateFault, deadline: noDeadline},
				{at: 5 * time.Second, ev: advert(addrB, 50, time.Second), state: StateFault, deadline: noDeadline},
				{at: 6 * time.Second, ev: tick(), state: StateFault, deadline: noDeadline},
				{at: 7 * time.Second, ev: health(true), want: []Action{trans(StateFault, StateBackup)}, state: StateBackup, deadline: 7*time.Second + mdi100},
			},
		},
		{
			name: "link down faults a master, link up starts over as backup",
			cfg:  withCfg(func(c *MachineConfig) { c.TrackWeight = 10 }),
			steps: []step{
				{at: 0, ev: start(), want: []Action{trans(StateInit, StateBackup)}, state: StateBackup, deadline: mdi100},
				{at: mdi100, ev: tick(), want: []Action{send(100), addVIP, garp(5), trans(StateBackup, StateMaster)}, state: StateMaster, deadline: anyDeadline},
				{at: 4 * time.Second, ev: link(true), state: StateMaster, deadline: anyDeadline},
				{at: 5 * time.Second, ev: link(false), want: []Action{send(0), rmVIP, trans(StateMaster, StateFault)}, state: StateFault, deadline: noDeadline},
				{at: 5100 * time.Millisecond, ev: link(false), state: StateFault, deadline: noDeadline},
				// tracking changes while faulty do not leave the fault
				{at: 5200 * time.Millisecond, ev: health(false), state: StateFault, prio: 90, deadline: noDeadline},
				{at: 6 * time.Second, ev: link(true), want: []Action{trans(StateFault, StateBackup)}, state: StateBackup, deadline: 6*time.Second + 3*time.Second + 166*time.Second/256},
			},
		},
		{
			name: "link down faults the owner too; link up makes it master again",
			cfg:  withCfg(func(c *MachineConfig) { c.Priority = 255 }),
			steps: []step{
				{at: 0, ev: link(false), state: StateInit, deadline: noDeadline},
				{at: time.Second, ev: start(), want: []Action{trans(StateInit, StateFault)}, state: StateFault, deadline: noDeadline},
				{at: 2 * time.Second, ev: link(true), want: []Action{send(255), addVIP, garp(5), trans(StateFault, StateMaster)}, state: StateMaster, deadline: 3 * time.Second},
			},
		},
		{
			name: "link down while backup and weight-0 tracking: both must clear",
			cfg:  baseConfig(),
			steps: []step{
				{at: 0, ev: start(), want: []Action{trans(StateInit, StateBackup)}, state: StateBackup, deadline: mdi100},
				{at: time.Second, ev: link(false), want: []Action{trans(StateBackup, StateFault)}, state: StateFault, deadline: noDeadline},
				{at: 2 * time.Second, ev: health(false), state: StateFault, deadline: noDeadline},
				{at: 3 * time.Second, ev: link(true), state: StateFault, deadline: noDeadline},
				{at: 4 * time.Second, ev: health(true), want: []Action{trans(StateFault, StateBackup)}, state: StateBackup, deadline: 4*time.Second + mdi100},
			},
		},
		{
			name: "unhealthy before start with weight 0 starts in fault",
			cfg:  baseConfig(),
			steps: []step{
				{at: 0, ev: health(false), state: StateInit, deadline: noDeadline},
				{at: time.Second, ev: start(), want: []Action{trans(StateInit, StateFault)}, state: StateFault, deadline: noDeadline},
			},
		},
	}
	epoch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewMachine(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tt.steps {
				got := s.ev(m, epoch.Add(s.at))
				if !slices.Equal(got, s.want) {
					t.Fatalf("step %d at %v: actions %v, want %v", i, s.at, got, s.want)
				}
				if m.State() != s.state {
					t.Fatalf("step %d at %v: state %v, want %v", i, s.at, m.State(), s.state)
				}
				switch dl := m.Deadline(); s.deadline {
				case anyDeadline:
				case noDeadline:
					if !dl.IsZero() {
						t.Fatalf("step %d at %v: deadline %v, want none", i, s.at, dl.Sub(epoch))
					}
				default:
					if !dl.Equal(epoch.Add(s.deadline)) {
						t.Fatalf("step %d at %v: deadline %v, want %v", i, s.at, dl.Sub(epoch), s.deadline)
					}
				}
				if s.master.IsValid() && m.Master() != s.master {
					t.Fatalf("step %d: master %v, want %v", i, m.Master(), s.master)
				}
				if s.prio != 0 && m.Priority() != s.prio {
					t.Fatalf("step %d: priority %d, want %d", i, m.Priority(), s.prio)
				}
			}
		})
	}
}

func TestTimers(t *testing.T) {
	tests := []struct {
		name     string
		version  int
		prio     uint8
		interval time.Duration
		skew     time.Duration
		mdi      time.Duration
	}{
		{"v3 prio 100 1s", 3, 100, time.Second, skew100, mdi100},
		{"v3 prio 100 100ms", 3, 100, 100 * time.Millisecond, skew100fast, mdi100fast},
		{"v3 prio 150 1s", 3, 150, time.Second, 106 * time.Second / 256, 3*time.Second + 106*time.Second/256},
		{"v3 prio 254 1s", 3, 254, time.Second, 2 * time.Second / 256, 3*time.Second + 2*time.Second/256},
		{"v2 prio 100 3s", 2, 100, 3 * time.Second, skew100, 9*time.Second + skew100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewMachine(MachineConfig{Version: tt.version, Priority: tt.prio, AdvertInterval: tt.interval, LocalAddr: addrA})
			if err != nil {
				t.Fatal(err)
			}
			if got := m.SkewTime(); got != tt.skew {
				t.Errorf("SkewTime = %v, want %v", got, tt.skew)
			}
			if got := m.MasterDownInterval(); got != tt.mdi {
				t.Errorf("MasterDownInterval = %v, want %v", got, tt.mdi)
			}
		})
	}
}

func TestNewMachineErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(*MachineConfig)
	}{
		{"version 4", func(c *MachineConfig) { c.Version = 4 }},
		{"priority 0", func(c *MachineConfig) { c.Priority = 0 }},
		{"zero interval", func(c *MachineConfig) { c.AdvertInterval = 0 }},
		{"no local address", func(c *MachineConfig) { c.LocalAddr = netip.Addr{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := baseConfig()
			tt.cfg(&c)
			if _, err := NewMachine(c); err == nil {
				t.Fatal("NewMachine succeeded")
			}
		})
	}
}

func TestTracker(t *testing.T) {
	const (
		o = HealthOK
		g = HealthDegraded
		d = HealthDown
	)
	tests := []struct {
		name       string
		rise, fall int
		reports    []Health
		want       []Health // tracked health after each report
	}{
		{"rise fall 1", 1, 1, []Health{g, o, o, g}, []Health{g, o, o, g}},
		{"fall 3", 1, 3, []Health{g, g, o, g, g, g}, []Health{o, o, o, o, o, g}},
		{"rise 2", 2, 1, []Health{g, o, g, o, o}, []Health{g, g, g, g, o}},
		{"zero means 1", 0, 0, []Health{g, o}, []Health{g, o}},
		// issue 17, item 6b: levels; worse reports of either level count together and the
		// latest one wins, a better one in between restarts the count.
		{"fall 2 across levels", 1, 2, []Health{g, d, d, o, d, g}, []Health{o, d, d, o, o, g}},
		{"down to degraded is a rise", 2, 1, []Health{d, g, g, o}, []Health{d, d, g, g}},
		{"rise counts any better level", 2, 1, []Health{d, g, o}, []Health{d, d, o}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTracker(tt.rise, tt.fall)
			for i, r := range tt.reports {
				tr.observe(r)
				if tr.level != tt.want[i] {
					t.Fatalf("after report %d (%v): level %v, want %v", i, r, tr.level, tt.want[i])
				}
			}
		})
	}
}

// TestPriorityByHealth pins issue 17, item 6b: each step of worse health costs one
// TrackWeight, so the node with the better view wins and equal views keep their order.
func TestPriorityByHealth(t *testing.T) {
	epoch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		prio   uint8
		weight uint8
		h      Health
		want   uint8
		fault  bool
	}{
		{"ok", 110, 50, HealthOK, 110, false},
		{"degraded", 110, 50, HealthDegraded, 60, false},
		{"down", 110, 50, HealthDown, 10, false},
		{"down clamps to 1", 100, 60, HealthDown, 1, false},
		{"owner never changes", 255, 50, HealthDown, 255, false},
		{"weight 0 degraded faults", 100, 0, HealthDegraded, 100, true},
		{"weight 0 down faults", 100, 0, HealthDown, 100, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := baseConfig()
			c.Priority, c.TrackWeight = tt.prio, tt.weight
			m, err := NewMachine(c)
			if err != nil {
				t.Fatal(err)
			}
			m.Start(epoch)
			m.SetHealth(epoch, tt.h)
			if got := m.Priority(); got != tt.want {
				t.Errorf("priority %d, want %d", got, tt.want)
			}
			if got := m.State() == StateFault; got != tt.fault {
				t.Errorf("state %v, fault %v, want fault %v", m.State(), got, tt.fault)
			}
			if m.Health() != tt.h || m.Healthy() != (tt.h == HealthOK) {
				t.Errorf("Health %v Healthy %v after reporting %v", m.Health(), m.Healthy(), tt.h)
			}
		})
	}
	// The orderings the pair relies on, with the defaults (track_weight 50) and two
	// priorities 10 apart: a worse view loses, the same view keeps the order.
	p := func(prio uint8, h Health) uint8 {
		c := baseConfig()
		c.Priority, c.TrackWeight = prio, 50
		m, _ := NewMachine(c)
		m.SetHealth(epoch, h)
		return m.Priority()
	}
	for _, hi := range []Health{HealthOK, HealthDegraded, HealthDown} {
		for _, lo := range []Health{HealthOK, HealthDegraded, HealthDown} {
			a, b := p(110, hi), p(100, lo)
			switch {
			case hi == lo && a <= b:
				t.Errorf("same view %v: 110 -> %d no longer above 100 -> %d (the VIP would move)", hi, a, b)
			case hi > lo && a >= b:
				t.Errorf("110 at %v (%d) not below 100 at %v (%d): the worse view keeps the VIP", hi, a, lo, b)
			case hi < lo && a <= b:
				t.Errorf("110 at %v (%d) not above 100 at %v (%d)", hi, a, lo, b)
			}
		}
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{StateInit: "INIT", StateBackup: "BACKUP", StateMaster: "MASTER", StateFault: "FAULT", 9: "State(9)"} {
		if got := s.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", s, got, want)
		}
	}
}
