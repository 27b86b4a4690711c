package admin

import (
	"bytes"
	"strings"
	"testing"
)

func TestFormatDrops(t *testing.T) {
	for _, tt := range []struct {
		in   map[string]uint64
		want string
	}{
		{nil, "0"},
		{map[string]uint64{"ttl": 0}, "0"},
		{map[string]uint64{"unknown_peer": 10, "ttl": 2}, "12 (ttl 2, unknown_peer 10)"},
	} {
		if got := FormatDrops(tt.in); got != tt.want {
			t.Errorf("FormatDrops(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestHandoverDone(t *testing.T) {
	for _, tt := range []struct {
		name string
		list []VRRPStatus
		back bool
		want bool
	}{
		{"peer holds the VIPs", []VRRPStatus{{Name: "VI_1", State: "backup", Master: "10.0.0.2"}}, false, true},
		{"no Master seen yet", []VRRPStatus{{Name: "VI_1", State: "backup"}}, false, false},
		{"still Master", []VRRPStatus{{Name: "VI_1", State: "master"}}, false, false},
		{"back and Master", []VRRPStatus{{Name: "VI_1", State: "master"}}, true, true},
		{"back but still standing by", []VRRPStatus{{Name: "VI_1", State: "master", Standby: true}}, true, false},
	} {
		if got, _ := HandoverDone(tt.list, tt.back); got != tt.want {
			t.Errorf("%s: HandoverDone = %v", tt.name, got)
		}
	}
	if s := VRRPSummary([]VRRPStatus{{Name: "a", State: "backup", Priority: 100, Master: "10.0.0.2"}, {Name: "b", State: "master", Priority: 110}}); s != "a backup priority 100 master 10.0.0.2, b master priority 110" {
		t.Errorf("VRRPSummary = %q", s)
	}
}

// TestWriteStatusColours: colour codes do not move the columns.
func TestWriteStatusColours(t *testing.T) {
	st := &Status{Name: "edge1", Version: "dev", AnyAvailable: true,
		Servers: []ServerStatus{{Name: "kc1", Health: "up", Admin: "ready"}, {Name: "kc2", Health: "down", Admin: "drain"}}}
	var plain, color bytes.Buffer
	WriteStatus(&plain, st, false)
	WriteStatus(&color, st, true)
	stripped := strings.NewReplacer(ansiReset, "", ansiGreen, "", ansiYellow, "", ansiRed, "", ansiBlue, "", ansiGrey, "").Replace(color.String())
	if stripped != plain.String() {
		t.Fatalf("coloured status differs beyond the colours:\n%s\n---\n%s", stripped, plain.String())
	}
	if !strings.Contains(color.String(), ansiYellow+"drain"+ansiReset) || !strings.Contains(plain.String(), "kc2") {
		t.Fatalf("status:\n%s", color.String())
	}
}
