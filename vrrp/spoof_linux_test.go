package vrrp

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestNamespaceSpoofedAdvertUnicast pins issue 17, item 6c: with unicast peers
// configured, a valid priority-254 advert from a third address (the client's), sent to
// the group and to each node, is dropped and counted as unknown_peer; nobody changes
// state and the VIP stays on the Master.
func TestNamespaceSpoofedAdvertUnicast(t *testing.T) {
	l := newLab(t)
	conf := func(prio uint8, peer string) helperConf {
		return helperConf{VRID: labVRID, Priority: prio, AdvertMS: 100, Preempt: true, UnicastPeers: []string{peer}}
	}
	l.startKCLB("a", "kclb-a", conf(150, labAddrs["b"]))
	l.startKCLB("b", "kclb-b", conf(100, labAddrs["a"]))
	a, b := l.probe("a"), l.probe("b")
	if _, ok := waitUntil(5*time.Second, func() bool { return a.has() && !b.has() }); !ok {
		t.Fatalf("A did not become the only master: A=%v B=%v", a.has(), b.has())
	}
	var beforeA, beforeB Status
	if _, ok := waitUntil(5*time.Second, func() bool {
		beforeA, _ = l.helperStatus("kclb-a")
		beforeB, _ = l.helperStatus("kclb-b")
		return beforeA.State == StateMaster && beforeB.State == StateBackup && beforeB.AdvertsReceived > 0
	}); !ok {
		t.Fatalf("no steady pair: A %v, B %v", beforeA.State, beforeB.State)
	}

	conn := l.rawConn("c")
	src := netip.MustParseAddr(labAddrs["c"])
	dsts := []string{"224.0.0.18", labAddrs["a"], labAddrs["b"]}
	const rounds = 100 // 300 spoofed adverts, 100 to each destination, over 1 s
	for r := range rounds {
		for _, d := range dsts {
			dst := netip.MustParseAddr(d)
			p := Packet{Version: 3, VRID: labVRID, Priority: 254, Interval: 100 * time.Millisecond,
				Addrs: []netip.Addr{netip.MustParseAddr(labVIP)}, Src: src, Dst: dst}
			if r%10 == 0 {
				p.Priority = 0 // resignations too: they must not shorten anybody's timer
			}
			msg, err := p.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.WriteTo(msg, nil, &net.IPAddr{IP: net.IP(dst.AsSlice())}); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(10 * time.Millisecond) // pacing the sender, not synchronisation
	}
	var afterA, afterB Status
	// Each node receives the multicast copy and its own unicast copy: 200 per node.
	if _, ok := waitUntil(3*time.Second, func() bool {
		afterA, _ = l.helperStatus("kclb-a")
		afterB, _ = l.helperStatus("kclb-b")
		return afterA.Drops[DropUnknownPeer]-beforeA.Drops[DropUnknownPeer] >= 2*rounds &&
			afterB.Drops[DropUnknownPeer]-beforeB.Drops[DropUnknownPeer] >= 2*rounds
	}); !ok {
		t.Fatalf("unknown_peer drops: A %d, B %d; want %d each (A %+v, B %+v)",
			afterA.Drops[DropUnknownPeer]-beforeA.Drops[DropUnknownPeer], afterB.Drops[DropUnknownPeer]-beforeB.Drops[DropUnknownPeer],
			2*rounds, nonZero(afterA.Drops), nonZero(afterB.Drops))
	}
	t.Logf("spoofed adverts dropped as unknown_peer: A %d, B %d; A adverts as master %d -> %d",
		afterA.Drops[DropUnknownPeer]-beforeA.Drops[DropUnknownPeer], afterB.Drops[DropUnknownPeer]-beforeB.Drops[DropUnknownPeer],
		beforeA.AdvertsAsMaster, afterA.AdvertsAsMaster)
	if afterA.Transitions != beforeA.Transitions || afterA.State != StateMaster {
		t.Fatalf("A changed state: %v, transitions %d -> %d", afterA.State, beforeA.Transitions, afterA.Transitions)
	}
	if afterB.Transitions != beforeB.Transitions || afterB.State != StateBackup {
		t.Fatalf("B changed state: %v, transitions %d -> %d", afterB.State, beforeB.Transitions, afterB.Transitions)
	}
	if afterA.AdvertsAsMaster != beforeA.AdvertsAsMaster || afterB.Resignations != beforeB.Resignations {
		t.Fatalf("a spoofed advert reached a state machine: A as-master %d -> %d, B resignations %d -> %d",
			beforeA.AdvertsAsMaster, afterA.AdvertsAsMaster, beforeB.Resignations, afterB.Resignations)
	}
	if !a.has() || b.has() {
		t.Fatalf("VIP moved: A=%v B=%v", a.has(), b.has())
	}
}
