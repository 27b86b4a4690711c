package vrrp

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestLinuxConnLoopback exercises the raw protocol 112 socket on the loopback interface:
// TTL 255 and source on send, TTL/source/destination from control messages on receive,
// the pseudo-header checksum over real addresses, and Pending.
func TestLinuxConnLoopback(t *testing.T) {
	needRoot(t)
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("no loopback interface: %v", err)
	}
	local := netip.MustParseAddr("127.0.0.1")
	tx, err := listenVRRP(lo, local)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	rx, err := listenVRRP(lo, local)
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	if rx.Pending() {
		t.Fatal("Pending before anything was sent")
	}
	p := Packet{Version: 3, VRID: 200, Priority: 123, Interval: 100 * time.Millisecond, Src: local, Dst: local,
		Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.100")}}
	b, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.WriteTo(b, local); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !rx.Pending() {
		if time.Now().After(deadline) {
			t.Fatal("Pending never reported the queued advert")
		}
		time.Sleep(time.Millisecond)
	}
	buf := make([]byte, 1500)
	for {
		n, h, err := rx.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		var got Packet
		if got.UnmarshalBinary(buf[:n]) != nil || got.VRID != 200 {
			continue // someone else's protocol 112 packet
		}
		if h.TTL != 255 || h.Src != local || h.Dst != local {
			t.Fatalf("header %+v, want TTL 255 %v > %v", h, local, local)
		}
		if err := VerifyChecksum(buf[:n], h.Src, h.Dst); err != nil {
			t.Fatal(err)
		}
		if got.Priority != 123 || got.Interval != 100*time.Millisecond {
			t.Fatalf("got %+v", got)
		}
		break
	}
	if rx.Pending() {
		t.Fatal("Pending after the queue was read")
	}
	if err := rx.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rx.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, err := rx.ReadFrom(buf); err == nil {
		t.Fatal("ReadFrom after Close succeeded")
	}
}
