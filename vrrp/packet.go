package vrrp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// ProtocolNumber is the IP protocol number of VRRP (RFC 5798 §5.1.1.3).
const ProtocolNumber = 112

// TypeAdvertisement is the only VRRP packet type (RFC 5798 §5.2.2).
const TypeAdvertisement = 1

// AuthType values of VRRPv2 (RFC 2338 §5.3.6, kept for compatibility by RFC 3768).
const (
	AuthNone   = 0 // no authentication
	AuthSimple = 1 // clear-text password, keepalived's "auth_type PASS"
)

// MulticastGroup returns 224.0.0.18, the IPv4 multicast group VRRP adverts are sent to
// (RFC 5798 §5.1.1.2).
func MulticastGroup() netip.Addr { return netip.AddrFrom4([4]byte{224, 0, 0, 18}) }

// MulticastGroup6 returns ff02::12, the IPv6 link-local scope multicast group VRRP adverts
// are sent to (RFC 5798 §5.1.2.2).
func MulticastGroup6() netip.Addr {
	return netip.AddrFrom16([16]byte{0xff, 0x02, 15: 0x12})
}

const (
	headerLen   = 8
	authDataLen = 8
)

// Errors returned by UnmarshalBinary and VerifyChecksum. Receivers branch on them to count
// dropped packets by reason.
var (
	// ErrTruncated is returned when the message is shorter than its header or address count.
	ErrTruncated = errors.New("vrrp: truncated packet")
	// ErrMalformed is returned for an unknown version or type or an invalid field value.
	ErrMalformed = errors.New("vrrp: malformed packet")
	// ErrChecksum is returned by VerifyChecksum when the checksum does not match.
	ErrChecksum = errors.New("vrrp: bad checksum")
)

// Packet is one VRRP advertisement: version 2 (RFC 3768, IPv4) or 3 (RFC 5798, IPv4 or
// IPv6). The zero value is not a valid packet: Version and VRID must be set before
// MarshalBinary.
type Packet struct {
	// Version is 2 or 3.
	Version uint8
	// VRID is the virtual router ID, 1..255.
	VRID uint8
	// Priority is 0 (Master resigning), 1..254, or 255 (address owner).
	Priority uint8
	// Interval is the advertisement interval. Version 3 carries it in centiseconds
	// (10 ms .. 40.95 s), version 2 in whole seconds (1 .. 255 s); MarshalBinary rejects
	// values that the version cannot represent.
	Interval time.Duration
	// AuthType is the VRRPv2 authentication type (AuthNone or AuthSimple). Ignored for version 3.
	AuthType uint8
	// AuthData is the VRRPv2 authentication data: for AuthSimple the password, zero padded
	// to 8 bytes. Ignored for version 3.
	AuthData [authDataLen]byte
	// Addrs are the virtual addresses, at most 255: IPv4, or IPv6 when IPv6 is set.
	Addrs []netip.Addr
	// IPv6 selects the IPv6 form of version 3 (RFC 5798 §5.1.2, §5.2.9): 16-byte addresses
	// and the IPv6 pseudo-header. The message does not say which family it belongs to, so
	// UnmarshalBinary reads this field (set it for a message received over IPv6) and
	// leaves it unchanged.
	IPv6 bool
	// Checksum is set by UnmarshalBinary to the received checksum and by MarshalBinary to
	// the computed one.
	Checksum uint16
	// Src and Dst are the IP header addresses (IPv6: the link-local source and ff02::12 or
	// a unicast peer). They are not part of the VRRP message; MarshalBinary uses them for
	// the version 3 pseudo-header checksum.
	Src, Dst netip.Addr
}

// Len returns the length in bytes of the marshalled message.
func (p *Packet) Len() int {
	n := headerLen + p.addrLen()*len(p.Addrs)
	if p.Version == 2 {
		n += authDataLen
	}
	return n
}

// addrLen is the size of one address in the message.
func (p *Packet) addrLen() int {
	if p.IPv6 {
		return 16
	}
	return 4
}

// MarshalBinary encodes the advertisement and computes its checksum: for version 3 over the
// message and a pseudo-header built from Src and Dst (which must then be IPv4, or IPv6 when
// p.IPv6 is set), for version 2 over the message only. It sets p.Checksum.
func (p *Packet) MarshalBinary() ([]byte, error) {
	b := make([]byte, p.Len())
	if err := p.marshalTo(b); err != nil {
		return nil, err
	}
	return b, nil
}

// AppendBinary appends the encoded advertisement to b, like MarshalBinary.
func (p *Packet) AppendBinary(b []byte) ([]byte, error) {
	n := len(b)
	b = slices.Grow(b, p.Len())[:n+p.Len()]
	if err := p.marshalTo(b[n:]); err != nil {
		return b[:n], err
	}
	return b, nil
}

func (p *Packet) marshalTo(b []byte) error {
	if len(p.Addrs) > 255 {
		return fmt.Errorf("%w: %d addresses, at most 255", ErrMalformed, len(p.Addrs))
	}
	b[0] = p.Version<<4 | TypeAdvertisement
	b[1] = p.VRID
	b[2] = p.Priority
	b[3] = uint8(len(p.Addrs))
	switch p.Version {
	case 3:
		cs := p.Interval / (10 * time.Millisecond)
		if cs < 1 || cs > 0xfff || p.Interval%(10*time.Millisecond) != 0 {
			return fmt.Errorf("%w: v3 interval %v is not 10ms..40.95s in centiseconds", ErrMalformed, p.Interval)
		}
		if p.IPv6 && (!p.Src.Is6() || p.Src.Is4In6() || !p.Dst.Is6() || p.Dst.Is4In6()) {
			return fmt.Errorf("%w: v3 over IPv6 needs IPv6 Src and Dst for the pseudo-header", ErrMalformed)
		}
		if !p.IPv6 && (!p.Src.Is4() || !p.Dst.Is4()) {
			return fmt.Errorf("%w: v3 needs IPv4 Src and Dst for the pseudo-header", ErrMalformed)
		}
		binary.BigEndian.PutUint16(b[4:], uint16(cs))
	case 2:
		if p.IPv6 {
			return fmt.Errorf("%w: VRRP version 2 has no IPv6 form", ErrMalformed)
		}
		s := p.Interval / time.Second
		if s < 1 || s > 255 || p.Interval%time.Second != 0 {
			return fmt.Errorf("%w: v2 interval %v is not 1..255 whole seconds", ErrMalformed, p.Interval)
		}
		b[4] = p.AuthType
		b[5] = uint8(s)
	default:
		return fmt.Errorf("%w: version %d", ErrMalformed, p.Version)
	}
	b[6], b[7] = 0, 0
	off := headerLen
	for _, a := range p.Addrs {
		switch {
		case p.IPv6 && (!a.Is6() || a.Is4In6()):
			return fmt.Errorf("%w: address %v is not IPv6", ErrMalformed, a)
		case p.IPv6:
			a16 := a.As16()
			copy(b[off:], a16[:])
			off += 16
		case !a.Is4():
			return fmt.Errorf("%w: address %v is not IPv4", ErrMalformed, a)
		default:
			a4 := a.As4()
			copy(b[off:], a4[:])
			off += 4
		}
	}
	if p.Version == 2 {
		copy(b[off:], p.AuthData[:])
	}
	p.Checksum = computeChecksum(p.Version, b, p.Src, p.Dst)
	binary.BigEndian.PutUint16(b[6:], p.Checksum)
	return nil
}

// UnmarshalBinary decodes an advertisement (the IP payload, without the IP header). It checks
// the structure (version 2 or 3, type advertisement, length for the address count) but not the
// checksum: call VerifyChecksum for that. p.IPv6 selects the address size (version 2 with
// IPv6 set is malformed); it, Src and Dst are left unchanged. The returned errors wrap
// ErrTruncated or ErrMalformed.
func (p *Packet) UnmarshalBinary(b []byte) error {
	if len(b) < headerLen {
		return fmt.Errorf("%w: %d bytes, header needs %d", ErrTruncated, len(b), headerLen)
	}
	version, typ := b[0]>>4, b[0]&0x0f
	if version != 2 && version != 3 {
		return fmt.Errorf("%w: version %d", ErrMalformed, version)
	}
	if typ != TypeAdvertisement {
		return fmt.Errorf("%w: type %d", ErrMalformed, typ)
	}
	if version == 2 && p.IPv6 {
		return fmt.Errorf("%w: VRRP version 2 over IPv6", ErrMalformed)
	}
	count := int(b[3])
	need := headerLen + p.addrLen()*count
	if version == 2 {
		need += authDataLen
	}
	if len(b) < need {
		return fmt.Errorf("%w: %d bytes, %d addresses need %d", ErrTruncated, len(b), count, need)
	}
	p.Version = version
	p.VRID = b[1]
	p.Priority = b[2]
	p.AuthType = 0
	p.AuthData = [authDataLen]byte{}
	if version == 3 {
		cs := binary.BigEndian.Uint16(b[4:]) & 0x0fff
		if cs == 0 {
			return fmt.Errorf("%w: zero max advert interval", ErrMalformed)
		}
		p.Interval = time.Duration(cs) * 10 * time.Millisecond
	} else {
		if b[5] == 0 {
			return fmt.Errorf("%w: zero advert interval", ErrMalformed)
		}
		p.AuthType = b[4]
		p.Interval = time.Duration(b[5]) * time.Second
	}
	p.Checksum = binary.BigEndian.Uint16(b[6:])
	if cap(p.Addrs) >= count {
		p.Addrs = p.Addrs[:count]
	} else {
		p.Addrs = make([]netip.Addr, count)
	}
	off := headerLen
	for i := range count {
		if p.IPv6 {
			p.Addrs[i] = netip.AddrFrom16([16]byte(b[off : off+16]))
			off += 16
			continue
		}
		p.Addrs[i] = netip.AddrFrom4([4]byte(b[off : off+4]))
		off += 4
	}
	if version == 2 {
		copy(p.AuthData[:], b[off:off+authDataLen])
	}
	return nil
}

// VerifyChecksum checks the checksum of the encoded message b as received from src to dst
// (the IP header addresses, both IPv4 or both IPv6; only version 3 uses them, with the
// pseudo-header of their family). It returns an error wrapping ErrChecksum on mismatch and
// ErrTruncated if b is too short to hold a header.
func VerifyChecksum(b []byte, src, dst netip.Addr) error {
	if len(b) < headerLen {
		return ErrTruncated
	}
	version := b[0] >> 4
	if version == 3 && !(src.Is4() && dst.Is4()) && !(src.Is6() && dst.Is6() && !src.Is4In6() && !dst.Is4In6()) {
		return fmt.Errorf("%w: v3 needs IPv4 or IPv6 source and destination, got %v and %v", ErrChecksum, src, dst)
	}
	// The sum over a message including its correct checksum is 0xffff, whose complement is 0.
	if s := checksumFold(checksumSum(version, b, src, dst)); s != 0xffff {
		return fmt.Errorf("%w: got %#04x, want %#04x (peer may be keepalived <= 1.3.6 with the old v3 checksum)",
			ErrChecksum, binary.BigEndian.Uint16(b[6:]), computeChecksumIgnoring(version, b, src, dst))
	}
	return nil
}

// computeChecksum returns the checksum of b, whose checksum field must be zero.
func computeChecksum(version uint8, b []byte, src, dst netip.Addr) uint16 {
	return ^checksumFold(checksumSum(version, b, src, dst))
}

// computeChecksumIgnoring returns the checksum b should carry, whatever its checksum field holds.
func computeChecksumIgnoring(version uint8, b []byte, src, dst netip.Addr) uint16 {
	s := checksumSum(version, b, src, dst) - uint32(binary.BigEndian.Uint16(b[6:]))
	return ^checksumFold(s) // no underflow: the field was added into s
}

// checksumSum adds b as big-endian 16-bit words, plus the pseudo-header for version 3
// (RFC 5798 §5.2.8): for IPv4 source, destination, zero, protocol, VRRP length; for IPv6
// (RFC 8200 §8.1) source, destination, 32-bit length, three zero bytes and next header.
// Both sum to the same words apart from the addresses.
func checksumSum(version uint8, b []byte, src, dst netip.Addr) uint32 {
	var s uint32
	if version == 3 && src.Is6() {
		s16, d16 := src.As16(), dst.As16()
		for i := 0; i < 16; i += 2 {
			s += uint32(s16[i])<<8 | uint32(s16[i+1])
			s += uint32(d16[i])<<8 | uint32(d16[i+1])
		}
		s += ProtocolNumber
		s += uint32(len(b)) // the upper 16 bits of the 32-bit length are 0 for any VRRP message
	} else if version == 3 {
		s4, d4 := src.As4(), dst.As4()
		s += uint32(s4[0])<<8 | uint32(s4[1])
		s += uint32(s4[2])<<8 | uint32(s4[3])
		s += uint32(d4[0])<<8 | uint32(d4[1])
		s += uint32(d4[2])<<8 | uint32(d4[3])
		s += ProtocolNumber
		s += uint32(len(b))
	}
	n := len(b) &^ 1
	for i := 0; i < n; i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

// checksumFold folds the carries of a 32-bit ones' complement sum into 16 bits.
func checksumFold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
