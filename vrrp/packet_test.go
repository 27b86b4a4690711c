package vrrp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// ipPacket is one IPv4 packet read from a pcap file.
type ipPacket struct {
	ttl      uint8
	src, dst netip.Addr
	payload  []byte
}

// pcapFrames returns the Ethernet frames of a pcap file (as written by tcpdump -w) in
// testdata whose EtherType is etherType, without the 14-byte Ethernet header.
func pcapFrames(t testing.TB, name string, etherType uint16) [][]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 {
		t.Fatalf("%s: not a little-endian microsecond pcap", name)
	}
	var out [][]byte
	for off := 24; off+16 <= len(b); {
		incl := int(binary.LittleEndian.Uint32(b[off+8:]))
		frame := b[off+16 : off+16+incl]
		off += 16 + incl
		if len(frame) >= 14 && binary.BigEndian.Uint16(frame[12:]) == etherType {
			out = append(out, frame[14:])
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no frames of EtherType %#04x", name, etherType)
	}
	return out
}

// readPcap returns the IPv4 packets of an Ethernet pcap file in testdata.
func readPcap(t testing.TB, name string) []ipPacket {
	t.Helper()
	var out []ipPacket
	for _, ip := range pcapFrames(t, name, 0x0800) {
		if len(ip) < 20 {
			continue
		}
		ihl := int(ip[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(ip[2:]))
		out = append(out, ipPacket{
			ttl:     ip[8],
			src:     netip.AddrFrom4([4]byte(ip[12:16])),
			dst:     netip.AddrFrom4([4]byte(ip[16:20])),
			payload: ip[ihl:total],
		})
	}
	return out
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestGoldenKeepalived(t *testing.T) {
	src, dst := mustAddr("203.0.113.11"), MulticastGroup()
	pass := [8]byte{'k', 'c', 'l', 'b', 'p', 'a', 's', 's'}
	tests := []struct {
		name string
		file string
		idx  int
		want Packet
	}{
		{"v3 1s", "keepalived-v3.pcap", 0, Packet{Version: 3, VRID: 51, Priority: 150, Interval: time.Second,
			Addrs: []netip.Addr{mustAddr("203.0.113.100")}}},
		{"v3 100ms two VIPs", "keepalived-v3-fast.pcap", 0, Packet{Version: 3, VRID: 51, Priority: 150,
			Interval: 100 * time.Millisecond, Addrs: []netip.Addr{mustAddr("203.0.113.100"), mustAddr("203.0.113.101")}}},
		{"v2 PASS", "keepalived-v2-pass.pcap", 0, Packet{Version: 2, VRID: 51, Priority: 150, Interval: time.Second,
			AuthType: AuthSimple, AuthData: pass, Addrs: []netip.Addr{mustAddr("203.0.113.100")}}},
		{"v3 priority 0 on stop", "keepalived-v3-prio0.pcap", 2, Packet{Version: 3, VRID: 51, Priority: 0,
			Interval: time.Second, Addrs: []netip.Addr{mustAddr("203.0.113.100")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkts := readPcap(t, tt.file)
			ip := pkts[tt.idx]
			if ip.ttl != 255 || ip.src != src || ip.dst != dst {
				t.Fatalf("IP header: ttl %d %v > %v", ip.ttl, ip.src, ip.dst)
			}
			if err := VerifyChecksum(ip.payload, ip.src, ip.dst); err != nil {
				t.Fatalf("VerifyChecksum: %v", err)
			}
			var got Packet
			if err := got.UnmarshalBinary(ip.payload); err != nil {
				t.Fatalf("UnmarshalBinary: %v", err)
			}
			want := tt.want
			want.Checksum = binary.BigEndian.Uint16(ip.payload[6:])
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("decoded\n got %+v\nwant %+v", got, want)
			}
			enc := tt.want
			enc.Src, enc.Dst = ip.src, ip.dst
			b, err := enc.MarshalBinary()
			if err != nil {
				t.Fatalf("MarshalBinary: %v", err)
			}
			if !bytes.Equal(b, ip.payload) {
				t.Fatalf("encoded\n got % x\nwant % x", b, ip.payload)
			}
		})
	}
}

func TestChecksumDetectsCorruption(t *testing.T) {
	ip := readPcap(t, "keepalived-v3.pcap")[0]
	tests := []struct {
		name     string
		mutate   func(b []byte)
		src, dst netip.Addr
	}{
		{"flipped priority", func(b []byte) { b[2] ^= 1 }, ip.src, ip.dst},
		{"flipped address", func(b []byte) { b[11] ^= 0x80 }, ip.src, ip.dst},
		{"other source (pseudo-header)", func([]byte) {}, mustAddr("203.0.113.12"), ip.dst},
		{"unicast destination (pseudo-header)", func([]byte) {}, ip.src, mustAddr("203.0.113.12")},
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
	// v2 has no pseudo-header: another source must still verify.
	v2 := readPcap(t, "keepalived-v2-pass.pcap")[0]
	if err := VerifyChecksum(v2.payload, mustAddr("198.51.100.1"), mustAddr("198.51.100.2")); err != nil {
		t.Fatalf("v2 checksum depends on addresses: %v", err)
	}
}

func TestUnmarshalErrors(t *testing.T) {
	v3 := readPcap(t, "keepalived-v3.pcap")[0].payload
	v2 := readPcap(t, "keepalived-v2-pass.pcap")[0].payload
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"short header", v3[:7], ErrTruncated},
		{"v3 missing address", v3[:10], ErrTruncated},
		{"v2 missing auth data", v2[:15], ErrTruncated},
		{"version 1", append([]byte{0x11}, v3[1:]...), ErrMalformed},
		{"version 4", append([]byte{0x41}, v3[1:]...), ErrMalformed},
		{"type 2", append([]byte{0x32}, v3[1:]...), ErrMalformed},
		{"v3 zero interval", func() []byte { b := bytes.Clone(v3); b[4], b[5] = 0xf0, 0; return b }(), ErrMalformed},
		{"v2 zero interval", func() []byte { b := bytes.Clone(v2); b[5] = 0; return b }(), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Packet
			if err := p.UnmarshalBinary(tt.b); !errors.Is(err, tt.want) {
				t.Fatalf("UnmarshalBinary = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestMarshalErrors(t *testing.T) {
	src, dst := mustAddr("203.0.113.11"), MulticastGroup()
	vip := []netip.Addr{mustAddr("203.0.113.100")}
	tests := []struct {
		name string
		p    Packet
	}{
		{"version 0", Packet{VRID: 1, Interval: time.Second, Src: src, Dst: dst}},
		{"v3 interval 5ms", Packet{Version: 3, VRID: 1, Interval: 5 * time.Millisecond, Src: src, Dst: dst}},
		{"v3 interval 41s", Packet{Version: 3, VRID: 1, Interval: 41 * time.Second, Src: src, Dst: dst}},
		{"v3 interval 15ms", Packet{Version: 3, VRID: 1, Interval: 15 * time.Millisecond, Src: src, Dst: dst}},
		{"v3 no source", Packet{Version: 3, VRID: 1, Interval: time.Second, Dst: dst}},
		{"v2 interval 500ms", Packet{Version: 2, VRID: 1, Interval: 500 * time.Millisecond}},
		{"v2 interval 256s", Packet{Version: 2, VRID: 1, Interval: 256 * time.Second}},
		{"IPv6 VIP", Packet{Version: 3, VRID: 1, Interval: time.Second, Src: src, Dst: dst,
			Addrs: []netip.Addr{mustAddr("2001:db8::1")}}},
		{"256 VIPs", Packet{Version: 3, VRID: 1, Interval: time.Second, Src: src, Dst: dst,
			Addrs: make([]netip.Addr, 256)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.p.MarshalBinary(); !errors.Is(err, ErrMalformed) {
				t.Fatalf("MarshalBinary = %v, want ErrMalformed", err)
			}
		})
	}
	ok := Packet{Version: 3, VRID: 1, Interval: time.Second, Src: src, Dst: dst, Addrs: vip}
	if _, err := ok.MarshalBinary(); err != nil {
		t.Fatalf("valid packet: %v", err)
	}
}

func FuzzPacket(f *testing.F) {
	for _, name := range []string{"keepalived-v3.pcap", "keepalived-v3-fast.pcap", "keepalived-v2-pass.pcap", "keepalived-v3-prio0.pcap"} {
		for _, ip := range readPcap(f, name) {
			f.Add(ip.payload)
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0x31, 1, 100, 0, 0, 100, 0, 0})
	src, dst := mustAddr("203.0.113.11"), MulticastGroup()
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = VerifyChecksum(b, src, dst)
		var p Packet
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
		var q Packet
		if err := q.UnmarshalBinary(enc); err != nil {
			t.Fatalf("decode own encoding: %v", err)
		}
		q.Src, q.Dst = src, dst
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("round trip\n got %+v\nwant %+v", q, p)
		}
		// Apart from reserved bits and the checksum, the encoding equals the input prefix.
		in := bytes.Clone(b[:len(enc)])
		if in[0]>>4 == 3 {
			in[4] &= 0x0f
		}
		in[6], in[7], enc[6], enc[7] = 0, 0, 0, 0
		if !bytes.Equal(in, enc) {
			t.Fatalf("re-encoding differs\n got % x\nwant % x", enc, in)
		}
	})
}

func BenchmarkMarshal(b *testing.B) {
	p := Packet{Version: 3, VRID: 51, Priority: 150, Interval: time.Second, Src: mustAddr("203.0.113.11"),
		Dst: MulticastGroup(), Addrs: []netip.Addr{mustAddr("203.0.113.100")}}
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = p.AppendBinary(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}
