package main

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/testlab"
)

// advert is one VRRP advertisement seen by tcpdump.
type advert struct {
	at   time.Time
	src  string
	prio int
}

// parseAdverts reads tcpdump lines such as
// "IP 203.0.113.10 > 224.0.0.18: VRRPv3, Advertisement, vrid 51, prio 110, intvl 10cs, length 12".
func parseAdverts(lines []testlab.Line) []advert {
	var out []advert
	for _, l := range lines {
		f := strings.Fields(l.Text)
		var a advert
		for i := range f {
			switch {
			case f[i] == "IP" && i+1 < len(f):
				a.src = f[i+1]
			case f[i] == "prio" && i+1 < len(f):
				a.prio, _ = strconv.Atoi(strings.TrimSuffix(f[i+1], ","))
			}
		}
		if a.src != "" && strings.Contains(l.Text, "Advertisement") {
			a.at = l.At
			out = append(out, a)
		}
	}
	return out
}

// TestBinaryUpgradeKeepsVIP pins issue 18, item 5(b): the Master's binary
// upgrade, with an admin socket configured as by default, sends no
// priority-0 advert and never removes the VIP; the peer stays Backup and
// no client request fails. Everything is watched from before SIGUSR2
// until after the old process exited: the VIP with `ip monitor address`
// and by polling, the adverts with tcpdump on the peer, the peer's VRRP
// state through its admin socket, and HTTPS at the VIP from the client.
// (Before the fix the upgrade hung with the admin socket; without one,
// the old process resigned with priority 0 and deleted the VIP, which
// the new one re-added 15 ms later.)
func TestBinaryUpgradeKeepsVIP(t *testing.T) {
	l := newEdgeLab(t)
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Skip("needs tcpdump (apt-get install tcpdump)")
	}
	kcsimBin := testlab.Build(t, kcsimPkg)
	l.start("k", "kcsim-1", kcsimBin, "-node", "keycloak1", "-traffic", "203.0.113.20:8081", "-mgmt", "203.0.113.20:9001")
	if _, ok := until(10*time.Second, func() bool {
		return exec.Command("ip", "netns", "exec", l.ns("k"), "curl", "-sf", "http://203.0.113.20:9001/health/ready").Run() == nil
	}); !ok {
		t.Fatal("stand-in did not start")
	}
	a := l.start("a", "kclb-a", kclbBin, "run", "-c", l.kclbConfig("a", 110, 8081))
	l.start("b", "kclb-b", kclbBin, "run", "-c", l.kclbConfig("b", 100, 8081))
	peer := unixClient(l.adminSocket("b"))
	peerState := func() string {
		st, err := adminStatus(peer, "http://kclb")
		if err != nil || len(st.VRRP) == 0 {
			return "unknown"
		}
		return st.VRRP[0].State
	}
	if _, ok := until(10*time.Second, func() bool { return l.holdsVIP("a") && !l.holdsVIP("b") && peerState() == "backup" }); !ok {
		t.Fatalf("a is not the only VIP holder with b Backup: a=%v b=%v b state %s", l.holdsVIP("a"), l.holdsVIP("b"), peerState())
	}
	if _, ok := until(10*time.Second, func() bool { return l.clientGet() == nil }); !ok {
		t.Fatalf("HTTPS at the VIP: %v", l.clientGet())
	}

	// Watchers, each proven running before the signal.
	mon := l.Monitor("a", "ip-monitor-a", "address")
	capture := l.start("b", "tcpdump-b", "tcpdump", "-i", "eth0", "-n", "-l", "-p", "ip proto 112")
	if _, ok := until(10*time.Second, func() bool { return capture.Has("203.0.113.10 > 224.0.0.18") }); !ok {
		t.Fatal("tcpdump: no advert from a within 10 s")
	}

	var vipAbsent, peerMaster, polls atomic.Int64
	var okReqs, failedReqs atomic.Int64
	var firstFail atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			polls.Add(1)
			if !l.holdsVIP("a") {
				vipAbsent.Add(1)
			}
			if l.holdsVIP("b") || peerState() == "master" {
				peerMaster.Add(1)
			}
		}
	})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := l.clientGet(); err != nil {
				failedReqs.Add(1)
				firstFail.CompareAndSwap(nil, err)
			} else {
				okReqs.Add(1)
			}
		}
	})
	// A few observations before the signal.
	until(5*time.Second, func() bool { return polls.Load() > 3 && okReqs.Load() > 3 })

	// Watch for the hand-over line before the signal: the new process
	// inherits a's output pipe, so the line can be read after a exits.
	handedOver := a.Watch("upgrade: handed over")
	signalled := time.Now()
	if err := a.Cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("old kclb on a still running 30 s after SIGUSR2")
	}
	exitedAt := time.Now()
	var handed bool
	select {
	case <-handedOver:
		handed = true
	case <-time.After(5 * time.Second):
	}
	logA := []byte(strings.Join(a.Lines(), "\n"))
	var childPID int
	for _, line := range strings.Split(string(logA), "\n") {
		if i := strings.Index(line, " pid="); i >= 0 && strings.Contains(line, "upgrade: new process started") {
			fmt.Sscan(line[i+len(" pid="):], &childPID)
		}
	}
	if childPID == 0 {
		t.Fatalf("no upgraded process in a's log:\n%s", logA)
	}
	t.Cleanup(func() { syscall.Kill(childPID, syscall.SIGKILL) })
	// Keep watching for five advert intervals of the new process and at
	// least one more client request.
	reqs := okReqs.Load() + failedReqs.Load()
	until(5*time.Second, func() bool {
		return time.Since(exitedAt) > 500*time.Millisecond && okReqs.Load()+failedReqs.Load() > reqs
	})
	close(stop)
	wg.Wait()
	mon.Stop()
	capture.Stop()

	if a.Err() != nil {
		t.Errorf("old kclb exit: %v, want 0", a.Err())
	}
	if !handed {
		t.Errorf("old kclb did not hand over:\n%s", logA)
	}
	var deleted []string
	for _, ln := range mon.Stamped() {
		if strings.HasPrefix(ln.Text, "Deleted") && strings.Contains(ln.Text, nsVIP+"/") {
			deleted = append(deleted, ln.Text)
		}
	}
	ads := parseAdverts(capture.Stamped())
	var zero, fromA int
	var maxGap time.Duration
	var last time.Time
	for _, ad := range ads {
		if ad.src != nsAddrs["a"] {
			continue
		}
		fromA++
		if ad.prio == 0 {
			zero++
		}
		if !last.IsZero() && ad.at.After(signalled) && ad.at.Sub(last) > maxGap {
			maxGap = ad.at.Sub(last)
		}
		last = ad.at
	}
	t.Logf("upgrade: old process exited %v after SIGUSR2; %d adverts from a (%d with priority 0), largest gap after the signal %v (advert_int 100ms, peer's Master_Down_Interval ≈ 361ms); VIP absent in %d of %d polls, %d deletions seen by ip monitor; peer Master in %d polls; %d requests at the VIP, %d failed",
		exitedAt.Sub(signalled).Round(time.Millisecond), fromA, zero, maxGap.Round(time.Millisecond),
		vipAbsent.Load(), polls.Load(), len(deleted), peerMaster.Load(), okReqs.Load()+failedReqs.Load(), failedReqs.Load())
	if zero != 0 {
		t.Errorf("%d priority-0 adverts from a during the upgrade", zero)
	}
	if fromA == 0 {
		t.Error("no adverts from a captured: the capture did not work")
	}
	if len(deleted) != 0 || vipAbsent.Load() != 0 {
		t.Errorf("the VIP left a during the upgrade: ip monitor %q, absent in %d polls", deleted, vipAbsent.Load())
	}
	if peerMaster.Load() != 0 {
		t.Errorf("the peer was Master (or held the VIP) in %d polls", peerMaster.Load())
	}
	if failedReqs.Load() != 0 {
		t.Errorf("%d requests at the VIP failed; first: %v", failedReqs.Load(), firstFail.Load())
	}
	if err := syscall.Kill(childPID, 0); err != nil {
		t.Fatalf("new kclb on a not running: %v", err)
	}
	if err := l.clientGet(); err != nil {
		t.Fatalf("HTTPS at the VIP after the upgrade: %v", err)
	}
}
