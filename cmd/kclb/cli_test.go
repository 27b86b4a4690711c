package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// writeConfig writes text to a file in a fresh directory and returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "myfile.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// minimalTLS is a configuration whose certificate, key and affinity
// secret files do not exist.
const minimalTLS = `[[listener]]
name = "https"
bind = "127.0.0.1:8443"
tls = true

[[tls.certificate]]
cert = "/nonexistent/kclb/keycloak.pem"
key = "/nonexistent/kclb/keycloak.pem"

[[backend.server]]
name = "kc1"
address = "127.0.0.1:18081"

[affinity]
secret_file = "/nonexistent/kclb/affinity.key"
`

// TestCheckPositional pins issue 18 item 6 (and issue 15, item 2):
// `kclb check myfile.toml` checked /etc/kclb/config.toml instead.
func TestCheckPositional(t *testing.T) {
	good := writeConfig(t, "[[listener]]\nname = \"http\"\nbind = \"127.0.0.1:8080\"\n\n[[backend.server]]\nname = \"kc1\"\naddress = \"127.0.0.1:18081\"\n\n[affinity]\nsecret = \"0123456789abcdef0123\"\n")
	bad := writeConfig(t, "[timeouts]\nconnect = \"soon\"\n")
	for _, args := range [][]string{{"check", good}, {"check", "-c", good}, {"check", good, "-c", good}} {
		out, errOut, code := cli(t, args...)
		if code != 0 || !strings.Contains(out, "configuration file "+good+" is valid") {
			t.Errorf("kclb %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
		}
	}
	out, errOut, code := cli(t, "check", bad)
	if code != 1 || !strings.Contains(errOut, bad) || !strings.Contains(errOut, "timeouts.connect") || strings.Contains(errOut+out, "/etc/kclb") {
		t.Errorf("kclb check BAD: exit %d, stdout %q, stderr %q; want exit 1 naming %s and timeouts.connect", code, out, errOut, bad)
	}
	if _, errOut, code := cli(t, "check", "-c", good, bad); code != 2 || !strings.Contains(errOut, "two files") {
		t.Errorf("kclb check -c A B: exit %d, stderr %q; want a usage error", code, errOut)
	}
	if _, _, code := cli(t, "check", good, bad); code != 2 {
		t.Errorf("kclb check A B: exit %d, want 2", code)
	}
}

// TestCheckSyntaxOnly pins issue 15, item 2: a configuration written on a
// workstation can be checked before its certificate files exist.
func TestCheckSyntaxOnly(t *testing.T) {
	p := writeConfig(t, minimalTLS)
	if _, errOut, code := cli(t, "check", p); code != 1 || !strings.Contains(errOut, "does not exist") {
		t.Fatalf("full check: exit %d, stderr %q; want the missing files named", code, errOut)
	}
	for _, args := range [][]string{{"check", "--syntax-only", p}, {"check", p, "--syntax-only"}, {"check", "-syntax-only", "-c", p}} {
		out, errOut, code := cli(t, args...)
		if code != 0 || !strings.Contains(out, "syntax only") {
			t.Errorf("kclb %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
		}
	}
	// Everything else is still checked, with lines.
	q := writeConfig(t, minimalTLS+"\n[health]\ninterval = \"-1s\"\n")
	if _, errOut, code := cli(t, "check", "--syntax-only", q); code != 1 || !strings.Contains(errOut, "health.interval") {
		t.Errorf("syntax-only check of a bad file: exit %d, stderr %q", code, errOut)
	}
}

func TestVersionLine(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		out := mustCLI(t, args...)
		if !regexp.MustCompile(`^kclb \S+ \(commit \S+, go[0-9.]+\S* ` + runtime.GOOS + `/` + runtime.GOARCH + `\)\n$`).MatchString(out) {
			t.Errorf("kclb %s = %q", args[0], out)
		}
	}
}

// TestCompletionBash drives the generated bash completion the way bash
// does: COMP_WORDS in, COMPREPLY out.
func TestCompletionBash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("needs bash")
	}
	script := filepath.Join(t.TempDir(), "kclb.bash")
	if err := os.WriteFile(script, []byte(mustCLI(t, "completion", "bash")), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "edge.toml"), nil, 0o644)
	complete := func(words ...string) []string {
		t.Helper()
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = "'" + w + "'"
		}
		sh := "source " + script + "; COMP_WORDS=(" + strings.Join(quoted, " ") + "); COMP_CWORD=" +
			strconv.Itoa(len(words)-1) + "; _kclb; printf '%s\\n' \"${COMPREPLY[@]}\""
		cmd := exec.Command(bash, "--norc", "--noprofile", "-c", sh)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.Fields(string(out))
	}
	tests := []struct {
		words []string
		want  []string
	}{
		{[]string{"kclb", "ch"}, []string{"check"}},
		{[]string{"kclb", "check", "--sy"}, []string{"--syntax-only"}},
		{[]string{"kclb", "check", "ed"}, []string{"edge.toml"}},
		{[]string{"kclb", "drain", "--wa"}, []string{"--wait"}},
		{[]string{"kclb", "ready", "--wait-h"}, []string{"--wait-healthy"}},
		{[]string{"kclb", "completion", "z"}, []string{"zsh"}},
		{[]string{"kclb", "import", "--fo"}, []string{"--force"}},
	}
	for _, tt := range tests {
		if got := complete(tt.words...); strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("complete %q = %q, want %q", tt.words, got, tt.want)
		}
	}
}

// TestCompletionOtherShells checks the zsh and fish scripts parse.
func TestCompletionOtherShells(t *testing.T) {
	for _, sh := range []struct{ shell, flag string }{{"zsh", "-n"}, {"fish", "--no-execute"}} {
		t.Run(sh.shell, func(t *testing.T) {
			path, err := exec.LookPath(sh.shell)
			if err != nil {
				t.Skipf("needs %s (apt package %s)", sh.shell, sh.shell)
			}
			script := filepath.Join(t.TempDir(), "kclb."+sh.shell)
			text := mustCLI(t, "completion", sh.shell)
			if !strings.Contains(text, "syntax-only") || !strings.Contains(text, "wait-healthy") {
				t.Errorf("%s completion lacks command flags:\n%s", sh.shell, text)
			}
			os.WriteFile(script, []byte(text), 0o644)
			if out, err := exec.Command(path, sh.flag, script).CombinedOutput(); err != nil || len(out) > 0 {
				t.Errorf("%s %s: %v\n%s", sh.shell, sh.flag, err, out)
			}
		})
	}
	if _, errOut, code := cli(t, "completion", "tcsh"); code != 2 || !strings.Contains(errOut, "tcsh") {
		t.Errorf("completion tcsh: exit %d, %q", code, errOut)
	}
}

// TestManpage renders the generated kclb(1) with groff's warnings on and
// finds every command and flag in it.
func TestManpage(t *testing.T) {
	page := mustCLI(t, "manpage")
	repro := exec.Command(kclbBin, "manpage")
	repro.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=86400")
	if out, err := repro.Output(); err != nil || !strings.Contains(string(out), `.TH KCLB 1 "1970-01-02"`) {
		t.Errorf("SOURCE_DATE_EPOCH is not the page's date: %v\n%.200s", err, out)
	}
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Skip("needs groff")
	}
	cmd := exec.Command(groff, "-man", "-Tutf8", "-ww")
	cmd.Stdin = strings.NewReader(page)
	cmd.Env = append(os.Environ(), "GROFF_NO_SGR=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("groff: %v\n%s", err, stderr.String())
	}
	text := regexp.MustCompile(".\b").ReplaceAllString(string(out), "")
	text = strings.ReplaceAll(text, "‐", "-")
	for _, c := range commands() {
		if !strings.Contains(text, "kclb "+c.Name) {
			t.Errorf("manual page has no %q", "kclb "+c.Name)
		}
	}
	for _, f := range []string{"--syntax-only", "--wait-healthy", "--force", "-token-file"} {
		if !strings.Contains(text, f) {
			t.Errorf("manual page has no %s", f)
		}
	}
}

// docCommand matches a kclb command line in Markdown: in a code span or
// at the start of a code-block line (after an optional prompt).
var (
	docSpan  = regexp.MustCompile("`((?:\\./bin/|/usr/local/bin/|sudo )?kclb [^`]+)`")
	docBlock = regexp.MustCompile(`^\s*(?:\$ |# )?((?:\./bin/|/usr/local/bin/|sudo )?kclb [^#]*)`)
)

// documentedCommands returns every kclb command line of README.md and
// docs/*.md with the file and line it is on.
func documentedCommands(t *testing.T) map[string]string {
	t.Helper()
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md")
	found := make(map[string]string)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(data), "\n")
		in, prompted := false, false // in a code block; its commands have a "$ " prompt
		for i, line := range lines {
			n := i + 1
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				in = !in
				prompted = false
				for _, l := range lines[i+1:] {
					if !in || strings.HasPrefix(strings.TrimSpace(l), "```") {
						break
					}
					prompted = prompted || strings.HasPrefix(strings.TrimSpace(l), "$ ")
				}
				continue
			}
			var cands []string
			if in {
				// In a block with prompts, lines without one are output.
				if m := docBlock.FindStringSubmatch(line); m != nil && (!prompted || strings.HasPrefix(strings.TrimSpace(line), "$ ")) {
					cands = append(cands, m[1])
				}
			} else {
				for _, m := range docSpan.FindAllStringSubmatch(line, -1) {
					cands = append(cands, m[1])
				}
			}
			for _, c := range cands {
				// A shell line: each kclb command between && || ; |.
				for _, part := range regexp.MustCompile(`&&|\|\||;|\s\|\s|\s#\s|\s{3,}`).Split(c, -1) {
					part = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(part), "\\"))
					if i := strings.Index(part, "kclb "); i >= 0 && (i == 0 || strings.HasSuffix(part[:i], "/") || strings.HasPrefix(part, "sudo ")) {
						found[part] = filepath.Base(f) + ":" + strconv.Itoa(n)
					}
				}
			}
		}
	}
	return found
}

// TestDocumentedCommands pins issue 15, item 2: every kclb command line
// in README.md and docs/*.md parses as written (docs/configuration.md
// began with `kclb -c ...`, which fails with "unknown command"). Each is
// run with -h appended, so nothing is executed: the command must exist
// and every flag and flag value must be accepted.
func TestDocumentedCommands(t *testing.T) {
	cmds := documentedCommands(t)
	if len(cmds) < 15 {
		t.Fatalf("found only %d documented kclb commands: %v", len(cmds), cmds)
	}
	for line, where := range cmds {
		args := docArgs(line)
		_, errOut, code := cli(t, append(args, "-h")...)
		for _, bad := range []string{"unknown command", "flag provided but not defined", "invalid value", "invalid boolean", "unknown shell"} {
			if strings.Contains(errOut, bad) {
				t.Errorf("%s: `%s` does not parse: %s", where, line, firstLine(errOut, bad))
			}
		}
		if code != 0 && code != 2 {
			t.Errorf("%s: `%s -h` exited %d: %s", where, line, code, errOut)
		}
	}
}

// docArgs turns a documented command line into arguments: the program
// and a leading sudo dropped, [optional] brackets removed, the first of
// a|b|c alternatives taken, quotes removed.
func docArgs(line string) []string {
	var args []string
	for i, w := range strings.Fields(line) {
		if w == "sudo" || (i < 2 && strings.HasSuffix(w, "kclb")) {
			continue
		}
		w = strings.Trim(w, "[]\"'")
		if a, _, ok := strings.Cut(w, "|"); ok {
			w = a
		}
		if w == "" || w == "..." || w == "…" {
			continue
		}
		args = append(args, w)
	}
	return args
}

func firstLine(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return s
}

// TestCheckMapsRuntimeRulesToLines runs `kclb check` on a configuration
// breaking rules the runtime packages own (issue 13: vrrp's priority
// range, health's interval, vrrp's advert interval) and pins each
// problem's line and key path in config's format, "file:line: key: msg"
// (the first line after the "kclb: " every error starts with), wherever
// the rule lives.
func TestCheckMapsRuntimeRulesToLines(t *testing.T) {
	p := writeConfig(t, `[[listener]]
name = "http"
bind = "127.0.0.1:8080"

[[backend.server]]
name = "kc1"
address = "127.0.0.1:18081"

[affinity]
secret = "0123456789abcdef0123"

[health]
interval = "-1s"

[[vrrp.instance]]
name = "VI_1"
interface = "eth0"
vrid = 51
priority = 300
advert_int = "15ms"
vips = ["203.0.113.100/24"]
`)
	want := []string{
		"kclb: " + p + ":13: health.interval: must be greater than 0, got -1s",
		p + ":19: vrrp.instance[0].priority: 300 is out of range 1..255",
		p + ":20: vrrp.instance[0].advert_int: 15ms: want 10ms..40.95s in steps of 10ms",
	}
	for _, args := range [][]string{{"check", p}, {"check", "--syntax-only", p}} {
		out, errOut, code := cli(t, args...)
		if code != 1 {
			t.Errorf("kclb %s: exit %d, stdout %q, stderr %q; want 1", strings.Join(args, " "), code, out, errOut)
		}
		lines := strings.Split(strings.TrimSpace(errOut), "\n")
		if !slices.Equal(lines, want) {
			t.Errorf("kclb %s: stderr\n%s\nwant\n%s", strings.Join(args, " "), errOut, strings.Join(want, "\n"))
		}
	}
}
