package main

import (
	"bufio"
	"bytes"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/kcsim"
	"github.com/kclb/kclb/internal/testlab"
	"github.com/kclb/kclb/tlsconf"
)

// The active-active pair (issue 17, item 4): two VRRP instances on the
// edge lab's bridge, VI_1 (VRID 51, 203.0.113.100) with a Master and
// VI_2 (VRID 52, 203.0.113.101) with b Master, priorities crossed; both
// edges listen on both VIPs and share the affinity secret, and DNS
// would serve both addresses under sso.example.com. Both Keycloak
// stand-ins are behind both edges, in strict mode, so a login step that
// lands on the wrong node fails.
const aaVIP2 = "203.0.113.101"

// aaConfig writes the active-active configuration of edge node n, Master
// (priority 110) of the instance of master and Backup (100) of the other.
// docs/active-active.toml is the same pair for a real deployment.
func (l *edgeLab) aaConfig(n string, master int) string {
	prio := [2]int{100, 100}
	prio[master] = 110
	f := l.edgeBase(n)
	for i, port := range []int{8081, 8082} {
		f.Server(fmt.Sprintf("keycloak%d", i+1), fmt.Sprintf("203.0.113.20:%d", port), fmt.Sprintf("203.0.113.20:%d", port+920))
	}
	for i, vip := range []string{nsVIP, aaVIP2} {
		f.Listener(fmt.Sprintf("https-%d", i+1), vip+":8443", "tls", true, "freebind", true).
			Table("vrrp.instance", "name", fmt.Sprintf("VI_%d", i+1), "interface", "eth0", "vrid", 51+i, "priority", prio[i],
				"advert_int", 100*time.Millisecond, "vips", []string{vip + "/24"}, "track_weight", 50)
	}
	return l.writeConfig(f, "kclb-aa-"+n+".toml")
}

// aaRequest sends one HTTPS request from the client namespace to
// sso.example.com resolved to vip, with curl's cookie jar jar (as a
// browser keeps cookies per host name, whichever address DNS gave it).
// form, if not nil, makes it a form POST. Redirects are not followed.
func (l *edgeLab) aaRequest(vip, jar, path string, form url.Values) (*http.Response, []byte, error) {
	// The head goes to stdout, the body (which curl has de-chunked) to a file.
	bodyFile := jar + ".body"
	args := []string{"netns", "exec", l.ns("c"), "curl", "-sS", "-D", "-", "-o", bodyFile, "--http1.1", "--max-time", "3",
		"--cacert", l.cert, "--resolve", "sso.example.com:8443:" + vip, "-b", jar, "-c", jar}
	if form != nil {
		args = append(args, "--data-raw", form.Encode())
	}
	out, err := exec.Command("ip", append(args, "https://sso.example.com:8443"+path)...).Output()
	if err != nil {
		return nil, nil, fmt.Errorf("curl %s at %s: %w", path, vip, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("response to %s at %s: %w", path, vip, err)
	}
	resp.Body.Close()
	body, err := os.ReadFile(bodyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("body of %s at %s: %w", path, vip, err)
	}
	return resp, body, nil
}

// aaDiscovery fetches the OIDC discovery document at vip and fails the
// test unless it gets 200 within a few seconds.
func (l *edgeLab) aaDiscovery(vip string) {
	l.t.Helper()
	var last error
	if _, ok := until(5*time.Second, func() bool {
		resp, _, err := l.aaRequest(vip, filepath.Join(l.dir, "discovery.jar"), "/realms/test/.well-known/openid-configuration", nil)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		return err == nil
	}); !ok {
		l.t.Fatalf("HTTPS at %s: %v", vip, last)
	}
}

// routeCookie returns the KC_ROUTE value resp sets, or "".
func routeCookie(resp *http.Response) string {
	for _, c := range resp.Cookies() {
		if c.Name == "KC_ROUTE" {
			return c.Value
		}
	}
	return ""
}

// aaLogin is a browser login in progress: step 1 (the login form) done.
type aaLogin struct {
	jar, node, route, action string
}

// startLogin requests the login form through vip.
func (l *edgeLab) startLogin(vip, name string) *aaLogin {
	l.t.Helper()
	lg := &aaLogin{jar: filepath.Join(l.dir, name+".jar")}
	q := url.Values{"client_id": {"kclb-test"}, "redirect_uri": {"https://app.example/callback"},
		"response_type": {"code"}, "scope": {"openid"}, "state": {name}, "nonce": {name}}
	resp, body, err := l.aaRequest(vip, lg.jar, "/realms/test/protocol/openid-connect/auth?"+q.Encode(), nil)
	if err != nil {
		l.t.Fatalf("login %s, form: %v", name, err)
	}
	lg.node, lg.route = resp.Header.Get(kcsim.NodeHeader), routeCookie(resp)
	if resp.StatusCode != http.StatusOK || lg.node == "" || lg.route == "" {
		l.t.Fatalf("login %s, form through %s: status %d, node %q, KC_ROUTE %q", name, vip, resp.StatusCode, lg.node, lg.route)
	}
	s := string(body)
	i := strings.Index(s, `id="kc-form-login"`)
	j := strings.Index(s[max(i, 0):], `action="`)
	if i < 0 || j < 0 {
		l.t.Fatalf("login %s: no login form in %.300s", name, s)
	}
	s = s[i+j+len(`action="`):]
	u, err := url.Parse(html.UnescapeString(s[:max(strings.IndexByte(s, '"'), 0)]))
	if err != nil {
		l.t.Fatalf("login %s: form action: %v", name, err)
	}
	lg.action = u.RequestURI()
	return lg
}

// finishLogin posts the credentials through vip and redeems the code
// through the other VIP: both must reach the node of step 1 (strict
// stand-ins refuse sessions and codes of another node), and no response
// may replace the KC_ROUTE pin.
func (l *edgeLab) finishLogin(lg *aaLogin, vip, other string) {
	l.t.Helper()
	resp, _, err := l.aaRequest(vip, lg.jar, lg.action,
		url.Values{"username": {"user"}, "password": {"password"}, "credentialId": {""}})
	if err != nil {
		l.t.Fatalf("login credentials through %s: %v", vip, err)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	code := ""
	if loc != nil {
		code = loc.Query().Get("code")
	}
	if resp.StatusCode != http.StatusFound || code == "" {
		l.t.Fatalf("login credentials through %s: status %d, node %q (started on %q), Location %q",
			vip, resp.StatusCode, resp.Header.Get(kcsim.NodeHeader), lg.node, resp.Header.Get("Location"))
	}
	if got := resp.Header.Get(kcsim.NodeHeader); got != lg.node {
		l.t.Errorf("credentials through %s reached %q, login started on %q", vip, got, lg.node)
	}
	if r := routeCookie(resp); r != "" && r != lg.route {
		l.t.Errorf("the edge holding %s replaced KC_ROUTE %q with %q", vip, lg.route, r)
	}
	resp, body, err := l.aaRequest(other, lg.jar, "/realms/test/protocol/openid-connect/token", url.Values{
		"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {"https://app.example/callback"}, "client_id": {"kclb-test"}})
	if err != nil {
		l.t.Fatalf("code exchange through %s: %v", other, err)
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "access_token") {
		l.t.Fatalf("code exchange through %s: status %d, node %q: %.200s", other, resp.StatusCode, resp.Header.Get(kcsim.NodeHeader), body)
	}
	if got := resp.Header.Get(kcsim.NodeHeader); got != lg.node {
		l.t.Errorf("code exchange through %s reached %q, login started on %q", other, got, lg.node)
	}
}

// TestActiveActiveVIPs pins issue 17, item 4: two VRRP instances with
// crossed priorities, each edge Master of one VIP and serving both. At
// start each edge holds one VIP; kill -9 of either edge leaves the other
// holding both within Master_Down_Interval, HTTPS works at both, and a
// login started through the dead edge's VIP finishes through the other
// VIP on the same Keycloak node with the same KC_ROUTE cookie.
func TestActiveActiveVIPs(t *testing.T) {
	l := newEdgeLab(t)
	kcsimBin := testlab.Build(t, kcsimPkg)
	for i := range 2 {
		l.start("k", fmt.Sprintf("kcsim-%d", i+1), kcsimBin, "-strict", "-node", fmt.Sprintf("keycloak%d", i+1),
			"-traffic", fmt.Sprintf("203.0.113.20:%d", 8081+i), "-mgmt", fmt.Sprintf("203.0.113.20:%d", 9001+i))
	}
	if _, ok := until(10*time.Second, func() bool {
		return l.inNS("k", "curl", "-sf", "http://203.0.113.20:9001/health/ready") == nil &&
			l.inNS("k", "curl", "-sf", "http://203.0.113.20:9002/health/ready") == nil
	}); !ok {
		t.Fatal("stand-ins did not start")
	}
	vips := [2]string{nsVIP, aaVIP2}
	edges := [2]string{"a", "b"}
	cfg := [2]string{l.aaConfig("a", 0), l.aaConfig("b", 1)}
	procs := [2]*labProc{}
	run := func(i int, name string) {
		procs[i] = l.start(edges[i], name, kclbBin, "run", "-c", cfg[i])
	}
	crossed := func() bool {
		return l.HoldsAddr("a", nsVIP) && !l.HoldsAddr("a", aaVIP2) && l.HoldsAddr("b", aaVIP2) && !l.HoldsAddr("b", nsVIP)
	}
	run(0, "kclb-a")
	run(1, "kclb-b")

	// Master_Down_Interval = 3 × 100 ms + Skew_Time (≈ 61 ms at priority 100).
	const masterDown = 361 * time.Millisecond
	for round, dead := range []int{0, 1} {
		if _, ok := until(10*time.Second, crossed); !ok {
			t.Fatalf("round %d: not one VIP per edge: a holds .100=%v .101=%v, b holds .100=%v .101=%v", round,
				l.HoldsAddr("a", nsVIP), l.HoldsAddr("a", aaVIP2), l.HoldsAddr("b", nsVIP), l.HoldsAddr("b", aaVIP2))
		}
		l.aaDiscovery(nsVIP)
		l.aaDiscovery(aaVIP2)
		alive := 1 - dead
		lg := l.startLogin(vips[dead], fmt.Sprintf("login-%d", round))

		resigned := l.resignations(t, edges[alive])
		procs[dead].Signal(syscall.SIGKILL)
		killed := time.Now()
		took, ok := until(5*time.Second, func() bool { return l.HoldsAddr(edges[alive], vips[dead]) })
		if !ok {
			t.Fatalf("%s did not take %s after kill -9 of %s", edges[alive], vips[dead], edges[dead])
		}
		failover := took.Sub(killed)
		t.Logf("kill -9 %s: %s holds both VIPs %v later (Master_Down_Interval ≈ %v)", edges[dead], edges[alive], failover, masterDown)
		// Not a timed assertion (a loaded machine stretches any bound): the
		// takeover came by Master_Down_Interval, with no priority-0 advert.
		if got := l.resignations(t, edges[alive]); got != resigned {
			t.Errorf("%s counted %d priority-0 adverts over kill -9 of %s, want none", edges[alive], got-resigned, edges[dead])
		}
		if !l.HoldsAddr(edges[alive], vips[alive]) {
			t.Fatalf("%s lost its own VIP %s", edges[alive], vips[alive])
		}
		<-procs[dead].Done()
		// The unit's ExecStopPost: the dead kclb's address leaves its interface.
		if out, err := exec.Command("ip", "netns", "exec", l.ns(edges[dead]), kclbBin, "cleanup-vips", "-c", cfg[dead]).CombinedOutput(); err != nil {
			t.Fatalf("cleanup-vips on %s: %v\n%s", edges[dead], err, out)
		}
		l.aaDiscovery(nsVIP)
		l.aaDiscovery(aaVIP2)
		l.finishLogin(lg, vips[alive], vips[dead])

		// The killed edge comes back and takes its VIP back (preemption).
		run(dead, fmt.Sprintf("kclb-%s%d", edges[dead], round+2))
	}
	if _, ok := until(10*time.Second, crossed); !ok {
		t.Fatal("the pair did not return to one VIP per edge")
	}
}

// TestCheckActiveActiveExample runs `kclb check` on docs/active-active.toml
// for edge1 and, after the runbook's edits, for edge2, with its /etc/kclb
// files provided in a temp dir.
func TestCheckActiveActiveExample(t *testing.T) {
	dir := t.TempDir()
	example, err := os.ReadFile("../../docs/active-active.toml")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(dir+"/tls", 0o700)
	certPEM, keyPEM, err := tlsconf.SelfSigned{Hosts: []string{"auth.example.com"}, ValidFor: time.Hour}.Generate()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(dir+"/tls/keycloak.crt", certPEM, 0o644)
	os.WriteFile(dir+"/tls/keycloak.key", keyPEM, 0o600)
	os.WriteFile(dir+"/affinity.key", []byte("a-shared-secret-of-enough-length\n"), 0o600)
	edge1 := strings.ReplaceAll(string(example), `"/etc/kclb/`, `"`+dir+`/`)
	// The runbook's edits for edge2 (docs/operations.md), as its sed line makes them.
	edge2 := strings.NewReplacer(`name = "edge1"`, `name = "edge2"`,
		"priority = 110 ", "priority = 100 ", "priority = 100 ", "priority = 110 ",
		`unicast_peers = ["203.0.113.11"]`, `unicast_peers = ["203.0.113.10"]`).Replace(edge1)
	if i, j := strings.Index(edge2, "\npriority = 100 "), strings.Index(edge2, "\npriority = 110 "); i < 0 || j < i {
		t.Fatalf("the edge2 edits did not swap the priorities:\n%s", edge2)
	}
	for name, cfg := range map[string]string{"edge1": edge1, "edge2": edge2} {
		p := filepath.Join(dir, name+".toml")
		os.WriteFile(p, []byte(cfg), 0o600)
		out, err := exec.Command(kclbBin, "check", "-c", p).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "is valid") {
			t.Fatalf("kclb check active-active.toml (%s): %v\n%s", name, err, out)
		}
	}
}
