package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// TestVRRPSourceAddress: source_address (keepalived's unicast_src_ip,
// issue 15) is optional and must be an IP address; what address it may
// be is vrrp's rule (configmap's TestVRRPSourceAddress).
func TestVRRPSourceAddress(t *testing.T) {
	inst := func(src string) string {
		return base + "[[vrrp.instance]]\nname = \"vi\"\ninterface = \"eth0\"\nvrid = 51\nvips = [\"203.0.113.100/24\"]\nunicast_peers = [\"203.0.113.11\"]\n" + src
	}
	c, err := Parse([]byte(inst(`source_address = "203.0.113.10"`+"\n")), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.VRRP.Instances[0].SourceAddress; got != netip.MustParseAddr("203.0.113.10") {
		t.Errorf("source_address = %v", got)
	}
	if c, err := Parse([]byte(inst("")), ""); err != nil || c.VRRP.Instances[0].SourceAddress.IsValid() {
		t.Errorf("unset source_address: %v, %v", err, c)
	}
	for _, tt := range []struct{ val, want string }{
		{`"eth0"`, "not an IP address"},
	} {
		_, err := Parse([]byte(inst("source_address = "+tt.val+"\n")), "")
		var errs *Errors
		if !errors.As(err, &errs) || len(errs.Problems) != 1 || errs.Problems[0].Path != "vrrp.instance[0].source_address" ||
			!strings.Contains(errs.Problems[0].Msg, tt.want) || errs.Problems[0].Line != 15 {
			t.Errorf("source_address = %s: %v, want one problem at line 15 saying %q", tt.val, err, tt.want)
		}
	}
}

// TestVRRPIPv6 (issue 17, item 5): an IPv6 instance is accepted with a link-local
// source_address or none, and the same VRID may serve IPv4 and IPv6 on one interface
// (separate virtual routers, as in keepalived).
func TestVRRPIPv6(t *testing.T) {
	conf := base + "[[vrrp.instance]]\nname = \"v4\"\ninterface = \"eth0\"\nvrid = 51\nvips = [\"203.0.113.100/24\"]\n" +
		"[[vrrp.instance]]\nname = \"v6\"\ninterface = \"eth0\"\nvrid = 51\nvips = [\"2001:db8::100/64\", \"2001:db8::101\"]\nsource_address = \"fe80::11\"\nunicast_peers = [\"fe80::12\"]\n"
	c, err := Parse([]byte(conf), "")
	if err != nil {
		t.Fatal(err)
	}
	in := c.VRRP.Instances[1]
	if in.VIPs[0] != netip.MustParsePrefix("2001:db8::100/64") || in.VIPs[1] != netip.MustParsePrefix("2001:db8::101/128") ||
		in.SourceAddress != netip.MustParseAddr("fe80::11") || in.Version != 3 {
		t.Fatalf("IPv6 instance decoded as %+v", in)
	}
}
