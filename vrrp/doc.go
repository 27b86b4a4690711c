// Package vrrp is kclb's in-process VRRP: it moves a virtual IP address (VIP) between kclb
// nodes on one layer-2 segment, so that a standby takes over when the active node dies or
// stops.
//
// It implements VRRPv3 (RFC 5798) for IPv4 and IPv6 and, for mixed pairs with keepalived
// during a migration, VRRPv2 (RFC 3768) with keepalived's clear-text "auth_type PASS". An
// instance is of one address family, set by its VIPs, as in keepalived: IPv6 instances
// advertise from the interface's link-local address to ff02::12 with hop limit 255 (RFC
// 5798 §5.1.2), add their VIPs without duplicate address detection (nodad) and announce
// them with unsolicited Neighbor Advertisements (Override flag, to ff02::1) instead of
// gratuitous ARP. Behaviour
// follows keepalived's defaults where the RFC leaves room: the Master keeps the interface's
// real MAC and announces the VIP with gratuitous ARP requests (5 at takeover, 5 more after
// 5 s, optional periodic refresh), accept mode is on, and a stopping Master sends a
// priority-0 advert before it removes the VIP.
//
// The package is layered:
//   - packet.go: the wire format (Packet, MarshalBinary, UnmarshalBinary, VerifyChecksum),
//     IPv4 and IPv6 pseudo-header checksums; ndp.go: the Neighbor Advertisement.
//   - fsm.go: Machine, the RFC 5798 §6.4 state machine. It is pure: it takes the current
//     time as an argument and returns Actions, so every transition is tested without sleeping.
//   - track.go: health tracking in three levels (Health: ok, degraded, down) with rise/fall
//     hysteresis; each level below ok costs one TrackWeight, so the node with the better
//     view wins and equal views keep their order.
//   - instance.go: Instance, which drives a Machine from a socket and timers, runs the
//     side effects (VIP, gratuitous ARP, VIPHook, notify commands) and reports Status.
//   - *_linux.go: the raw IP protocol 112 socket (golang.org/x/net/ipv4; io6_linux.go: ipv6
//     and the raw ICMPv6 socket for Neighbor Advertisements), VIP management
//     (github.com/vishvananda/netlink) and gratuitous ARP (github.com/mdlayher/arp). Other
//     platforms build, but Run returns an error there.
//
// A node whose interface loses link or carrier (polled every advert interval, 100 ms .. 1 s)
// enters StateFault like keepalived: it releases the VIPs and stays silent until the link
// returns (for IPv6, until its link-local source has also finished duplicate address
// detection, since the kernel refuses to send from a tentative address). Tracking with TrackWeight 0 faults the same way.
//
// The package knows nothing about backends: the caller reports health with
// Instance.SetHealth (or SetHealthy) on edges and reads Instance.Status (or passes an
// Observer) for metrics. RemoveVIPs cleans up after a process that died without resigning.
// Instance.Handover is a planned handover: a Master resigns and stays Backup at priority 1
// until Handover(false).
//
// Concurrency: Run owns five goroutines. The timer goroutine sends adverts and runs the
// Master_Down timer on its own timer, so a flood of received packets cannot delay adverts;
// the receive goroutine validates packets (drops are counted per DropReason and never reach
// the Machine); an effects goroutine changes VIPs, sends gratuitous ARPs and calls the
// VIPHook in order; a notify goroutine calls the Observer and runs notify commands; a link
// goroutine polls the interface state. When Master_Down_Interval expires while an advert is
// still queued in the socket (the receive goroutine was descheduled, e.g. by a GC pause), the
// takeover waits up to 50 ms for the advert to be processed instead of failing over falsely.
//
// Sub-second adverts need CPU headroom: Status.MaxTimerLag shows how late timers ran. On a
// 2-vCPU host at load average 10-18, both kclb and keepalived were seen silent for several
// hundred milliseconds, more than the 361 ms Master_Down_Interval of 100 ms adverts. 1 s is
// the default; use 100-300 ms only on hosts with headroom.
//
// Listeners on the VIP: the Backup does not hold the VIP, so a proxy that must stay hot
// listens on 0.0.0.0 or sets IP_FREEBIND (or net.ipv4.ip_nonlocal_bind=1).
//
// Tests: unit tests run anywhere. Tests that need root create network namespaces
// (kclbv-<pid>-<n>-{a,b,c,sw}, 203.0.113.0/24, always deleted) and skip without root; the
// keepalived interop test also needs keepalived (and watches for flapping for 10 s, or 30 s
// plus a 100 ms variant with -vrrp.long or KCLB_LONG=1). KCLB_VRRP_TIMING=1 runs the failover
// measurement for kclb and keepalived, which writes a markdown table to
// KCLB_VRRP_TIMING_OUT (KCLB_VRRP_TIMING_RUNS runs per row). KCLB_LAB_LOGDIR keeps the
// helper logs, KCLB_VRRP_TCPDUMP=1 adds a capture of the bridge. testdata/ holds adverts
// (IPv4 and IPv6) and Neighbor Advertisements captured from keepalived 2.2.7 and the script
// that captured them. The IPv6 lab (lab6_linux_test.go) adds 2001:db8::/64 and the
// link-local addresses, with duplicate address detection off.
//
// Firewalls must let IP protocol 112 and the group 224.0.0.18 (IPv6: ff02::12) through (for
// example "iptables -A INPUT -p vrrp -j ACCEPT", "ip6tables -A INPUT -p vrrp -j ACCEPT");
// where multicast is filtered use unicast peers.
package vrrp
