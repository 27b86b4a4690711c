package importer

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kclb/kclb/internal/configmap"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// TestGolden imports each testdata/golden/NAME/haproxy.cfg (with
// keepalived.conf when present): four realistic setups of our own and the
// seed configurations. The configuration must equal want.toml and the
// messages want.txt (go test -update rewrites both), and the
// configuration must pass `kclb check --syntax-only` (configmap.LoadSyntax).
// Issue 15: import never drops meaning silently.
func TestGolden(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/golden/*")
	if len(dirs) < 6 {
		t.Fatalf("only %d golden cases", len(dirs))
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			var ka string
			if _, err := os.Stat(filepath.Join(dir, "keepalived.conf")); err == nil {
				ka = filepath.Join(dir, "keepalived.conf")
			}
			r := importFiles(t, filepath.Join(dir, "haproxy.cfg"), ka)
			var msgs strings.Builder
			for _, w := range r.Warnings {
				msgs.WriteString(w.String() + "\n")
			}
			compare(t, filepath.Join(dir, "want.toml"), string(r.Config))
			compare(t, filepath.Join(dir, "want.txt"), msgs.String())

			out := filepath.Join(t.TempDir(), "config.toml")
			if err := os.WriteFile(out, r.Config, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := configmap.LoadSyntax(out); err != nil {
				t.Errorf("the imported configuration does not pass the syntax-only check: %v\n%s", err, r.Config)
			}
			// Every message is in the file's header, and every error
			// names its line.
			for _, w := range r.Warnings {
				if !strings.Contains(string(r.Config), "#   "+w.String()+"\n") {
					t.Errorf("message %q is not a comment at the top of the output", w)
				}
			}
		})
	}
}

// compare checks got against the golden file (or rewrites it with -update).
func compare(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./importer -run TestGolden -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it):\n%s", path, diffLines(string(want), got))
	}
}

// diffLines lists the lines only in want (-) or only in got (+).
func diffLines(want, got string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	w, g := in(want), in(got)
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if !g[l] {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if !w[l] {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}
