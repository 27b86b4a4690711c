package testlab

import (
	"testing"
	"time"
)

// TestLab builds a two-node lab: the nodes reach each other over the
// bridge, a process inside a node is watched line by line, and the
// client's neighbour entry names the other node's MAC.
func TestLab(t *testing.T) {
	l := New(t, "t", Node{"a", "203.0.113.10/24"}, Node{"c", "203.0.113.50/24"})
	if got := l.Addr("a"); got != "203.0.113.10" {
		t.Fatalf("Addr(a) = %q", got)
	}
	if err := l.Ping("c", l.Addr("a")); err != nil {
		t.Fatal(err)
	}
	if got, want := l.Neigh("c", l.Addr("a")), l.MAC("a"); got != want || want == "" {
		t.Errorf("c's neighbour entry for a: %q, want %q", got, want)
	}
	if !l.HoldsAddr("a", "203.0.113.10") || l.HoldsAddr("c", "203.0.113.10") {
		t.Error("HoldsAddr does not tell a's address from c's")
	}
	mon := l.Monitor("c", "neigh-c", "neigh")
	mon2 := l.Monitor("a", "addr-a", "address")
	if err := l.Ping("a", l.Addr("c")); err != nil {
		t.Fatal(err)
	}
	mon.Stop()
	mon2.Stop()
	p := l.Start("a", "echo", "sh", "-c", "ip -4 -o addr show dev eth0; echo done")
	p.WaitLine(t, p.Watch("203.0.113.10/24"), "a's address in its own namespace", 5*time.Second)
	p.Wait(t, 5*time.Second)
	if p.Err() != nil || !p.Has("done") {
		t.Fatalf("exit %v, lines %q", p.Err(), p.Lines())
	}
}
