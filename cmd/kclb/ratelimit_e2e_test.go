package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// curlBurst sends n POSTs to url in one curl run (one keep-alive
// connection) from source address src and returns one "code retry-after"
// line per request (a 200 has no Retry-After: "200").
func curlBurst(t *testing.T, src, url string, n int) []string {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	args := []string{"-s", "--interface", src, "-X", "POST", "-d", "username=a&password=b",
		"-w", "%{http_code} %header{retry-after}\\n"}
	for range n {
		args = append(args, "-o", "/dev/null", url)
	}
	out, err := exec.Command("curl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return lines
}

// TestRateLimitThroughBinary pins issue 14, item 3 end to end, on both
// HTTP/1.1 servers: a [[rate_limit]] rule in the file makes kclb answer
// the login-actions POST burst+1 with 429 and a Retry-After, other paths
// and methods pass, an exempt address is never limited, and a path
// variant of the same canonical path is limited too.
func TestRateLimitThroughBinary(t *testing.T) {
	for _, server := range []string{"kclb", "net/http"} {
		t.Run(strings.ReplaceAll(server, "/", ""), func(t *testing.T) {
			eb := startEdgeBackend(t)
			listener := ""
			if server == "net/http" {
				listener = "stdlib_http1 = true"
			}
			addr, _ := startEdgeKclb(t, eb, "", listener, `
[[rate_limit]]
name = "login"
paths = ["/realms/*/login-actions/authenticate"]
methods = ["POST"]
rate = "1/m"
burst = 3
exempt = ["127.0.0.2/32"]
`)
			login := "http://" + addr + "/realms/acme/login-actions/authenticate?session_code=x"
			got := curlBurst(t, "127.0.0.1", login, 5)
			want := []string{"200", "200", "200", "429 60", "429 60"}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Fatalf("burst from 127.0.0.1: %q, want %q", got, want)
			}
			if got := curlBurst(t, "127.0.0.1", "http://"+addr+"/realms/acme/protocol/openid-connect/auth", 1); got[0] != "200" {
				t.Fatalf("another path from the limited client: %q", got)
			}
			if got := curlBurst(t, "127.0.0.2", login, 6); strings.Join(got, "") != "200200200200200200" {
				t.Fatalf("exempt 127.0.0.2 was limited: %q", got)
			}
			// The same path in another case and with dot segments is the
			// same canonical path: no way around the rule.
			if got := curlBurst(t, "127.0.0.1", "http://"+addr+"/realms/acme/x/../LOGIN-ACTIONS/authenticate", 1); got[0] != "429 60" {
				t.Fatalf("a path variant escaped the rule: %q", got)
			}
		})
	}
}

// TestRateLimitSurvivesReload: a SIGHUP (a certificate renewal, say)
// that leaves the [[rate_limit]] rules as they were keeps the limited
// client limited; changing a rule starts the counts afresh (issue 14,
// item 3).
func TestRateLimitSurvivesReload(t *testing.T) {
	eb := startEdgeBackend(t)
	rule := `
[[rate_limit]]
name = "login"
paths = ["/realms/*/login-actions/authenticate"]
rate = "1/m"
burst = %d
`
	addr, p := startEdgeKclb(t, eb, "", "", fmt.Sprintf(rule, 2))
	cfg := p.cmd.Args[len(p.cmd.Args)-1]
	login := "http://" + addr + "/realms/acme/login-actions/authenticate"
	if got := curlBurst(t, "127.0.0.1", login, 3); strings.Join(got, "|") != "200|200|429 60" {
		t.Fatalf("burst: %q", got)
	}
	reload := func(edit func(string) string) {
		t.Helper()
		b, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfg, []byte(edit(string(b))), 0o600); err != nil {
			t.Fatal(err)
		}
		done := p.watch("configuration reloaded")
		p.cmd.Process.Signal(syscall.SIGHUP)
		waitLog(t, done, "reload", 10*time.Second)
	}
	reload(func(s string) string { return s + "\n# touched\n" })
	if got := curlBurst(t, "127.0.0.1", login, 1); got[0] != "429 60" {
		t.Fatalf("after a reload with the same rules: %q, want still limited", got)
	}
	reload(func(s string) string { return strings.Replace(s, "burst = 2", "burst = 3", 1) })
	if got := curlBurst(t, "127.0.0.1", login, 1); got[0] != "200" {
		t.Fatalf("after a reload that changed the rule: %q, want a fresh allowance", got)
	}
}
