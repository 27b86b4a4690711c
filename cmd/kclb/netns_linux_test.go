package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/kclbconf"
	"github.com/kclb/kclb/internal/testlab"
	"github.com/kclb/kclb/tlsconf"
)

// The edge topology of the mission, in network namespaces on one bridge:
//
//	<p>-a  eth0 203.0.113.10  kclb (MASTER, priority 110)
//	<p>-b  eth0 203.0.113.11  kclb (BACKUP, priority 100)
//	<p>-k  eth0 203.0.113.20  two Keycloak stand-ins (8081/9001, 8082/9002)
//	<p>-c  eth0 203.0.113.50  the client
//
// with the VIP 203.0.113.100/24 on VRID 51. Everything is deleted in
// t.Cleanup.

const nsVIP = "203.0.113.100"

// kcsimPkg is the Keycloak stand-in's command, built with testlab.Build.
const kcsimPkg = "github.com/kclb/kclb/cmd/kcsim"

var nsAddrs = map[string]string{"a": "203.0.113.10", "b": "203.0.113.11", "k": "203.0.113.20", "c": "203.0.113.50"}

type edgeLab struct {
	*testlab.Lab
	t    *testing.T
	dir  string
	cert string
}

// mustRun runs a command and fails the test if it fails.
var mustRun = testlab.Run

// labProc is a process running inside a namespace.
type labProc = testlab.Proc

func newEdgeLab(t *testing.T) *edgeLab {
	t.Helper()
	testlab.NeedRoot(t, "curl")
	var nodes []testlab.Node
	for _, n := range []string{"a", "b", "k", "c"} {
		nodes = append(nodes, testlab.Node{Name: n, Addr: nsAddrs[n] + "/24"})
	}
	lab := testlab.New(t, "e", nodes...)
	l := &edgeLab{Lab: lab, t: t, dir: lab.Dir}
	certPEM, keyPEM, err := tlsconf.SelfSigned{Hosts: []string{"sso.example.com"}, ValidFor: time.Hour}.Generate()
	if err != nil {
		t.Fatal(err)
	}
	l.cert = filepath.Join(l.dir, "sso.pem")
	os.WriteFile(l.cert, certPEM, 0o644)
	os.WriteFile(filepath.Join(l.dir, "sso-key.pem"), keyPEM, 0o600)
	return l
}

func (l *edgeLab) ns(n string) string { return l.NS(n) }

// start runs a command inside node n; it is killed in t.Cleanup.
func (l *edgeLab) start(n, name string, args ...string) *labProc {
	l.t.Helper()
	return l.Start(n, name, args...)
}

// kclbConfig writes the configuration of edge node n.
func (l *edgeLab) kclbConfig(n string, priority int, backendPort int) string {
	f := l.edgeBase(n)
	f.Listener("https", nsVIP+":8443", "tls", true, "freebind", true).
		Server("keycloak", fmt.Sprintf("203.0.113.20:%d", backendPort), fmt.Sprintf("203.0.113.20:%d", backendPort+920)).
		Table("vrrp.instance", "name", "VI_1", "interface", "eth0", "vrid", 51, "priority", priority, "advert_int", 100*time.Millisecond,
			"vips", []string{nsVIP + "/24"}, "track_weight", 50, "track_rise", 1, "track_fall", 1)
	return l.writeConfig(f, "kclb-"+n+".toml")
}

// edgeBase starts the configuration of edge node n with what every edge
// of the lab shares: its name and admin socket, the certificate, the
// affinity secret of the pair and fast health checks.
func (l *edgeLab) edgeBase(n string) *kclbconf.File {
	var f kclbconf.File
	f.Global("edge-"+n, "shutdown_grace", 2*time.Second).
		Section("admin", "socket", l.adminSocket(n)).
		Certificate(l.cert, filepath.Join(l.dir, "sso-key.pem")).
		Section("affinity", "secret", "shared-between-both-edge-nodes-0123").
		Section("health", "interval", 100*time.Millisecond, "timeout", 90*time.Millisecond, "rise", 1, "fall", 2, "slowstart", "0s")
	return &f
}

// writeConfig writes f as name in the lab's directory and returns its path.
func (l *edgeLab) writeConfig(f *kclbconf.File, name string) string {
	p := filepath.Join(l.dir, name)
	if err := f.WriteFile(p); err != nil {
		l.t.Fatal(err)
	}
	return p
}

// adminSocket is the admin socket of edge node n: configured, as by
// default (/run/kclb/admin.sock), in a directory of its own.
func (l *edgeLab) adminSocket(n string) string {
	return filepath.Join(l.dir, "run-"+n, "admin.sock")
}

// resignations returns the priority-0 adverts node n's VRRP instances
// have received, from its admin socket.
func (l *edgeLab) resignations(t *testing.T, n string) uint64 {
	t.Helper()
	st, err := adminStatus(unixClient(l.adminSocket(n)), "http://kclb")
	if err != nil || len(st.VRRP) == 0 {
		t.Fatalf("VRRP status of %s: %v (%d instances)", n, err, len(st.VRRP))
	}
	var sum uint64
	for _, v := range st.VRRP {
		sum += v.Resignations
	}
	return sum
}

// holdsVIP reports whether node n has the VIP on eth0.
func (l *edgeLab) holdsVIP(n string) bool { return l.HoldsAddr(n, nsVIP) }

func (l *edgeLab) mac(n string) string { return l.MAC(n) }

func (l *edgeLab) clientNeigh() string { return l.Neigh("c", nsVIP) }

// clientGet fetches the OIDC discovery document over HTTPS at the VIP.
func (l *edgeLab) clientGet() error { return l.clientGetAt(nsVIP) }

// clientGetAt is clientGet at the address vip (IPv6 in brackets).
func (l *edgeLab) clientGetAt(vip string) error {
	out, err := exec.Command("ip", "netns", "exec", l.ns("c"), "curl", "-sS", "--max-time", "3",
		"--cacert", l.cert, "--resolve", "sso.example.com:8443:"+vip,
		"-o", "/dev/null", "-w", "%{http_code}",
		"https://sso.example.com:8443/realms/test/.well-known/openid-configuration").CombinedOutput()
	if err != nil {
		return fmt.Errorf("curl: %v: %s", err, out)
	}
	if string(out) != "200" {
		return fmt.Errorf("status %s", out)
	}
	return nil
}

// until polls cond up to timeout and returns when it first held.
var until = testlab.Until

// TestVRRPFailoverBetweenKclbInstances runs two kclb processes with the
// in-process VRRP: the higher priority holds the VIP and serves HTTPS on
// it; kill -9 moves the VIP to the backup within Master_Down_Interval plus
// a margin, the client's ARP entry follows, HTTPS at the VIP works again;
// the old Master preempts on return; unhealthy tracking moves the VIP.
func TestVRRPFailoverBetweenKclbInstances(t *testing.T) {
	l := newEdgeLab(t)
	kcsimBin := testlab.Build(t, kcsimPkg)
	// One stand-in per edge node, in separate processes so one can die.
	// kclb.Process of "ip netns exec" is kcsim itself (ip execs it).
	kcA := l.start("k", "kcsim-1", kcsimBin, "-node", "keycloak1", "-traffic", "203.0.113.20:8081", "-mgmt", "203.0.113.20:9001")
	l.start("k", "kcsim-2", kcsimBin, "-node", "keycloak2", "-traffic", "203.0.113.20:8082", "-mgmt", "203.0.113.20:9002")
	if _, ok := until(10*time.Second, func() bool {
		return exec.Command("ip", "netns", "exec", l.ns("k"), "curl", "-sf", "http://203.0.113.20:9001/health/ready").Run() == nil &&
			exec.Command("ip", "netns", "exec", l.ns("k"), "curl", "-sf", "http://203.0.113.20:9002/health/ready").Run() == nil
	}); !ok {
		t.Fatal("stand-ins did not start")
	}
	cfgA := l.kclbConfig("a", 110, 8081)
	cfgB := l.kclbConfig("b", 100, 8082)
	a := l.start("a", "kclb-a", kclbBin, "run", "-c", cfgA)
	b := l.start("b", "kclb-b", kclbBin, "run", "-c", cfgB)
	if _, ok := until(10*time.Second, func() bool { return l.holdsVIP("a") && !l.holdsVIP("b") }); !ok {
		t.Fatalf("a (priority 110) did not become the only VIP holder: a=%v b=%v", l.holdsVIP("a"), l.holdsVIP("b"))
	}
	if _, ok := until(10*time.Second, func() bool { return l.clientGet() == nil }); !ok {
		t.Fatalf("HTTPS at the VIP through a: %v", l.clientGet())
	}
	if got, want := l.clientNeigh(), l.mac("a"); got != want {
		t.Fatalf("client ARP for the VIP %q, want a's MAC %q", got, want)
	}

	// Crash the Master.
	resignedB := l.resignations(t, "b")
	a.Signal(syscall.SIGKILL)
	killed := time.Now()
	took, ok := until(5*time.Second, func() bool { return l.holdsVIP("b") })
	if !ok {
		t.Fatal("b did not take the VIP after a was killed")
	}
	// Master_Down_Interval = 3 × 100 ms + Skew_Time (≈ 61 ms at priority 100).
	failover := took.Sub(killed)
	t.Logf("crash failover: b holds the VIP %v after kill -9 (Master_Down_Interval ≈ 361 ms)", failover)
	// Not a timed assertion (a loaded machine stretches any bound):
	// b took over with no priority-0 advert, by Master_Down_Interval.
	if got := l.resignations(t, "b"); got != resignedB {
		t.Errorf("b counted %d priority-0 adverts over kill -9 of a, want none", got-resignedB)
	}
	if _, ok := until(3*time.Second, func() bool { return l.clientNeigh() == l.mac("b") }); !ok {
		t.Fatalf("client ARP for the VIP still %q, want b's MAC %q (gratuitous ARP)", l.clientNeigh(), l.mac("b"))
	}
	if _, ok := until(5*time.Second, func() bool { return l.clientGet() == nil }); !ok {
		t.Fatalf("HTTPS at the VIP through b: %v", l.clientGet())
	}

	// The old Master returns and preempts.
	l.start("a", "kclb-a2", kclbBin, "run", "-c", cfgA)
	if _, ok := until(10*time.Second, func() bool { return l.holdsVIP("a") && !l.holdsVIP("b") }); !ok {
		t.Fatalf("a did not preempt on return: a=%v b=%v", l.holdsVIP("a"), l.holdsVIP("b"))
	}

	// The binary upgrade of the Master is TestBinaryUpgradeKeepsVIP.

	// a's only backend dies: a has no server left (not even a live one for
	// panic mode), so its tracked health is down and 110-2×50 < 100. (A database blip
	// that both edge nodes see alike keeps the VIP where it is.)
	kcA.Signal(syscall.SIGKILL)
	if _, ok := until(10*time.Second, func() bool { return l.holdsVIP("b") && !l.holdsVIP("a") }); !ok {
		t.Fatalf("VIP did not move away from the unhealthy a: a=%v b=%v", l.holdsVIP("a"), l.holdsVIP("b"))
	}
	if _, ok := until(5*time.Second, func() bool { return l.clientGet() == nil }); !ok {
		t.Fatalf("HTTPS at the VIP after tracking moved it: %v", l.clientGet())
	}

	// Graceful stop of the Master b: it sends priority 0 and releases the
	// VIP before it stops listening; a (even at its tracked priority 10)
	// takes over after Skew_Time instead of Master_Down_Interval.
	resignedA := l.resignations(t, "a")
	b.Signal(syscall.SIGTERM)
	stopped := time.Now()
	took, ok = until(5*time.Second, func() bool { return l.holdsVIP("a") })
	if !ok {
		t.Fatal("a did not take the VIP after SIGTERM to b")
	}
	t.Logf("graceful failover: a holds the VIP %v after SIGTERM (Skew_Time at priority 10 ≈ 96 ms)", took.Sub(stopped))
	// a took over because of b's priority-0 advert (Skew_Time), not by
	// Master_Down_Interval: it counted the resignation. (Asserted by the
	// counter, not by the time, which a loaded machine stretches.)
	if got := l.resignations(t, "a"); got <= resignedA {
		t.Errorf("a counted no priority-0 advert from b after SIGTERM (%d before, %d after)", resignedA, got)
	}
	if l.holdsVIP("b") {
		t.Error("b still holds the VIP after SIGTERM")
	}
	select {
	case <-b.Done():
		if b.Err() != nil {
			t.Errorf("kclb b exit after SIGTERM: %v", b.Err())
		}
	case <-time.After(10 * time.Second):
		t.Error("kclb b did not exit after SIGTERM")
	}
}
