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
