package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kclb/kclb/internal/admin"
	"github.com/kclb/kclb/internal/kcsim"
)

// adminEnv is a kclb with its admin socket, optional TCP admin listener
// and state file, in front of a stand-in cluster.
type adminEnv struct {
	*env
	socket    string // admin Unix socket
	tcp       string // admin TCP address ("" when off)
	tokenFile string
	token     string
	stateFile string
}

// adminOptions tunes newAdminEnv.
type adminOptions struct {
	tcp bool // also serve the admin API on loopback TCP with a token
	// tokenReads leaves admin.public_read off: reads over TCP need the
	// token too. The other tests read anonymously (public_read = true).
	tokenReads bool
	extra      string // appended to the configuration
	nodes      int
	kcsim      kcsim.Options
}

func newAdminEnv(t *testing.T, o adminOptions) *adminEnv {
	t.Helper()
	dir := t.TempDir()
	a := &adminEnv{socket: filepath.Join(dir, "run", "admin.sock"), stateFile: filepath.Join(dir, "lib", "state.json")}
	section := fmt.Sprintf("socket = %q\nsocket_mode = \"0660\"\n", a.socket)
	if o.tcp {
		a.tcp = freeAddr(t)
		a.token = "test-token-0123456789abcdef0123456789"
		a.tokenFile = filepath.Join(dir, "token")
		if err := os.WriteFile(a.tokenFile, []byte(a.token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		section += fmt.Sprintf("tcp = %q\ntoken_file = %q\n", a.tcp, a.tokenFile)
		if !o.tokenReads {
			section += "public_read = true\n"
		}
	}
	a.env = newEnv(t, envOptions{nodes: o.nodes, kcsim: o.kcsim, admin: section, stateFile: a.stateFile, extra: o.extra})
	return a
}

// cli runs the kclb binary with args and returns its output and exit code.
func cli(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kclbBin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("kclb %v: %v", args, err)
	}
	return o.String(), e.String(), 0
}

// mustCLI runs the CLI and fails the test on a non-zero exit.
func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := cli(t, args...)
	if code != 0 {
		t.Fatalf("kclb %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// status reads the status over the socket with the CLI's --json.
func (a *adminEnv) status(t *testing.T) admin.Status {
	t.Helper()
	var st admin.Status
	out := mustCLI(t, "status", "-s", a.socket, "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st
}

func serverByName(t *testing.T, st admin.Status, name string) admin.ServerStatus {
	t.Helper()
	for _, s := range st.Servers {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no server %s in status", name)
	return admin.ServerStatus{}
}

func TestAdminCommandsOverSocket(t *testing.T) {
	a := newAdminEnv(t, adminOptions{})
	fi, err := os.Stat(a.socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Fatalf("admin socket mode %v, want a socket with 0660", fi.Mode())
	}

	st := a.status(t)
	if st.Name != "test" || len(st.Servers) != 3 || len(st.Listeners) != 2 || !st.Authorized || !st.AnyAvailable {
		t.Fatalf("status %+v", st)
	}
	for _, s := range st.Servers {
		if s.Health != "up" || s.Admin != "ready" || !s.Available {
			t.Fatalf("server %+v", s)
		}
	}
	text := mustCLI(t, "status", "-s", a.socket)
	for _, want := range []string{"SERVER", "HEALTH", "keycloak1", "keycloak3", "up", "ready", "listener https"} {
		if !strings.Contains(text, want) {
			t.Fatalf("status table lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "\x1b[") {
		t.Fatalf("colour codes although stdout is not a terminal:\n%s", text)
	}
	if colored := mustCLI(t, "status", "-s", a.socket, "--color", "always"); !strings.Contains(colored, "\x1b[32mup\x1b[0m") {
		t.Fatalf("--color always has no colours:\n%q", colored)
	}

	for _, tc := range []struct {
		name  string
		args  []string
		admin string
		out   string
	}{
		{"drain", []string{"drain", "keycloak1"}, "drain", "keycloak1: ready -> drain"},
		{"maint", []string{"maint", "keycloak2"}, "maint", "keycloak2: ready -> maint"},
		{"drain wait", []string{"drain", "keycloak3", "--wait", "--timeout", "10s", "--quiet", "100ms"}, "drain", "keycloak3: idle after"},
		{"ready", []string{"ready", "keycloak2"}, "ready", "keycloak2: maint -> ready"},
		{"ready wait healthy", []string{"ready", "keycloak1", "--wait-healthy", "--timeout", "10s"}, "ready", "keycloak1: healthy after"},
		{"ready again", []string{"ready", "keycloak3"}, "ready", "keycloak3: drain -> ready"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := mustCLI(t, append(tc.args, "-s", a.socket)...)
			if !strings.Contains(out, tc.out) {
				t.Fatalf("output %q lacks %q", out, tc.out)
			}
			if got := serverByName(t, a.status(t), tc.args[1]).Admin; got != tc.admin {
				t.Fatalf("admin state %s, want %s", got, tc.admin)
			}
		})
	}

	// JSON output of a change, and of a change with a wait.
	var res changeOutput
	out := mustCLI(t, "drain", "keycloak2", "-s", a.socket, "--json")
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Change == nil || res.Change.Previous != "ready" ||
		res.Change.Server.Admin != "drain" || res.Change.Server.Name != "keycloak2" || res.Wait != nil {
		t.Fatalf("drain --json: %v %+v\n%s", err, res, out)
	}
	res = changeOutput{}
	out = mustCLI(t, "ready", "keycloak2", "--wait-healthy", "-s", a.socket, "--json")
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Change == nil || res.Change.Server.Admin != "ready" ||
		res.Wait == nil || res.Wait.Until != "healthy" || res.Wait.Server.Health != "up" || res.Wait.Server.Check == nil {
		t.Fatalf("ready --wait-healthy --json: %v %+v\n%s", err, res, out)
	}

	// Errors: exit 1 and a clear message; usage errors exit 2.
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"unknown server", []string{"drain", "nope", "-s", a.socket}, 1, `unknown server "nope" (known: keycloak1, keycloak2, keycloak3)`},
		{"missing socket", []string{"status", "-s", filepath.Join(a.dir, "none.sock")}, 1, "does not exist"},
		{"no name", []string{"drain", "-s", a.socket}, 2, "usage: kclb drain NAME"},
		{"two names", []string{"maint", "a", "b", "-s", a.socket}, 2, "usage"},
		{"bad flag", []string{"ready", "keycloak1", "--bogus", "-s", a.socket}, 2, "bogus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := cli(t, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.msg) {
				t.Fatalf("exit %d stderr %q, want exit %d containing %q", code, errOut, tc.code, tc.msg)
			}
		})
	}
}

func TestAdminSocketPermissionDenied(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs the CLI as user nobody")
	}
	a := newAdminEnv(t, adminOptions{nodes: 1})
	// nobody needs to reach the binary and traverse to the socket: only
	// the socket's own mode (0660, root's group) may refuse it.
	bin, err := os.MkdirTemp("", "kclb-nobody")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(bin) })
	b, err := os.ReadFile(kclbBin)
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(bin, "kclb")
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	// Open the test's own directories (below the system temp directory,
	// which is left alone) for traversal.
	tmp := filepath.Clean(os.TempDir())
	for d := filepath.Dir(a.socket); strings.HasPrefix(d, tmp+string(filepath.Separator)); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(bin, 0o755)
	cmd := exec.Command(exe, "status", "-s", a.socket)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "permission denied on admin socket") {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
}

func TestAdminTCPAuth(t *testing.T) {
	a := newAdminEnv(t, adminOptions{tcp: true, nodes: 2})
	base := "http://" + a.tcp
	post := func(path, token string) (int, string) {
		req, _ := http.NewRequest("POST", base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		name, token string
		code        int
	}{
		{"no token", "", 401},
		{"wrong token", "guess", 401},
		{"right token", a.token, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, body := post("/v1/servers/keycloak1/drain", tc.token); code != tc.code {
				t.Fatalf("status %d, want %d: %s", code, tc.code, body)
			}
		})
	}
	// Reads need no token; the status says whether the caller may write.
	resp, err := http.Get(base + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var st admin.Status
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st.Authorized || len(st.Servers) != 2 {
		t.Fatalf("anonymous status: %+v", st)
	}

	// The CLI over TCP: refused without the token, accepted with it.
	_, errOut, code := cli(t, "ready", "keycloak1", "-a", base)
	if code != 1 || !strings.Contains(errOut, "bearer token is required") || !strings.Contains(errOut, "-token-file") {
		t.Fatalf("CLI without token: exit %d %q", code, errOut)
	}
	out := mustCLI(t, "ready", "keycloak1", "-a", a.tcp, "-token-file", a.tokenFile)
	if !strings.Contains(out, "keycloak1: drain -> ready") {
		t.Fatalf("CLI with token: %q", out)
	}
	if !strings.Contains(mustCLI(t, "status", "-a", base), "keycloak2") {
		t.Fatal("status over TCP")
	}

	f := scrapeMetrics(t, base)
	if got := metricValue(t, f, "kclb_admin_unauthorized_total", nil); got != 3 {
		t.Fatalf("kclb_admin_unauthorized_total %v, want 3", got)
	}
}

func TestAdminStatePersistsAcrossRestart(t *testing.T) {
	a := newAdminEnv(t, adminOptions{})
	mustCLI(t, "drain", "keycloak1", "-s", a.socket)
	mustCLI(t, "maint", "keycloak3", "-s", a.socket)
	b, err := os.ReadFile(a.stateFile)
	if err != nil {
		t.Fatal(err)
	}
	st, err := admin.ParseState(b)
	if err != nil || st.Servers["keycloak1"] != "drain" || st.Servers["keycloak3"] != "maint" || len(st.Servers) != 2 {
		t.Fatalf("state file %s: %v", b, err)
	}

	// A crash leaves the socket file behind; the next kclb replaces it
	// and restores the admin states before serving.
	a.proc.cmd.Process.Kill()
	<-a.proc.done
	if _, err := os.Stat(a.socket); err != nil {
		t.Fatalf("socket file after kill: %v", err)
	}
	a.proc = startKclb(t, a.cfgPath, 2)
	got := a.status(t)
	for name, want := range map[string]string{"keycloak1": "drain", "keycloak2": "ready", "keycloak3": "maint"} {
		if s := serverByName(t, got, name); s.Admin != want {
			t.Fatalf("after restart %s is %s, want %s", name, s.Admin, want)
		}
	}
	// New clients avoid the drained and the maintained server.
	c := e2eLoginClient(a.env)
	for range 10 {
		res, err := (&kcsim.LoginFlow{Client: c()}).Run(context.Background(), a.url(""))
		if err != nil {
			t.Fatal(err)
		}
		if res.AuthNode != "keycloak2" {
			t.Fatalf("new login on %s, want keycloak2", res.AuthNode)
		}
	}

	// The status counts that traffic.
	got = a.status(t)
	k2 := serverByName(t, got, "keycloak2")
	if got.Proxy == nil || got.Proxy.Requests < 30 || k2.Requests < 30 || k2.LastUse == nil || k2.IdleSeconds == nil || k2.RecentRequests == nil ||
		got.Affinity == nil || got.Affinity.Hits["balancer"] < 10 {
		t.Fatalf("status after 10 logins: proxy %+v, keycloak2 %+v, affinity %+v", got.Proxy, k2, got.Affinity)
	}

	// A clean stop removes the socket file.
	a.proc.cmd.Process.Signal(syscall.SIGTERM)
	<-a.proc.done
	if _, err := os.Stat(a.socket); !os.IsNotExist(err) {
		t.Fatalf("socket file after SIGTERM: %v", err)
	}
}

func TestAdminWaitTimeout(t *testing.T) {
	a := newAdminEnv(t, adminOptions{extra: "\n[paths]\npublic = [\"/realms/\", \"/stream\"]\n[affinity]\nenabled = false\n"})
	// A slow response keeps one server busy.
	done := make(chan error, 1)
	go func() {
		resp, err := a.client(false).Get(a.url("/stream?chunks=2&interval=5s"))
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		done <- err
	}()
	var busy string
	deadline := time.Now().Add(10 * time.Second)
	for busy == "" && time.Now().Before(deadline) {
		for _, s := range a.status(t).Servers {
			if s.InFlight > 0 {
				busy = s.Name
			}
		}
	}
	if busy == "" {
		t.Fatal("no server shows the request in flight")
	}
	_, errOut, code := cli(t, "drain", busy, "--wait", "--timeout", "500ms", "-s", a.socket)
	if code != 1 || !strings.Contains(errOut, "timeout after 500ms waiting for "+busy+" to be idle: 1 requests in flight") {
		t.Fatalf("drain --wait with a request in flight: exit %d %q", code, errOut)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out := mustCLI(t, "drain", busy, "--wait", "--timeout", "20s", "--quiet", "200ms", "-s", a.socket)
	if !strings.Contains(out, "idle after") {
		t.Fatalf("second drain: %q", out)
	}
}

// e2eLoginClient returns a factory of clients with a fresh cookie jar
// sharing one HTTPS transport to kclb.
func e2eLoginClient(e *env) func() *http.Client {
	base := e.client(false)
	return func() *http.Client {
		jar, _ := cookiejar.New(nil)
		return &http.Client{Transport: base.Transport, Jar: jar, Timeout: 20 * time.Second}
	}
}

// scrapeMetrics fetches and parses base/metrics with the Prometheus text
// parser.
func scrapeMetrics(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("exposition does not parse: %v", err)
	}
	return fams
}

// metricValue sums the samples of family name whose labels include want
// (a histogram contributes its sample count).
func metricValue(t *testing.T, f map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	mf := f[name]
	if mf == nil {
		t.Fatalf("no metric family %s", name)
	}
	sum := 0.0
next:
	for _, m := range mf.Metric {
		for k, v := range want {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

func TestMetricsAfterTraffic(t *testing.T) {
	a := newAdminEnv(t, adminOptions{tcp: true, kcsim: kcsim.Options{Strict: true}})
	base := "http://" + a.tcp
	before := scrapeMetrics(t, base)
	const logins = 12
	c := e2eLoginClient(a.env)
	for range logins {
		if _, err := (&kcsim.LoginFlow{Client: c()}).Run(context.Background(), a.url("")); err != nil {
			t.Fatal(err)
		}
	}
	// A blocked path never reaches Keycloak.
	resp, err := a.client(false).Get(a.url("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mustCLI(t, "drain", "keycloak2", "-s", a.socket)

	// Check latencies and results arrive with every health round; wait
	// until two rounds have passed since the first scrape (the latency
	// and the result are separate counters: wait on both, not on one as
	// a stand-in for the other).
	keycloak1 := map[string]string{"server": "keycloak1"}
	passes := map[string]string{"server": "keycloak1", "result": "pass"}
	var f map[string]*dto.MetricFamily
	deadline := time.Now().Add(10 * time.Second)
	for {
		f = scrapeMetrics(t, base)
		rounds := metricValue(t, f, "kclb_server_health_checks_total", passes) - metricValue(t, before, "kclb_server_health_checks_total", passes)
		if (metricValue(t, f, "kclb_server_check_duration_seconds", keycloak1) >= 2 && rounds >= 2) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	delta := func(name string, labels map[string]string) float64 {
		return metricValue(t, f, name, labels) - metricValue(t, before, name, labels)
	}
	for _, tc := range []struct {
		name    string
		metric  string
		labels  map[string]string
		want    float64
		atLeast bool
	}{
		// 3 requests per login: auth (200), authenticate (302), token (200).
		{"2xx responses", "kclb_server_responses_total", map[string]string{"code": "2xx"}, 2 * logins, false},
		{"3xx responses", "kclb_server_responses_total", map[string]string{"code": "3xx"}, logins, false},
		{"forwarded", "kclb_server_requests_total", nil, 3 * logins, false},
		{"all requests", "kclb_requests_total", nil, 3*logins + 1, false},
		{"blocked", "kclb_blocked_requests_total", nil, 1, false},
		{"new clients", "kclb_affinity_hits_total", map[string]string{"source": "balancer"}, logins, false},
		{"all decisions", "kclb_affinity_hits_total", nil, 3 * logins, false},
		{"request durations", "kclb_request_duration_seconds", nil, 3*logins + 1, false},
		{"checks", "kclb_server_health_checks_total", map[string]string{"server": "keycloak1", "result": "pass"}, 2, true},
		{"client connections", "kclb_client_connections_total", map[string]string{"event": "accepted"}, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := delta(tc.metric, tc.labels)
			if got != tc.want && !(tc.atLeast && got >= tc.want) {
				t.Fatalf("%s%v moved by %v, want %v", tc.metric, tc.labels, got, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		metric string
		labels map[string]string
		want   float64
	}{
		{"kclb_server_admin_state", map[string]string{"server": "keycloak2", "state": "drain"}, 1},
		{"kclb_server_up", nil, 3},
		{"kclb_servers_available", nil, 2},
		{"kclb_panic_mode", nil, 0},
		{"kclb_server_in_flight_requests", nil, 0},
	} {
		if got := metricValue(t, f, tc.metric, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.metric, tc.labels, got, tc.want)
		}
	}
	if a.cluster.Stats().Misroutes != 0 {
		t.Fatalf("misroutes: %d", a.cluster.Stats().Misroutes)
	}
}

// rollingLoad runs login flows and token requests through kclb until
// stop is closed and counts successes and failures.
type rollingLoad struct {
	logins, loginFails, tokens, tokenFails atomic.Int64
	mu                                     sync.Mutex // guards firstErrs
	firstErrs                              []string
}

func (l *rollingLoad) fail(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.firstErrs) < 10 {
		l.firstErrs = append(l.firstErrs, time.Now().Format("15:04:05.000")+" "+fmt.Sprintf(format, args...))
	}
}

func TestRollingRestart(t *testing.T) {
	a := newAdminEnv(t, adminOptions{kcsim: kcsim.Options{Strict: true, ShutdownTimeout: time.Second}})
	newClient := e2eLoginClient(a.env)
	tokenClient := a.client(false)
	base := a.url("")
	var load rollingLoad
	stop := make(chan struct{})
	var wg sync.WaitGroup
	ctx := context.Background()
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := (&kcsim.LoginFlow{Client: newClient()}).Run(ctx, base); err != nil {
					load.loginFails.Add(1)
					load.fail("login: %v", err)
				} else {
					load.logins.Add(1)
				}
			}
		})
	}
	wg.Go(func() {
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"svc"}, "client_secret": {"x"}}.Encode()
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := tokenClient.Post(a.url("/realms/test/protocol/openid-connect/token"), "application/x-www-form-urlencoded", strings.NewReader(form))
			if err != nil {
				load.tokenFails.Add(1)
				load.fail("token: %v", err)
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				load.tokenFails.Add(1)
				load.fail("token: status %d", resp.StatusCode)
				continue
			}
			load.tokens.Add(1)
		}
	})
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	t.Cleanup(stopLoad)

	start := time.Now()
	for i := range a.cluster.Len() {
		name := fmt.Sprintf("keycloak%d", i+1)
		before := load.logins.Load()
		out := mustCLI(t, "drain", name, "--wait", "--timeout", "30s", "-s", a.socket)
		t.Logf("%s", strings.TrimSpace(out))
		if st := serverByName(t, a.status(t), name); st.InFlight != 0 {
			t.Fatalf("%s has %d requests in flight after drain --wait", name, st.InFlight)
		}
		// Stop the node long enough for the health checks to notice, as
		// a real Keycloak restart would.
		a.cluster.Stop(i)
		deadline := time.Now().Add(10 * time.Second)
		for serverByName(t, a.status(t), name).Health == "up" {
			if time.Now().After(deadline) {
				t.Fatalf("%s still up 10s after it stopped", name)
			}
			time.Sleep(50 * time.Millisecond)
		}
		a.cluster.Start(i)
		out = mustCLI(t, "ready", name, "--wait-healthy", "--timeout", "30s", "-s", a.socket)
		t.Logf("%s", strings.TrimSpace(out))
		if load.logins.Load() == before {
			t.Fatalf("no login completed while %s was cycled", name)
		}
	}
	// Keep the load running a moment with every node back.
	time.Sleep(500 * time.Millisecond)
	stopLoad()
	t.Logf("rolling restart of %d nodes in %v: %d logins, %d token requests, %d+%d failures",
		a.cluster.Len(), time.Since(start).Round(time.Millisecond), load.logins.Load(), load.tokens.Load(), load.loginFails.Load(), load.tokenFails.Load())
	if load.loginFails.Load() != 0 || load.tokenFails.Load() != 0 {
		t.Fatalf("%d failed logins, %d failed token requests; first: %s", load.loginFails.Load(), load.tokenFails.Load(), strings.Join(load.firstErrs, "\n"))
	}
	if m := a.cluster.Stats().Misroutes; m != 0 {
		t.Fatalf("%d misrouted requests", m)
	}
	for _, s := range a.status(t).Servers {
		if s.Admin != "ready" || s.Health != "up" {
			t.Fatalf("after the rolling restart: %+v", s)
		}
	}
}

// chromium runs headless Chromium on url with extra flags and returns
// its standard output.
func chromium(t *testing.T, url string, extra ...string) string {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("needs chromium (apt-get install chromium)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir(), "--virtual-time-budget=3000"}, extra...)
	cmd := exec.CommandContext(ctx, bin, append(args, url)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", extra, err, errOut.String())
	}
	return out.String()
}

func TestStatsPageInChromium(t *testing.T) {
	if _, err := exec.LookPath("chromium"); err != nil {
		t.Skip("needs chromium (apt-get install chromium)")
	}
	a := newAdminEnv(t, adminOptions{tcp: true})
	mustCLI(t, "drain", "keycloak2", "-s", a.socket)
	mustCLI(t, "maint", "keycloak3", "-s", a.socket)
	page := "http://" + a.tcp + "/stats"

	// Read-only: rows and states, no buttons.
	dom := chromium(t, page, "--dump-dom")
	for _, want := range []string{
		`id="server-keycloak1" data-health="up" data-admin="ready"`,
		`id="server-keycloak2" data-health="up" data-admin="drain"`,
		`id="server-keycloak3" data-health="up" data-admin="maint"`,
		`class="st admin a-drain">drain<`,
		`read-only`,
		`data-loaded="1"`,
	} {
		if !strings.Contains(dom, want) {
			t.Fatalf("rendered page lacks %q:\n%s", want, dom)
		}
	}
	if strings.Contains(dom, "act-drain") {
		t.Fatal("drain buttons shown to an unauthorised caller")
	}

	// With the token: buttons for every server.
	authURL := page + "#token=" + a.token
	dom = chromium(t, authURL, "--dump-dom")
	if strings.Count(dom, `class="act-drain"`) != 3 || strings.Count(dom, `class="act-ready"`) != 3 || !strings.Contains(dom, "authorised") {
		t.Fatalf("authorised page lacks buttons:\n%s", dom)
	}

	shot := filepath.Join(t.TempDir(), "stats.png")
	chromium(t, authURL, "--screenshot="+shot, "--window-size=1280,800", "--hide-scrollbars")
	b, err := os.ReadFile(shot)
	if err != nil || len(b) < 1000 || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatalf("screenshot %s: %d bytes, %v", shot, len(b), err)
	}
	if dir := os.Getenv("KCLB_TEST_ARTIFACTS"); dir != "" {
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "stats.png"), b, 0o644)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(b))
}
