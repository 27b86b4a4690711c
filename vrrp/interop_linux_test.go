package vrrp

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var longInterop = flag.Bool("vrrp.long", false, "watch for flapping for 30 s instead of 10 s in the keepalived interop test (or KCLB_LONG=1)")

func flapWindow() time.Duration {
	if *longInterop || os.Getenv("KCLB_LONG") == "1" {
		return 30 * time.Second
	}
	return 10 * time.Second
}

// steady checks for window that holder keeps the VIP and other never has it, and that the
// kclb helper named kclb stays in state want.
func (l *lab) steady(t *testing.T, window time.Duration, holder, other *vipProbe, kclb string, want State) {
	t.Helper()
	var st0 Status
	if _, ok := waitUntil(time.Second, func() bool { st0, _ = l.helperStatus(kclb); return st0.State == want }); !ok {
		t.Fatalf("%s is %v, want %v", kclb, st0.State, want)
	}
	end := time.Now().Add(window)
	samples := 0
	var maxStall time.Duration // how late this polling loop woke up: a host-load canary
	last := time.Now()
	for time.Now().Before(end) {
		if !holder.has() || other.has() {
			st, _ := l.helperStatus(kclb)
			msg := fmt.Sprintf("flap after %d samples: holder has VIP=%v, other has VIP=%v (kclb max timer lag %v, test loop stalled up to %v, %s)",
				samples, holder.has(), other.has(), st.MaxTimerLag, maxStall, loadavg())
			if maxStall > stallLimit {
				t.Skip("host overloaded, no verdict: " + msg)
			}
			t.Fatal(msg)
		}
		samples++
		time.Sleep(20 * time.Millisecond)
		if d := time.Since(last) - 20*time.Millisecond; d > maxStall {
			maxStall = d
		}
		last = time.Now()
	}
	st1, _ := l.helperStatus(kclb)
	if st1.Transitions != st0.Transitions || st1.State != want {
		msg := fmt.Sprintf("kclb changed state %d times during the window (now %v; max timer lag %v, test loop stalled up to %v, %s)",
			st1.Transitions-st0.Transitions, st1.State, st1.MaxTimerLag, maxStall, loadavg())
		if maxStall > stallLimit {
			t.Skip("host overloaded, no verdict: " + msg)
		}
		t.Fatal(msg)
	}
	t.Logf("no flapping for %v (%d samples, test loop stalled up to %v); kclb %v, %d adverts received, max timer lag %v, drops %v",
		window, samples, maxStall, st1.State, st1.AdvertsReceived, st1.MaxTimerLag, nonZero(st1.Drops))
}

// stallLimit is how late a 20 ms sleep of the test process may wake before a flap is blamed
// on host overload (other processes starving the VRRP processes of CPU) rather than on the
// code: it is far above anything a healthy host shows and below the 361 ms MDI of 100 ms
// adverts.
const stallLimit = 150 * time.Millisecond

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "load unknown"
	}
	return "loadavg " + strings.TrimSpace(string(b))
}

func nonZero(m map[DropReason]uint64) map[DropReason]uint64 {
	out := map[DropReason]uint64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// TestInteropKeepalived runs kclb's VRRP against keepalived in one virtual router, VRRPv3 and
// VRRPv2 with PASS authentication at 1 s (and VRRPv3 at 100 ms with -vrrp.long or KCLB_LONG=1): each wins when it has the higher
// priority, failover works both ways, and nobody flaps.
func TestInteropKeepalived(t *testing.T) {
	needRoot(t)
	needKeepalived(t)
	tests := []struct {
		name     string
		version  int
		interval time.Duration
		advert   string // keepalived advert_int
		pass     string
	}{
		{"v3 1s", 3, time.Second, "1", ""},
		{"v2 PASS 1s", 2, time.Second, "1", "kclbpass"},
		// Sub-second: only in the long run. On a 2-vCPU box shared with other builds
		// (load average 10-18) keepalived itself went silent for 1.4 s at 200 ms adverts.
		{"v3 100ms", 3, 100 * time.Millisecond, "0.1", ""},
	}
	for _, tt := range tests {
		if tt.interval < time.Second && flapWindow() < 30*time.Second {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := newLab(t)
			a, b := l.probe("a"), l.probe("b")
			macA, macB := l.mac("a"), l.mac("b")
			kconf := helperConf{VRID: labVRID, Priority: 100, AdvertMS: int(tt.interval / time.Millisecond),
				Version: tt.version, AuthPass: tt.pass, Preempt: true}
			startup := 3*mdi(100, tt.interval) + 3*time.Second

			// keepalived 150 on A, kclb 100 on B: keepalived wins, kclb follows.
			ka := l.startKeepalived("a", "ka1", tt.version, 150, tt.advert, tt.pass)
			kb := l.startKCLB("b", "kclb1", kconf)
			if _, ok := waitUntil(startup, func() bool { return a.has() && !b.has() }); !ok {
				t.Fatalf("keepalived (150) did not become the only master: A=%v B=%v", a.has(), b.has())
			}
			if _, ok := waitUntil(2*time.Second, func() bool {
				st, _ := l.helperStatus("kclb1")
				return st.State == StateBackup && st.Master.String() == labAddrs["a"] && st.AdvertsReceived > 0
			}); !ok {
				st, _ := l.helperStatus("kclb1")
				t.Fatalf("kclb does not follow keepalived: %+v", st)
			}
			if err := l.ping("c", labVIP); err != nil { // creates the client's neighbour entry
				t.Fatalf("client cannot reach the VIP on keepalived: %v", err)
			}
			l.steady(t, flapWindow(), a, b, "kclb1", StateBackup)

			// Crash keepalived: kclb takes over within Master_Down_Interval.
			t0 := time.Now()
			l.killKeepalived("ka1", ka)
			l.linkSet("a", "down")
			t1, ok := waitUntil(mdi(100, tt.interval)+2*time.Second, b.has)
			if !ok {
				t.Fatal("kclb did not take over from crashed keepalived")
			}
			t.Logf("keepalived crash -> VIP on kclb: %v (MDI %v)", t1.Sub(t0), mdi(100, tt.interval))
			if _, ok := waitUntil(2*time.Second, func() bool { return l.clientNeigh() == macB }); !ok {
				t.Fatalf("client neighbour %q, want kclb's MAC %s", l.clientNeigh(), macB)
			}

			// keepalived returns at 100 (equal, lower address): it stays backup. Then kclb
			// stops gracefully and keepalived takes over after Skew_Time.
			l.linkSet("a", "up")
			ka = l.startKeepalived("a", "ka2", tt.version, 100, tt.advert, tt.pass)
			if _, ok := waitUntil(2*mdi(100, tt.interval)+time.Second, func() bool { return !a.has() }); !ok {
				t.Fatal("keepalived kept the stale VIP")
			}
			time.Sleep(mdi(100, tt.interval)) // keepalived must stay backup
			if a.has() || !b.has() {
				t.Fatalf("equal priority, lower address took over: A=%v B=%v", a.has(), b.has())
			}
			t0 = time.Now()
			kb.Signal(syscall.SIGTERM)
			t1, ok = waitUntil(mdi(100, tt.interval)+2*time.Second, func() bool { return a.has() && !b.has() })
			if !ok {
				t.Fatalf("keepalived did not take over after kclb SIGTERM: A=%v B=%v", a.has(), b.has())
			}
			t.Logf("kclb SIGTERM -> VIP on keepalived: %v (Skew_Time %v)", t1.Sub(t0), skew(100, tt.interval))
			if _, ok := waitUntil(2*time.Second, func() bool {
				b, _ := os.ReadFile(filepath.Join(l.dir, "ka2.log"))
				return strings.Contains(string(b), "received priority 0")
			}); !ok {
				t.Error("keepalived did not log kclb's priority-0 advert")
			}
			kb.Wait(t, 5*time.Second)

			// kclb returns at 150: it preempts keepalived and keeps the VIP.
			kconf.Priority = 150
			kb = l.startKCLB("b", "kclb2", kconf)
			if _, ok := waitUntil(startup, func() bool { return b.has() && !a.has() }); !ok {
				t.Fatalf("kclb (150) did not preempt keepalived: A=%v B=%v", a.has(), b.has())
			}
			if _, ok := waitUntil(2*time.Second, func() bool { return l.clientNeigh() == macB }); !ok {
				t.Fatalf("client neighbour %q, want kclb's MAC %s", l.clientNeigh(), macB)
			}
			l.steady(t, flapWindow(), b, a, "kclb2", StateMaster)

			// Crash kclb: keepalived takes over.
			t0 = time.Now()
			kb.Signal(syscall.SIGKILL)
			l.linkSet("b", "down")
			t1, ok = waitUntil(mdi(100, tt.interval)+2*time.Second, a.has)
			if !ok {
				t.Fatal("keepalived did not take over from crashed kclb")
			}
			t.Logf("kclb crash -> VIP on keepalived: %v (MDI %v)", t1.Sub(t0), mdi(100, tt.interval))
			if _, ok := waitUntil(2*time.Second, func() bool { return l.clientNeigh() == macA }); !ok {
				t.Fatalf("client neighbour %q, want keepalived's MAC %s", l.clientNeigh(), macA)
			}

			// kclb returns at 100 and follows keepalived; keepalived stops gracefully and kclb
			// takes over after Skew_Time on keepalived's priority-0 advert.
			l.linkSet("b", "up")
			kconf.Priority = 100
			l.startKCLB("b", "kclb3", kconf)
			if _, ok := waitUntil(startup, func() bool {
				st, _ := l.helperStatus("kclb3")
				return st.State == StateBackup && st.AdvertsReceived > 0
			}); !ok {
				t.Fatal("kclb did not follow keepalived")
			}
			t0 = time.Now()
			ka.Signal(syscall.SIGTERM)
			t1, ok = waitUntil(mdi(100, tt.interval)+2*time.Second, func() bool { return b.has() && !a.has() })
			if !ok {
				t.Fatalf("kclb did not take over after keepalived SIGTERM: A=%v B=%v", a.has(), b.has())
			}
			t.Logf("keepalived SIGTERM -> VIP on kclb: %v (Skew_Time %v)", t1.Sub(t0), skew(100, tt.interval))
			if _, ok := waitUntil(time.Second, func() bool { st, _ := l.helperStatus("kclb3"); return st.Resignations == 1 }); !ok {
				t.Error("kclb did not see keepalived's priority-0 advert")
			}
			ka.Wait(t, 5*time.Second)
		})
	}
}
