package vrrp

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// fieldsOf lists "Field: Msg" of every *FieldError err joins.
func fieldsOf(t *testing.T, err error) []string {
	t.Helper()
	var out []string
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("%T %v is not a *FieldError", e, e)
		}
		out = append(out, fe.Error())
	}
	if err != nil {
		walk(err)
	}
	return out
}

func TestValidate(t *testing.T) {
	vip4 := []netip.Prefix{netip.MustParsePrefix("203.0.113.100/24")}
	vip6 := []netip.Prefix{netip.MustParsePrefix("2001:db8::100/64")}
	ok := Options{Interface: "eth0", VRID: 51, VIPs: vip4}
	with := func(f func(*Options)) Options { o := ok; f(&o); return o }
	tests := []struct {
		name string
		opts Options
		want []string // "Field: Msg", in order
	}{
		{"defaults", ok, nil},
		{"every range at its edge", with(func(o *Options) {
			o.VRID, o.Priority, o.TrackWeight, o.AdvertInterval = 255, 255, 254, 40950*time.Millisecond
			o.GARPRepeat, o.GARPDelay = -1, -1 // the documented "none"
		}), nil},
		{"version 2 with password", with(func(o *Options) { o.Version, o.AuthPass, o.AdvertInterval = 2, "12345678", 255*time.Second }), nil},
		{"ipv6", Options{Interface: "eth0", VRID: 1, VIPs: vip6, SourceAddr: netip.MustParseAddr("fe80::1"),
			UnicastPeers: []netip.Addr{netip.MustParseAddr("fe80::2")}}, nil},
		{"required", Options{}, []string{"Interface: is required", "VRID: is required (1..255)", "VIPs: needs at least one virtual address"}},
		{"interface name", with(func(o *Options) { o.Interface = "eth0/1" }), []string{`Interface: "eth0/1" is not a valid interface name`}},
		{"ranges", with(func(o *Options) { o.VRID, o.Priority, o.TrackWeight = 256, 256, 255 }), []string{
			"VRID: 256 is out of range 1..255", "Priority: 256 is out of range 1..255", "TrackWeight: 255 is out of range 0..254"}},
		{"negative", with(func(o *Options) {
			o.Priority, o.PreemptDelay, o.TrackRise, o.TrackFall, o.GARPRefresh = -1, -time.Second, -1, -1, -time.Second
		}), []string{"Priority: -1 is out of range 1..255", "PreemptDelay: must not be negative, got -1s",
			"TrackRise: -1 is less than 1", "TrackFall: -1 is less than 1", "GARPRefresh: must not be negative, got -1s"}},
		{"version", with(func(o *Options) { o.Version = 1 }), []string{"Version: 1 is not 2 or 3"}},
		{"v3 interval", with(func(o *Options) { o.AdvertInterval = 15 * time.Millisecond }), []string{
			"AdvertInterval: 15ms: want 10ms..40.95s in steps of 10ms"}},
		{"v2 interval", with(func(o *Options) { o.Version, o.AdvertInterval = 2, 1500*time.Millisecond }), []string{
			"AdvertInterval: 1.5s: VRRP version 2 needs whole seconds in 1s..255s"}},
		{"v3 password", with(func(o *Options) { o.AuthPass = "x" }), []string{
			"AuthPass: VRRP version 3 has no authentication; remove the password or use version 2"}},
		{"long password", with(func(o *Options) { o.Version, o.AuthPass = 2, "123456789" }), []string{"AuthPass: is 9 bytes; VRRP allows at most 8"}},
		{"vips", with(func(o *Options) {
			o.VIPs = []netip.Prefix{{}, netip.MustParsePrefix("::ffff:203.0.113.1/128"), netip.MustParsePrefix("224.0.0.18/32"), vip4[0], vip6[0]}
		}), []string{"VIPs[0]: is not a network",
			`VIPs[1]: "::ffff:203.0.113.1/128" is an IPv4-mapped IPv6 address; write it as IPv4 (203.0.113.1)`,
			`VIPs[2]: "224.0.0.18/32" cannot be a virtual address`,
			`VIPs[4]: "2001:db8::100/64" is IPv6 but the instance's first VIP is IPv4: one address family per instance (put the other family in an instance of its own)`}},
		{"too many vips", with(func(o *Options) { o.VIPs = slices.Repeat(vip4, 256) }), []string{"VIPs: has 256 addresses; VRRP allows at most 255"}},
		{"ipv6 version 2", Options{Interface: "eth0", VRID: 1, Version: 2, VIPs: vip6}, []string{
			"Version: 2 is IPv4 only; IPv6 virtual addresses need version = 3"}},
		{"peers", Options{Interface: "eth0", VRID: 1, VIPs: vip6, UnicastPeers: []netip.Addr{netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("2001:db8::1")}}, []string{
			`UnicastPeers[0]: "203.0.113.1" is not IPv6 like the instance's virtual addresses`,
			`UnicastPeers[1]: "2001:db8::1" is not link-local (fe80::/10): IPv6 adverts come from the peer's link-local address, so list that`}},
		{"ipv4-mapped peer", with(func(o *Options) { o.UnicastPeers = []netip.Addr{netip.MustParseAddr("::ffff:203.0.113.1")} }), []string{
			`UnicastPeers[0]: "::ffff:203.0.113.1" is not IPv4 like the instance's virtual addresses`}},
		{"source of another family", with(func(o *Options) { o.SourceAddr = netip.MustParseAddr("fe80::1") }), []string{
			`SourceAddr: "fe80::1" is not an IPv4 address (VRRP here advertises over IPv4)`}},
		{"ipv6 global source", Options{Interface: "eth0", VRID: 1, VIPs: vip6, SourceAddr: netip.MustParseAddr("2001:db8::1")}, []string{
			`SourceAddr: "2001:db8::1" is not an IPv6 link-local address (fe80::/10): IPv6 adverts are sent from the interface's link-local address (RFC 5798 §5.1.2.1)`}},
		{"loopback source", with(func(o *Options) { o.SourceAddr = netip.MustParseAddr("127.0.0.1") }), []string{`SourceAddr: "127.0.0.1" cannot be the source of adverts`}},
		{"source is a vip", with(func(o *Options) { o.SourceAddr = netip.MustParseAddr("203.0.113.100") }), []string{
			`SourceAddr: "203.0.113.100" is one of the virtual addresses; use the interface's own address`}},
		{"source is a peer", with(func(o *Options) {
			o.SourceAddr, o.UnicastPeers = netip.MustParseAddr("203.0.113.11"), []netip.Addr{netip.MustParseAddr("203.0.113.11")}
		}), []string{`SourceAddr: "203.0.113.11" is also one of the unicast peers`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fieldsOf(t, tt.opts.Validate())
			if !slices.Equal(got, tt.want) {
				t.Errorf("Validate:\n%q\nwant\n%q", got, tt.want)
			}
			// New refuses exactly what Validate refuses.
			if _, err := New(tt.opts); (err == nil) != (tt.want == nil) {
				t.Errorf("New = %v; Validate found %d problems", err, len(tt.want))
			}
		})
	}
}

// TestCheck: one VRID per interface and address family (IPv4 and IPv6
// are separate virtual routers), each instance's problems under its index.
func TestCheck(t *testing.T) {
	vip := func(s string) []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix(s)} }
	list := []Options{
		{Name: "a", Interface: "eth0", VRID: 51, VIPs: vip("203.0.113.100/24")},
		{Name: "b", Interface: "eth0", VRID: 51, VIPs: vip("2001:db8::100/64")}, // other family: fine
		{Name: "c", Interface: "eth1", VRID: 51, VIPs: vip("203.0.113.101/24")}, // other interface: fine
		{Name: "d", Interface: "eth0", VRID: 51, Priority: 300, VIPs: vip("203.0.113.102/24")},
	}
	err := Check(list)
	var ie *InstanceError
	if !errors.As(err, &ie) || ie.Index != 3 || ie.Name != "d" {
		t.Fatalf("Check = %v, want the problems of instance 3", err)
	}
	want := []string{"Priority: 300 is out of range 1..255", `VRID: 51 is already used on eth0 for IPv4 by instance "a"`}
	if got := fieldsOf(t, ie.Err); !slices.Equal(got, want) {
		t.Errorf("instance d: %q, want %q", got, want)
	}
	if err := Check(list[:3]); err != nil {
		t.Errorf("Check of distinct routers = %v", err)
	}
}
