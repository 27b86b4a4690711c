package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/admin"
	"github.com/kclb/kclb/internal/configmap"
)

// TestSlowStartRampsAReturningServer pins [health] slowstart through the
// binary: a node that comes back after failing its checks starts at
// weight 1 (1 request in 201 under round robin with two nodes at 100),
// and a reload that turns slow start off gives it its full share at once.
// The one-hour ramp keeps the test free of timing.
func TestSlowStartRampsAReturningServer(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	e := newEnv(t, envOptions{
		extra:  echoPaths + "\n[backend]\nbalance = \"round_robin\"\n",
		admin:  fmt.Sprintf("socket = %q", sock),
		noProc: true,
	})
	b, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	const off = "slowstart = \"0s\"\n"
	if !strings.Contains(string(b), off) {
		t.Fatalf("harness configuration changed; update the test:\n%s", b)
	}
	ramped := strings.Replace(string(b), off, "slowstart = \"1h\"\n", 1)
	if err := os.WriteFile(e.cfgPath, []byte(ramped), 0o600); err != nil {
		t.Fatal(err)
	}
	e.proc = startKclb(t, e.cfgPath, 2)
	c := e.client(false)
	send := func(n int) map[string]int {
		t.Helper()
		got := map[string]int{}
		for range n {
			resp, err := c.Get(e.url("/echo"))
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			var ec echo
			if err != nil || resp.StatusCode != 200 || json.Unmarshal(body, &ec) != nil {
				t.Fatalf("GET /echo: %s %v %q", resp.Status, err, body)
			}
			got[ec.Node]++
		}
		return got
	}
	weight := func(name string) int {
		t.Helper()
		var st admin.Status
		out := mustCLI(t, "status", "-s", sock, "--json")
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
		for _, s := range st.Servers {
			if s.Name == name {
				return s.Weight
			}
		}
		t.Fatalf("no server %s in %s", name, out)
		return 0
	}
	if n := send(30); n["keycloak1"] != 10 {
		t.Fatalf("before the failure: %v, want 10 each (the servers a start finds ramp not)", n)
	}

	node := e.cluster.At(0).Node
	down := e.proc.watch("server=keycloak1 from=up to=down")
	node.SetDatabaseDown(true)
	waitLog(t, down, "keycloak1 down", probeWait)
	up := e.proc.watch("server=keycloak1 from=down to=up")
	node.SetDatabaseDown(false)
	waitLog(t, up, "keycloak1 back up", probeWait)
	if w := weight("keycloak1"); w != 1 {
		t.Fatalf("returned server's weight %d, want 1 (one-hour slow start)", w)
	}
	if n := send(201); n["keycloak1"] > 2 {
		t.Fatalf("returned server took %d of 201 requests (%v), want about 1", n["keycloak1"], n)
	}

	if err := os.WriteFile(e.cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	reloaded := e.proc.watch("configuration reloaded")
	e.proc.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, reloaded, "reload", 20*time.Second)
	if w := weight("keycloak1"); w != 100 {
		t.Fatalf("weight after a reload to slowstart = \"0s\": %d, want 100", w)
	}
	if n := send(30); n["keycloak1"] < 9 {
		t.Fatalf("after the reload: %v, want about 10 each", n)
	}
}

// TestNoSlowStartWithoutChecks pins configuration.md's "nothing ramps with
// enabled = false": without health checks no server becomes ready, so the
// pool gets no slow start, whatever health.slowstart says.
func TestNoSlowStartWithoutChecks(t *testing.T) {
	dir := t.TempDir()
	base, _ := wiringBase(t, dir)
	c, err := configmap.Parse([]byte(base), dir)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Health.Enabled || c.Health.Slowstart.Duration <= 0 {
		t.Fatalf("base configuration: want checks on with a slow start, have enabled=%v slowstart=%v", c.Health.Enabled, c.Health.Slowstart.Duration)
	}
	if got := buildOptions(c).Checks.Slowstart; got != c.Health.Slowstart.Duration {
		t.Fatalf("slow start with checks on: %v, want %v", got, c.Health.Slowstart.Duration)
	}
	c.Health.Enabled = false
	if got := buildOptions(c).Checks.Slowstart; got != 0 {
		t.Fatalf("slow start with checks off: %v, want none", got)
	}
}
