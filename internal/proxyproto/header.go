// Package proxyproto receives the PROXY protocol (HAProxy's "PROXY
// protocol" specification, versions 1 and 2): a front proxy such as
// HAProxy (`server ... send-proxy-v2`) or a cloud load balancer writes
// the original client's address in a header before the connection's
// first byte, and kclb takes it as the client address for the path
// policy, forwarded headers, access log and rate limits.
//
// Parse is the wire format alone, a pure function over bytes (fuzzed);
// Listener wraps a net.Listener: it accepts connections only from the
// configured sources and reads each header in the connection's own
// goroutine (on its first Read or RemoteAddr), under a timeout, so a
// slow sender never delays another accept.
//
// The parser is this package's own (about 200 lines) rather than
// github.com/pires/go-proxyproto: kclb needs only the receiving side, a
// strict parser with a fuzz test it owns, and no new dependency (that
// module's newest release needs a newer Go than kclb builds with).
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
)

// Command is the v2 command: a proxied connection or a local one (the
// sender's own health check, whose addresses are the real ones).
type Command uint8

const (
	// Local: the connection is the sender's own; use its real addresses.
	Local Command = iota
	// Proxy: the connection relays a client's; Source is the client.
	Proxy
)

// String returns "LOCAL" or "PROXY".
func (c Command) String() string {
	if c == Local {
		return "LOCAL"
	}
	return "PROXY"
}

// Header is a parsed PROXY header.
type Header struct {
	// Version is 1 or 2.
	Version int
	// Command is Proxy, or Local for a v2 LOCAL header.
	Command Command
	// Source and Dest are the client's and the front proxy's addresses
	// as the sender saw them. Both are invalid (zero) for a LOCAL
	// header, v1 "UNKNOWN", and v2 families other than TCP/UDP over
	// IPv4/IPv6 (the connection's real addresses stand).
	Source, Dest netip.AddrPort
	// TLVs are the v2 type-length-value fields, in order; their values
	// alias the parsed buffer.
	TLVs []TLV
}

// TLV is one v2 type-length-value field (PP2_TYPE_*).
type TLV struct {
	Type  uint8
	Value []byte
}

// Sizes of the protocol.
const (
	// MaxV1 is the longest v1 header, CRLF included (the specification's
	// 107 bytes).
	MaxV1 = 107
	// MaxV2 is the longest v2 header this package accepts: 16 bytes plus
	// 4080 of addresses and TLVs. Senders' TLVs (unique id, ALPN, SNI,
	// TLS details) stay far below it; a longer header is refused.
	MaxV2 = 4096
)

var (
	v1Prefix = []byte("PROXY ")
	v2Sig    = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// Errors Parse returns.
var (
	// ErrIncomplete: b is a valid beginning of a header; read more.
	ErrIncomplete = errors.New("proxyproto: incomplete header")
	// ErrNoHeader: the connection does not start with a PROXY header.
	ErrNoHeader = errors.New("proxyproto: no PROXY header")
)

// Parse parses the header at the start of b and returns it with its
// length. It returns ErrIncomplete when b is a proper prefix of a header
// that may still be valid, ErrNoHeader when b cannot start one, and
// another error for a malformed header.
func Parse(b []byte) (Header, int, error) {
	switch {
	case len(b) == 0:
		return Header{}, 0, ErrIncomplete
	case b[0] == 'P':
		if n := min(len(b), len(v1Prefix)); !bytes.Equal(b[:n], v1Prefix[:n]) {
			return Header{}, 0, ErrNoHeader
		}
		return parseV1(b)
	case b[0] == '\r':
		if n := min(len(b), len(v2Sig)); !bytes.Equal(b[:n], v2Sig[:n]) {
			return Header{}, 0, ErrNoHeader
		}
		return parseV2(b)
	}
	return Header{}, 0, ErrNoHeader
}

func parseV1(b []byte) (Header, int, error) {
	end := bytes.Index(b[:min(len(b), MaxV1)], []byte("\r\n"))
	if end < 0 {
		if len(b) >= MaxV1 || bytes.IndexByte(b, '\n') >= 0 {
			return Header{}, 0, errors.New("proxyproto: v1 header without CRLF within 107 bytes")
		}
		return Header{}, 0, ErrIncomplete
	}
	h := Header{Version: 1, Command: Proxy}
	fields := bytes.Split(b[len(v1Prefix):end], []byte(" "))
	switch string(fields[0]) {
	case "UNKNOWN":
		// The sender could not tell; the rest of the line is ignored.
		return h, end + 2, nil
	case "TCP4", "TCP6":
	default:
		return Header{}, 0, fmt.Errorf("proxyproto: v1 protocol %q is not TCP4, TCP6 or UNKNOWN", fields[0])
	}
	if len(fields) != 5 {
		return Header{}, 0, fmt.Errorf("proxyproto: v1 header has %d fields, want 6", len(fields)+1)
	}
	v6 := string(fields[0]) == "TCP6"
	var addrs [2]netip.Addr
	for i := range addrs {
		a, err := netip.ParseAddr(string(fields[1+i]))
		if err != nil || a.Is6() != v6 || a.Zone() != "" || (v6 && a.Is4In6()) {
			return Header{}, 0, fmt.Errorf("proxyproto: v1 address %q is not an %s address", fields[1+i], fields[0])
		}
		addrs[i] = a
	}
	var ports [2]uint16
	for i := range ports {
		f := fields[3+i]
		p, err := strconv.ParseUint(string(f), 10, 16)
		if err != nil || len(f) == 0 || (f[0] == '0' && len(f) > 1) {
			return Header{}, 0, fmt.Errorf("proxyproto: v1 port %q is not a number in 0..65535", f)
		}
		ports[i] = uint16(p)
	}
	h.Source = netip.AddrPortFrom(addrs[0], ports[0])
	h.Dest = netip.AddrPortFrom(addrs[1], ports[1])
	return h, end + 2, nil
}

func parseV2(b []byte) (Header, int, error) {
	if len(b) < 16 {
		return Header{}, 0, ErrIncomplete
	}
	if b[12]>>4 != 2 {
		return Header{}, 0, fmt.Errorf("proxyproto: v2 version nibble %d, want 2", b[12]>>4)
	}
	h := Header{Version: 2}
	switch b[12] & 0xf {
	case 0:
		h.Command = Local
	case 1:
		h.Command = Proxy
	default:
		return Header{}, 0, fmt.Errorf("proxyproto: v2 command %d is not LOCAL or PROXY", b[12]&0xf)
	}
	n := 16 + int(binary.BigEndian.Uint16(b[14:16]))
	if n > MaxV2 {
		return Header{}, 0, fmt.Errorf("proxyproto: v2 header of %d bytes exceeds %d", n, MaxV2)
	}
	if len(b) < n {
		return Header{}, 0, ErrIncomplete
	}
	body := b[16:n]
	var alen int
	family, transport := b[13]>>4, b[13]&0xf
	if transport > 2 {
		return Header{}, 0, fmt.Errorf("proxyproto: v2 transport %d is not UNSPEC, STREAM or DGRAM", transport)
	}
	switch family {
	case 0: // AF_UNSPEC: no address
	case 1:
		alen = 12
	case 2:
		alen = 36
	case 3:
		alen = 216 // AF_UNIX: two 108-byte paths, not used
	default:
		return Header{}, 0, fmt.Errorf("proxyproto: v2 address family %d is not known", family)
	}
	if len(body) < alen {
		return Header{}, 0, fmt.Errorf("proxyproto: v2 header of %d bytes is too short for its %d address bytes", n, alen)
	}
	if h.Command == Proxy && transport != 0 {
		switch family {
		case 1:
			h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[0:4])), binary.BigEndian.Uint16(body[8:10]))
			h.Dest = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[4:8])), binary.BigEndian.Uint16(body[10:12]))
		case 2:
			h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[0:16])).Unmap(), binary.BigEndian.Uint16(body[32:34]))
			h.Dest = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[16:32])).Unmap(), binary.BigEndian.Uint16(body[34:36]))
		}
	}
	for rest := body[alen:]; len(rest) > 0; {
		if len(rest) < 3 {
			return Header{}, 0, errors.New("proxyproto: v2 TLV cut short")
		}
		l := int(binary.BigEndian.Uint16(rest[1:3]))
		if len(rest) < 3+l {
			return Header{}, 0, fmt.Errorf("proxyproto: v2 TLV type 0x%02x of %d bytes overruns the header", rest[0], l)
		}
		h.TLVs = append(h.TLVs, TLV{Type: rest[0], Value: rest[3 : 3+l : 3+l]})
		rest = rest[3+l:]
	}
	return h, n, nil
}

// AppendV2 appends a v2 PROXY header for a TCP connection from src to
// dst (both IPv4 or both IPv6), with tlvs, to b. It is the sending side
// for tests and tools; kclb does not send PROXY headers to Keycloak.
func AppendV2(b []byte, src, dst netip.AddrPort, tlvs ...TLV) []byte {
	b = append(b, v2Sig...)
	b = append(b, 0x21)
	var addr []byte
	if src.Addr().Is4() {
		b = append(b, 0x11)
		s, d := src.Addr().As4(), dst.Addr().As4()
		addr = append(append(addr, s[:]...), d[:]...)
	} else {
		b = append(b, 0x21)
		s, d := src.Addr().As16(), dst.Addr().As16()
		addr = append(append(addr, s[:]...), d[:]...)
	}
	addr = binary.BigEndian.AppendUint16(addr, src.Port())
	addr = binary.BigEndian.AppendUint16(addr, dst.Port())
	for _, t := range tlvs {
		addr = append(addr, t.Type)
		addr = binary.BigEndian.AppendUint16(addr, uint16(len(t.Value)))
		addr = append(addr, t.Value...)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(addr)))
	return append(b, addr...)
}
