// Package testlab builds the network-namespace labs of kclb's tests: a
// bridge in a namespace of its own, one namespace per node with an eth0
// veth on it, processes started inside a node with their output in a log
// file and watchable line by line, and the small probes the tests share
// (does a node hold an address, which MAC does a neighbour entry name).
// Every namespace and process is removed in t.Cleanup.
//
// It imports nothing of kclb's, so any package's tests may use it (vrrp's
// included, whose non-test code imports no other kclb package).
package testlab

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Node is one namespace of a lab: Name is its short name ("a", "client"),
// Addr its IPv4 address on the bridge with the prefix length
// ("203.0.113.10/24").
type Node struct {
	Name, Addr string
}

// Lab is a set of namespaces on one bridge. Its namespaces are called
// Prefix + "-" + node name; the bridge br0 lives in Prefix + "-sw", and
// node i's eth0 is the peer of port p<i> on it. Dir is a directory for
// configuration and log files (t.TempDir(), or $KCLB_LAB_LOGDIR/<prefix>
// if set, kept for debugging).
type Lab struct {
	T      testing.TB
	Prefix string
	Dir    string
	nodes  []Node
}

// NeedRoot skips the test unless it runs as root and finds ip (iproute2)
// and every tool named.
func NeedRoot(t testing.TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
}

// New creates a lab of nodes with namespaces named kclb<tag>-<pid>-<random>-*
// (tag keeps the name short: interface and namespace names are limited).
// It skips the test unless it runs as root (NeedRoot) and namespaces can
// be created. The bridge has no STP, no forward delay and no multicast
// snooping, so VRRP adverts and ARP reach every port at once.
func New(t testing.TB, tag string, nodes ...Node) *Lab {
	t.Helper()
	NeedRoot(t)
	l := &Lab{T: t, Prefix: fmt.Sprintf("kclb%s-%d-%04x", tag, os.Getpid(), rand.Uint32()&0xffff), Dir: t.TempDir(), nodes: nodes}
	if d := os.Getenv("KCLB_LAB_LOGDIR"); d != "" {
		l.Dir = filepath.Join(d, l.Prefix)
		if err := os.MkdirAll(l.Dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sw := l.NS("sw")
	if out, err := exec.Command("ip", "netns", "add", sw).CombinedOutput(); err != nil {
		t.Skipf("cannot create network namespaces: %v %s", err, out)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			_ = exec.Command("ip", "netns", "del", l.NS(n.Name)).Run()
		}
		_ = exec.Command("ip", "netns", "del", sw).Run()
	})
	Run(t, "ip", "-n", sw, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0")
	Run(t, "ip", "-n", sw, "link", "set", "br0", "up")
	for i, n := range nodes {
		ns := l.NS(n.Name)
		Run(t, "ip", "netns", "add", ns)
		Run(t, "ip", "-n", ns, "link", "set", "lo", "up")
		port := fmt.Sprintf("p%d", i)
		Run(t, "ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", sw)
		Run(t, "ip", "-n", sw, "link", "set", port, "master", "br0")
		Run(t, "ip", "-n", sw, "link", "set", port, "up")
		Run(t, "ip", "-n", ns, "addr", "add", n.Addr, "dev", "eth0")
		Run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	}
	return l
}

// NS returns the namespace name of node n.
func (l *Lab) NS(n string) string { return l.Prefix + "-" + n }

// Addr returns node n's address without the prefix length, "" if there is
// no such node.
func (l *Lab) Addr(n string) string {
	for _, node := range l.nodes {
		if node.Name == n {
			a, _, _ := strings.Cut(node.Addr, "/")
			return a
		}
	}
	return ""
}

// Path returns name inside the lab's directory.
func (l *Lab) Path(name string) string { return filepath.Join(l.Dir, name) }

// Run runs a command and fails the test with its output if it fails; it
// returns the combined output.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Command returns the command args[0] args[1:]... inside node n
// (ip netns exec, which execs it: its process is the command itself).
func (l *Lab) Command(n string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", l.NS(n)}, args...)...)
}

// In runs a command inside node n and returns its error with its output.
func (l *Lab) In(n string, args ...string) error {
	out, err := l.Command(n, args...).CombinedOutput()
	if err != nil {
		return &CmdError{Err: err, Out: string(out)}
	}
	return nil
}

// MustIn runs a command inside node n, fails the test if it fails, and
// returns its output.
func (l *Lab) MustIn(n string, args ...string) string {
	l.T.Helper()
	out, err := l.Command(n, args...).CombinedOutput()
	if err != nil {
		l.T.Fatalf("in %s: %s: %v\n%s", n, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// CmdError is a failed command with its output.
type CmdError struct {
	Err error
	Out string
}

// Error returns the cause and the output.
func (e *CmdError) Error() string { return e.Err.Error() + ": " + e.Out }

// Unwrap returns the cause.
func (e *CmdError) Unwrap() error { return e.Err }

// HoldsAddr reports whether node n has the IPv4 address addr on eth0.
func (l *Lab) HoldsAddr(n, addr string) bool {
	out, _ := exec.Command("ip", "-n", l.NS(n), "-4", "addr", "show", "dev", "eth0").Output()
	return strings.Contains(string(out), " "+addr+"/")
}

// MAC returns the hardware address of node n's eth0.
func (l *Lab) MAC(n string) string {
	f := strings.Fields(Run(l.T, "ip", "-n", l.NS(n), "link", "show", "eth0"))
	for i := range f {
		if f[i] == "link/ether" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

// Neigh returns the MAC of node n's neighbour entry for addr, "" if none.
func (l *Lab) Neigh(n, addr string) string {
	out, _ := exec.Command("ip", "-n", l.NS(n), "neigh", "show", addr).Output()
	f := strings.Fields(string(out))
	for i := range f {
		if f[i] == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

// LinkSet sets node n's eth0 "up" or "down".
func (l *Lab) LinkSet(n, state string) {
	l.T.Helper()
	Run(l.T, "ip", "-n", l.NS(n), "link", "set", "eth0", state)
}

// Ping sends one ICMP echo from node n to dst and waits up to a second.
func (l *Lab) Ping(n, dst string) error {
	return l.In(n, "ping", "-c", "1", "-W", "1", dst)
}

// Until polls cond every 2 ms until it holds or timeout passes, and
// returns the time it first held and whether it did. It is for conditions
// nothing signals (an address on an interface, a neighbour entry); a
// process's output is watched with Proc.Watch instead.
func Until(timeout time.Duration, cond func() bool) (time.Time, bool) {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return time.Now(), true
		}
		if time.Now().After(deadline) {
			return time.Time{}, false
		}
		time.Sleep(2 * time.Millisecond) // polling a condition with a deadline
	}
}
