package testlab

import (
	"os/exec"
	"strings"
	"time"
)

// EnableIPv6 gives each node named in addrs its IPv6 address (with the
// prefix length, "2001:db8::10/64", added nodad) and a link-local address
// usable at once: duplicate address detection is turned off on eth0 and
// the link is cycled, so the kernel recreates the link-local address
// without it. It fails the test if a node has no usable link-local
// address within 5 s.
func (l *Lab) EnableIPv6(addrs map[string]string) {
	l.T.Helper()
	for n, a := range addrs {
		l.MustIn(n, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0")
		l.LinkSet(n, "down")
		l.LinkSet(n, "up")
		Run(l.T, "ip", "-n", l.NS(n), "addr", "add", a, "dev", "eth0", "nodad")
		if _, ok := Until(5*time.Second, func() bool { return l.LinkLocal(n) != "" }); !ok {
			l.T.Fatalf("%s: no usable link-local address on eth0:\n%s", n, Run(l.T, "ip", "-n", l.NS(n), "-6", "addr", "show", "dev", "eth0"))
		}
	}
}

// LinkLocal returns node n's link-local address on eth0 that is not
// tentative (duplicate address detection done), "" if none.
func (l *Lab) LinkLocal(n string) string {
	out, _ := exec.Command("ip", "-n", l.NS(n), "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link", "-tentative").Output()
	f := strings.Fields(string(out))
	for i := range f {
		if f[i] == "inet6" && i+1 < len(f) {
			a, _, _ := strings.Cut(f[i+1], "/")
			return a
		}
	}
	return ""
}

// HoldsAddr6 reports whether node n has the IPv6 address addr on eth0.
func (l *Lab) HoldsAddr6(n, addr string) bool {
	out, _ := exec.Command("ip", "-n", l.NS(n), "-6", "addr", "show", "dev", "eth0").Output()
	return strings.Contains(string(out), " "+addr+"/")
}
