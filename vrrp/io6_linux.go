package vrrp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// dadWait bounds how long openPlatform waits for the interface's link-local address to
// finish duplicate address detection: the kernel refuses to send from a tentative address.
const dadWait = 5 * time.Second

// linkLocalAddr returns the interface's IPv6 link-local address, the source of IPv6 adverts
// (RFC 5798 §5.1.2.1), waiting up to dadWait while it is still tentative.
func linkLocalAddr(ifi *net.Interface) (netip.Addr, error) {
	deadline := time.Now().Add(dadWait)
	for {
		lls, err := linkLocals(ifi)
		if err != nil {
			return netip.Addr{}, err
		}
		var tentative netip.Addr
		for _, ll := range lls {
			if ll.usable {
				return ll.addr, nil
			}
			tentative = ll.addr
		}
		if !tentative.IsValid() {
			return netip.Addr{}, fmt.Errorf("%s has no IPv6 link-local address (IPv6 VRRP adverts are sent from it; is IPv6 disabled or addr_gen_mode none?)", ifi.Name)
		}
		if time.Now().After(deadline) {
			return netip.Addr{}, fmt.Errorf("link-local address %v of %s is still tentative after %v (duplicate address detection failed or still running)", tentative, ifi.Name, dadWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// linkLocalUsable reports whether local is configured on ifi and done with duplicate
// address detection, so adverts can be sent from it.
func linkLocalUsable(ifi *net.Interface, local netip.Addr) (bool, error) {
	lls, err := linkLocals(ifi)
	if err != nil {
		return false, err
	}
	for _, ll := range lls {
		if ll.addr == local {
			return ll.usable, nil
		}
	}
	return false, nil
}

// linkLocal is one IPv6 link-local address of an interface.
type linkLocal struct {
	addr   netip.Addr
	usable bool // neither tentative nor failed duplicate address detection
}

// linkLocals lists the IPv6 link-local addresses of ifi.
func linkLocals(ifi *net.Interface) ([]linkLocal, error) {
	addrs, err := netlink.AddrList(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: ifi.Index}}, netlink.FAMILY_V6)
	if err != nil {
		return nil, fmt.Errorf("IPv6 addresses of %s: %w", ifi.Name, err)
	}
	var out []linkLocal
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || !ip.Is6() || !ip.IsLinkLocalUnicast() {
			continue
		}
		out = append(out, linkLocal{addr: ip, usable: a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0})
	}
	return out, nil
}

// linuxConn6 is the raw IPv6 protocol 112 socket of one IPv6 instance.
type linuxConn6 struct {
	ifi *net.Interface
	pc  *ipv6.PacketConn
	rc  syscall.RawConn
	wcm ipv6.ControlMessage // source and interface of sent adverts
}

// listenVRRP6 opens the IPv6 advert socket: joined to ff02::12 on ifi, hop limit 255
// (RFC 5798 §5.1.2.3), traffic class CS6 like keepalived, no loopback of our own adverts.
// The VRRP checksum is computed in user space (packet.go), so IPV6_CHECKSUM stays off.
func listenVRRP6(ifi *net.Interface, local netip.Addr) (*linuxConn6, error) {
	raw, rc, err := listenRaw(ifi, "ip6:112", "::", nil)
	if err != nil {
		return nil, err
	}
	pc := ipv6.NewPacketConn(raw)
	group := &net.IPAddr{IP: net.IP(MulticastGroup6().AsSlice())}
	err = setupSteps(pc, ifi, []setupStep{
		{"join ff02::12", pc.JoinGroup(ifi, group)},
		{"multicast interface", pc.SetMulticastInterface(ifi)},
		{"multicast hop limit", pc.SetMulticastHopLimit(255)},
		{"hop limit", pc.SetHopLimit(255)},
		{"multicast loopback", pc.SetMulticastLoopback(false)},
		{"traffic class", pc.SetTrafficClass(tosCS6)},
		{"control messages", pc.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst|ipv6.FlagInterface, true)},
	})
	if err != nil {
		return nil, err
	}
	return &linuxConn6{ifi: ifi, pc: pc, rc: rc,
		wcm: ipv6.ControlMessage{Src: net.IP(local.AsSlice()), IfIndex: ifi.Index}}, nil
}

// ReadFrom returns the next advert with its hop limit in ipInfo.TTL.
func (c *linuxConn6) ReadFrom(b []byte) (int, ipInfo, error) {
	for {
		n, cm, src, err := c.pc.ReadFrom(b)
		if err != nil {
			return 0, ipInfo{}, err
		}
		if cm == nil {
			return n, advertInfo(src, nil, -1, true), nil
		}
		if cm.IfIndex != 0 && cm.IfIndex != c.ifi.Index {
			continue
		}
		return n, advertInfo(src, cm.Dst, cm.HopLimit, true), nil
	}
}

func (c *linuxConn6) WriteTo(b []byte, dst netip.Addr) error {
	_, err := c.pc.WriteTo(b, &c.wcm, &net.IPAddr{IP: net.IP(dst.AsSlice()), Zone: c.ifi.Name})
	return err
}

func (c *linuxConn6) Pending() bool { return pending(c.rc) }

func (c *linuxConn6) Close() error { return closeConn(c.pc) }

// ndSender sends unsolicited Neighbor Advertisements over a raw ICMPv6 socket bound to one
// interface. It receives nothing (every ICMPv6 type is filtered out).
type ndSender struct {
	ifi *net.Interface
	pc  *ipv6.PacketConn
	buf []byte
}

func openND(ifi *net.Interface) (*ndSender, error) {
	raw, _, err := listenRaw(ifi, "ip6:ipv6-icmp", "::", nil)
	if err != nil {
		return nil, err
	}
	pc := ipv6.NewPacketConn(raw)
	var none ipv6.ICMPFilter
	none.SetAll(true) // block every type: this socket only sends
	err = setupSteps(pc, ifi, []setupStep{
		{"ICMPv6 filter", pc.SetICMPFilter(&none)},
		{"multicast interface", pc.SetMulticastInterface(ifi)},
		{"multicast hop limit", pc.SetMulticastHopLimit(255)}, // RFC 4861 §7.1.2: receivers drop others
		{"multicast loopback", pc.SetMulticastLoopback(false)},
	})
	if err != nil {
		return nil, err
	}
	return &ndSender{ifi: ifi, pc: pc}, nil
}

// send sends count unsolicited Neighbor Advertisements for vip from vip (as keepalived
// does: the address is ours, configured without DAD) to ff02::1.
func (s *ndSender) send(vip netip.Addr, count int) error {
	s.buf = appendNA(s.buf[:0], vip, vip, s.ifi.HardwareAddr)
	cm := &ipv6.ControlMessage{Src: net.IP(vip.AsSlice()), IfIndex: s.ifi.Index, HopLimit: 255}
	dst := &net.IPAddr{IP: net.IP(AllNodes().AsSlice()), Zone: s.ifi.Name}
	for range count {
		if _, err := s.pc.WriteTo(s.buf, cm, dst); err != nil {
			return err
		}
	}
	return nil
}

func (s *ndSender) Close() error { return s.pc.Close() }

// sendNA announces IPv6 VIPs with count unsolicited Neighbor Advertisements each (RFC 5798
// §6.4.2 for IPv6; RFC 4861 §7.2.6): type 136, Override set, target the VIP, the
// interface MAC as Target Link-Layer Address, to ff02::1 with hop limit 255. Neighbours
// that cache the VIP replace the old Master's MAC.
func (v *linuxVIPs) sendNA(vips []netip.Prefix, count int) error {
	if v.nd == nil {
		s, err := openND(v.ifi)
		if err != nil {
			return err
		}
		v.nd = s
	}
	var errs []error
	for _, p := range vips {
		if err := v.nd.send(p.Addr(), count); err != nil {
			errs = append(errs, fmt.Errorf("neighbor advertisement %v on %s: %w", p, v.ifi.Name, err))
		}
	}
	return errors.Join(errs...)
}
