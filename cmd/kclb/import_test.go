package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kclb/kclb/tlsconf"
)

// TestImportCheck runs `kclb import` on the seed configurations, provides
// the files the result references (HAProxy's combined PEM and the affinity
// secret) and runs `kclb check` on it.
func TestImportCheck(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "config.toml")
	cmd := exec.Command(kclbBin, "import", "-o", out,
		"../../internal/importer/testdata/haproxy.cfg", "../../internal/importer/testdata/keepalived.conf")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kclb import: %v\n%s", err, stderr.Bytes())
	}
	if stdout.Len() != 0 {
		t.Errorf("kclb import -o wrote to stdout: %q", stdout.Bytes())
	}
	if n := strings.Count(stderr.String(), ": warning: "); n != 10 {
		t.Errorf("%d warnings on stderr, want 10:\n%s", n, stderr.Bytes())
	}
	for _, want := range []string{
		"haproxy.cfg:29: warning: http-response set-header X-Frame-Options DENY: ",
		"keepalived.conf:17: warning: auth_type PASS: ",
		"haproxy.cfg:46: warning: bind *:8080: kclb's admin listener (admin.tcp) serves the stats page",
		"0 errors (lines not translated), 10 warnings (translated with a change), 10 notes (nothing to do)",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.Bytes())
		}
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm()&0o007 != 0 {
		t.Errorf("%s has mode %v; it holds the VRRP password and must not be world-readable", out, st.Mode().Perm())
	}

	certPEM, keyPEM, err := tlsconf.SelfSigned{Hosts: []string{"sso.example.com"}, ValidFor: time.Hour}.Generate()
	if err != nil {
		t.Fatal(err)
	}
	for path, data := range map[string][]byte{
		"etc/ssl/certs/keycloak.pem": append(certPEM, keyPEM...), // HAProxy's combined PEM
		"etc/kclb/affinity.key":      []byte("a-shared-secret-of-enough-length\n"),
		"etc/kclb/admin.token":       []byte("an-admin-token-0123456789abcdef0123\n"),
	} {
		p := filepath.Join(dir, path)
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	data = bytes.ReplaceAll(data, []byte(`"/etc/`), []byte(`"`+dir+`/etc/`))
	if err := os.WriteFile(out, data, 0o600); err != nil {
		t.Fatal(err)
	}
	check, err := exec.Command(kclbBin, "check", "-c", out).CombinedOutput()
	if err != nil || !bytes.Contains(check, []byte("is valid")) {
		t.Fatalf("kclb check on the imported configuration: %v\n%s\n--- config:\n%s", err, check, data)
	}
}

func TestImportCommand(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "exists.toml")
	os.WriteFile(existing, []byte("keep me"), 0o600)
	seed := "../../internal/importer/testdata/haproxy.cfg"
	tests := []struct {
		name       string
		args       []string
		wantStatus int
		wantStdout string // substring
		wantStderr string // substring
	}{
		{"no files", []string{"import"}, 2, "", "usage: kclb import"},
		{"three files", []string{"import", seed, seed, seed}, 2, "", "usage: kclb import"},
		{"missing file", []string{"import", filepath.Join(dir, "nope.cfg")}, 1, "", "no such file"},
		{"to stdout", []string{"import", seed}, 0, "\n[[backend.server]]\nname = \"keycloak1\"\n", "haproxy.cfg:4: note: daemon: "},
		{"flag after file", []string{"import", seed, "-o", filepath.Join(dir, "new.toml")}, 0, "", "wrote "},
		{"exists", []string{"import", "-o", existing, seed}, 1, "", "exists (use --force to overwrite)"},
		{"force", []string{"import", "-f", "-o", existing, seed}, 0, "", "wrote "},
		{"unbalanced keepalived", []string{"import", seed, writeTemp(t, dir, "bad.conf", "vrrp_instance V {\n")}, 1, "", "block is not closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			status := run(tt.args, &stdout, &stderr)
			if status != tt.wantStatus {
				t.Errorf("status %d, want %d; stderr:\n%s", status, tt.wantStatus, stderr.Bytes())
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout lacks %q:\n%s", tt.wantStdout, stdout.Bytes())
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantStderr, stderr.Bytes())
			}
		})
	}
	if data, _ := os.ReadFile(existing); !bytes.Contains(data, []byte("[[listener]]")) {
		t.Errorf("-f did not overwrite %s: %q", existing, data)
	}
}

func writeTemp(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestImportGolden pins issue 15's import bullet through the binary: for
// every golden case (four setups of our own and the seeds), a file with
// untranslatable lines writes nothing and exits 1 naming each line; with
// --force the configuration is written with those lines as comments; and
// every written configuration passes `kclb check --syntax-only`.
func TestImportGolden(t *testing.T) {
	dirs, _ := filepath.Glob("../../internal/importer/testdata/golden/*")
	if len(dirs) < 6 {
		t.Fatalf("only %d golden cases", len(dirs))
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			args := []string{"import", filepath.Join(dir, "haproxy.cfg")}
			if _, err := os.Stat(filepath.Join(dir, "keepalived.conf")); err == nil {
				args = append(args, filepath.Join(dir, "keepalived.conf"))
			}
			want, err := os.ReadFile(filepath.Join(dir, "want.txt"))
			if err != nil {
				t.Fatal(err)
			}
			errorLines := strings.Count(string(want), ": error: ")
			out := filepath.Join(t.TempDir(), "config.toml")
			stdout, stderr, code := cli(t, append(args, "-o", out)...)
			if !strings.Contains(stderr, string(want)) {
				t.Errorf("stderr lacks the messages of want.txt:\n%s", stderr)
			}
			_, statErr := os.Stat(out)
			if errorLines > 0 {
				if code != 1 || !os.IsNotExist(statErr) || !strings.Contains(stderr, "nothing written") {
					t.Fatalf("%d untranslatable lines: exit %d, file written: %v; want exit 1 and no file\n%s%s", errorLines, code, statErr == nil, stdout, stderr)
				}
				if _, stderr, code = cli(t, append(args, "-o", out, "--force")...); code != 0 {
					t.Fatalf("--force: exit %d\n%s", code, stderr)
				}
				data, _ := os.ReadFile(out)
				for _, l := range strings.Split(string(want), "\n") {
					if strings.Contains(l, ": error: ") && !strings.Contains(string(data), "#   "+l+"\n") {
						t.Errorf("--force output lacks the comment %q", l)
					}
				}
			} else if code != 0 || statErr != nil {
				t.Fatalf("exit %d (%v)\n%s", code, statErr, stderr)
			}
			if check := mustCLI(t, "check", "--syntax-only", out); !strings.Contains(check, "is valid") {
				t.Errorf("kclb check --syntax-only: %s", check)
			}
		})
	}
}
