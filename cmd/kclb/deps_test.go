package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestBinaryWalls pins issue 13's first bullet: the production binary
// links neither the Keycloak stand-in (the demo is cmd/kclb-demo) nor
// Go's testing package (kcsim's test cluster is kcsim/kcsimtest).
func TestBinaryWalls(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "testing" || dep == "github.com/kclb/kclb/internal/kcsim" || strings.HasPrefix(dep, "github.com/kclb/kclb/internal/kcsim/") ||
			strings.HasPrefix(dep, "github.com/kclb/kclb/bench") {
			t.Errorf("cmd/kclb depends on %s", dep)
		}
	}
}

// TestRuntimeWalls pins the walls of issue 13 between kclb's packages:
// no runtime package reads configuration (internal/config) or imports a
// command; vrrp stands alone; health reports through the pool and knows
// neither the proxy nor affinity; backend depends on nothing of kclb.
// internal/configmap is the one bridge between config and the runtime.
func TestRuntimeWalls(t *testing.T) {
	const mod = "github.com/kclb/kclb/"
	runtime := []string{"internal/daemon", "proxy", "health", "vrrp", "affinity", "tlsconf", "internal/backend",
		"internal/balancer", "internal/admin", "internal/handoff", "internal/metrics", "internal/ratelimit",
		"internal/pathpolicy", "internal/proxyproto", "internal/accesslog", "internal/sdnotify", "internal/peer", "internal/discovery"}
	deps := func(pkg string) []string {
		out, err := exec.Command("go", "list", "-deps", "../../"+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		var kclb []string
		for _, d := range strings.Fields(string(out)) {
			if strings.HasPrefix(d, mod) && d != mod+pkg {
				kclb = append(kclb, strings.TrimPrefix(d, mod))
			}
		}
		return kclb
	}
	for _, pkg := range runtime {
		for _, d := range deps(pkg) {
			if d == "internal/config" || d == "internal/configmap" || strings.HasPrefix(d, "cmd/") {
				t.Errorf("runtime package %s depends on %s", pkg, d)
			}
		}
	}
	if d := deps("vrrp"); len(d) != 0 {
		t.Errorf("vrrp depends on %v; it imports no other kclb package", d)
	}
	if d := deps("internal/backend"); len(d) != 0 {
		t.Errorf("internal/backend depends on %v; it imports nothing of kclb", d)
	}
	for _, d := range deps("health") {
		if d == "proxy" || d == "affinity" {
			t.Errorf("health depends on %s", d)
		}
	}
}
