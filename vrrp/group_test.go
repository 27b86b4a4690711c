package vrrp

import (
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestGroupReconcile: unchanged instances keep running untouched,
// changed ones are replaced, removed ones stop, and an instance New
// refuses leaves the group as it was. The interface does not exist, so
// every Run fails at once (reported through OnError) and nothing is sent.
func TestGroupReconcile(t *testing.T) {
	var mu sync.Mutex
	var errs []error
	g := NewGroup(GroupOptions{OnError: func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }})
	defer g.Stop()
	opt := func(name string, vrid int) Options {
		return Options{Name: name, Interface: "kclbnoif0", VRID: vrid, Priority: 100, TrackWeight: 10,
			VIPs: []netip.Prefix{netip.MustParsePrefix("203.0.113.10/24")}}
	}
	if err := g.Reconcile([]Options{opt("A", 1), opt("B", 2)}, nil); err != nil {
		t.Fatal(err)
	}
	first := g.list()
	if st := g.Status(); len(st) != 2 || st[0].Name != "A" || st[1].Name != "B" {
		t.Fatalf("status %+v", st)
	}
	if err := g.Reconcile([]Options{opt("A", 1), opt("B", 3)}, nil); err != nil {
		t.Fatal(err)
	}
	second := g.list()
	if second[0] != first[0] || second[1] == first[1] {
		t.Fatal("Reconcile restarted an unchanged instance or kept a changed one")
	}
	bad := opt("C", 4)
	bad.VIPs = nil
	if err := g.Reconcile([]Options{opt("A", 1), bad}, nil); err == nil || !strings.Contains(err.Error(), `vrrp instance "C"`) {
		t.Fatalf("Reconcile with a bad instance: %v", err)
	}
	if g.Len() != 2 || g.list()[1] != second[1] {
		t.Fatal("a refused Reconcile changed the group")
	}
	if err := Check([]Options{bad}); err == nil {
		t.Fatal("Check accepted an instance without VIPs")
	}
	// Run fails on the missing interface: the watchdog check sees it.
	for deadline := time.Now().Add(20 * time.Second); g.Running(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Run did not fail on a missing interface")
		}
	}
	g.SetHealth(HealthDown) // must not block or panic on stopped instances
	if err := g.Reconcile(nil, nil); err != nil || g.Len() != 0 || g.Status() != nil || !g.Running() {
		t.Fatalf("empty group: %v, %d", err, g.Len())
	}
	second[0].wg.Wait() // stopped: every goroutine ended
	mu.Lock()
	defer mu.Unlock()
	if len(errs) == 0 || !strings.Contains(errs[0].Error(), "kclbnoif0") {
		t.Fatalf("Run errors %v, want the missing interface", errs)
	}
}
