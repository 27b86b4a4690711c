package vrrp

import (
	"net/netip"
)

// ipInfo is what the receive path needs from the IPv4 header of a received advert.
type ipInfo struct {
	Src, Dst netip.Addr
	TTL      int
}

// advertConn sends and receives VRRP messages (IP payloads) on one interface. The Linux
// implementation is a raw IP protocol 112 socket; tests use an in-memory fake.
type advertConn interface {
	// ReadFrom blocks until a message arrives and copies it into b. After Close it returns
	// an error.
	ReadFrom(b []byte) (n int, h ipInfo, err error)
	// WriteTo sends b to dst (the multicast group or a unicast peer) with TTL 255 and the
	// local primary address as source.
	WriteTo(b []byte, dst netip.Addr) error
	// Pending reports whether a received message is queued and not read yet.
	Pending() bool
	// Close unblocks ReadFrom and releases the socket. It is idempotent.
	Close() error
}

// vipManager configures the VIPs on the interface and announces them.
type vipManager interface {
	// Add configures the prefixes; present ones are not an error.
	Add(vips []netip.Prefix) error
	// Remove deconfigures the prefixes; absent ones are not an error.
	Remove(vips []netip.Prefix) error
	// GARP sends count gratuitous ARP requests for each VIP.
	GARP(vips []netip.Prefix, count int) error
	// Close releases sockets. It is idempotent.
	Close() error
}

// platform is what Run opens on the configured interface.
type platform struct {
	conn  advertConn
	vips  vipManager
	local netip.Addr // the primary IPv4 address of the interface
	// linkUp reports whether the interface is up with carrier. If nil, the link is assumed
	// to be up and not watched.
	linkUp func() (bool, error)
}

// openFunc opens the platform for an instance. The zero Instance uses openPlatform, which
// is implemented per operating system.
type openFunc func(o *Options) (*platform, error)
