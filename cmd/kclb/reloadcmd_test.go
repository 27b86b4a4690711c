package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestReloadCommand: `kclb reload` applies a valid configuration, and for
// an invalid one prints every problem, exits 1 and leaves the running
// configuration in force; over TCP it needs the token.
func TestReloadCommand(t *testing.T) {
	a := newAdminEnv(t, adminOptions{tcp: true})
	if out := mustCLI(t, "reload", "-s", a.socket); !strings.Contains(out, "configuration reloaded") {
		t.Fatalf("reload: %q", out)
	}
	good, err := os.ReadFile(a.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	bad := string(good) + "\n[timeouts]\nconnect = \"soon\"\n"
	if err := os.WriteFile(a.cfgPath, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := cli(t, "reload", "-s", a.socket)
	if code != 1 || !strings.Contains(errOut, "timeouts.connect") {
		t.Fatalf("invalid reload: exit %d, stdout %q, stderr %q; want exit 1 naming timeouts.connect", code, out, errOut)
	}
	// Still serving with the old configuration.
	resp, err := a.client(false).Get(a.url("/realms/test/.well-known/openid-configuration"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("after a rejected reload: status %d", resp.StatusCode)
	}
	os.WriteFile(a.cfgPath, good, 0o600)
	if _, errOut, code := cli(t, "reload", "-a", a.tcp); code != 1 || !strings.Contains(errOut, "401") && !strings.Contains(errOut, "token") {
		t.Fatalf("reload over TCP without token: exit %d, %q", code, errOut)
	}
	if out := mustCLI(t, "reload", "-a", a.tcp, "-token-file", a.tokenFile); !strings.Contains(out, "configuration reloaded") {
		t.Fatalf("reload over TCP with token: %q", out)
	}
}

// TestHealthChecksSurviveReloadCommand: after `kclb reload` (the admin
// API's reload) the health checks keep running. They used to run under
// the reload request's context, so they stopped when the request ended
// and a node that failed afterwards stayed "up".
func TestHealthChecksSurviveReloadCommand(t *testing.T) {
	a := newAdminEnv(t, adminOptions{})
	if out := mustCLI(t, "reload", "-s", a.socket); !strings.Contains(out, "configuration reloaded") {
		t.Fatalf("reload: %q", out)
	}
	a.cluster.At(0).Node.SetDatabaseDown(true)
	deadline := time.Now().Add(15 * time.Second) // checks every 200 ms, fall 3
	for serverByName(t, a.status(t), "keycloak1").Health == "up" {
		if time.Now().After(deadline) {
			t.Fatal("keycloak1 still up 15 s after its database went down: no health check ran after the reload")
		}
		time.Sleep(100 * time.Millisecond) // polling the status: no health event reaches the test
	}
}
