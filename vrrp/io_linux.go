package vrrp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"

	"github.com/mdlayher/arp"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// tosCS6 is the IP TOS keepalived sends adverts with (DSCP CS6, network control).
const tosCS6 = 0xc0

// openPlatform opens the raw protocol 112 socket (IPv4 or IPv6, by the VIPs' family), the
// netlink VIP manager and the ARP client (IPv6: the ICMPv6 socket for Neighbor
// Advertisements) on o.Interface. It needs CAP_NET_RAW and CAP_NET_ADMIN.
func openPlatform(o *Options) (*platform, error) {
	ifi, err := net.InterfaceByName(o.Interface)
	if err != nil {
		return nil, err
	}
	v6 := isIPv6(o.VIPs)
	local := o.SourceAddr
	if !local.IsValid() {
		if v6 {
			local, err = linkLocalAddr(ifi)
		} else {
			local, err = primaryAddr(ifi, o.VIPs)
		}
		if err != nil {
			return nil, err
		}
	}
	var c advertConn
	if v6 {
		c, err = listenVRRP6(ifi, local)
	} else {
		c, err = listenVRRP(ifi, local)
	}
	if err != nil {
		return nil, err
	}
	link, err := netlink.LinkByIndex(ifi.Index)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("netlink link %s: %w", ifi.Name, err)
	}
	linkUp := func() (bool, error) {
		l, err := netlink.LinkByIndex(ifi.Index)
		if err != nil {
			return false, fmt.Errorf("link state of %s: %w", ifi.Name, err)
		}
		f := l.Attrs().RawFlags
		return f&unix.IFF_UP != 0 && f&unix.IFF_RUNNING != 0, nil
	}
	if v6 {
		// The link is usable for IPv6 VRRP only while the advert source is: a link-local
		// address in duplicate address detection again (after link down/up) cannot send,
		// and a Master that cannot advertise would hold the VIP alongside the peer's.
		linkState := linkUp
		linkUp = func() (bool, error) {
			if up, err := linkState(); !up || err != nil {
				return up, err
			}
			return linkLocalUsable(ifi, local)
		}
	}
	return &platform{conn: c, vips: &linuxVIPs{ifi: ifi, link: link}, local: local, linkUp: linkUp}, nil
}

// primaryAddr returns the first IPv4 address of ifi that is not one of the VIPs.
func primaryAddr(ifi *net.Interface, vips []netip.Prefix) (netip.Addr, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("addresses of %s: %w", ifi.Name, err)
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok || !ip.Unmap().Is4() {
			continue
		}
		ip = ip.Unmap()
		isVIP := false
		for _, v := range vips {
			if v.Addr() == ip {
				isVIP = true
			}
		}
		if !isVIP {
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("%s has no IPv4 address besides the VIPs", ifi.Name)
}

// linuxConn is the raw IP protocol 112 socket of one instance.
type linuxConn struct {
	ifi   *net.Interface
	local netip.Addr
	raw   *net.IPConn
	pc    *ipv4.PacketConn
	rc    syscall.RawConn
	wcm   ipv4.ControlMessage // source and interface of sent adverts
}

func listenVRRP(ifi *net.Interface, local netip.Addr) (*linuxConn, error) {
	noDF := func(fd int) error { // no DF bit, like keepalived
		return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT)
	}
	raw, rc, err := listenRaw(ifi, "ip4:112", "0.0.0.0", noDF)
	if err != nil {
		return nil, err
	}
	pc := ipv4.NewPacketConn(raw)
	group := &net.IPAddr{IP: net.IP(MulticastGroup().AsSlice())}
	err = setupSteps(pc, ifi, []setupStep{
		{"join 224.0.0.18", pc.JoinGroup(ifi, group)},
		{"multicast interface", pc.SetMulticastInterface(ifi)},
		{"multicast TTL", pc.SetMulticastTTL(255)},
		{"TTL", pc.SetTTL(255)},
		{"multicast loopback", pc.SetMulticastLoopback(false)},
		{"TOS", pc.SetTOS(tosCS6)},
		{"control messages", pc.SetControlMessage(ipv4.FlagTTL|ipv4.FlagDst|ipv4.FlagInterface, true)},
	})
	if err != nil {
		return nil, err
	}
	return &linuxConn{ifi: ifi, local: local, raw: raw, pc: pc, rc: rc,
		wcm: ipv4.ControlMessage{Src: net.IP(local.AsSlice()), IfIndex: ifi.Index}}, nil
}

func (c *linuxConn) ReadFrom(b []byte) (int, ipInfo, error) {
	for {
		n, cm, src, err := c.pc.ReadFrom(b)
		if err != nil {
			return 0, ipInfo{}, err
		}
		if cm == nil {
			return n, advertInfo(src, nil, -1, false), nil
		}
		if cm.IfIndex != 0 && cm.IfIndex != c.ifi.Index {
			continue // SO_BINDTODEVICE makes this rare; be safe
		}
		return n, advertInfo(src, cm.Dst, cm.TTL, false), nil
	}
}

func (c *linuxConn) WriteTo(b []byte, dst netip.Addr) error {
	_, err := c.pc.WriteTo(b, &c.wcm, &net.IPAddr{IP: net.IP(dst.AsSlice())})
	return err
}

func (c *linuxConn) Pending() bool { return pending(c.rc) }

func (c *linuxConn) Close() error { return closeConn(c.pc) }

// listenRaw opens a raw IP socket of network ("ip4:112", "ip6:112",
// "ip6:ipv6-icmp") on laddr, bound to ifi (SO_BINDTODEVICE), with opt
// (if not nil) applied to its descriptor before it is bound.
func listenRaw(ifi *net.Interface, network, laddr string, opt func(fd int) error) (*net.IPConn, syscall.RawConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifi.Name)
			if serr == nil && opt != nil {
				serr = opt(int(fd))
			}
		})
		return errors.Join(err, serr)
	}}
	pconn, err := lc.ListenPacket(context.Background(), network, laddr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen %s on %s: %w", network, ifi.Name, err)
	}
	raw := pconn.(*net.IPConn)
	rc, err := raw.SyscallConn()
	if err != nil {
		raw.Close()
		return nil, nil, fmt.Errorf("raw conn: %w", err)
	}
	return raw, rc, nil
}

// advertInfo is what ReadFrom reports of a received advert: its source,
// its destination and its TTL (hop limit), -1 when unknown.
func advertInfo(src net.Addr, dst net.IP, ttl int, v6 bool) ipInfo {
	addr := func(ip net.IP) netip.Addr {
		if !v6 {
			ip = ip.To4()
		}
		a, _ := netip.AddrFromSlice(ip)
		return a
	}
	h := ipInfo{TTL: ttl}
	if ia, ok := src.(*net.IPAddr); ok {
		h.Src = addr(ia.IP)
	}
	if dst != nil {
		h.Dst = addr(dst)
	}
	return h
}

// pending reports whether the socket has a received datagram queued.
func pending(rc syscall.RawConn) bool {
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil || ierr != nil {
		return false
	}
	return n > 0
}

// closeConn closes c; closing it twice is not an error.
func closeConn(c io.Closer) error {
	err := c.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// setupStep is one socket option set while opening a socket, and its result.
type setupStep struct {
	what string
	err  error
}

// setupSteps closes c and returns the first failed step's error, naming the step and ifi.
func setupSteps(c io.Closer, ifi *net.Interface, steps []setupStep) error {
	for _, s := range steps {
		if s.err != nil {
			c.Close()
			return fmt.Errorf("%s on %s: %w", s.what, ifi.Name, s.err)
		}
	}
	return nil
}

// linuxVIPs manages VIPs with netlink and announces them with gratuitous ARP (IPv4) or
// unsolicited Neighbor Advertisements (IPv6).
type linuxVIPs struct {
	ifi  *net.Interface
	link netlink.Link
	arp  *arp.Client // opened on first use; used only by the effects goroutine
	nd   *ndSender   // likewise, for IPv6 VIPs
}

func (v *linuxVIPs) Add(vips []netip.Prefix) error {
	var errs []error
	for _, p := range vips {
		a := &netlink.Addr{IPNet: prefixIPNet(p)}
		if p.Addr().Is6() {
			// No duplicate address detection: the VIP must be usable (bindable, a valid
			// source) at once, and its previous holder is being replaced on purpose.
			a.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrReplace(v.link, a); err != nil {
			errs = append(errs, fmt.Errorf("add %v to %s: %w", p, v.ifi.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (v *linuxVIPs) Remove(vips []netip.Prefix) error {
	var errs []error
	for _, p := range vips {
		a := &netlink.Addr{IPNet: prefixIPNet(p)}
		if err := netlink.AddrDel(v.link, a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove %v from %s: %w", p, v.ifi.Name, err))
		}
	}
	return errors.Join(errs...)
}

// GARP sends ARP announcements like keepalived: requests "who-has VIP tell VIP" from the
// interface MAC to the broadcast address. For IPv6 VIPs it sends unsolicited Neighbor
// Advertisements instead (sendNA).
func (v *linuxVIPs) GARP(vips []netip.Prefix, count int) error {
	if isIPv6(vips) {
		return v.sendNA(vips, count)
	}
	if v.arp == nil {
		c, err := arp.Dial(v.ifi)
		if err != nil {
			return fmt.Errorf("arp on %s: %w", v.ifi.Name, err)
		}
		v.arp = c
	}
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	var errs []error
	for _, p := range vips {
		pkt, err := arp.NewPacket(arp.OperationRequest, v.ifi.HardwareAddr, p.Addr(), bcast, p.Addr())
		if err != nil {
			errs = append(errs, fmt.Errorf("garp %v: %w", p, err))
			continue
		}
		for range count {
			if err := v.arp.WriteTo(pkt, bcast); err != nil {
				errs = append(errs, fmt.Errorf("garp %v on %s: %w", p, v.ifi.Name, err))
				break
			}
		}
	}
	return errors.Join(errs...)
}

func (v *linuxVIPs) Close() error {
	var errs []error
	if v.arp != nil {
		errs = append(errs, v.arp.Close())
		v.arp = nil
	}
	if v.nd != nil {
		errs = append(errs, v.nd.Close())
		v.nd = nil
	}
	return errors.Join(errs...)
}

func prefixIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// RemoveVIPs removes those of vips that are configured on the interface called ifname
// (with whatever prefix length) and returns the ones it removed. It is for cleaning up
// after a process that died without resigning (kill -9, OOM kill, a watchdog kill): such
// a node's kernel would keep answering ARP (IPv6: Neighbor Solicitations) for the VIPs.
// The caller must make sure that no live instance holds them. It needs CAP_NET_ADMIN.
func RemoveVIPs(ifname string, vips []netip.Prefix) ([]netip.Prefix, error) {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("vrrp: interface %s: %w", ifname, err)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("vrrp: addresses of %s: %w", ifname, err)
	}
	var removed []netip.Prefix
	var errs []error
	for _, v := range vips {
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if ip = ip.Unmap(); !ok || ip != v.Addr() {
				continue
			}
			if err := netlink.AddrDel(link, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				errs = append(errs, fmt.Errorf("vrrp: remove %v from %s: %w", v, ifname, err))
				continue
			}
			ones, _ := a.Mask.Size()
			removed = append(removed, netip.PrefixFrom(ip, ones))
		}
	}
	return removed, errors.Join(errs...)
}
