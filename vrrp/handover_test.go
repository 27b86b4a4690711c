package vrrp

import (
	"slices"
	"testing"
	"time"
)

// TestStandbyHandover pins issue 17, item 3 at the state machine: a Master that hands
// over resigns like at Shutdown but stays Backup at priority 1, so the peer takes over
// after Skew_Time and this node does not preempt it; ending the handover restores the
// priority and the peer's (now lower) adverts are ignored, so it preempts back after
// Master_Down_Interval.
func TestStandbyHandover(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := baseConfig()
	c.Priority = 110
	m, err := NewMachine(c)
	if err != nil {
		t.Fatal(err)
	}
	m.Start(t0)
	at := t0.Add(m.MasterDownInterval())
	m.Tick(at)
	if m.State() != StateMaster {
		t.Fatalf("state %v, want MASTER", m.State())
	}
	got := m.SetStandby(at.Add(time.Second), true)
	want := []Action{{Kind: ActSendAdvert, Priority: 0}, {Kind: ActRemoveVIP}, {Kind: ActTransition, From: StateMaster, To: StateBackup}}
	if !slices.Equal(got, want) {
		t.Fatalf("handover actions %v, want %v", got, want)
	}
	if m.Priority() != 1 || !m.Standby() {
		t.Fatalf("priority %d standby %v, want 1 true", m.Priority(), m.Standby())
	}
	if acts := m.SetStandby(at.Add(time.Second), true); acts != nil {
		t.Fatalf("second handover: %v", acts)
	}
	// The peer (100) takes over and advertises; we follow it.
	now := at.Add(2 * time.Second)
	m.Receive(now, Advert{Src: addrB, Priority: 100, Interval: time.Second})
	if m.State() != StateBackup || m.Master() != addrB {
		t.Fatalf("state %v master %v, want BACKUP of %v", m.State(), m.Master(), addrB)
	}
	// Back: priority 110 again; adverts at 100 are ignored and the timer runs out.
	if acts := m.SetStandby(now, false); acts != nil {
		t.Fatalf("back: %v", acts)
	}
	if m.Priority() != 110 {
		t.Fatalf("priority after back %d, want 110", m.Priority())
	}
	deadline := m.Deadline()
	m.Receive(now.Add(time.Second), Advert{Src: addrB, Priority: 100, Interval: time.Second})
	if !m.Deadline().Equal(deadline) {
		t.Fatal("a lower-priority advert reset the Master_Down timer after the handover ended")
	}
	acts := m.Tick(deadline)
	if m.State() != StateMaster || !slices.Contains(acts, Action{Kind: ActAddVIP}) {
		t.Fatalf("no preemption after the handover ended: %v, %v", m.State(), acts)
	}
	// The owner cannot hand over.
	oc := baseConfig()
	oc.Priority = 255
	o, _ := NewMachine(oc)
	o.Start(t0)
	if acts := o.SetStandby(t0, true); acts != nil || o.Standby() || o.State() != StateMaster {
		t.Fatalf("owner handover: %v standby %v state %v", acts, o.Standby(), o.State())
	}
}
