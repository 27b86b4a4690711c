package testlab

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// builds caches the binaries Build made in this process, by package.
var builds struct {
	mu   sync.Mutex // guards dir and bins
	dir  string
	bins map[string]string
}

// Build builds the main package pkg (an import path such as
// "github.com/kclb/kclb/cmd/kclb") once per test process and returns the
// binary's path; it fails the test if the build fails. The binaries live
// in a temporary directory that RemoveBuilds deletes (call it from
// TestMain after m.Run; without it the directory stays in $TMPDIR).
func Build(t testing.TB, pkg string) string {
	t.Helper()
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if bin, ok := builds.bins[pkg]; ok {
		return bin
	}
	if builds.dir == "" {
		d, err := os.MkdirTemp("", "kclb-testlab-bin")
		if err != nil {
			t.Fatal(err)
		}
		builds.dir, builds.bins = d, map[string]string{}
	}
	bin := filepath.Join(builds.dir, filepath.Base(pkg))
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	builds.bins[pkg] = bin
	return bin
}

// RemoveBuilds deletes the binaries Build made.
func RemoveBuilds() {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
		builds.dir, builds.bins = "", nil
	}
}
