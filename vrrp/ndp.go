package vrrp

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// Neighbor Discovery constants for unsolicited Neighbor Advertisements (RFC 4861 §4.4, §7.2.6).
const (
	icmp6ProtocolNumber = 58   // IPv6 next header of ICMPv6
	icmp6TypeNA         = 136  // Neighbor Advertisement
	naFlagOverride      = 0x20 // the O bit: replace the cached link-layer address
	ndOptTargetLLAddr   = 2    // Target Link-Layer Address option
	naLen               = 24 + 8
)

// AllNodes returns ff02::1, the link-local all-nodes group unsolicited Neighbor
// Advertisements are sent to (RFC 4861 §7.2.6).
func AllNodes() netip.Addr { return netip.AddrFrom16([16]byte{0xff, 0x02, 15: 0x01}) }

// appendNA appends an unsolicited Neighbor Advertisement for target with the Override flag
// and a Target Link-Layer Address option carrying mac (an Ethernet address), as keepalived
// sends it for each IPv6 VIP on becoming Master: the IPv6-side equivalent of a gratuitous
// ARP. The ICMPv6 checksum is computed over the pseudo-header from src to ff02::1 (the
// Linux kernel recomputes it on raw ICMPv6 sockets anyway).
func appendNA(b []byte, src, target netip.Addr, mac net.HardwareAddr) []byte {
	n := len(b)
	b = append(b, make([]byte, naLen)...)
	m := b[n:]
	m[0] = icmp6TypeNA
	m[4] = naFlagOverride
	t := target.As16()
	copy(m[8:24], t[:])
	m[24] = ndOptTargetLLAddr
	m[25] = 1 // length in units of 8 bytes
	copy(m[26:32], mac)
	var s uint32
	s16, d16 := src.As16(), AllNodes().As16()
	for i := 0; i < 16; i += 2 {
		s += uint32(s16[i])<<8 | uint32(s16[i+1])
		s += uint32(d16[i])<<8 | uint32(d16[i+1])
	}
	s += icmp6ProtocolNumber + naLen
	for i := 0; i < naLen; i += 2 {
		s += uint32(m[i])<<8 | uint32(m[i+1])
	}
	binary.BigEndian.PutUint16(m[2:], ^checksumFold(s))
	return b
}
