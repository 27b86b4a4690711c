package vrrp

import (
	"net/netip"
	"testing"
	"time"
)

var (
	testVIP6       = netip.MustParsePrefix("2001:db8::100/64")
	addrA6, addrB6 = netip.MustParseAddr("fe80::11"), netip.MustParseAddr("fe80::12")
)

// sentBy6 decodes the IPv6 adverts src sent on n.
func (n *fakeNet) sentBy6(src netip.Addr) []Packet {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []Packet
	for _, m := range n.sent {
		p := Packet{IPv6: true}
		if m.h.Src == src && p.UnmarshalBinary(m.b) == nil && VerifyChecksum(m.b, m.h.Src, m.h.Dst) == nil {
			p.Src, p.Dst = m.h.Src, m.h.Dst
			out = append(out, p)
		}
	}
	return out
}

// TestInstancePairIPv6 runs two IPv6 instances on the fake segment: adverts go to ff02::12
// with 16-byte addresses and a valid IPv6 pseudo-header checksum, the higher priority wins
// and the Backup follows its link-local address, the Master announces its VIP (unsolicited
// Neighbor Advertisements through the same effect as gratuitous ARP), and a resignation
// hands over. (The equal-priority tie-break on link-local addresses is in fsm_test.go: with
// equal priorities the first to time out stays Master, as RFC 5798 §6.4.2 says.)
func TestInstancePairIPv6(t *testing.T) {
	n := &fakeNet{}
	opts := Options{AdvertInterval: 20 * time.Millisecond, Preempt: true, VIPs: []netip.Prefix{testVIP6}}
	optsA, optsB := opts, opts
	optsA.Priority, optsB.Priority = 100, 150
	a := startNode(t, n, addrA6, optsA, nil)
	b := startNode(t, n, addrB6, optsB, nil)
	waitFor(t, "B (priority 150) master, A backup following it", func() bool {
		return b.inst.Status().State == StateMaster && b.vips.hasVIP() && a.inst.Status().State == StateBackup && a.inst.Status().Master == addrB6
	})
	if a.vips.hasVIP() {
		t.Fatal("backup holds the VIP")
	}
	sent := n.sentBy6(addrB6)
	if len(sent) == 0 {
		t.Fatal("no valid IPv6 adverts from B")
	}
	if p := sent[len(sent)-1]; p.Dst != MulticastGroup6() || len(p.Addrs) != 1 || p.Addrs[0] != testVIP6.Addr() {
		t.Fatalf("advert %+v, want to ff02::12 carrying %v", p, testVIP6.Addr())
	}
	b.vips.mu.Lock()
	announced := b.vips.garps
	b.vips.mu.Unlock()
	if announced == 0 {
		t.Fatal("the new Master did not announce its VIP")
	}
	b.shutdown(t)
	waitFor(t, "A master after B resigned", func() bool { return a.inst.Status().State == StateMaster && a.vips.hasVIP() })
	if st := a.inst.Status(); st.Resignations != 1 || st.Drops[DropChecksum] != 0 || st.Drops[DropTruncated] != 0 {
		t.Fatalf("A status: %d resignations, drops %v", st.Resignations, st.Drops)
	}
}
