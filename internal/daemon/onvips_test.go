package daemon

import (
	"net/netip"
	"testing"

	"github.com/kclb/kclb/vrrp"
)

// TestOnVIPs: a handover holds new connections only on listeners that
// take connections to a VIP: bound to one, or to a wildcard address.
func TestOnVIPs(t *testing.T) {
	rs := []vrrp.Options{{VIPs: []netip.Prefix{netip.MustParsePrefix("203.0.113.100/32")}}}
	for _, tc := range []struct {
		name, bind string
		want       bool
	}{
		{name: "the VIP", bind: "203.0.113.100:443", want: true},
		{name: "wildcard", bind: ":443", want: true},
		{name: "IPv4 wildcard", bind: "0.0.0.0:443", want: true},
		{name: "IPv6 wildcard", bind: "[::]:443", want: true},
		{name: "the node's own address", bind: "203.0.113.11:443", want: false},
		{name: "loopback", bind: "127.0.0.1:8080", want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := len(onVIPs([]*frontend{{plan: ListenerPlan{Bind: tc.bind}}}, rs)) == 1
			if got != tc.want {
				t.Fatalf("onVIPs(%q) = %v, want %v", tc.bind, got, tc.want)
			}
		})
	}
}
