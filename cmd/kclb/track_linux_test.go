package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTrackWeightZeroDoesNotTrack pins issue 18, item 4 for
// vrrp.instance.track_weight: "0" means no tracking, as documented (and
// as the importer writes for a keepalived instance that tracked nothing),
// so a kclb whose Keycloak pool is dead keeps the VIP. On c0768d7 the
// vrrp package read 0 as keepalived's weight-0 "enter Fault" and released
// it.
func TestTrackWeightZeroDoesNotTrack(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (apt-get install iproute2)")
	}
	ns := fmt.Sprintf("kclbtw-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	mustRun(t, "ip", "-n", ns, "link", "set", "lo", "up")
	mustRun(t, "ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
	mustRun(t, "ip", "-n", ns, "link", "set", "eth1", "up")
	mustRun(t, "ip", "-n", ns, "addr", "add", "203.0.113.10/24", "dev", "eth0")
	mustRun(t, "ip", "-n", ns, "link", "set", "eth0", "up")

	dir := t.TempDir()
	cfg := filepath.Join(dir, "kclb.toml")
	// The only server refuses everything: the pool is never available.
	err := os.WriteFile(cfg, []byte(`
[global]
state_file = ""
access_log = false
shutdown_grace = "1s"
[admin]
socket = ""
[[listener]]
name = "http"
bind = "127.0.0.1:8080"
[health]
interval = "100ms"
timeout = "90ms"
fall = 1
[[backend.server]]
name = "keycloak"
address = "127.0.0.1:1"
management = "127.0.0.1:2"
[[vrrp.instance]]
name = "VI_1"
interface = "eth0"
vrid = 52
priority = 100
advert_int = "100ms"
vips = ["203.0.113.100/24"]
track_weight = 0
track_fall = 1
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	p := runKclb(t, exec.Command("ip", "netns", "exec", ns, kclbBin, "run", "-c", cfg), 1)
	unavailable := p.watch("any_available=false")
	if !strings.Contains(strings.Join(p.Logs(), "\n"), "any_available=false") {
		waitLog(t, unavailable, "dead pool", 10*time.Second)
	}
	holds := func() bool {
		out, _ := exec.Command("ip", "-n", ns, "-4", "addr", "show", "dev", "eth0").Output()
		return strings.Contains(string(out), " 203.0.113.100/")
	}
	if _, ok := until(10*time.Second, holds); !ok {
		t.Fatal("no VIP: the instance with track_weight = 0 left Master for Fault over the dead pool")
	}
	// Watch 20 advert intervals: tracking would have dropped it by now.
	until(2*time.Second, func() bool {
		if !holds() {
			t.Fatal("VIP released while the pool is dead, with track_weight = 0")
		}
		return false
	})
	for _, l := range p.Logs() {
		if strings.Contains(strings.ToLower(l), "fault") {
			t.Fatalf("fault with track_weight = 0: %s", l)
		}
	}
}
