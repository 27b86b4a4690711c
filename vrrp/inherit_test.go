package vrrp

import (
	"net/netip"
	"testing"
	"time"
)

// TestStartAsMaster: a machine that inherits from a detached Master of
// the same node starts as Master at once (no Master_Down_Interval), and a
// normal one starts as Backup.
func TestStartAsMaster(t *testing.T) {
	for _, tc := range []struct {
		inherit bool
		want    State
	}{{false, StateBackup}, {true, StateMaster}} {
		m, err := NewMachine(MachineConfig{Version: 3, Priority: 110, AdvertInterval: time.Second,
			LocalAddr: netip.MustParseAddr("203.0.113.10"), Preempt: true, StartAsMaster: tc.inherit})
		if err != nil {
			t.Fatal(err)
		}
		acts := m.Start(time.Unix(0, 0))
		if m.State() != tc.want {
			t.Fatalf("inherit=%v: state %v, want %v", tc.inherit, m.State(), tc.want)
		}
		sent := false
		for _, a := range acts {
			if a.Kind == ActSendAdvert {
				sent = true
			}
		}
		if sent != tc.inherit {
			t.Fatalf("inherit=%v: advert sent at start = %v", tc.inherit, sent)
		}
	}
}
