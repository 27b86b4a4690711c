package testlab

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netns"
)

// DialContext returns a dial function (for http.Transport.DialContext)
// that opens its sockets in node n's namespace, so the test process
// itself can be a client inside the lab. A socket's namespace is fixed
// when it is created: each dial runs on a thread switched into the
// namespace and back (a thread that cannot switch back ends with its
// goroutine).
func (l *Lab) DialContext(n string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	name := l.NS(n)
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			runtime.LockOSThread()
			c, err := dialIn(ctx, name, network, addr)
			ch <- result{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
}

// dialIn dials from namespace name on the locked thread of its caller;
// it unlocks the thread only if it got back to the original namespace.
func dialIn(ctx context.Context, name, network, addr string) (net.Conn, error) {
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("testlab: current namespace: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(name)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("testlab: namespace %s: %w", name, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("testlab: enter %s: %w", name, err)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if netns.Set(orig) == nil {
		runtime.UnlockOSThread()
	}
	return c, err
}

// Monitor starts `ip monitor object` ("address", "neigh", "link") in node
// n as the process called name and returns once it is proven to be
// subscribed: ip monitor joins its netlink groups some time after it
// starts (long on a loaded machine), and a change made before that is
// never reported, so a probe change it must report (an address on lo, or
// a permanent neighbour entry on eth0) is made and undone until a line
// names it. Its lines are then read with Proc.Stamped.
func (l *Lab) Monitor(n, name, object string) *Proc {
	l.T.Helper()
	p := l.Start(n, name, "ip", "monitor", object)
	var add, del []string
	var probe string
	switch object {
	case "address":
		probe = "198.51.100.77"
		add = []string{"addr", "add", probe + "/32", "dev", "lo"}
		del = []string{"addr", "del", probe + "/32", "dev", "lo"}
	case "neigh":
		probe = "198.51.100.78"
		add = []string{"neigh", "replace", probe, "lladdr", "02:00:00:00:00:fe", "dev", "eth0", "nud", "permanent"}
		del = []string{"neigh", "del", probe, "dev", "eth0"}
	default:
		l.T.Fatalf("testlab: Monitor knows no probe for %q", object)
	}
	seen := func() bool { return p.Has(probe) }
	if _, ok := Until(10*time.Second, func() bool {
		Run(l.T, "ip", append([]string{"-n", l.NS(n)}, add...)...)
		_, ok := Until(500*time.Millisecond, seen)
		Run(l.T, "ip", append([]string{"-n", l.NS(n)}, del...)...)
		return ok
	}); !ok {
		l.T.Fatalf("ip monitor %s in %s: no line with the probe %s within 10 s:\n%s", object, n, probe, strings.Join(p.Lines(), "\n"))
	}
	return p
}
