package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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

var nsAddrs = map[string]string{"a": "203.0.113.10", "b": "203.0.113.11", "k": "203.0.113.20", "c": "203.0.113.50"}

type edgeLab struct {
	t      *testing.T
	prefix string
	dir    string
	cert   string
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newEdgeLab(t *testing.T) *edgeLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	for _, tool := range []string{"ip", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (apt-get install iproute2 curl)", tool)
		}
	}
	l := &edgeLab{t: t, prefix: fmt.Sprintf("kclbe-%d-%04x", os.Getpid(), rand.Uint32()&0xffff), dir: t.TempDir()}
	nodes := []string{"a", "b", "k", "c"}
	t.Cleanup(func() {
		for _, n := range append(nodes, "sw") {
			exec.Command("ip", "netns", "del", l.ns(n)).Run()
		}
	})
	if out, err := exec.Command("ip", "netns", "add", l.ns("sw")).CombinedOutput(); err != nil {
		t.Skipf("cannot create network namespaces: %v %s", err, out)
	}
	sw := l.ns("sw")
	mustRun(t, "ip", "-n", sw, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0")
	mustRun(t, "ip", "-n", sw, "link", "set", "br0", "up")
	for i, n := range nodes {
		ns := l.ns(n)
		mustRun(t, "ip", "netns", "add", ns)
		mustRun(t, "ip", "-n", ns, "link", "set", "lo", "up")
		port := fmt.Sprintf("p%d", i)
		mustRun(t, "ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", sw)
		mustRun(t, "ip", "-n", sw, "link", "set", port, "master", "br0")
		mustRun(t, "ip", "-n", sw, "link", "set", port, "up")
		mustRun(t, "ip", "-n", ns, "addr", "add", nsAddrs[n]+"/24", "dev", "eth0")
		mustRun(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	}
	certPEM, keyPEM, err := tlsconf.SelfSigned{Hosts: []string{"sso.example.com"}, ValidFor: time.Hour}.Generate()
	if err != nil {
		t.Fatal(err)
	}
	l.cert = filepath.Join(l.dir, "sso.pem")
	os.WriteFile(l.cert, certPEM, 0o644)
	os.WriteFile(filepath.Join(l.dir, "sso-key.pem"), keyPEM, 0o600)
	return l
}

func (l *edgeLab) ns(n string) string { return l.prefix + "-" + n }

// labProc is a process running inside a namespace.
type labProc struct {
	*exec.Cmd
	done chan struct{} // closed once Wait returned; then err is set
	err  error
}

// start runs a command inside node n; it is killed in t.Cleanup.
func (l *edgeLab) start(n, name string, args ...string) *labProc {
	l.t.Helper()
	logf, err := os.Create(filepath.Join(l.dir, name+".log"))
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.ns(n)}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	p := &labProc{Cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); logf.Close(); close(p.done) }()
	l.t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		if l.t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			l.t.Logf("--- %s ---\n%s", name, b)
		}
	})
	return p
}

// kclbConfig writes the configuration of edge node n.
func (l *edgeLab) kclbConfig(n string, priority int, backendPort int) string {
	cfg := fmt.Sprintf(`
[global]
name = "edge-%[1]s"
state_file = ""
access_log = false
shutdown_grace = "2s"
[admin]
socket = %[8]q
[[listener]]
name = "https"
bind = "%[2]s:8443"
tls = true
freebind = true
[[tls.certificate]]
cert = %[3]q
key = %[4]q
[affinity]
secret = "shared-between-both-edge-nodes-0123"
[health]
interval = "100ms"
timeout = "90ms"
rise = 1
fall = 2
slowstart = "0s"
[[backend.server]]
name = "keycloak"
address = "203.0.113.20:%[5]d"
management = "203.0.113.20:%[6]d"
[[vrrp.instance]]
name = "VI_1"
interface = "eth0"
vrid = 51
priority = %[7]d
advert_int = "100ms"
vips = ["%[2]s/24"]
track_weight = 50
track_rise = 1
track_fall = 1
`, n, nsVIP, l.cert, filepath.Join(l.dir, "sso-key.pem"), backendPort, backendPort+920, priority, l.adminSocket(n))
	p := filepath.Join(l.dir, "kclb-"+n+".toml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
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
func (l *edgeLab) holdsVIP(n string) bool {
	out, _ := exec.Command("ip", "-n", l.ns(n), "-4", "addr", "show", "dev", "eth0").Output()
	return strings.Contains(string(out), " "+nsVIP+"/")
}

func (l *edgeLab) mac(n string) string {
	out := mustRun(l.t, "ip", "-n", l.ns(n), "link", "show", "eth0")
	f := strings.Fields(out)
	for i := range f {
		if f[i] == "link/ether" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

func (l *edgeLab) clientNeigh() string {
	out, _ := exec.Command("ip", "-n", l.ns("c"), "neigh", "show", nsVIP).Output()
	f := strings.Fields(string(out))
	for i := range f {
		if f[i] == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

// clientGet fetches the OIDC discovery document over HTTPS at the VIP.
func (l *edgeLab) clientGet() error {
	out, err := exec.Command("ip", "netns", "exec", l.ns("c"), "curl", "-sS", "--max-time", "3",
		"--cacert", l.cert, "--resolve", "sso.example.com:8443:"+nsVIP,
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

// until polls cond every 5 ms up to timeout and returns when it first held.
func until(timeout time.Duration, cond func() bool) (time.Time, bool) {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return time.Time{}, false
		}
		time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
	}
	return time.Now(), true
}

// TestVRRPFailoverBetweenKclbInstances runs two kclb processes with the
// in-process VRRP: the higher priority holds the VIP and serves HTTPS on
// it; kill -9 moves the VIP to the backup within Master_Down_Interval plus
// a margin, the client's ARP entry follows, HTTPS at the VIP works again;
// the old Master preempts on return; unhealthy tracking moves the VIP.
func TestVRRPFailoverBetweenKclbInstances(t *testing.T) {
	l := newEdgeLab(t)
	kcsimBin := filepath.Join(filepath.Dir(kclbBin), "kcsim")
	if out, err := exec.Command("go", "build", "-o", kcsimBin, "../kcsim").CombinedOutput(); err != nil {
		t.Fatalf("build kcsim: %v\n%s", err, out)
	}
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
	a.Process.Signal(syscall.SIGKILL)
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
	kcA.Process.Signal(syscall.SIGKILL)
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
	b.Process.Signal(syscall.SIGTERM)
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
	case <-b.done:
		if b.err != nil {
			t.Errorf("kclb b exit after SIGTERM: %v", b.err)
		}
	case <-time.After(10 * time.Second):
		t.Error("kclb b did not exit after SIGTERM")
	}
}
