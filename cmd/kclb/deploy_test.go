package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/config"
)

// readUnit returns deploy/kclb.service's [Service] keys (the last value
// of a repeated key) and the file's text.
func readUnit(t *testing.T) (map[string]string, string) {
	t.Helper()
	data, err := os.ReadFile("../../deploy/kclb.service")
	if err != nil {
		t.Fatal(err)
	}
	keys := make(map[string]string)
	section := ""
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = strings.Trim(line, "[]")
		case section == "Service":
			k, v, _ := strings.Cut(line, "=")
			keys[k] = v
		}
	}
	return keys, string(data)
}

// TestUnitDirectives checks the service settings kclb depends on: notify
// readiness with a watchdog, the capabilities VRRP needs, the sandbox and
// a stop timeout above the default shutdown grace.
func TestUnitDirectives(t *testing.T) {
	keys, _ := readUnit(t)
	want := map[string]string{
		"Type":                    "notify",
		"WatchdogSec":             "10s",
		"User":                    "kclb",
		"Group":                   "kclb",
		"AmbientCapabilities":     "CAP_NET_BIND_SERVICE CAP_NET_ADMIN CAP_NET_RAW",
		"CapabilityBoundingSet":   "CAP_NET_BIND_SERVICE CAP_NET_ADMIN CAP_NET_RAW",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"RuntimeDirectory":        "kclb",
		"StateDirectory":          "kclb",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX AF_NETLINK AF_PACKET",
		"SystemCallFilter":        "@system-service",
		"ExecStart":               "/usr/local/bin/kclb run -c /etc/kclb/config.toml",
		"ExecStartPre":            "/usr/local/bin/kclb check -c /etc/kclb/config.toml",
		"ExecReload":              "/usr/local/bin/kclb reload",
		"ExecStopPost":            "-/usr/local/bin/kclb cleanup-vips -c /etc/kclb/config.toml", // issue 17, item 6a
		"KillSignal":              "SIGTERM",
		"Restart":                 "on-failure",
	}
	for k, v := range want {
		t.Run(k, func(t *testing.T) {
			if keys[k] != v {
				t.Errorf("%s=%q, want %q", k, keys[k], v)
			}
		})
	}
	t.Run("TimeoutStopSec", func(t *testing.T) {
		stop, err := time.ParseDuration(keys["TimeoutStopSec"])
		if err != nil {
			t.Fatalf("TimeoutStopSec=%q: %v", keys["TimeoutStopSec"], err)
		}
		grace := config.Default().Global.ShutdownGrace.Duration
		if stop <= grace || stop > grace+30*time.Second {
			t.Errorf("TimeoutStopSec=%s, want a little above global.shutdown_grace's default %s", stop, grace)
		}
	})
}

// TestUnitVerify runs systemd-analyze verify on the unit with its kclb
// paths pointing at the test binary (verify insists that ExecStart exists).
// Unknown or misspelt directives are only warnings there, so any output
// that mentions the unit fails the test.
func TestUnitVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("needs systemd-analyze (apt package systemd)")
	}
	_, unit := readUnit(t)
	unit = strings.ReplaceAll(unit, "/usr/local/bin/kclb", kclbBin)
	path := filepath.Join(t.TempDir(), "kclb.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sa, "verify", path)
	cmd.Dir = filepath.Dir(path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "kclb") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
}

// TestSysusers creates the kclb account from deploy/kclb.sysusers and the
// /etc/kclb directories from deploy/kclb.tmpfiles in a scratch root.
func TestSysusers(t *testing.T) {
	su, err := exec.LookPath("systemd-sysusers")
	if err != nil {
		t.Skip("needs systemd-sysusers (apt package systemd)")
	}
	tf, err := exec.LookPath("systemd-tmpfiles")
	if err != nil {
		t.Skip("needs systemd-tmpfiles (apt package systemd)")
	}
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	if out, err := exec.Command(su, "--root="+root, abs("../../deploy/kclb.sysusers")).CombinedOutput(); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(passwd), "kclb:x:") || !strings.Contains(string(passwd), ":/var/lib/kclb:/usr/sbin/nologin") {
		t.Fatalf("no kclb system user in passwd:\n%s", passwd)
	}
	if out, err := exec.Command(tf, "--root="+root, "--create", abs("../../deploy/kclb.tmpfiles")).CombinedOutput(); err != nil {
		t.Fatalf("systemd-tmpfiles: %v\n%s", err, out)
	}
	for _, d := range []string{"etc/kclb", "etc/kclb/tls"} {
		st, err := os.Stat(filepath.Join(root, d))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o750 {
			t.Errorf("/%s has mode %v, want 0750", d, st.Mode().Perm())
		}
	}
}

// TestMakeInstall pins issue 15, item 7: `make install` puts the binary,
// the unit, the manual page and the three completion scripts in place,
// and the installed binary reports a release version, not "dev".
func TestMakeInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries with make")
	}
	mk, err := exec.LookPath("make")
	if err != nil {
		t.Skip("needs make")
	}
	dest, bin := t.TempDir(), t.TempDir()
	cmd := exec.Command(mk, "-C", "../..", "install", "DESTDIR="+dest, "BIN="+bin, "PREFIX=/usr/local")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, f := range []string{
		"usr/local/bin/kclb", "lib/systemd/system/kclb.service", "usr/local/share/man/man1/kclb.1",
		"usr/share/bash-completion/completions/kclb", "usr/share/zsh/vendor-completions/_kclb",
		"usr/share/fish/vendor_completions.d/kclb.fish",
	} {
		st, err := os.Stat(filepath.Join(dest, f))
		if err != nil || st.Size() == 0 {
			t.Errorf("make install: %s missing or empty (%v)", f, err)
		}
	}
	out, err := exec.Command(filepath.Join(dest, "usr/local/bin/kclb"), "version").CombinedOutput()
	if err != nil || strings.HasPrefix(string(out), "kclb dev ") || strings.Contains(string(out), "commit unknown") {
		t.Errorf("installed kclb version: %q (%v); want the version from git describe and the commit", out, err)
	}
}

// TestUpgradeCommandAgrees pins issue 15, item 6: the binary-upgrade
// command in the unit's comment and in docs/operations.md differed.
func TestUpgradeCommandAgrees(t *testing.T) {
	_, unit := readUnit(t)
	const cmd = "systemctl kill -s USR2 --kill-whom=main kclb"
	ops, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(unit, cmd) || !strings.Contains(string(ops), cmd) {
		t.Errorf("the unit and docs/operations.md must both give %q", cmd)
	}
	if strings.Contains(string(ops), "systemctl kill -s USR2 kclb") {
		t.Error("docs/operations.md still gives the upgrade signal to every process of the unit")
	}
}
