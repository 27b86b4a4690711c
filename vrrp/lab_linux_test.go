package vrrp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/kclb/kclb/internal/testlab"
)

// The namespace tests build the topology of shared/tools/keepalived-failover.sh:
//
//	<p>-a eth0 203.0.113.11 ─┐
//	<p>-b eth0 203.0.113.12 ─┼─ <p>-sw: bridge br0 (no STP, no multicast snooping)
//	<p>-c eth0 203.0.113.50 ─┘  (client)
//
// with VIP 203.0.113.100/24 on VRID 51 (internal/testlab builds it). Every test gets its
// own namespace prefix kclbv-<pid>-<random>, and everything is deleted in t.Cleanup.

const (
	labVIP    = "203.0.113.100"
	labVRID   = 51
	helperEnv = "KCLB_VRRP_HELPER_CONF"
)

var labAddrs = map[string]string{"a": "203.0.113.11", "b": "203.0.113.12", "c": "203.0.113.50"}

type lab struct {
	*testlab.Lab
	t   *testing.T
	dir string
}

// needRoot skips the test unless it runs as root with iproute2.
func needRoot(t *testing.T) { testlab.NeedRoot(t) }

func newLab(t *testing.T) *lab {
	t.Helper()
	var nodes []testlab.Node
	for _, n := range []string{"a", "b", "c"} {
		nodes = append(nodes, testlab.Node{Name: n, Addr: labAddrs[n] + "/24"})
	}
	tl := testlab.New(t, "v", nodes...)
	l := &lab{Lab: tl, t: t, dir: tl.Dir}
	if _, err := exec.LookPath("tcpdump"); err == nil && os.Getenv("KCLB_VRRP_TCPDUMP") != "" {
		l.Start("sw", "tcpdump", "tcpdump", "-i", "br0", "-n", "-l", "-tt", "-vv", "ip proto 112 or arp")
	}
	return l
}

func (l *lab) ns(node string) string { return l.NS(node) }

// handle returns a netlink handle inside the node's namespace.
func (l *lab) handle(node string) *netlink.Handle {
	l.t.Helper()
	nsh, err := netns.GetFromName(l.ns(node))
	if err != nil {
		l.t.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(h.Close)
	return h
}

// vipProbe reports quickly whether a node holds the VIP.
type vipProbe struct {
	h    *netlink.Handle
	link netlink.Link
	vip  string
}

func (l *lab) probe(node string) *vipProbe {
	h := l.handle(node)
	link, err := h.LinkByName("eth0")
	if err != nil {
		l.t.Fatal(err)
	}
	return &vipProbe{h: h, link: link, vip: labVIP}
}

// probeVIP is probe for another VIP.
func (l *lab) probeVIP(node, vip string) *vipProbe {
	p := l.probe(node)
	p.vip = vip
	return p
}

func (p *vipProbe) has() bool {
	addrs, err := p.h.AddrList(p.link, netlink.FAMILY_ALL)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if a.IP.String() == p.vip {
			return true
		}
	}
	return false
}

func (l *lab) mac(node string) string { return l.MAC(node) }

// clientNeigh returns the client's neighbour entry (MAC) for the VIP, "" if none.
func (l *lab) clientNeigh() string { return l.Neigh("c", labVIP) }

func (l *lab) ping(node, dst string) error { return l.Ping(node, dst) }

func (l *lab) linkSet(node, state string) { l.LinkSet(node, state) }

// waitUntil polls cond until it holds or timeout passes; it returns the time
// at which cond first held, and whether it did.
var waitUntil = testlab.Until

// helperConf configures one kclb VRRP helper process.
type helperConf struct {
	VRID        uint8
	Priority    uint8
	AdvertMS    int
	Version     int
	AuthPass    string
	Preempt     bool
	TrackWeight uint8
	StatusFile  string
	// GCStress keeps a large pointer-rich heap, allocates garbage and forces a GC every
	// 50 ms, to show that collector pauses do not cause false failovers.
	GCStress bool
	// VIP defaults to labVIP; UnicastPeers switches to unicast adverts.
	VIP          string
	UnicastPeers []string
	// Second, if set, runs another instance in the same process (its StatusFile is set by
	// startKCLB to <name>-2.status.json).
	Second *helperConf
}

// gcStats is written next to the status file by a GCStress helper.
type gcStats struct {
	NumGC    int64
	MaxPause time.Duration
}

// proc is a process started inside a namespace.
type proc = testlab.Proc

func (l *lab) startProc(node, name string, args ...string) *proc {
	l.t.Helper()
	return l.Start(node, name, args...)
}

// startKCLB runs a kclb VRRP helper process (this test binary, TestHelperProcess) in a node.
func (l *lab) startKCLB(node, name string, c helperConf) *proc {
	l.t.Helper()
	c.StatusFile = filepath.Join(l.dir, name+".status.json")
	if c.Second != nil {
		s := *c.Second
		s.StatusFile = filepath.Join(l.dir, name+"-2.status.json")
		c.Second = &s
	}
	conf, err := json.Marshal(c)
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := l.Command(node, os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(conf))
	return l.StartCmd(cmd, name)
}

// helperStatus reads the status file a helper writes every 20 ms.
func (l *lab) helperStatus(name string) (Status, bool) {
	b, err := os.ReadFile(filepath.Join(l.dir, name+".status.json"))
	if err != nil {
		return Status{}, false
	}
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		return Status{}, false
	}
	return s, true
}

// TestHelperProcess is not a test: it is the kclb VRRP process the namespace tests run
// inside a namespace. SIGTERM stops it gracefully, SIGUSR1 toggles the health signal.
func TestHelperProcess(t *testing.T) {
	conf := os.Getenv(helperEnv)
	if conf == "" {
		t.Skip("helper process for the namespace tests")
	}
	var c helperConf
	if err := json.Unmarshal([]byte(conf), &c); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	confs := []helperConf{c}
	if c.Second != nil {
		confs = append(confs, *c.Second)
	}
	var insts []*Instance
	for _, hc := range confs {
		vip := hc.VIP
		if vip == "" {
			vip = labVIP
		}
		var peers []netip.Addr
		for _, p := range hc.UnicastPeers {
			peers = append(peers, netip.MustParseAddr(p))
		}
		inst, err := New(Options{
			Interface: "eth0", VRID: int(hc.VRID), Priority: int(hc.Priority), Version: hc.Version,
			AdvertInterval: time.Duration(hc.AdvertMS) * time.Millisecond, AuthPass: hc.AuthPass,
			VIPs: []netip.Prefix{netip.PrefixFrom(netip.MustParseAddr(vip), labVIPBits(vip))}, Preempt: hc.Preempt,
			TrackWeight: int(hc.TrackWeight), UnicastPeers: peers, Logger: log,
		})
		if err != nil {
			t.Fatal(err)
		}
		insts = append(insts, inst)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	go func() {
		healthy := true
		for s := range sigs {
			if s == syscall.SIGUSR1 {
				healthy = !healthy
				log.Info("helper: health toggled", "healthy", healthy)
				for _, inst := range insts {
					inst.SetHealthy(healthy)
				}
				continue
			}
			cancel()
		}
	}()
	statusDone := make(chan struct{})
	go func() {
		defer close(statusDone)
		for ctx.Err() == nil {
			for k, inst := range insts {
				writeStatus(confs[k].StatusFile, inst.Status())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	if c.GCStress {
		go gcStress(ctx, c.StatusFile+".gc")
	}
	errs := make(chan error, len(insts))
	for _, inst := range insts {
		go func() { errs <- inst.Run(ctx) }()
	}
	code := 0
	for range insts {
		if err := <-errs; err != nil {
			log.Error("helper: run", "err", err)
			code = 1
			cancel()
		}
	}
	// The periodic writer may be renaming a snapshot taken before the shutdown: let it
	// finish so that the final status is the last one written.
	cancel()
	<-statusDone
	for k, inst := range insts {
		writeStatus(confs[k].StatusFile, inst.Status())
	}
	os.Exit(code)
}

// gcStress churns the heap until ctx is done and records GC pauses in path: a 32 MiB
// pointer-rich live heap, 4 MiB of garbage every 2 ms and a forced collection every 50 ms.
// It sleeps between bursts so that it stresses the collector rather than burning a CPU.
func gcStress(ctx context.Context, path string) {
	type node struct {
		next *node
		_    [6]*int // pointer-rich padding the collector must scan
	}
	live := make([]*node, 1<<19)
	for i := range live {
		live[i] = &node{}
		if i > 0 {
			live[i].next = live[i-1]
		}
	}
	var sink []byte
	last := time.Now()
	for ctx.Err() == nil {
		for range 1000 {
			sink = make([]byte, 4096)
		}
		_ = sink
		time.Sleep(2 * time.Millisecond)
		if time.Since(last) > 50*time.Millisecond {
			runtime.GC()
			last = time.Now()
			var st debug.GCStats
			st.PauseQuantiles = make([]time.Duration, 5)
			debug.ReadGCStats(&st)
			if b, err := json.Marshal(gcStats{NumGC: st.NumGC, MaxPause: st.PauseQuantiles[4]}); err == nil {
				atomicWrite(path, b)
			}
		}
	}
	runtime.KeepAlive(live)
}

func writeStatus(path string, s Status) {
	b, err := json.Marshal(s)
	if err != nil {
		return
	}
	atomicWrite(path, b)
}

// atomicWrite replaces path with b so that readers never see a partial file.
func atomicWrite(path string, b []byte) {
	tmp := path + ".tmp"
	if os.WriteFile(tmp, b, 0o644) == nil {
		_ = os.Rename(tmp, path)
	}
}

// startKeepalived writes a keepalived config for one node and starts keepalived there.
func (l *lab) startKeepalived(node, name string, version, prio int, advert string, authPass string) *proc {
	l.t.Helper()
	auth := ""
	if authPass != "" {
		auth = "authentication {\n    auth_type PASS\n    auth_pass " + authPass + "\n  }"
	}
	conf := fmt.Sprintf(`global_defs {
  router_id %s
  vrrp_version %d
}
vrrp_instance VI_KC {
  state BACKUP
  interface eth0
  virtual_router_id %d
  priority %d
  advert_int %s
  %s
  virtual_ipaddress {
    %s/24 dev eth0
  }
}
`, name, version, labVRID, prio, advert, auth, labVIP)
	path := filepath.Join(l.dir, name+".conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		l.t.Fatal(err)
	}
	pid := filepath.Join(l.dir, name+".pid")
	vpid := filepath.Join(l.dir, name+".vrrp.pid")
	p := l.startProc(node, name, "keepalived", "-n", "-l", "-D", "-P", "-R", "-f", path, "-p", pid, "-r", vpid)
	return p
}

// killKeepalived SIGKILLs keepalived's VRRP child and then the parent, like a host death.
func (l *lab) killKeepalived(name string, p *proc) {
	l.t.Helper()
	b, err := os.ReadFile(filepath.Join(l.dir, name+".vrrp.pid"))
	if err == nil {
		var pid int
		if _, err := fmt.Sscan(string(bytes.TrimSpace(b)), &pid); err == nil && pid > 0 {
			if cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); bytes.Contains(cl, []byte("keepalived")) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	p.Signal(syscall.SIGKILL)
}

func needKeepalived(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("keepalived"); err != nil {
		t.Skip("needs keepalived (apt-get install -y keepalived)")
	}
}

// mdi returns Master_Down_Interval for a priority and advert interval (version 3 formula;
// equal to version 2's for a 1 s interval).
func mdi(prio int, interval time.Duration) time.Duration {
	return 3*interval + time.Duration(256-prio)*interval/256
}

func skew(prio int, interval time.Duration) time.Duration {
	return time.Duration(256-prio) * interval / 256
}
