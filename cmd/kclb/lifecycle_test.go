package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/kcsim"
)

// load runs workers keep-alive clients plus one client that opens a new
// connection per request against url until ctx ends, and returns the
// number of requests and failures (with the first failure).
func load(ctx context.Context, e *env, workers int, path string) (ok, failed int64, first error) {
	var wg sync.WaitGroup
	var okN, failN atomic.Int64
	var once sync.Once
	for i := range workers + 1 {
		c := e.client(i%2 == 0)
		if i == workers {
			c.Transport.(*http.Transport).DisableKeepAlives = true
		}
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(context.WithoutCancel(ctx), "GET", e.url(path), nil)
				resp, err := c.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = errors.New(resp.Status)
					}
				}
				if err != nil {
					failN.Add(1)
					once.Do(func() { first = err })
					continue
				}
				okN.Add(1)
			}
		})
	}
	wg.Wait()
	return okN.Load(), failN.Load(), first
}

// TestReloadUnderLoad reloads every few hundred milliseconds while
// clients keep sending requests, alternating two valid configurations
// and an invalid one: no request fails, no connection is refused, and a
// pinned client stays on its node.
func TestReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	e := newEnv(t, envOptions{extra: echoPaths + "\n[affinity]\nsecret = \"0123456789abcdef0123456789abcdef\"\n"})
	base, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	variants := [][]byte{
		append(append([]byte{}, base...), "\n[timeouts]\nconnect = \"4s\"\n[headers]\nreferrer_policy = \"same-origin\"\n"...),
		append(append([]byte{}, base...), "\n[nonsense]\nkey = 1\n"...),
		base,
	}

	// Pin a client with KC_ROUTE before the reloads.
	pinned := e.client(false)
	jar := newJar(t)
	pinned.Jar = jar
	node := func() string {
		req, _ := http.NewRequest("GET", e.url("/echo"), nil)
		return getEcho(t, pinned, req).Node
	}
	first := node()

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	var ok, failed int64
	var firstErr error
	done := make(chan struct{})
	go func() {
		ok, failed, firstErr = load(ctx, e, 6, "/echo")
		close(done)
	}()
	reloaded := e.proc.watch("configuration reloaded")
	rejected := e.proc.watch("reload failed")
	reloads, rejects := 0, 0
	for i := 0; ctx.Err() == nil; i++ {
		v := variants[i%len(variants)]
		if err := os.WriteFile(e.cfgPath, v, 0o600); err != nil {
			t.Fatal(err)
		}
		e.proc.cmd.Process.Signal(syscall.SIGHUP)
		select {
		case <-reloaded:
			reloads++
		case <-rejected:
			rejects++
		case <-time.After(10 * time.Second):
			t.Fatal("no reload outcome logged")
		}
		if got := node(); got != first {
			t.Fatalf("pinned client moved from %s to %s after reload %d", first, got, i)
		}
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}
	<-done
	t.Logf("%d requests, %d reloads applied, %d invalid configs rejected", ok, reloads, rejects)
	if failed != 0 {
		t.Fatalf("%d of %d requests failed during reloads; first: %v", failed, ok+failed, firstErr)
	}
	if reloads == 0 || rejects == 0 || ok == 0 {
		t.Fatalf("reloads %d, rejects %d, requests %d: the test did not exercise both paths", reloads, rejects, ok)
	}
}

// TestSIGTERMDrainsInFlight: requests in flight when SIGTERM arrives
// complete, then kclb exits 0.
func TestSIGTERMDrainsInFlight(t *testing.T) {
	e := newEnv(t, envOptions{kcsim: kcsim.Options{}})
	for _, n := range e.cluster.Nodes() {
		n.Node.SetDelay(time.Second)
	}
	c := e.client(false)
	const n = 4
	results := make(chan error, n)
	var started sync.WaitGroup
	for range n {
		started.Add(1)
		go func() {
			req, _ := http.NewRequest("GET", e.url("/realms/test/.well-known/openid-configuration"), nil)
			started.Done()
			resp, err := c.Do(req)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != 200 {
					err = errors.New(resp.Status)
				}
			}
			results <- err
		}()
	}
	started.Wait()
	// Wait until kclb has forwarded the requests: each node reports them.
	deadline := time.Now().Add(10 * time.Second)
	for e.cluster.Stats().Requests < n {
		if time.Now().After(deadline) {
			t.Fatal("requests never reached the nodes")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
	e.proc.cmd.Process.Signal(syscall.SIGTERM)
	for range n {
		if err := <-results; err != nil {
			t.Fatalf("in-flight request failed during shutdown: %v", err)
		}
	}
	select {
	case <-e.proc.done:
	case <-time.After(15 * time.Second):
		t.Fatal("kclb did not exit after SIGTERM")
	}
	if e.proc.err != nil {
		t.Fatalf("kclb exit: %v, want status 0", e.proc.err)
	}
}

func newJar(t *testing.T) http.CookieJar {
	t.Helper()
	j, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// TestBinaryHandoverUnderLoad sends SIGUSR2 while clients keep opening
// connections: the new process takes over the listening sockets, the old
// one drains and exits 0, and no connection is refused or request lost.
func TestBinaryHandoverUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	e := newEnv(t, envOptions{noProc: true})
	old := startLogged(t, e.dir, e.cfgPath)
	old.waitLine(t, `msg=listening listener=https`)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var ok, failed int64
	var firstErr error
	done := make(chan struct{})
	go func() {
		ok, failed, firstErr = load(ctx, e, 4, "/realms/test/.well-known/openid-configuration")
		close(done)
	}()
	time.Sleep(time.Second) // let the load reach a steady state before the upgrade
	old.cmd.Process.Signal(syscall.SIGUSR2)
	pid := old.childPID(t)
	old.waitLine(t, "upgrade: handed over")
	select {
	case <-old.done:
		if old.err != nil {
			t.Fatalf("old process exit: %v, want 0", old.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("old process did not exit after the hand-over")
	}
	<-done
	t.Logf("%d requests across the hand-over, %d failed", ok, failed)
	if failed != 0 {
		t.Fatalf("%d requests failed across the hand-over; first: %v", failed, firstErr)
	}
	// The new process serves alone now.
	resp, err := e.client(false).Get(e.url("/realms/test/.well-known/openid-configuration"))
	if err != nil {
		t.Fatalf("after hand-over: %v", err)
	}
	resp.Body.Close()
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("new process %d not running: %v", pid, err)
	}
}
