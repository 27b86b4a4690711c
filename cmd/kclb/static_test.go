package main

import (
	"debug/elf"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestMakeBuildStatic builds kclb as `make build` does and checks that
// the binary is static (no program interpreter, no libc): it runs on
// any Linux of the same architecture, and its resident text is its own
// (libc's pages were 1.3 MiB of kclb's RSS at wrk c1000, issue 16).
func TestMakeBuildStatic(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	if testing.Short() {
		t.Skip("builds the binaries (short mode)")
	}
	bin := t.TempDir()
	cmd := exec.Command("make", "-s", "build", "BIN="+bin)
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	f, err := elf.Open(filepath.Join(bin, "kclb"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("bin/kclb has a %v program header: it is dynamically linked", p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("bin/kclb links %v", libs)
	}
}
