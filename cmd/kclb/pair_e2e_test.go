package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/admin"
	"github.com/kclb/kclb/internal/kcsim"
)

// pairSection is a [pair] section plus the affinity secret both
// instances of a pair share.
func pairSection(listen, peer, secretFile string) string {
	return fmt.Sprintf("\n[pair]\nlisten = %q\npeer = %q\nsecret_file = %q\ninterval = \"200ms\"\n\n[affinity]\nsecret = \"pair-affinity-secret-0123456789\"\n",
		listen, peer, secretFile)
}

// socketStatus reads the status of the kclb on socket.
func socketStatus(t *testing.T, socket string) admin.Status {
	t.Helper()
	var st admin.Status
	out := mustCLI(t, "status", "-s", socket, "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st
}

// socketMetrics returns the /metrics text of the kclb on socket.
func socketMetrics(t *testing.T, socket string) string {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
	resp, err := c.Get("http://kclb/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// pairEnv is two kclb instances of a pair in front of one stand-in
// cluster: A (name "test") is the env, B ("edgeB") its own process.
type pairEnv struct {
	a            *env
	sockA, sockB string
	pairA, pairB string
	stateA, cfgB string
}

// newPairEnv starts A, then B with driftB appended to B's configuration;
// beforeB runs between the two (to watch A's log from before B speaks).
func newPairEnv(t *testing.T, driftB string, beforeB func(a *env)) *pairEnv {
	t.Helper()
	dir := t.TempDir()
	secret := filepath.Join(dir, "pair.key")
	if err := os.WriteFile(secret, []byte("5f0c1e7d9a3b42c68e1f7a2d4b9c0e3f5a7d1c2b8e4f6a9d0c3b5e7f1a2d4c6b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addrs := distinctAddrs(t, 4)
	p := &pairEnv{pairA: addrs[0], pairB: addrs[1], sockA: filepath.Join(dir, "a.sock"), sockB: filepath.Join(dir, "b.sock"),
		stateA: filepath.Join(dir, "a.json"), cfgB: filepath.Join(dir, "b.toml")}
	p.a = newEnv(t, envOptions{admin: fmt.Sprintf("socket = %q", p.sockA), stateFile: p.stateA,
		extra: pairSection(p.pairA, p.pairB, secret)})
	// Instance B: the same cluster, its own listeners, socket, state file
	// and name.
	text, err := os.ReadFile(p.a.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfgB := strings.NewReplacer(`name = "test"`, `name = "edgeB"`,
		p.a.httpAddr, addrs[2], p.a.httpsAddr, addrs[3],
		p.sockA, p.sockB, p.stateA, filepath.Join(dir, "b.json"),
		pairSection(p.pairA, p.pairB, secret), pairSection(p.pairB, p.pairA, secret)).Replace(string(text)) + driftB
	if err := os.WriteFile(p.cfgB, []byte(cfgB), 0o600); err != nil {
		t.Fatal(err)
	}
	if beforeB != nil {
		beforeB(p.a)
	}
	startKclb(t, p.cfgB, 2)
	return p
}

// TestPairSharesAdminState is issue 17, items 1 and 2, through two real
// kclb binaries on loopback in front of one stand-in cluster: a drain on
// instance B shows up drained on instance A and A routes new logins away
// from the node; a command while A is down applies on B, says so and
// exits 3; the restarted A catches up; a configuration part that differs
// is reported by both.
func TestPairSharesAdminState(t *testing.T) {
	var driftA <-chan string
	p := newPairEnv(t, "\n[headers]\nhsts = \"max-age=60\"\n", func(a *env) { driftA = a.proc.watch("configuration differs from the peer's") })
	a, sockA, sockB, pairA := p.a, p.sockA, p.sockB, p.pairA
	dir := filepath.Dir(p.stateA)

	out, errOut, code := cli(t, "drain", "keycloak2", "-s", sockB)
	if code != 0 || !strings.Contains(out, "applied on the pair peer "+pairA) {
		t.Fatalf("drain on B: exit %d\n%s%s", code, out, errOut)
	}
	st := socketStatus(t, sockA)
	if k2 := serverByName(t, st, "keycloak2"); k2.Admin != "drain" || k2.PeerAdmin != "drain" {
		t.Fatalf("keycloak2 on A after a drain on B: admin %s, peer %s; want drain on both", k2.Admin, k2.PeerAdmin)
	}
	c := e2eLoginClient(a)
	for range 6 {
		res, err := (&kcsim.LoginFlow{Client: c()}).Run(context.Background(), a.url(""))
		if err != nil {
			t.Fatal(err)
		}
		if res.AuthNode == "keycloak2" {
			t.Fatal("A sent a new login to keycloak2, which B drained")
		}
	}

	// Drift: both name the part that differs, in the log, the status
	// and the metric.
	waitLog(t, driftA, "drift warning on A", 10*time.Second)
	if st.Pair == nil || !slices.Equal(st.Pair.Drift, []string{"headers"}) || st.Pair.PeerName != "edgeB" {
		t.Fatalf("A's pair status: %+v; want peer edgeB, drift [headers]", st.Pair)
	}
	if m := socketMetrics(t, sockA); !strings.Contains(m, `kclb_pair_config_drift{part="headers"} 1`) ||
		!strings.Contains(m, `kclb_pair_config_drift{part="vrrp"} 0`) || !strings.Contains(m, "kclb_pair_peer_up 1") {
		t.Fatalf("A's pair metrics:\n%s", grepLines(m, "kclb_pair_"))
	}
	text2 := mustCLI(t, "status", "-s", sockB)
	if !strings.Contains(text2, "pair peer "+pairA+" (test) reachable") || !strings.Contains(text2, "CONFIGURATION DRIFT: headers") {
		t.Fatalf("B's status text:\n%s", text2)
	}

	// A crashes; B keeps working alone and says so.
	a.proc.cmd.Process.Kill()
	<-a.proc.done
	for _, cmd := range [][]string{{"ready", "keycloak2"}, {"maint", "keycloak3"}} {
		out, errOut, code := cli(t, append(cmd, "-s", sockB)...)
		if code != 3 || !strings.Contains(errOut, "not reached") || !strings.Contains(errOut, "applied on this instance only") {
			t.Fatalf("%v on B with A down: exit %d; want 3 and the reason\n%s%s", cmd, code, out, errOut)
		}
	}
	if st := socketStatus(t, sockB); st.Pair.Reachable || serverByName(t, st, "keycloak3").Admin != "maint" {
		t.Fatalf("B with A down: pair %+v, keycloak3 %s", st.Pair, serverByName(t, st, "keycloak3").Admin)
	}

	// The restarted A starts from its state file (keycloak2 drained) and
	// catches up from B.
	// It syncs before its listeners open, so its status is caught up as
	// soon as it listens.
	a.proc = startKclb(t, a.cfgPath, 2)
	st = socketStatus(t, sockA)
	if k2, k3 := serverByName(t, st, "keycloak2"), serverByName(t, st, "keycloak3"); k2.Admin != "ready" || k3.Admin != "maint" {
		t.Fatalf("restarted A: keycloak2 %s, keycloak3 %s; want ready, maint (from B)", k2.Admin, k3.Admin)
	}
	if st, err := admin.NewStateFile(filepath.Join(dir, "a.json")).Load(); err != nil || st.Servers["keycloak3"] != "maint" || st.Servers["keycloak2"] != "" {
		t.Fatalf("A's state file after the catch-up: %+v %v", st, err)
	}
}

// distinctAddrs returns n loopback addresses that were free a moment ago
// and differ from each other (freeAddr alone may return one port twice).
func distinctAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for len(out) < n {
		if a := freeAddr(t); !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// grepLines returns the lines of s containing substr.
func grepLines(s, substr string) string {
	var out []string
	for l := range strings.Lines(s) {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

// TestStatusFlagsPairDisagreement: the status text names a server whose
// admin state differs between the instances, and an unreachable peer.
func TestStatusFlagsPairDisagreement(t *testing.T) {
	st := &admin.Status{Name: "edge1",
		Pair: &admin.PairStatus{Peer: "10.0.0.2:9101", PeerName: "edge2", Error: "peer 10.0.0.2:9101 unreachable: connection refused",
			Dropped: map[string]uint64{"bad_mac": 2}},
		Servers: []admin.ServerStatus{{Name: "kc1", Health: "up", Admin: "drain", PeerAdmin: "ready"}, {Name: "kc2", Health: "up", Admin: "ready", PeerAdmin: "ready"}}}
	var b strings.Builder
	admin.WriteStatus(&b, st, false)
	for _, want := range []string{
		"pair peer 10.0.0.2:9101 (edge2) UNREACHABLE (last contact never): peer 10.0.0.2:9101 unreachable: connection refused",
		"pair DISAGREES on kc1 (drain here, ready there)",
		"pair messages dropped 2 (bad_mac 2)",
		"ready DIFFERS",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status text lacks %q:\n%s", want, b.String())
		}
	}
}

// TestPairAcrossBinaryUpgrade: after SIGUSR2 on A the new process serves
// the pair listener it was handed, so a drain on B reaches it.
func TestPairAcrossBinaryUpgrade(t *testing.T) {
	p := newPairEnv(t, "", func(a *env) {
		// The upgrade needs a process logging to a file.
		a.proc.cmd.Process.Kill()
		<-a.proc.done
	})
	old := startLogged(t, p.a.dir, p.a.cfgPath)
	old.waitLine(t, "pair channel listening")
	if err := old.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	pid := old.childPID(t)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	select {
	case <-old.done:
	case <-time.After(30 * time.Second):
		t.Fatal("old process still running 30 s after SIGUSR2")
	}
	out, errOut, code := cli(t, "drain", "keycloak1", "-s", p.sockB)
	if code != 0 {
		t.Fatalf("drain on B after A's upgrade: exit %d\n%s%s", code, out, errOut)
	}
	st := socketStatus(t, p.sockA)
	if k1 := serverByName(t, st, "keycloak1"); k1.Admin != "drain" || st.Pair == nil || !st.Pair.Reachable {
		t.Fatalf("A's new process after a drain on B: keycloak1 %s, pair %+v", k1.Admin, st.Pair)
	}
}
