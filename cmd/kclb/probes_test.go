package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/admin"
	"github.com/kclb/kclb/internal/kcsim"
)

// probeInterval is health.interval in newProbeEnv's configuration.
const probeInterval = 400 * time.Millisecond

// probeWait bounds waiting for a health transition: far beyond the 3
// rounds it takes, so that a loaded CI machine does not fail the test.
const probeWait = 60 * probeInterval

// healthLines returns the log lines of p about server's health.
func healthLines(p *kclbProc, server string) string {
	var out []string
	for _, l := range p.Logs() {
		if strings.Contains(l, "server="+server) && strings.Contains(l, "health") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// newProbeEnv starts kclb in front of three stand-ins with extra keys in
// its [health] section and /echo public.
func newProbeEnv(t *testing.T, o envOptions, healthKeys string) *env {
	t.Helper()
	o.extra, o.noProc = echoPaths+o.extra, true
	e := newEnv(t, o)
	b, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	// The harness's 150 ms check timeout is too tight for the rounds of
	// several probes on a loaded machine: a timed-out round would take a
	// node out for the wrong reason.
	const harness = "interval = \"200ms\"\ntimeout = \"150ms\"\n"
	if !strings.Contains(string(b), harness) {
		t.Fatalf("harness configuration changed; update newProbeEnv:\n%s", b)
	}
	text := strings.Replace(string(b), harness, fmt.Sprintf("interval = %q\ntimeout = %q\n%s\n",
		probeInterval.String(), (probeInterval*9/10).String(), healthKeys), 1)
	if err := os.WriteFile(e.cfgPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	e.proc = startKclb(t, e.cfgPath, 2)
	return e
}

// traffic is a client that keeps sending /echo requests through kclb and
// counts where they went and what failed, until stopped.
type traffic struct {
	stop context.CancelFunc
	done chan struct{}

	mu     sync.Mutex // guards the fields below
	nodes  map[string]int
	errors []string
}

func startTraffic(t *testing.T, e *env) *traffic {
	ctx, cancel := context.WithCancel(context.Background())
	tr := &traffic{stop: cancel, done: make(chan struct{}), nodes: map[string]int{}}
	c := e.client(false)
	go func() {
		defer close(tr.done)
		for ctx.Err() == nil {
			req, _ := http.NewRequestWithContext(ctx, "GET", e.url("/echo"), nil)
			resp, err := c.Do(req)
			if ctx.Err() != nil {
				return
			}
			var got echo
			if err == nil {
				var body []byte
				body, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode == 200 {
					err = json.Unmarshal(body, &got)
				}
			}
			tr.mu.Lock()
			switch {
			case err != nil:
				tr.errors = append(tr.errors, err.Error())
			case resp.StatusCode != 200:
				tr.errors = append(tr.errors, resp.Status)
			default:
				tr.nodes[got.Node]++
			}
			tr.mu.Unlock()
		}
	}()
	t.Cleanup(func() { tr.stop(); <-tr.done })
	return tr
}

// reset returns the counts so far and starts new ones.
func (tr *traffic) reset() (map[string]int, []string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n, e := tr.nodes, tr.errors
	tr.nodes, tr.errors = map[string]int{}, nil
	return n, e
}

// waitServing waits until requests reach every one of names.
func (tr *traffic) waitServing(t *testing.T, names ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		tr.mu.Lock()
		all := true
		for _, n := range names {
			all = all && tr.nodes[n] > 0
		}
		tr.mu.Unlock()
		if all {
			return
		}
		if time.Now().After(deadline) {
			n, errs := tr.reset()
			t.Fatalf("requests never reached all of %v: %v (errors %v)", names, n, errs)
		}
		time.Sleep(20 * time.Millisecond) // polling the counts: the client has no event for them
	}
}

// avoids checks that, once requests in flight have drained (a window in
// which others all served), a further window of requests never reached
// node.
func (tr *traffic) avoids(t *testing.T, node string, others ...string) {
	t.Helper()
	tr.reset()
	tr.waitServing(t, others...)
	tr.reset()
	tr.waitServing(t, others...)
	if n, _ := tr.reset(); n[node] > 0 {
		t.Fatalf("%s still gets traffic after leaving rotation: %v", node, n)
	}
}

// recovers turns the failure switch set off, waits for node to come back
// up and serve, stops the traffic and checks that no request failed at
// any point.
func (tr *traffic) recovers(t *testing.T, e *env, node string, set func(bool)) {
	t.Helper()
	up := e.proc.watch("server=" + node + " from=down to=up")
	set(false)
	waitLog(t, up, node+" back up", probeWait)
	tr.waitServing(t, node)
	tr.stop()
	<-tr.done
	if _, errs := tr.reset(); len(errs) > 0 {
		t.Fatalf("%d client errors: %v", len(errs), errs[:min(len(errs), 5)])
	}
}

// probeCycle turns on the failure switch set of node i, expects it out of
// rotation after fall (3) rounds with reason in the transition, checks it
// gets no more traffic, then turns the switch off and expects it back
// with no client error throughout.
func (tr *traffic) probeCycle(t *testing.T, e *env, i int, set func(bool), reason string) {
	t.Helper()
	node := fmt.Sprintf("keycloak%d", i+1)
	var others []string
	for j := range e.cluster.Len() {
		if j != i {
			others = append(others, fmt.Sprintf("keycloak%d", j+1))
		}
	}
	down := e.proc.watch("server=" + node + " from=up to=down")
	start := time.Now()
	set(true)
	line := waitLog(t, down, node+" out of rotation", probeWait)
	if !strings.Contains(line, reason) || !strings.Contains(line, "(3 consecutive failures)") {
		t.Fatalf("transition %q: want %q, after fall=3 rounds", line, reason)
	}
	took := time.Since(start)
	t.Logf("%s (%s) out of rotation after %v = %.1f intervals", node, reason, took.Round(time.Millisecond), float64(took)/float64(probeInterval))
	tr.avoids(t, node, others...)
	tr.recovers(t, e, node, set)
}

// TestLBCheck pins issue 18, item 4 for lb_check: against multi-site
// stand-ins, a node whose /lb-check answers 503 DOWN (site offline) leaves
// rotation while its readiness stays UP, and comes back. On c0768d7 the
// key was ignored.
func TestLBCheck(t *testing.T) {
	e := newProbeEnv(t, envOptions{kcsim: kcsim.Options{MultiSite: true}}, "lb_check = true")
	tr := startTraffic(t, e)
	tr.waitServing(t, "keycloak1", "keycloak2", "keycloak3")
	tr.probeCycle(t, e, 0, e.cluster.At(0).Node.SetSiteOffline, "lb-check")
}

// TestClusterSplitEjectsMinority pins issue 18, item 4: with
// cluster_check = "eject" a node whose cluster view disagrees with the
// majority (a split, through kcsim's switch) leaves rotation after `fall`
// (3) failed rounds, and clients see no error. On c0768d7 the key never
// reached the checker and the node stayed in rotation.
func TestClusterSplitEjectsMinority(t *testing.T) {
	e := newProbeEnv(t, envOptions{}, `cluster_check = "eject"`)
	tr := startTraffic(t, e)
	tr.waitServing(t, "keycloak1", "keycloak2", "keycloak3")

	down := e.proc.watch(`server=keycloak2 from=up to=down`)
	start := time.Now()
	e.cluster.At(1).Node.SetSplit(true)
	var line string
	select {
	case line = <-down:
	case <-time.After(probeWait):
		n, errs := tr.reset()
		t.Fatalf("split node still in rotation after %v (%d intervals); traffic %v, errors %v; health log:\n%s",
			time.Since(start), probeWait/probeInterval, n, errs, healthLines(e.proc, "keycloak2"))
	}
	took := time.Since(start)
	if !strings.Contains(line, "cluster split") || !strings.Contains(line, "(3 consecutive failures)") {
		t.Fatalf("transition %q: want a cluster split after fall=3 rounds", line)
	}
	t.Logf("split node out of rotation %v after the split = %.1f intervals", took.Round(time.Millisecond), float64(took)/float64(probeInterval))

	// The minority node gets nothing new; the others serve everything.
	tr.avoids(t, "keycloak2", "keycloak1", "keycloak3")

	// Healing the split brings it back.
	tr.recovers(t, e, "keycloak2", e.cluster.At(1).Node.SetSplit)
}

// TestClusterSplitReportOnly pins issue 18, item 4 for cluster_check =
// "report": the split node is flagged in the status API and stays in
// rotation.
func TestClusterSplitReportOnly(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	e := newProbeEnv(t, envOptions{admin: fmt.Sprintf("socket = %q", sock)}, `cluster_check = "report"`)
	tr := startTraffic(t, e)
	tr.waitServing(t, "keycloak1", "keycloak2", "keycloak3")
	split := func() admin.ServerStatus {
		var st admin.Status
		out := mustCLI(t, "status", "-s", sock, "--json")
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
		return serverByName(t, st, "keycloak2")
	}
	if s := split(); s.Split {
		t.Fatalf("keycloak2 flagged split before the split: %+v", s)
	}
	e.cluster.At(1).Node.SetSplit(true)
	// waitStatus polls the status API (it has no change stream) until ok.
	waitStatus := func(what string, ok func(admin.ServerStatus) bool) admin.ServerStatus {
		deadline := time.Now().Add(probeWait)
		for {
			s := split()
			if ok(s) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("keycloak2 not %s after %d intervals: %+v", what, probeWait/probeInterval, s)
			}
			time.Sleep(probeInterval / 4)
		}
	}
	flagged := waitStatus("flagged split", func(s admin.ServerStatus) bool { return s.Split && s.Check != nil })
	// Still in rotation after more than fall (3) further split rounds.
	waitStatus("checked 3 more rounds", func(s admin.ServerStatus) bool {
		return s.Check != nil && s.Check.Time.Sub(flagged.Check.Time) > 7*probeInterval/2
	})
	tr.reset()
	tr.waitServing(t, "keycloak1", "keycloak2", "keycloak3")
	if s := split(); s.Health != "up" || !s.Split {
		t.Fatalf("report mode: keycloak2 %+v, want up and flagged split", s)
	}
	tr.stop()
	<-tr.done
	if _, errs := tr.reset(); len(errs) > 0 {
		t.Fatalf("%d client errors: %v", len(errs), errs[:min(len(errs), 5)])
	}
}

// TestTokenAndWellKnownProbes pins issue 18, item 4 for the authenticated
// probe and OIDC discovery: a node whose token endpoint fails leaves
// rotation (reason names the token probe) with no client error, comes
// back when it answers again, and the probe secret never reaches the log.
// On c0768d7 token_client_id and well_known were ignored.
func TestTokenAndWellKnownProbes(t *testing.T) {
	const secret = "probe-secret-e2e-7f3a"
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "probe.secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newProbeEnv(t, envOptions{kcsim: kcsim.Options{ProbeSecret: secret}}, fmt.Sprintf(`
realm = "test"
well_known = true
token_client_id = "kclb-probe"
token_secret_file = %q
token_interval = "1s"
`, secretFile))
	tr := startTraffic(t, e)
	tr.waitServing(t, "keycloak1", "keycloak2", "keycloak3")

	// The client only asks for /echo: discovery and token requests on
	// every node are the probes'.
	deadline := time.Now().Add(probeWait)
	for _, m := range e.cluster.Nodes() {
		for st := m.Node.Stats(); st.ByClass["well-known"] < 2 || st.Tokens < 1; st = m.Node.Stats() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no probe requests from kclb: %+v", m.Node.Name(), st)
			}
			time.Sleep(probeInterval / 4) // polling kcsim's counters: no event for a request
		}
	}
	tr.probeCycle(t, e, 2, e.cluster.At(2).Node.SetTokenFail, "token: HTTP 500")
	if logs := strings.Join(e.proc.Logs(), "\n"); strings.Contains(logs, secret) {
		t.Fatal("the probe secret appears in kclb's log")
	}
}

// TestReloadNamesRestartOnlyKeys pins issue 18, item 4 for reloads: a
// changed key that a reload cannot apply (the pool's passive_fails, the
// logger) is named in a warning instead of being silently ignored; a
// reload without such a change logs no warning.
func TestReloadNamesRestartOnlyKeys(t *testing.T) {
	e := newEnv(t, envOptions{})
	warned := e.proc.watch("keep their running values until kclb restarts")
	reloaded := e.proc.watch("configuration reloaded")
	e.proc.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, reloaded, "unchanged reload", 10*time.Second)
	// Logs holds every line read so far, the reload's own included.
	if logs := strings.Join(e.proc.Logs(), "\n"); strings.Contains(logs, "keep their running values") {
		t.Fatalf("reload of an unchanged file warned:\n%s", logs)
	}

	b, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(b), "[health]\n", "[health]\npassive_fails = 5\n", 1)
	text = strings.Replace(text, `log_level = "debug"`, `log_level = "info"`, 1)
	if err := os.WriteFile(e.cfgPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	e.proc.cmd.Process.Signal(syscall.SIGHUP)
	line := waitLog(t, warned, "restart-only warning", 10*time.Second)
	if !strings.Contains(line, "keys=global.log_level,health.passive_fails") {
		t.Fatalf("warning %q, want keys=global.log_level,health.passive_fails", line)
	}
	waitLog(t, reloaded, "changed reload", 10*time.Second)
}

// TestShutdownGraceZero pins issue 18, item 4 for global.shutdown_grace:
// "0s" closes requests in flight at SIGTERM instead of waiting for them.
// On c0768d7 serve replaced 0 with 30 s, so kclb waited for the 20 s
// request below.
func TestShutdownGraceZero(t *testing.T) {
	e := newEnv(t, envOptions{extra: echoPaths, noProc: true})
	b, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(b), `shutdown_grace = "5s"`, `shutdown_grace = "0s"`, 1)
	if err := os.WriteFile(e.cfgPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	e.proc = startKclb(t, e.cfgPath, 2)
	for _, m := range e.cluster.Nodes() {
		m.Node.SetDelay(20 * time.Second)
	}
	before := int64(0)
	for _, m := range e.cluster.Nodes() {
		before += m.Node.Stats().Requests
	}
	go func() {
		req, _ := http.NewRequest("GET", e.url("/echo"), nil)
		if resp, err := e.client(false).Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := int64(0)
		for _, m := range e.cluster.Nodes() {
			n += m.Node.Stats().Requests
		}
		if n > before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the request never reached a node")
		}
		time.Sleep(10 * time.Millisecond) // polling kcsim's counters: no event for an arrival
	}
	e.proc.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.proc.done:
	case <-time.After(15 * time.Second):
		t.Fatal("kclb still running 15 s after SIGTERM with shutdown_grace = \"0s\" (it waits for the 20 s request)")
	}
}

// TestMisconfiguredProbeKeepsServing pins how a deep probe that fails on
// every node (here lb_check = true against a Keycloak without the
// multi-site feature: /lb-check is a 404) cannot take the cluster down:
// every node turns Down, not Dead, panic mode routes to the live ones,
// and no client request fails.
func TestMisconfiguredProbeKeepsServing(t *testing.T) {
	e := newProbeEnv(t, envOptions{}, "lb_check = true")
	panicOn := e.proc.watch("panic mode on")
	tr := startTraffic(t, e)
	if !strings.Contains(strings.Join(e.proc.Logs(), "\n"), "panic mode on") {
		waitLog(t, panicOn, "panic mode", probeWait)
	}
	for _, l := range e.proc.Logs() {
		if strings.Contains(l, "msg=\"server health\"") && !strings.Contains(l, "to=down") {
			t.Fatalf("transition other than to down: %s", l)
		}
	}
	tr.reset()
	tr.waitServing(t, "keycloak1", "keycloak2", "keycloak3")
	tr.stop()
	<-tr.done
	if _, errs := tr.reset(); len(errs) > 0 {
		t.Fatalf("%d client errors: %v", len(errs), errs[:min(len(errs), 5)])
	}
}

// TestQueueSizeZero pins issue 18, item 4 for limits.queue_size: "0"
// answers 503 at once when the server is at maxconn, as documented. On
// c0768d7 the proxy took 0 for its default of 1024 and queued the request.
func TestQueueSizeZero(t *testing.T) {
	e := newEnv(t, envOptions{nodes: 1, servers: "maxconn = 1", extra: echoPaths + "\n[limits]\nqueue_size = 0\n[timeouts]\nqueue = \"50s\"\n"})
	n := e.cluster.At(0).Node
	n.SetDelay(time.Minute)
	before := n.Stats().Requests
	first := make(chan struct{})
	go func() {
		defer close(first)
		req, _ := http.NewRequest("GET", e.url("/echo"), nil)
		if resp, err := e.client(false).Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for n.Stats().Requests == before {
		if time.Now().After(deadline) {
			t.Fatal("the first request never reached the node")
		}
		time.Sleep(10 * time.Millisecond) // polling kcsim's counters: no event for an arrival
	}
	// The only slot is taken; the next request must not wait for it (a
	// queued one would wait out the 50 s queue timeout, beyond the
	// client's 20 s).
	req, _ := http.NewRequest("GET", e.url("/echo"), nil)
	resp, err := e.client(false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	select {
	case <-first:
		t.Fatal("the first request ended before the second was answered")
	default:
	}
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second request at maxconn: %s, want 503 at once (no queue)", resp.Status)
	}
	n.SetDelay(0)
}
