package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/admin"
)

// loggedProc is a kclb whose log goes to a file: after a binary upgrade
// the new process outlives the old one's pipes.
type loggedProc struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process exited; err is then set
	err     error
}

func startLogged(t *testing.T, dir, cfg string) *loggedProc {
	t.Helper()
	p := &loggedProc{logPath: filepath.Join(dir, "kclb.log"), done: make(chan struct{})}
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(kclbBin, "run", "-c", cfg)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			b, _ := os.ReadFile(p.logPath)
			t.Logf("kclb log:\n%s", b)
		}
	})
	return p
}

// line returns the first log line containing substr, or "".
func (p *loggedProc) line(substr string) string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), substr) {
			return sc.Text()
		}
	}
	return ""
}

// waitLine waits up to 20 s for a log line containing substr.
func (p *loggedProc) waitLine(t *testing.T, substr string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if l := p.line(substr); l != "" {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q within 20 s", substr)
		}
		time.Sleep(10 * time.Millisecond) // polling a log file with a deadline
	}
}

// childPID returns the pid of the new process from the old one's log.
func (p *loggedProc) childPID(t *testing.T) int {
	t.Helper()
	line := p.waitLine(t, "upgrade: new process started")
	var pid int
	if i := strings.Index(line, "pid="); i >= 0 {
		fmt.Sscan(strings.Fields(line[i+4:])[0], &pid)
	}
	if pid == 0 {
		t.Fatalf("no pid in %q", line)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	return pid
}

// unixClient returns an HTTP client for the admin socket.
func unixClient(socket string) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
}

// adminStatus reads /v1/status through c at base.
func adminStatus(c *http.Client, base string) (admin.Status, error) {
	var st admin.Status
	resp, err := c.Get(base + "/v1/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return st, errors.New(resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// TestBinaryUpgradeWithAdminSocket pins issue 18, item 5(a): with an
// admin socket configured (the default) the new process could not open
// the socket the old one held and hung, and the old one waited for ever.
// Now the admin Unix socket and the admin TCP listener are handed over:
// from before SIGUSR2 until the old process exited the socket file is
// never absent and every admin request is answered; afterwards the new
// process answers on both, and removes the socket file when it stops.
func TestBinaryUpgradeWithAdminSocket(t *testing.T) {
	a := newAdminEnv(t, adminOptions{tcp: true, nodes: 2})
	// The adminEnv's kclb is not used: the upgrade needs a log file.
	a.proc.cmd.Process.Kill()
	<-a.proc.done
	os.Remove(a.socket)
	old := startLogged(t, a.dir, a.cfgPath)
	old.waitLine(t, "msg=\"admin API listening\" tcp=")
	uc, tc := unixClient(a.socket), &http.Client{Timeout: 5 * time.Second}
	before, err := adminStatus(uc, "http://kclb")
	if err != nil {
		t.Fatal(err)
	}

	// Watch the socket file and the admin API from before the signal.
	var absent, failed, answered atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := os.Lstat(a.socket); err != nil {
				absent.Add(1)
			}
			for _, c := range []struct {
				c    *http.Client
				base string
			}{{uc, "http://kclb"}, {tc, "http://" + a.tcp}} {
				if _, err := adminStatus(c.c, c.base); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				} else {
					answered.Add(1)
				}
			}
		}
	})
	if err := old.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	pid := old.childPID(t)
	select {
	case <-old.done:
	case <-time.After(30 * time.Second):
		close(stop)
		wg.Wait()
		t.Fatal("old process still running 30 s after SIGUSR2")
	}
	close(stop)
	wg.Wait()
	t.Logf("across the upgrade: %d admin requests answered, %d failed, socket file absent in %d polls", answered.Load(), failed.Load(), absent.Load())
	if old.err != nil {
		t.Errorf("old process exit: %v, want 0", old.err)
	}
	if old.line("upgrade: handed over") == "" {
		t.Error("old process did not log the hand-over")
	}
	if absent.Load() != 0 {
		t.Errorf("the admin socket file was absent %d times during the upgrade", absent.Load())
	}
	// docs/operations.md: a command arriving at the hand-over moment may
	// meet the old process closing its admin listeners and see its
	// connection reset (about 1 run in 6 under CI's load); the operator
	// repeats it. More than one such request per listener, or any other
	// failure, is a defect.
	if n := failed.Load(); n > 2 || n > 0 && !handoverReset(firstErr.Load()) {
		t.Errorf("%d admin requests failed during the upgrade; first: %v", n, firstErr.Load())
	}
	for _, c := range []struct {
		c    *http.Client
		base string
	}{{uc, "http://kclb"}, {tc, "http://" + a.tcp}} {
		after, err := adminStatus(c.c, c.base)
		if err != nil {
			t.Fatalf("admin API at %s after the upgrade: %v", c.base, err)
		}
		if after.Started.Equal(before.Started) {
			t.Errorf("admin API at %s still answered by the old process", c.base)
		}
	}
	// The new process owns the socket now: a normal stop removes it.
	syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(20 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatal("new process did not exit after SIGTERM")
		}
		time.Sleep(10 * time.Millisecond) // polling for the exit of a process that is not our child
	}
	if _, err := os.Lstat(a.socket); err == nil {
		t.Error("the new process left the admin socket file behind when it stopped")
	}
}

// TestBinaryUpgradeFailingNewProcess pins issue 18, item 5(a): a new
// process that cannot start says why, and the old one logs the reason,
// gives up on it and keeps serving, on the public listeners and the admin
// socket alike.
func TestBinaryUpgradeFailingNewProcess(t *testing.T) {
	a := newAdminEnv(t, adminOptions{nodes: 2})
	a.proc.cmd.Process.Kill()
	<-a.proc.done
	os.Remove(a.socket)
	old := startLogged(t, a.dir, a.cfgPath)
	old.waitLine(t, "msg=\"admin API listening\"")
	// The configuration now names a certificate that cannot be loaded.
	if err := os.WriteFile(a.certFile, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old.cmd.Process.Signal(syscall.SIGUSR2)
	line := old.waitLine(t, "upgrade failed; this process keeps serving")
	if !strings.Contains(line, "the new process failed") || !strings.Contains(line, "no PEM") {
		t.Errorf("the old process did not say why the new one failed: %s", line)
	}
	select {
	case <-old.done:
		t.Fatalf("old process exited: %v", old.err)
	default:
	}
	if _, err := adminStatus(unixClient(a.socket), "http://kclb"); err != nil {
		t.Errorf("admin socket after the failed upgrade: %v", err)
	}
	resp, err := a.client(false).Get(a.url("/realms/test/.well-known/openid-configuration"))
	if err != nil {
		t.Fatalf("HTTPS after the failed upgrade: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("HTTPS after the failed upgrade: %s", resp.Status)
	}
}

// handoverReset reports whether err, an admin request's failure, is the
// connection reset or closed under it as the old process handed over.
func handoverReset(err any) bool {
	e, ok := err.(error)
	return ok && (errors.Is(e, syscall.ECONNRESET) || errors.Is(e, io.EOF) || errors.Is(e, io.ErrUnexpectedEOF))
}
