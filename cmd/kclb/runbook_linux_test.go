package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/admin"
)

// vrrpState returns the state of VRRP instance VI_1 on edge node n, read
// as the runbook does: `kclb status --json` on its admin socket.
func (l *edgeLab) vrrpState(t *testing.T, n string) string {
	t.Helper()
	var st admin.Status
	if err := json.Unmarshal([]byte(mustCLI(t, "status", "-s", l.adminSocket(n), "--json")), &st); err != nil {
		t.Fatal(err)
	}
	for _, v := range st.VRRP {
		if v.Name == "VI_1" {
			return v.State
		}
	}
	return ""
}

// TestRunbookPlannedVIPFailover follows docs/operations.md, "Planned VIP
// failover", in namespaces (issue 15, item 6): lowering the Master's
// priority below the peer's and reloading moves the VIP to the peer (the
// client's ARP entry follows, HTTPS at the VIP keeps working) while the
// old Master keeps running as Backup; restoring the priority and
// reloading brings it back.
func TestRunbookPlannedVIPFailover(t *testing.T) {
	l := newEdgeLab(t)
	l.startStandIns()
	l.start("a", "kclb-a", kclbBin, "run", "-c", l.kclbConfig("a", 110, 8081))
	l.start("b", "kclb-b", kclbBin, "run", "-c", l.kclbConfig("b", 100, 8082))
	if _, ok := until(10*time.Second, func() bool { return l.holdsVIP("a") && !l.holdsVIP("b") }); !ok {
		t.Fatalf("a did not become the only VIP holder: a=%v b=%v", l.holdsVIP("a"), l.holdsVIP("b"))
	}
	if a, b := l.vrrpState(t, "a"), l.vrrpState(t, "b"); a != "master" || b != "backup" {
		t.Fatalf("step 1: a %s, b %s; want master, backup", a, b)
	}
	if _, ok := until(10*time.Second, func() bool { return l.clientGet() == nil }); !ok {
		t.Fatalf("step 1: HTTPS at the VIP through a: %v", l.clientGet())
	}
	if got, want := l.clientNeigh(), l.mac("a"); got != want {
		t.Fatalf("step 1: client ARP for the VIP %q, want a's MAC %q", got, want)
	}

	// Step 3: priority 90 on a (below b's 100), then `kclb reload`.
	l.kclbConfig("a", 90, 8081)
	if out := mustCLI(t, "reload", "-s", l.adminSocket("a")); !strings.Contains(out, "reloaded") {
		t.Fatalf("reload: %q", out)
	}
	if _, ok := until(5*time.Second, func() bool { return l.holdsVIP("b") && !l.holdsVIP("a") }); !ok {
		t.Fatalf("step 3: VIP did not move to b: a=%v b=%v", l.holdsVIP("a"), l.holdsVIP("b"))
	}
	// Step 4: verify.
	if _, ok := until(3*time.Second, func() bool { return l.clientNeigh() == l.mac("b") }); !ok {
		t.Fatalf("step 4: client ARP for the VIP %q, want b's MAC %q", l.clientNeigh(), l.mac("b"))
	}
	if err := l.clientGet(); err != nil {
		t.Fatalf("step 4: HTTPS at the VIP through b: %v", err)
	}
	if _, ok := until(3*time.Second, func() bool { return l.vrrpState(t, "a") == "backup" && l.vrrpState(t, "b") == "master" }); !ok {
		t.Fatalf("step 4: a %s, b %s; want backup, master", l.vrrpState(t, "a"), l.vrrpState(t, "b"))
	}

	// Step 5: back to 110; a preempts.
	l.kclbConfig("a", 110, 8081)
	mustCLI(t, "reload", "-s", l.adminSocket("a"))
	if _, ok := until(5*time.Second, func() bool { return l.holdsVIP("a") && !l.holdsVIP("b") }); !ok {
		t.Fatalf("step 5: VIP did not return to a: a=%v b=%v", l.holdsVIP("a"), l.holdsVIP("b"))
	}
	if _, ok := until(3*time.Second, func() bool { return l.clientNeigh() == l.mac("a") }); !ok {
		t.Fatalf("step 5: client ARP %q, want a's MAC %q", l.clientNeigh(), l.mac("a"))
	}
	if err := l.clientGet(); err != nil {
		t.Fatalf("step 5: HTTPS at the VIP through a: %v", err)
	}
}
