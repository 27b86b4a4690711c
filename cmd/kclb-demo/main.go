// Command kclb-demo is kclb's local demo (`make demo`): three Keycloak
// stand-ins (package kcsim) and the real kclb binary in front of them on
// localhost, with a self-signed certificate, an admin TCP listener whose
// stats page opens in a browser, and the commands to try printed as they
// must be typed.
//
//	kclb-demo [--port-base N] [--kclb PATH] [--dir DIR] [--keep]
//
// Ports: HTTP 8080, HTTPS 8443, admin 9100, Keycloak nodes 18081-18083
// (management 19001-19003); with --port-base N: HTTP N, HTTPS N+1,
// admin N+2, nodes N+11.., management N+21... When any of them is taken,
// the demo says so and uses free ports instead. Its files live in a fresh
// directory of the user's own (removed at exit unless --keep or --dir).
//
// It is a binary of its own so that kclb itself never links the stand-in.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kclb/kclb/internal/kclbconf"
	"github.com/kclb/kclb/internal/kcsim"
	"github.com/kclb/kclb/tlsconf"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "kclb-demo:", err)
		os.Exit(1)
	}
}

// nodes is the number of Keycloak stand-ins.
const nodes = 3

// layout is the set of ports the demo uses on 127.0.0.1.
type layout struct {
	http, https, admin int
	traffic, mgmt      [nodes]int
}

// defaultLayout is the demo's classic port set.
func defaultLayout() layout {
	l := layout{http: 8080, https: 8443, admin: 9100}
	for i := range nodes {
		l.traffic[i], l.mgmt[i] = 18081+i, 19001+i
	}
	return l
}

// layoutAt is the port set for --port-base base.
func layoutAt(base int) layout {
	l := layout{http: base, https: base + 1, admin: base + 2}
	for i := range nodes {
		l.traffic[i], l.mgmt[i] = base+11+i, base+21+i
	}
	return l
}

func (l layout) ports() []int {
	return append([]int{l.http, l.https, l.admin}, append(l.traffic[:], l.mgmt[:]...)...)
}

func addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// busy returns the first port of l that cannot be bound now, or 0.
func (l layout) busy() int {
	for _, p := range l.ports() {
		if p < 1 || p > 65535 {
			return p
		}
		ln, err := net.Listen("tcp", addr(p))
		if err != nil {
			return p
		}
		ln.Close()
	}
	return 0
}

// freeLayout picks ports the kernel reports free.
func freeLayout() (layout, error) {
	var ls []net.Listener
	defer func() {
		for _, ln := range ls {
			ln.Close()
		}
	}()
	next := func() (int, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, ln)
		return ln.Addr().(*net.TCPAddr).Port, nil
	}
	var l layout
	var err error
	for _, p := range []*int{&l.http, &l.https, &l.admin, &l.traffic[0], &l.traffic[1], &l.traffic[2], &l.mgmt[0], &l.mgmt[1], &l.mgmt[2]} {
		if *p, err = next(); err != nil {
			return l, err
		}
	}
	return l, nil
}

// options are the demo's flags.
type options struct {
	portBase int
	kclb     string
	dir      string
	keep     bool
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kclb-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.portBase, "port-base", 0, "use ports N (HTTP), N+1 (HTTPS), N+2 (admin), N+11.. (nodes), N+21.. (management) instead of 8080, 8443, 9100, 18081.., 19001..")
	fs.StringVar(&o.kclb, "kclb", "", "kclb binary to run (default: kclb next to this program, else kclb on PATH)")
	fs.StringVar(&o.dir, "dir", "", "directory for the certificate, keys, config and admin socket (default: a new private one, removed at exit)")
	fs.BoolVar(&o.keep, "keep", false, "keep the directory at exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	kclb, shown, err := findKclb(o.kclb)
	if err != nil {
		return err
	}

	l := defaultLayout()
	if o.portBase != 0 {
		l = layoutAt(o.portBase)
	}
	if p := l.busy(); p != 0 {
		if l, err = freeLayout(); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "port %d is taken (or out of range); using free ports instead\n", p)
	}

	dir := o.dir
	if dir == "" {
		// MkdirTemp creates a directory only this user can enter, new
		// for every run: never one shared by all users of the machine.
		if dir, err = os.MkdirTemp("", "kclb-demo-"); err != nil {
			return fmt.Errorf("directory: %w", err)
		}
		if !o.keep {
			defer os.RemoveAll(dir)
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("directory: %w", err)
	}
	files, err := writeFiles(dir, l)
	if err != nil {
		return err
	}

	nodeCtx, stopNodes := context.WithCancel(context.Background())
	nodeDone, err := startNodes(nodeCtx, l)
	if err != nil {
		stopNodes()
		return err
	}
	defer func() {
		stopNodes()
		for range nodes {
			<-nodeDone
		}
	}()

	p, err := startKclb(kclb, files, stderr)
	if err != nil {
		return err
	}
	select {
	case err := <-p.ready:
		if err != nil {
			p.stop()
			return err
		}
	case <-ctx.Done():
		return p.stop()
	}
	printBanner(stdout, l, files, shown, o.dir == "" && !o.keep)
	select {
	case <-ctx.Done():
		return p.stop()
	case err := <-p.exited:
		return fmt.Errorf("kclb exited: %w", err)
	}
}

// findKclb returns the kclb binary to run and how to type it.
func findKclb(flagPath string) (path, shown string, err error) {
	path = flagPath
	if path == "" {
		if self, err := os.Executable(); err == nil {
			if p := filepath.Join(filepath.Dir(self), "kclb"); isExecutable(p) {
				path = p
			}
		}
	}
	if path == "" {
		if path, err = exec.LookPath("kclb"); err != nil {
			return "", "", errors.New("no kclb binary next to kclb-demo or on PATH (run `make demo`, or pass --kclb)")
		}
		return path, "kclb", nil
	}
	if !isExecutable(path) {
		return "", "", fmt.Errorf("%s is not an executable kclb", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", "", fmt.Errorf("kclb path: %w", err)
	}
	shown = abs
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, abs); err == nil && !strings.HasPrefix(rel, "..") {
			shown = "./" + rel
		}
	}
	return abs, shown, nil
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// demoFiles are the paths the demo writes.
type demoFiles struct {
	dir, config, cert, socket, token string
	tokenValue                       string
}

// writeFiles writes the certificate, the secrets and config.toml.
func writeFiles(dir string, l layout) (demoFiles, error) {
	f := demoFiles{dir: dir, config: filepath.Join(dir, "config.toml"), socket: filepath.Join(dir, "admin.sock"), token: filepath.Join(dir, "admin.token")}
	cert, key, err := tlsconf.GenerateSelfSigned(dir, []string{"localhost", "127.0.0.1", "::1"}, 30*24*time.Hour)
	if err != nil {
		return f, fmt.Errorf("certificate: %w", err)
	}
	f.cert = cert
	// The affinity key is the demo's own, written like an operator would,
	// so kclb has no reason to warn about a generated one.
	affinityKey := filepath.Join(dir, "affinity.key")
	f.tokenValue = rand.Text() + rand.Text() // 52 characters: admin tokens need at least 32 bytes
	if err := os.WriteFile(affinityKey, []byte(rand.Text()+"\n"), 0o600); err != nil {
		return f, fmt.Errorf("affinity key: %w", err)
	}
	if err := os.WriteFile(f.token, []byte(f.tokenValue+"\n"), 0o600); err != nil {
		return f, fmt.Errorf("admin token: %w", err)
	}
	var c kclbconf.File
	c.Text("# kclb configuration written by kclb-demo.").
		Section("global", "name", "kclb-demo", "state_file", filepath.Join(dir, "state.json"), "shutdown_grace", 5*time.Second).
		Listener("http", addr(l.http), "redirect_https", true).
		Listener("https", addr(l.https), "tls", true, "http2", true).
		Certificate(cert, key)
	for i := range nodes {
		c.Server(fmt.Sprintf("keycloak%d", i+1), addr(l.traffic[i]), addr(l.mgmt[i]))
	}
	c.Section("affinity", "secret_file", affinityKey).
		Section("health", "interval", 2*time.Second, "slowstart", 10*time.Second).
		Section("admin", "socket", f.socket, "tcp", addr(l.admin), "token_file", f.token).
		Text("public_read = true # the demo listens on loopback only: status and metrics need no token")
	if err := c.WriteFile(f.config); err != nil {
		return f, fmt.Errorf("config: %w", err)
	}
	return f, nil
}

// startNodes serves the stand-ins until ctx ends; each sends its Serve
// result on the returned channel.
func startNodes(ctx context.Context, l layout) (<-chan error, error) {
	done := make(chan error, nodes)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var ls []net.Listener
	for i := range nodes {
		tl, err := net.Listen("tcp", addr(l.traffic[i]))
		if err != nil {
			closeAll(ls)
			return nil, fmt.Errorf("node keycloak%d: %w", i+1, err)
		}
		ml, err := net.Listen("tcp", addr(l.mgmt[i]))
		if err != nil {
			closeAll(append(ls, tl))
			return nil, fmt.Errorf("node keycloak%d: %w", i+1, err)
		}
		ls = append(ls, tl, ml)
	}
	for i := range nodes {
		name := fmt.Sprintf("keycloak%d", i+1)
		n := kcsim.New(kcsim.Options{Node: name, ClusterSize: nodes, Logger: logger.With("kcsim", name)})
		go func(tl, ml net.Listener) { done <- n.Serve(ctx, tl, ml) }(ls[2*i], ls[2*i+1])
	}
	return done, nil
}

func closeAll(ls []net.Listener) {
	for _, l := range ls {
		l.Close()
	}
}

// kclbProc is the running kclb.
type kclbProc struct {
	cmd *exec.Cmd
	// ready gets nil on READY=1 from kclb, or why it will not come.
	ready chan error
	// exited gets the result of Wait; it is also what stop waits for.
	exited chan error
	notify *net.UnixConn
}

// startKclb runs `kclb run -c config.toml` with a notify socket of its
// own, so READY=1 (listeners bound, first health round done) says when
// the demo is up.
func startKclb(kclb string, f demoFiles, stderr io.Writer) (*kclbProc, error) {
	sock := filepath.Join(f.dir, "notify.sock")
	os.Remove(sock)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	cmd := exec.Command(kclb, "run", "-c", f.config)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("start kclb: %w", err)
	}
	p := &kclbProc{cmd: cmd, ready: make(chan error, 1), exited: make(chan error, 1), notify: conn}
	go func() {
		err := cmd.Wait()
		conn.Close() // ends the notify reader
		p.exited <- err
	}()
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				p.ready <- errors.New("kclb exited before it was ready (its log is above)")
				return
			}
			for _, line := range strings.Split(string(buf[:n]), "\n") {
				if line == "READY=1" {
					p.ready <- nil
					// Keep reading so kclb's later notifications never block.
					for {
						if _, _, err := conn.ReadFromUnix(buf); err != nil {
							return
						}
					}
				}
			}
		}
	}()
	return p, nil
}

// stop ends kclb with SIGTERM (SIGKILL after 40 s) and waits for it.
func (p *kclbProc) stop() error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(40 * time.Second)
	defer t.Stop()
	select {
	case err := <-p.exited:
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == -1 {
			return nil // killed by our signal before it installed a handler
		}
		return err
	case <-t.C:
		p.cmd.Process.Kill()
		<-p.exited
		return errors.New("kclb did not stop within 40s; killed")
	}
}

func printBanner(w io.Writer, l layout, f demoFiles, kclb string, removed bool) {
	stopNote := "Ctrl-C stops it"
	if removed {
		stopNote += " and removes " + f.dir
	}
	fmt.Fprintf(w, `
kclb demo is running (%s)
  HTTPS:    https://localhost:%d/realms/test/.well-known/openid-configuration
  HTTP:     http://localhost:%d/  (308 redirect to HTTPS)
  stats:    http://127.0.0.1:%d/stats#token=%s
            (open it in a browser; the token lets the page drain and ready servers)
  metrics:  http://127.0.0.1:%d/metrics
  nodes:    keycloak1..%d on 127.0.0.1:%d-%d, management %d-%d
  files:    %s (config.toml, certificate, admin socket and token)

try:
  curl --cacert %s https://localhost:%d/realms/test/.well-known/openid-configuration
  curl --cacert %s -si https://localhost:%d/metrics    # never public: 404
  curl -si http://localhost:%d/realms/test/    # 308 to https
  curl -s -X POST 'http://127.0.0.1:%d/kcsim/control?db=down'    # keycloak2 turns unready
  %s status -s %s
  %s drain keycloak1 --wait -s %s
  %s ready keycloak1 --wait-healthy -s %s
  %s status -a http://127.0.0.1:%d
`, stopNote, l.https, l.http, l.admin, f.tokenValue, l.admin, nodes, l.traffic[0], l.traffic[nodes-1], l.mgmt[0], l.mgmt[nodes-1], f.dir,
		f.cert, l.https, f.cert, l.https, l.http, l.mgmt[1],
		kclb, f.socket, kclb, f.socket, kclb, f.socket, kclb, l.admin)
}
