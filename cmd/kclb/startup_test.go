package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// exited is the outcome of a kclb process that was expected to end.
type exited struct {
	err    error         // from Wait
	stderr string        // everything it wrote
	took   time.Duration // from start (or from the signal) to exit
}

// lastLine returns the last non-empty line kclb wrote: the error line.
func (x exited) lastLine() string {
	lines := strings.Split(strings.TrimSpace(x.stderr), "\n")
	return lines[len(lines)-1]
}

// runToExit starts `kclb run -c cfg` and waits for it to exit, failing
// the test if it is still running after 20 s (it is then killed).
func runToExit(t *testing.T, cfg string) exited {
	t.Helper()
	cmd, stderr := startRaw(t, cfg)
	return waitExit(t, cmd, stderr, time.Now())
}

// startRaw starts `kclb run -c cfg` with stderr collected in a buffer.
func startRaw(t *testing.T, cfg string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(kclbBin, "run", "-c", cfg)
	buf := new(syncBuffer)
	cmd.Stderr = buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	return cmd, buf
}

// waitExit waits up to 20 s for cmd to exit.
func waitExit(t *testing.T, cmd *exec.Cmd, stderr *syncBuffer, since time.Time) exited {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return exited{err: err, stderr: stderr.String(), took: time.Since(since)}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("kclb still running 20 s later; it wrote:\n%s", stderr.String())
	}
	return exited{}
}

// exitStatus returns the process exit status, or -1 if it was killed.
func (x exited) exitStatus() int {
	var ee *exec.ExitError
	if x.err == nil {
		return 0
	}
	if errors.As(x.err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// wantFailure checks that kclb exited with status 1 and that its last
// line is the error naming the cause.
func (x exited) wantFailure(t *testing.T, cause string) {
	t.Helper()
	t.Logf("exit status %d after %v: %s", x.exitStatus(), x.took.Round(time.Millisecond), x.lastLine())
	if x.exitStatus() != 1 {
		t.Errorf("exit status %d (%v), want 1; output:\n%s", x.exitStatus(), x.err, x.stderr)
	}
	if line := x.lastLine(); !strings.HasPrefix(line, "kclb: ") || !strings.Contains(line, cause) {
		t.Errorf("last line %q, want \"kclb: ...%s...\"; output:\n%s", line, cause, x.stderr)
	}
}

// TestStartupPortTaken pins issue 18, item 1: with the HTTPS port held
// by another process (HAProxy during a migration), `kclb run` used to
// print nothing, never exit and ignore SIGTERM. It must exit 1 at once
// with one line naming the address and the cause.
func TestStartupPortTaken(t *testing.T) {
	e := newEnv(t, envOptions{noProc: true})
	holder, err := net.Listen("tcp", e.httpsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	x := runToExit(t, e.cfgPath)
	x.wantFailure(t, `listener "https": listen `+e.httpsAddr+": address already in use")
}

// TestStartupBadVRRPInterface pins issue 18, item 1: a VRRP instance on
// an interface that does not exist used to leave kclb hanging; it must
// exit 1 naming the instance and the interface, before binding anything.
func TestStartupBadVRRPInterface(t *testing.T) {
	e := newEnv(t, envOptions{noProc: true, extra: `
[[vrrp.instance]]
name = "VI_1"
interface = "kclbnoif0"
vrid = 51
vips = ["203.0.113.100/24"]
`})
	x := runToExit(t, e.cfgPath)
	x.wantFailure(t, `vrrp instance "VI_1": interface "kclbnoif0": no such network interface`)
	if strings.Contains(x.stderr, "msg=listening") {
		t.Error("kclb bound its listeners before checking the VRRP interface")
	}
}

// TestStartupIPv6VIP: IPv6 VIPs are VRRPv3 over IPv6 (issue 17, item 5;
// until then issue 18, item 1 made both `check` and `run` refuse them).
// Mixing families in one instance is refused by both, naming the key and
// line; an IPv6 instance passes `check`, and `run` refuses an interface
// without an IPv6 link-local address (lo) before binding anything.
func TestStartupIPv6VIP(t *testing.T) {
	mixed := newEnv(t, envOptions{noProc: true, extra: `
[[vrrp.instance]]
name = "VI_6"
interface = "lo"
vrid = 52
vips = ["2001:db8::100/64", "203.0.113.100/24"]
`})
	out, err := exec.Command(kclbBin, "check", "-c", mixed.cfgPath).CombinedOutput()
	if err == nil || !regexp.MustCompile(`kclb\.toml:\d+: vrrp\.instance\[0\]\.vips\[1\]: .*one address family per instance`).Match(out) {
		t.Errorf("kclb check of mixed families: %v\n%s\nwant a refusal naming vips[1] and its line", err, out)
	}
	runToExit(t, mixed.cfgPath).wantFailure(t, "vrrp.instance[0].vips[1]")

	e := newEnv(t, envOptions{noProc: true, extra: `
[[vrrp.instance]]
name = "VI_6"
interface = "lo"
vrid = 52
vips = ["2001:db8::100/64"]
`})
	if out, err := exec.Command(kclbBin, "check", "-c", e.cfgPath).CombinedOutput(); err != nil {
		t.Errorf("kclb check of an IPv6 instance: %v\n%s", err, out)
	}
	x := runToExit(t, e.cfgPath)
	x.wantFailure(t, `vrrp instance "VI_6": interface "lo" has no IPv6 link-local address`)
	if strings.Contains(x.stderr, "msg=listening") {
		t.Error("kclb bound its listeners before checking the VRRP interface")
	}
}

// TestStartupUnreadableCert pins issue 18, item 1: a certificate that
// cannot be loaded at start ends kclb with one line naming the file.
func TestStartupUnreadableCert(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(t *testing.T, path string)
	}{
		{"not PEM", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("this is not a certificate\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"directory", func(t *testing.T, path string) {
			os.Remove(path)
			if err := os.Mkdir(path, 0o755); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{noProc: true})
			tc.break_(t, e.certFile)
			x := runToExit(t, e.cfgPath)
			x.wantFailure(t, filepath.Base(e.certFile))
			if n := strings.Count(x.lastLine(), "\n"); n != 0 {
				t.Errorf("error spans %d lines", n+1)
			}
		})
	}
}

// TestStartupSIGTERMDuringStalledStep pins issue 18, item 1: SIGTERM must
// end kclb at every stage of startup, even while a step is stuck in a
// system call. The state file is a FIFO nobody writes to: reading it
// blocks for ever. The test knows kclb is blocked in that read because
// opening the FIFO for writing without blocking succeeds only once a
// reader has it open (ENXIO before). Before the fix kclb ignored the
// signal and had to be killed with SIGKILL.
func TestStartupSIGTERMDuringStalledStep(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "state.json")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("cannot create a FIFO: %v", err)
	}
	e := newEnv(t, envOptions{noProc: true, stateFile: fifo})
	cmd, stderr := startRaw(t, e.cfgPath)
	var w int
	deadline := time.Now().Add(20 * time.Second)
	for {
		fd, err := syscall.Open(fifo, syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
		if err == nil {
			w = fd
			break
		}
		if !errors.Is(err, syscall.ENXIO) {
			t.Fatalf("open FIFO for writing: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("kclb never opened the state file; it wrote:\n%s", stderr.String())
		}
		time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
	}
	defer syscall.Close(w) // held open: kclb's read stays blocked
	sent := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	x := waitExit(t, cmd, stderr, sent)
	x.wantFailure(t, "interrupted by SIGTERM while opening the admin API")
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
