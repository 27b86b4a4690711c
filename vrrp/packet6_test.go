package vrrp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

// ip6Packet is one IPv6 packet (without extension headers) read from a pcap file.
type ip6Packet struct {
	hopLimit   uint8
	nextHeader uint8
	src, dst   netip.Addr
	payload    []byte
}

// readPcap6 returns the IPv6 packets of an Ethernet pcap file in testdata.
func readPcap6(t testing.TB, name string) []ip6Packet {
	t.Helper()
	var out []ip6Packet
	for _, ip := range pcapFrames(t, name, 0x86dd) {
		if len(ip) < 40 {
			continue
		}
		plen := int(binary.BigEndian.Uint16(ip[4:]))
		out = append(out, ip6Packet{
			hopLimit:   ip[7],
			nextHeader: ip[6],
			src:        netip.AddrFrom16([16]byte(ip[8:24])),
			dst:        netip.AddrFrom16([16]byte(ip[24:40])),
			payload:    ip[40 : 40+plen],
		})
	}
	return out
}

// keepalived6Src is the link-local source of the adverts in keepalived-v6.pcap.
var keepalived6Src = mustAddr("fe80::644b:abff:fe97:fe97")

// TestGoldenKeepalivedIPv6 decodes, verifies and re-encodes the VRRPv3-over-IPv6 adverts
// keepalived sent with native_ipv6 (testdata/capture-keepalived-v6.sh): the checksum over
// the IPv6 pseudo-header must match keepalived's, byte for byte.
func TestGoldenKeepalivedIPv6(t *testing.T) {
	want := Packet{Version: 3, VRID: 51, Priority: 150, Interval: time.Second, IPv6: true,
		Addrs: []netip.Addr{mustAddr("2001:db8::100"), mustAddr("2001:db8::101")}}
	for i, ip := range readPcap6(t, "keepalived-v6.pcap") {
		if ip.hopLimit != 255 || ip.nextHeader != ProtocolNumber || ip.src != keepalived6Src || ip.dst != MulticastGroup6() {
			t.Fatalf("packet %d IPv6 header: hop limit %d next header %d %v > %v", i, ip.hopLimit, ip.nextHeader, ip.src, ip.dst)
		}
		if err := VerifyChecksum(ip.payload, ip.src, ip.dst); err != nil {
			t.Fatalf("packet %d: VerifyChecksum: %v", i, err)
		}
		got := Packet{IPv6: true}
		if err := got.UnmarshalBinary(ip.payload); err != nil {
			t.Fatalf("packet %d: UnmarshalBinary: %v", i, err)
		}
		w := want
		w.Checksum = binary.BigEndian.Uint16(ip.payload[6:])
		if !reflect.DeepEqual(got, w) {
			t.Fatalf("packet %d decoded\n got %+v\nwant %+v", i, got, w)
		}
		enc := want
		enc.Src, enc.Dst = ip.src, ip.dst
		b, err := enc.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary: %v", err)
		}
		if !bytes.Equal(b, ip.payload) {
			t.Fatalf("encoded\n got % x\nwant % x", b, ip.payload)
		}
	}
}

func TestChecksumIPv6DetectsCorruption(t *testing.T) {
	ip := readPcap6(t, "keepalived-v6.pcap")[0]
	tests := []struct {
		name     string
		mutate   func(b []byte)
		src, dst netip.Addr
	}{
		{"flipped priority", func(b []byte) { b[2] ^= 1 }, ip.src, ip.dst},
		{"flipped last address byte", func(b []byte) { b[len(b)-1] ^= 0x80 }, ip.src, ip.dst},
		{"other source (pseudo-header)", func([]byte) {}, mustAddr("fe80::1"), ip.dst},
		{"unicast destination (pseudo-header)", func([]byte) {}, ip.src, mustAddr("fe80::2")},
		// The same bytes checked as IPv4 (4-in-6 or plain IPv4 addresses) must fail.
		{"IPv4-mapped addresses", func([]byte) {}, mustAddr("::ffff:203.0.113.11"), mustAddr("::ffff:224.0.0.18")},
		{"mixed families", func([]byte) {}, ip.src, MulticastGroup()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := bytes.Clone(ip.payload)
			tt.mutate(b)
			if err := VerifyChecksum(b, tt.src, tt.dst); !errors.Is(err, ErrChecksum) {
				t.Fatalf("VerifyChecksum = %v, want ErrChecksum", err)
			}
		})
	}
}

func TestUnmarshalIPv6Errors(t *testing.T) {
	v6 := readPcap6(t, "keepalived-v6.pcap")[0].payload
	v2 := readPcap(t, "keepalived-v2-pass.pcap")[0].payload
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"short header", v6[:7], ErrTruncated},
		{"second address cut", v6[:len(v6)-1], ErrTruncated},
		{"only IPv4-sized addresses", v6[:16], ErrTruncated},
		{"version 2 over IPv6", v2, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Packet{IPv6: true}
			if err := p.UnmarshalBinary(tt.b); !errors.Is(err, tt.want) {
				t.Fatalf("UnmarshalBinary = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestMarshalIPv6Errors(t *testing.T) {
	src, dst := mustAddr("fe80::11"), MulticastGroup6()
	vip := []netip.Addr{mustAddr("2001:db8::100")}
	tests := []struct {
		name string
		p    Packet
	}{
		{"IPv4 VIP", Packet{Version: 3, VRID: 1, Interval: time.Second, IPv6: true, Src: src, Dst: dst,
			Addrs: []netip.Addr{mustAddr("203.0.113.100")}}},
		{"IPv4-mapped VIP", Packet{Version: 3, VRID: 1, Interval: time.Second, IPv6: true, Src: src, Dst: dst,
			Addrs: []netip.Addr{mustAddr("::ffff:203.0.113.100")}}},
		{"IPv4 source", Packet{Version: 3, VRID: 1, Interval: time.Second, IPv6: true, Src: mustAddr("203.0.113.11"), Dst: dst, Addrs: vip}},
		{"IPv4 group", Packet{Version: 3, VRID: 1, Interval: time.Second, IPv6: true, Src: src, Dst: MulticastGroup(), Addrs: vip}},
		{"version 2", Packet{Version: 2, VRID: 1, Interval: time.Second, IPv6: true, Src: src, Dst: dst, Addrs: vip}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.p.MarshalBinary(); !errors.Is(err, ErrMalformed) {
				t.Fatalf("MarshalBinary = %v, want ErrMalformed", err)
			}
		})
	}
	ok := Packet{Version: 3, VRID: 1, Interval: time.Second, IPv6: true, Src: src, Dst: dst, Addrs: vip}
	b, err := ok.MarshalBinary()
	if err != nil || len(b) != 8+16 {
		t.Fatalf("valid packet: %d bytes, %v", len(b), err)
	}
}

// FuzzPacketIPv6 is FuzzPacket for the IPv6 form: whatever decodes re-encodes to the same
// bytes (reserved bits and checksum aside) with a valid IPv6 pseudo-header checksum.
func FuzzPacketIPv6(f *testing.F) {
	for _, ip := range readPcap6(f, "keepalived-v6.pcap") {
		f.Add(ip.payload)
	}
	f.Add([]byte{})
	f.Add([]byte{0x31, 1, 100, 1, 0, 100, 0, 0, 0x20, 0x01, 0x0d, 0xb8, 15: 0, 23: 1})
	src, dst := keepalived6Src, MulticastGroup6()
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = VerifyChecksum(b, src, dst)
		p := Packet{IPv6: true}
		if err := p.UnmarshalBinary(b); err != nil {
			return
		}
		p.Src, p.Dst = src, dst
		enc, err := p.MarshalBinary()
		if err != nil {
			t.Fatalf("re-marshal of decoded %+v: %v", p, err)
		}
		if err := VerifyChecksum(enc, src, dst); err != nil {
			t.Fatalf("own encoding fails checksum: %v", err)
		}
		q := Packet{IPv6: true}
		if err := q.UnmarshalBinary(enc); err != nil {
			t.Fatalf("decode own encoding: %v", err)
		}
		q.Src, q.Dst = src, dst
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("round trip\n got %+v\nwant %+v", q, p)
		}
		in := bytes.Clone(b[:len(enc)])
		in[4] &= 0x0f
		in[6], in[7], enc[6], enc[7] = 0, 0, 0, 0
		if !bytes.Equal(in, enc) {
			t.Fatalf("re-encoding differs\n got % x\nwant % x", enc, in)
		}
	})
}

// TestNeighborAdvertMatchesKeepalived compares kclb's unsolicited Neighbor Advertisement
// with the ones keepalived sent on becoming Master, byte for byte (checksum included), and
// checks the RFC 4861 §7.2.6 header fields of the capture.
func TestNeighborAdvertMatchesKeepalived(t *testing.T) {
	mac := []byte{0x66, 0x4b, 0xab, 0x97, 0xfe, 0x97}
	pkts := readPcap6(t, "keepalived-v6-na.pcap")
	for i, vip := range []string{"2001:db8::100", "2001:db8::101"} {
		ip := pkts[i]
		if ip.hopLimit != 255 || ip.nextHeader != icmp6ProtocolNumber || ip.dst != AllNodes() {
			t.Fatalf("NA %d header: hop limit %d next header %d dst %v", i, ip.hopLimit, ip.nextHeader, ip.dst)
		}
		got := appendNA(nil, ip.src, mustAddr(vip), mac)
		if !bytes.Equal(got, ip.payload) {
			t.Fatalf("NA for %s\n got % x\nwant % x", vip, got, ip.payload)
		}
	}
}
