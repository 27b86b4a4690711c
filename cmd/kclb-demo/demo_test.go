package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemoEndToEnd pins issue 15, item 5 and issue 13's first bullet: the
// demo runs the real kclb binary next to it, falls back to free ports
// when its ports are taken, prints URLs that answer (including the stats
// page of an admin TCP listener) and commands that run exactly as
// printed, warns about nothing of its own making, and at Ctrl-C stops
// kclb and removes its private directory.
func TestDemoEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds kclb and runs the demo")
	}
	root := t.TempDir()
	for _, pkg := range []string{"../kclb", "."} {
		name := "kclb-demo"
		if pkg != "." {
			name = "kclb"
		}
		if out, err := exec.Command("go", "build", "-o", filepath.Join(root, "bin", name), pkg).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, out)
		}
	}
	// Hold the port the demo is asked to start at.
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	base := held.Addr().(*net.TCPAddr).Port

	cmd := exec.Command("./bin/kclb", "demo", "--port-base", strconv.Itoa(base)) // through `kclb demo`
	cmd.Dir = root
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	}()

	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var banner []string
	deadline := time.After(60 * time.Second)
	for done := false; !done; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("demo ended before its banner:\n%s\nstderr:\n%s", strings.Join(banner, "\n"), stderr.String())
			}
			banner = append(banner, l)
			done = strings.Contains(l, "status -a")
		case <-deadline:
			t.Fatalf("no banner within 60s:\n%s\nstderr:\n%s", strings.Join(banner, "\n"), stderr.String())
		}
	}
	text := strings.Join(banner, "\n")
	if !strings.Contains(text, "port "+strconv.Itoa(base)+" is taken") {
		t.Errorf("no fallback note for the held port %d:\n%s", base, text)
	}
	find := func(re string) string {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("banner has no %s:\n%s", re, text)
		}
		return m[1]
	}
	httpsURL := find(`HTTPS:\s+(\S+)`)
	httpURL := find(`HTTP:\s+(\S+)`)
	statsURL := find(`stats:\s+(\S+)`)
	metricsURL := find(`metrics:\s+(\S+)`)
	certFile := find(`--cacert (\S+)`)
	dir := find(`files:\s+(\S+)`)
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 || !strings.HasPrefix(filepath.Base(dir), "kclb-demo-") {
		t.Errorf("demo directory %s: %v, want a fresh private directory", dir, err)
	}

	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
	get := func(u string, want int, body string) {
		t.Helper()
		resp, err := hc.Get(u)
		if err != nil {
			t.Errorf("GET %s: %v", u, err)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || !strings.Contains(string(b), body) {
			t.Errorf("GET %s: %d, want %d with %q:\n%.300s", u, resp.StatusCode, want, body, b)
		}
	}
	get(httpsURL, 200, `"issuer"`)
	get(httpURL, 308, "")
	get(statsURL, 200, "<html")
	get(metricsURL, 200, "kclb_")

	// Every command under "try:" runs as printed, from where make demo runs.
	_, noCurl := exec.LookPath("curl")
	try := false
	for _, l := range banner {
		if strings.TrimSpace(l) == "try:" {
			try = true
			continue
		}
		l = strings.TrimSpace(l)
		if !try || l == "" || (noCurl != nil && strings.HasPrefix(l, "curl")) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		c := exec.CommandContext(ctx, "sh", "-c", l)
		c.Dir = root
		out, err := c.CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("printed command %q: %v\n%s", l, err, out)
		}
	}

	if strings.Contains(stderr.String(), "level=WARN") {
		t.Errorf("the demo warns about itself:\n%s", stderr.String())
	}
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("demo exit after Ctrl-C: %v\n%s", err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("demo still running 60s after SIGINT")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s left behind (%v)", dir, err)
	}
	// Nothing left running: no process names the demo's config, and the
	// HTTPS port is free again.
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), dir) {
			t.Errorf("process %s still runs: %q", p, b)
		}
	}
	u := regexp.MustCompile(`:(\d+)/`).FindStringSubmatch(httpsURL)
	if ln, err := net.Listen("tcp", "127.0.0.1:"+u[1]); err != nil {
		t.Errorf("HTTPS port still taken after the demo: %v", err)
	} else {
		ln.Close()
	}
}

// TestLayout: the documented default ports, and the --port-base offsets.
func TestLayout(t *testing.T) {
	d := defaultLayout()
	if d.http != 8080 || d.https != 8443 || d.admin != 9100 || d.traffic[0] != 18081 || d.mgmt[2] != 19003 {
		t.Errorf("default layout %+v", d)
	}
	l := layoutAt(20000)
	if l.http != 20000 || l.https != 20001 || l.admin != 20002 || l.traffic[1] != 20012 || l.mgmt[2] != 20023 {
		t.Errorf("layoutAt(20000) = %+v", l)
	}
	if layoutAt(65530).busy() == 0 {
		t.Error("ports past 65535 reported usable")
	}
}
