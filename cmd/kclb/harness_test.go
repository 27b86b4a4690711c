package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/kclbconf"
	"github.com/kclb/kclb/internal/kcsim"
	"github.com/kclb/kclb/internal/kcsim/kcsimtest"
	"github.com/kclb/kclb/internal/testlab"
	"github.com/kclb/kclb/tlsconf"
)

// kclbBin is the kclb binary built once for the package's tests.
var kclbBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kclb-test-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kclbBin = filepath.Join(dir, "kclb")
	// Built as make build does: static, without cgo.
	build := exec.Command("go", "build", "-o", kclbBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building kclb: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	testlab.RemoveBuilds()
	os.Exit(code)
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	for range portSpan {
		p := portBase + int(nextPort.Add(1))%portSpan
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		ln.Close()
		return ln.Addr().String()
	}
	t.Fatalf("no free port in 127.0.0.1:%d-%d", portBase, portBase+portSpan-1)
	return ""
}

// The ports freeAddr hands out: below Linux's ephemeral range (32768 and
// up by default), so that no outgoing connection of this or another test
// process takes one as its source port between the pick and kclb's
// listen (a port from 127.0.0.1:0, closed again, can be: "address already
// in use" in CI), and one after the other from a random start, so that
// two picks never return the same port while it is free.
const (
	portBase = 29500
	portSpan = 3000
)

var nextPort = func() *atomic.Int64 {
	var n atomic.Int64
	n.Store(rand.Int64N(portSpan))
	return &n
}()

// testCert writes a self-signed certificate for localhost into dir.
func testCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	certFile, keyFile, err := tlsconf.GenerateSelfSigned(dir, []string{"localhost", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return certFile, keyFile, pool
}

// env is a running kclb in front of a stand-in cluster.
type env struct {
	t         *testing.T
	cluster   *kcsimtest.Cluster
	dir       string
	cfgPath   string
	httpAddr  string
	httpsAddr string
	certFile  string
	keyFile   string
	roots     *x509.CertPool
	proc      *kclbProc
}

// envOptions tunes newEnv. Extra is appended to the generated TOML.
type envOptions struct {
	nodes   int
	kcsim   kcsim.Options
	servers string // extra keys for every [[backend.server]]
	extra   string
	// admin is the body of the [admin] section; empty means `socket = ""`
	// (no admin listener).
	admin string
	// stateFile is [global] state_file; empty disables persistence.
	stateFile string
	// noProc writes the configuration but does not start kclb.
	noProc bool
}

// newEnv starts nodes stand-ins and kclb with an HTTP and an HTTPS
// listener in front of them.
func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	if o.nodes == 0 {
		o.nodes = 3
	}
	e := &env{t: t, dir: t.TempDir()}
	e.cluster = kcsimtest.StartCluster(t, o.nodes, o.kcsim)
	e.certFile, e.keyFile, e.roots = testCert(t, e.dir)
	e.httpAddr, e.httpsAddr = freeAddr(t), freeAddr(t)
	adminSection := o.admin
	if adminSection == "" {
		adminSection = `socket = ""`
	}
	var f kclbconf.File
	f.Global("test", "state_file", o.stateFile, "log_level", "debug", "shutdown_grace", 5*time.Second).
		Section("admin").Text(adminSection).
		Listener("http", e.httpAddr, "redirect_https", true).
		Listener("https", e.httpsAddr, "tls", true, "http2", true).
		Certificate(e.certFile, e.keyFile).
		Section("health", "interval", 200*time.Millisecond, "timeout", 150*time.Millisecond, "slowstart", "0s")
	for i, n := range e.cluster.Nodes() {
		f.Server(fmt.Sprintf("keycloak%d", i+1), n.Traffic.String(), n.Mgmt.String()).Text(o.servers)
	}
	f.Text(o.extra)
	e.cfgPath = filepath.Join(e.dir, "kclb.toml")
	if err := f.WriteFile(e.cfgPath); err != nil {
		t.Fatal(err)
	}
	if !o.noProc {
		e.proc = startKclb(t, e.cfgPath, 2)
	}
	return e
}

// client returns an HTTPS client that trusts the test certificate and
// resolves localhost to kclb's loopback address.
func (e *env) client(h2 bool) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: e.roots},
		ForceAttemptHTTP2: h2,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, e.httpsAddr)
		},
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	e.t.Cleanup(tr.CloseIdleConnections)
	return c
}

// url returns the HTTPS URL of path on kclb, with "localhost" as the host
// so SNI and the certificate match.
func (e *env) url(path string) string {
	_, port, _ := net.SplitHostPort(e.httpsAddr)
	return "https://localhost:" + port + path
}

// kclbProc is a running kclb process with its log lines.
type kclbProc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex // guards logs and waiters
	logs []string
	// waiters are notified of every new log line.
	waiters []chan string
	done    chan struct{} // closed when the process has exited
	err     error         // the exit error, valid after done is closed
}

// startKclb runs `kclb run -c cfg` and waits for listeners "listening" log
// lines (the signal that sockets are bound).
func startKclb(t *testing.T, cfg string, listeners int) *kclbProc {
	t.Helper()
	return startKclbEnv(t, cfg, listeners, nil)
}

// startKclbEnv is startKclb with extra environment variables.
func startKclbEnv(t *testing.T, cfg string, listeners int, env []string) *kclbProc {
	t.Helper()
	cmd := exec.Command(kclbBin, "run", "-c", cfg)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	return runKclb(t, cmd, listeners)
}

// runKclb starts cmd, a `kclb run` (perhaps behind a wrapper such as ip
// netns exec), and waits for listeners "listening" log lines.
func runKclb(t *testing.T, cmd *exec.Cmd, listeners int) *kclbProc {
	t.Helper()
	p := &kclbProc{cmd: cmd, done: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = io.Discard
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := p.watchFunc(func(l string) bool {
		return strings.Contains(l, "msg=listening") || strings.Contains(l, `"msg":"listening"`) // text or JSON log
	})
	go p.read(stderr)
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("kclb log:\n%s", strings.Join(p.Logs(), "\n"))
		}
	})
	for range listeners {
		select {
		case <-ready:
		case <-p.done:
			t.Fatalf("kclb exited before listening: %v\n%s", p.err, strings.Join(p.Logs(), "\n"))
		case <-time.After(20 * time.Second):
			t.Fatalf("kclb did not listen within 20s\n%s", strings.Join(p.Logs(), "\n"))
		}
	}
	return p
}

func (p *kclbProc) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		p.logs = append(p.logs, line)
		for _, w := range p.waiters {
			select {
			case w <- line:
			default:
			}
		}
		p.mu.Unlock()
	}
	p.err = p.cmd.Wait()
	close(p.done)
}

// watch returns a channel that receives every future log line containing
// substr.
func (p *kclbProc) watch(substr string) <-chan string {
	return p.watchFunc(func(l string) bool { return strings.Contains(l, substr) })
}

// watchFunc returns a channel that receives every future log line match
// accepts.
func (p *kclbProc) watchFunc(match func(string) bool) <-chan string {
	all := make(chan string, 1024)
	out := make(chan string, 64)
	p.mu.Lock()
	p.waiters = append(p.waiters, all)
	p.mu.Unlock()
	go func() {
		for l := range all {
			if match(l) {
				out <- l
			}
		}
	}()
	return out
}

// Logs returns the log lines so far.
func (p *kclbProc) Logs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.logs...)
}

// waitLog waits for a log line containing substr, failing after timeout.
func waitLog(t *testing.T, ch <-chan string, what string, timeout time.Duration) string {
	t.Helper()
	select {
	case l := <-ch:
		return l
	case <-time.After(timeout):
		t.Fatalf("no log line for %s within %v", what, timeout)
	}
	return ""
}

// serveRawConns accepts loopback connections and runs handle for each
// in a goroutine of its own, which closes the connection when handle
// returns. At the end of the test the listener and every open
// connection are closed and the goroutines waited for. It returns the
// listening address.
func serveRawConns(t *testing.T, handle func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex // guards conns
	conns := map[net.Conn]bool{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					c.Close()
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
				}()
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}
