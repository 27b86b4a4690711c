// Package target starts and stops what the benchmark measures: the Keycloak
// stand-in backends, and the proxies in front of them (kclb, HAProxy, nginx)
// with configurations written from one topology, plus "direct" (no proxy).
package target

import (
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
	"syscall"
	"time"

	"github.com/kclb/kclb/bench/procstat"
)

// Backend is one stand-in Keycloak node.
type Backend struct {
	// Name is the server name and affinity cookie value ("kc1").
	Name string
	// Traffic is the host:port of the traffic listener.
	Traffic string
	// Mgmt is the host:port of the management listener (health checks).
	Mgmt string
	// Route is the Keycloak node name (AUTH_SESSION_ID suffix); may be "".
	Route string
}

// Env is what every target needs to know when it starts.
type Env struct {
	// Dir is a scratch directory for configs and logs.
	Dir string
	// Backends are the stand-in nodes, already running.
	Backends []Backend
	// Cert is the server certificate for TLS listeners.
	Cert *Cert
	// MaxConn is the number of client connections a proxy must accept.
	MaxConn int
	// ReadyPath is requested until it answers 200 to decide readiness.
	ReadyPath string
}

// Target is one thing to measure. Start is called once per scenario, Stop
// after it; addresses are valid between the two.
type Target interface {
	// Name is the label in reports ("direct", "kclb", "haproxy", "nginx").
	Name() string
	// Start writes the configuration and starts the process.
	Start(ctx context.Context, env Env) error
	// HTTPAddr is the plain HTTP host:port.
	HTTPAddr() string
	// HTTPSAddr is the TLS host:port, "" when the target has none.
	HTTPSAddr() string
	// Proc measures the target's processes.
	Proc() procstat.Group
	// Stop stops what Start started. It is idempotent.
	Stop() error
}

// Proc is a child process the benchmark started.
type Proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// StartProc starts bin with args, output appended to logFile. The child is
// killed if the benchmark dies (Pdeathsig).
func StartProc(bin string, args []string, logFile string) (*Proc, error) {
	lf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("target: start %s: %w", bin, err)
	}
	p := &Proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM, waits up to 5 s, then SIGKILL. Safe on nil.
func (p *Proc) Stop() error {
	if p == nil {
		return nil
	}
	if p.Exited() {
		return nil
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	return nil
}

// WaitHTTP polls http://addr+path until it answers 200, the process exits,
// or ctx or 15 s run out.
func WaitHTTP(ctx context.Context, p *Proc, addr, path, logFile string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var last error
	for {
		if p != nil && p.Exited() {
			return fmt.Errorf("target: process exited: %v; log: %s", p.err, tail(logFile))
		}
		resp, err := c.Get("http://" + addr + path)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("target: %s%s not ready: %w; log: %s", addr, path, last, tail(logFile))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func tail(file string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return "(no log)"
	}
	if len(b) > 600 {
		b = b[len(b)-600:]
	}
	return string(b)
}

// WaitTCP polls until addr accepts TCP connections or 15 s pass.
func WaitTCP(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("target: %s not listening: %w", addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Backends runs the stand-in nodes.
type Backends struct {
	// List describes the running nodes.
	List  []Backend
	procs []*Proc
	// statsOK is true when the nodes serve kcsim's /kcsim/stats.
	statsOK bool
}

// ServerStats sums the kcsim counters of all nodes.
type ServerStats struct {
	// Requests counts traffic-port requests served.
	Requests int64 `json:"requests"`
	// Logins counts completed logins.
	Logins int64 `json:"logins"`
	// Misroutes counts login steps that reached a node not owning the login
	// (kcsim -strict).
	Misroutes int64 `json:"misroutes"`
}

// Control posts a kcsim control form ("refuse=on", "delay=200ms") to node
// i's management port. It fails when the backends are not kcsim.
func (b *Backends) Control(ctx context.Context, i int, form string) error {
	if !b.statsOK || i < 0 || i >= len(b.List) {
		return fmt.Errorf("target: no kcsim node %d to control", i)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+b.List[i].Mgmt+"/kcsim/control", strings.NewReader(form))
	if err != nil {
		return fmt.Errorf("target: control: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("target: control %s: %w", b.List[i].Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("target: control %s %q: status %d: %s", b.List[i].Name, form, resp.StatusCode, msg)
	}
	return nil
}

// Stats reads and sums /kcsim/stats of every node. ok is false when the
// backends are not kcsim or a node did not answer.
func (b *Backends) Stats(ctx context.Context) (sum ServerStats, ok bool) {
	if !b.statsOK {
		return sum, false
	}
	c := &http.Client{Timeout: 2 * time.Second}
	for _, be := range b.List {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+be.Mgmt+"/kcsim/stats", nil)
		if err != nil {
			return sum, false
		}
		resp, err := c.Do(req)
		if err != nil {
			return sum, false
		}
		var s ServerStats
		err = json.NewDecoder(resp.Body).Decode(&s)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return sum, false
		}
		sum.Requests += s.Requests
		sum.Logins += s.Logins
		sum.Misroutes += s.Misroutes
	}
	return sum, true
}

// StartKcsim starts one kcsim process serving n nodes with traffic ports
// from baseTraffic and management ports from baseMgmt, in strict mode (a
// node rejects and counts login steps for logins it does not own).
func StartKcsim(ctx context.Context, bin, dir string, n, baseTraffic, baseMgmt int) (*Backends, error) {
	log := filepath.Join(dir, "kcsim.log")
	p, err := StartProc(bin, []string{"-nodes", fmt.Sprint(n), "-base-traffic", fmt.Sprint(baseTraffic),
		"-base-mgmt", fmt.Sprint(baseMgmt), "-strict"}, log)
	if err != nil {
		return nil, err
	}
	b := &Backends{procs: []*Proc{p}, statsOK: true}
	for i := range n {
		b.List = append(b.List, Backend{
			Name:    fmt.Sprintf("kc%d", i+1),
			Traffic: fmt.Sprintf("127.0.0.1:%d", baseTraffic+i),
			Mgmt:    fmt.Sprintf("127.0.0.1:%d", baseMgmt+i),
			Route:   fmt.Sprintf("keycloak%d", i+1),
		})
		if err := WaitHTTP(ctx, p, b.List[i].Mgmt, "/health/ready", log); err != nil {
			b.Stop()
			return nil, err
		}
	}
	return b, nil
}

// StartSimple starts n processes of a minimal backend taking -addr and
// -node flags (peer-bench's backend), serving /health/ready on the traffic
// port.
func StartSimple(ctx context.Context, bin, dir string, n, baseTraffic int) (*Backends, error) {
	b := &Backends{}
	for i := range n {
		be := Backend{Name: fmt.Sprintf("kc%d", i+1), Traffic: fmt.Sprintf("127.0.0.1:%d", baseTraffic+i), Route: fmt.Sprintf("node%d", i+1)}
		be.Mgmt = be.Traffic
		log := filepath.Join(dir, be.Name+".log")
		p, err := StartProc(bin, []string{"-addr", be.Traffic, "-node", be.Route}, log)
		if err != nil {
			b.Stop()
			return nil, err
		}
		b.procs = append(b.procs, p)
		b.List = append(b.List, be)
		if err := WaitHTTP(ctx, p, be.Traffic, "/health/ready", log); err != nil {
			b.Stop()
			return nil, err
		}
	}
	return b, nil
}

// Proc measures all backend processes together.
func (b *Backends) Proc() []procstat.Group {
	var g []procstat.Group
	for _, p := range b.procs {
		g = append(g, procstat.Group{Root: p.Pid()})
	}
	return g
}

// Stop stops every backend process.
func (b *Backends) Stop() error {
	var errs []error
	for _, p := range b.procs {
		errs = append(errs, p.Stop())
	}
	return errors.Join(errs...)
}
