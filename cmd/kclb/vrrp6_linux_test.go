package main

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The IPv6 edge: the edge lab plus 2001:db8::<n>/64 on a, b and c, with
// the VIP 2001:db8::100/64 (VRRPv3 over IPv6 on VRID 51).
const nsVIP6 = "2001:db8::100"

var nsAddrs6 = map[string]string{"a": "2001:db8::10/64", "b": "2001:db8::11/64", "c": "2001:db8::50/64"}

// enableIPv6 gives a, b and c their IPv6 address and a link-local
// address usable at once.
func (l *edgeLab) enableIPv6() { l.EnableIPv6(nsAddrs6) }

// holdsVIP6 reports whether node n has the IPv6 VIP on eth0.
func (l *edgeLab) holdsVIP6(n string) bool { return l.HoldsAddr6(n, nsVIP6) }

// kclbConfig6 is kclbConfig with the listener and the VRRP instance on
// the IPv6 VIP.
func (l *edgeLab) kclbConfig6(n string, priority, backendPort int) string {
	l.t.Helper()
	p := l.kclbConfig(n, priority, backendPort)
	b, err := os.ReadFile(p)
	if err != nil {
		l.t.Fatal(err)
	}
	cfg := string(b)
	for _, r := range [][2]string{
		{`bind = "` + nsVIP + `:8443"`, `bind = "[` + nsVIP6 + `]:8443"`},
		{`vips = ["` + nsVIP + `/24"]`, `vips = ["` + nsVIP6 + `/64"]`},
	} {
		if !strings.Contains(cfg, r[0]) {
			l.t.Fatalf("kclbConfig has no %s", r[0])
		}
		cfg = strings.Replace(cfg, r[0], r[1], 1)
	}
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		l.t.Fatal(err)
	}
	return p
}

// TestIPv6VIPThroughBinary (issue 17, item 5): a kclb configuration with
// an IPv6 VIP passes `kclb check`; two `kclb run` processes elect the
// higher priority, which holds the VIP and serves HTTPS on it to a client
// over IPv6; kill -9 of that Master moves the VIP to the other, the
// client's neighbour entry follows through the unsolicited Neighbor
// Advertisement, and HTTPS at the VIP works again; cleanup-vips removes
// the VIP the dead process left on a.
func TestIPv6VIPThroughBinary(t *testing.T) {
	l := newEdgeLab(t)
	l.startStandIns()
	l.enableIPv6()
	cfgA := l.kclbConfig6("a", 110, 8081)
	cfgB := l.kclbConfig6("b", 100, 8082)
	for _, cfg := range []string{cfgA, cfgB} {
		if out, err := l.Command("a", kclbBin, "check", "-c", cfg).CombinedOutput(); err != nil {
			t.Fatalf("kclb check %s: %v\n%s", cfg, err, out)
		}
	}
	a := l.start("a", "kclb-a", kclbBin, "run", "-c", cfgA)
	l.start("b", "kclb-b", kclbBin, "run", "-c", cfgB)
	if _, ok := until(10*time.Second, func() bool { return l.holdsVIP6("a") && !l.holdsVIP6("b") }); !ok {
		t.Fatalf("a (priority 110) did not become the only holder of %s: a=%v b=%v", nsVIP6, l.holdsVIP6("a"), l.holdsVIP6("b"))
	}
	vip := "[" + nsVIP6 + "]"
	if _, ok := until(10*time.Second, func() bool { return l.clientGetAt(vip) == nil }); !ok {
		t.Fatalf("HTTPS at the IPv6 VIP through a: %v", l.clientGetAt(vip))
	}
	if got, want := l.Neigh("c", nsVIP6), l.mac("a"); got != want {
		t.Fatalf("client neighbour for the VIP %q, want a's MAC %q", got, want)
	}

	a.Signal(syscall.SIGKILL)
	killed := time.Now()
	took, ok := until(5*time.Second, func() bool { return l.holdsVIP6("b") })
	if !ok {
		t.Fatal("b did not take the IPv6 VIP after a was killed")
	}
	t.Logf("IPv6 crash failover: b holds the VIP %v after kill -9 (Master_Down_Interval ≈ 361 ms)", took.Sub(killed))
	if _, ok := until(3*time.Second, func() bool { return l.Neigh("c", nsVIP6) == l.mac("b") }); !ok {
		t.Fatalf("client neighbour for the VIP still %q, want b's MAC %q (unsolicited NA)", l.Neigh("c", nsVIP6), l.mac("b"))
	}
	if _, ok := until(5*time.Second, func() bool { return l.clientGetAt(vip) == nil }); !ok {
		t.Fatalf("HTTPS at the IPv6 VIP through b: %v", l.clientGetAt(vip))
	}

	// The dead node's kernel still holds the VIP (and would answer
	// Neighbor Solicitations for it) until cleanup-vips removes it, as
	// ExecStopPost does.
	if !l.holdsVIP6("a") {
		t.Fatal("a lost the VIP without cleanup: the test no longer shows what cleanup-vips does")
	}
	if out, err := l.Command("a", kclbBin, "cleanup-vips", "-c", cfgA).CombinedOutput(); err != nil || !strings.Contains(string(out), "removed "+nsVIP6+"/64") {
		t.Fatalf("cleanup-vips on a: %v\n%s", err, out)
	}
	if l.holdsVIP6("a") || !l.holdsVIP6("b") {
		t.Fatalf("after cleanup-vips: a=%v b=%v, want only b", l.holdsVIP6("a"), l.holdsVIP6("b"))
	}
}
