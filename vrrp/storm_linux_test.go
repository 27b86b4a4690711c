package vrrp

import (
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
)

// stormPackets builds the invalid adverts a stranger floods: each must be
// dropped with its counter and never reach the state machine.
func stormPackets(t *testing.T, src netip.Addr) map[string][]byte {
	t.Helper()
	dst := netip.MustParseAddr("224.0.0.18")
	good := Packet{Version: 3, VRID: labVRID, Priority: 200, Interval: 100 * time.Millisecond,
		Addrs: []netip.Addr{netip.MustParseAddr(labVIP)}, Src: src, Dst: dst}
	enc := func(p Packet) []byte {
		b, err := p.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	wrongVRID := good
	wrongVRID.VRID = labVRID + 1
	badSum := enc(good)
	badSum[6] ^= 0xff // checksum field
	prio0 := good
	prio0.Priority = 0
	return map[string][]byte{
		"wrong vrid":   enc(wrongVRID),
		"bad checksum": badSum,
		"truncated":    enc(good)[:6],
		"priority 0 with a bad checksum": func() []byte {
			b := enc(prio0)
			b[6] ^= 0x55
			return b
		}(),
	}
}

// TestNamespacePacketStorm floods the pair with invalid VRRP packets at
// about 10,000 packets/s from a third host: the Master keeps its state
// and its advert timing, the Backup stays Backup, and every packet is
// dropped with a counter. KCLB_LONG=1 runs 10 s instead of 3 s.
func TestNamespacePacketStorm(t *testing.T) {
	l := newLab(t)
	confA := helperConf{VRID: labVRID, Priority: 150, AdvertMS: 100, Preempt: true}
	confB := helperConf{VRID: labVRID, Priority: 100, AdvertMS: 100, Preempt: true}
	l.startKCLB("a", "kclb-a", confA)
	l.startKCLB("b", "kclb-b", confB)
	a, b := l.probe("a"), l.probe("b")
	if _, ok := waitUntil(5*time.Second, func() bool { return a.has() && !b.has() }); !ok {
		t.Fatalf("A did not become the only master: A=%v B=%v", a.has(), b.has())
	}
	var before Status
	if _, ok := waitUntil(5*time.Second, func() bool {
		var ok bool
		before, ok = l.helperStatus("kclb-a")
		return ok && before.State == StateMaster
	}); !ok {
		t.Fatal("no status from A")
	}
	// Read B once it follows A (several adverts received): at start both may briefly be
	// Master, and a status read before that settles is stale.
	var beforeB Status
	if _, ok := waitUntil(5*time.Second, func() bool {
		var ok bool
		beforeB, ok = l.helperStatus("kclb-b")
		return ok && beforeB.State == StateBackup && beforeB.AdvertsReceived >= 3
	}); !ok {
		t.Fatal("B does not follow A")
	}
	if before, _ = l.helperStatus("kclb-a"); before.State != StateMaster {
		t.Fatalf("A is %v", before.State)
	}

	conn := l.rawConn("c")

	packets := stormPackets(t, netip.MustParseAddr(labAddrs["c"]))
	dur := 3 * time.Second
	if os.Getenv("KCLB_LONG") != "" {
		dur = 10 * time.Second
	}
	dst := &net.IPAddr{IP: net.ParseIP("224.0.0.18")}
	var list [][]byte
	for _, p := range packets {
		list = append(list, p)
	}
	start := time.Now()
	sent := 0
	// About 10,000 packets/s: a burst of 100 every 10 ms.
	for tick := time.NewTicker(10 * time.Millisecond); time.Since(start) < dur; <-tick.C {
		for range 100 {
			if _, err := conn.WriteTo(list[sent%len(list)], nil, dst); err == nil {
				sent++
			}
		}
	}
	elapsed := time.Since(start)
	// Let the status files catch up with the last packets.
	var after, afterB Status
	waitUntil(2*time.Second, func() bool {
		after, _ = l.helperStatus("kclb-a")
		afterB, _ = l.helperStatus("kclb-b")
		return dropped(after)-dropped(before) >= uint64(sent)*9/10
	})
	t.Logf("storm: %d packets in %v (%.0f/s); A dropped %d, B dropped %d; A adverts %d -> %d",
		sent, elapsed.Round(time.Millisecond), float64(sent)/elapsed.Seconds(),
		dropped(after)-dropped(before), dropped(afterB)-dropped(beforeB), before.AdvertsSent, after.AdvertsSent)
	if after.State != StateMaster || after.Transitions != before.Transitions {
		t.Fatalf("A changed state during the storm: %v, transitions %d -> %d", after.State, before.Transitions, after.Transitions)
	}
	if afterB.State != StateBackup || afterB.Transitions != beforeB.Transitions {
		t.Fatalf("B changed state during the storm: %v, transitions %d -> %d", afterB.State, beforeB.Transitions, afterB.Transitions)
	}
	if got := dropped(after) - dropped(before); got < uint64(sent)*9/10 {
		t.Fatalf("A counted %d drops for %d invalid packets", got, sent)
	}
	// Adverts kept their timing: at 100 ms, about elapsed/100ms of them.
	want := uint64(elapsed / (100 * time.Millisecond))
	if got := after.AdvertsSent - before.AdvertsSent; got < want*8/10 {
		t.Fatalf("A sent %d adverts during %v of storm, want about %d", got, elapsed, want)
	}
	if !a.has() || b.has() {
		t.Fatalf("VIP moved: A=%v B=%v", a.has(), b.has())
	}
}

// dropped sums every drop counter.
func dropped(s Status) uint64 {
	var n uint64
	for _, v := range s.Drops {
		n += v
	}
	return n
}

// rawConn opens a raw IP protocol 112 socket in a node's namespace that sends with TTL
// 255, like a stranger on the segment; it is closed when the test ends.
func (l *lab) rawConn(node string) *ipv4.PacketConn {
	var c net.PacketConn
	l.inNS(node, func() {
		var err error
		if c, err = net.ListenPacket("ip4:112", labAddrs[node]); err != nil {
			l.t.Fatal(err)
		}
	})
	l.t.Cleanup(func() { c.Close() })
	pc := ipv4.NewPacketConn(c)
	pc.SetMulticastTTL(255)
	pc.SetTTL(255)
	return pc
}
