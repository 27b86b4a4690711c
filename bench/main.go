// Command bench measures kclb side by side with HAProxy (and optionally
// nginx) and with the backends served directly, on the same stand-in
// Keycloak nodes, and writes docs/benchmarks.md plus SVG charts.
//
//	go run ./bench                 default suite (under 10 minutes on 2 cores)
//	go run ./bench -quick          short suite (under 2 minutes)
//	go run ./bench -scenarios http-ka-c64,tls -targets direct,haproxy -runs 5
//	go run ./bench -driver wrk,h2load   closed-loop rows measured by wrk and h2load
//
// Runs are interleaved (A B C A B C) after a warm-up of every target, and
// the report gives medians and ratios to HAProxy and to direct, and checks
// issue 16's targets in a summary table.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kclb/kclb/bench/driver"
	"github.com/kclb/kclb/bench/procstat"
	"github.com/kclb/kclb/bench/report"
	"github.com/kclb/kclb/bench/target"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the command-line flags.
type options struct {
	quick      bool
	scenarios  string
	targets    string
	out        string
	duration   time.Duration
	warmup     time.Duration
	runs       int
	idleConns  int
	openRate   float64
	backend    string
	backendSrc string
	kclbBin    string
	portBase   int
	keep       bool
	driver     string
	// tools are the external load generators -driver lists.
	tools []driver.Tool
	// portBaseSet is true when -port-base was given explicitly.
	portBaseSet bool
	// rateSet is true when -rate was given explicitly.
	rateSet bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.quick, "quick", false, "short suite: 1 run of 2s per target, 0.5s warm-up, 5000 idle connections")
	fs.StringVar(&o.scenarios, "scenarios", "", "comma-separated scenario names or prefixes (default: all)")
	fs.StringVar(&o.targets, "targets", "direct,kclb,haproxy", "comma-separated targets: direct, kclb, haproxy, nginx")
	fs.StringVar(&o.out, "out", "docs/benchmarks.md", "Markdown file to write (the generated section is replaced); charts go to <dir>/bench/; \"\" = stdout only")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "measured time per run (10s with -driver wrk or h2load, as issue 16's method)")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "warm-up per target and scenario")
	fs.IntVar(&o.runs, "runs", 3, "runs per target and scenario (2 with -driver wrk or h2load)")
	fs.IntVar(&o.idleConns, "idle-conns", 10000, "connections held in the idle scenario")
	fs.Float64Var(&o.openRate, "rate", 4000, "total request rate of the fixed-rate scenario, req/s (default: half of HAProxy's median req/s in http-ka-c64 of the same run; this value when that was not measured)")
	fs.StringVar(&o.driver, "driver", builtinName, "load generators, comma-separated: builtin, wrk (closed-loop HTTP/1.1 rows), h2load (HTTP/2 rows); rows no listed tool can run use builtin")
	fs.StringVar(&o.backend, "backend", "kcsim", "stand-in backends: kcsim (./cmd/kcsim) or simple (a main package taking -addr and -node)")
	fs.StringVar(&o.backendSrc, "backend-src", "/work/shared/tools/peer-bench/backend", "source directory of the simple backend")
	fs.StringVar(&o.kclbBin, "kclb-bin", "", "prebuilt kclb binary (default: go build ./cmd/kclb)")
	fs.IntVar(&o.portBase, "port-base", 28000, "first of the loopback ports used (backends base+81.., proxies base+200..); if unset and busy, 24000, 20000, 16000 and 12000 are tried")
	fs.BoolVar(&o.keep, "keep", false, "keep the scratch directory (configs, logs)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	o.portBaseSet = set["port-base"]
	o.rateSet = set["rate"]
	var err error
	if o.tools, err = parseDrivers(o.driver); err != nil {
		return o, err
	}
	if o.quick {
		if !set["duration"] {
			o.duration = 2 * time.Second
		}
		if !set["warmup"] {
			o.warmup = 500 * time.Millisecond
		}
		if !set["runs"] {
			o.runs = 1
		}
		if !set["idle-conns"] {
			o.idleConns = 5000
		}
	} else if len(o.tools) > 0 {
		// Issue 16's method with wrk and h2load: 2 interleaved runs of 10 s.
		if !set["duration"] {
			o.duration = 10 * time.Second
		}
		if !set["runs"] {
			o.runs = 2
		}
	}
	if o.runs < 1 || o.duration <= 0 || o.idleConns < 1 || o.openRate <= 0 {
		return o, fmt.Errorf("-runs, -duration, -idle-conns and -rate must be positive")
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	if err := benchmark(ctx, o, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	return 0
}

// raiseNoFile lifts the soft open-file limit to the hard one; children
// (backends, proxies) inherit it.
func raiseNoFile() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("setrlimit: %w", err)
	}
	return rl.Cur, nil
}

func goBuild(dir, out, pkg string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // as make build
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

func firstLine(cmd string, args ...string) string {
	b, err := exec.Command(cmd, args...).CombinedOutput()
	if err != nil && len(b) == 0 {
		return "?"
	}
	l, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return l
}

func benchmark(ctx context.Context, o options, stdout, stderr io.Writer) error {
	start := time.Now()
	all := allScenarios(o.idleConns, o.openRate)
	scs, err := selectScenarios(all, o.scenarios)
	if err != nil {
		return err
	}
	versions := map[string]string{}
	gens := []string{"builtin (bench/load)"}
	for _, tool := range o.tools {
		var rows []string
		for _, sc := range scs {
			if t, ok, _ := driverFor(sc, o.tools); ok && t == tool {
				rows = append(rows, sc.name)
			}
		}
		if len(rows) == 0 {
			continue
		}
		if err := tool.Available(); err != nil {
			return err
		}
		versions[tool.String()] = firstLine(tool.String(), "--version")
		gens = append(gens, fmt.Sprintf("%s for %s", tool, strings.Join(rows, ", ")))
	}
	versions["load generators"] = strings.Join(gens, "; ")
	nofile, err := raiseNoFile()
	if err != nil {
		return err
	}
	if need := uint64(2*o.idleConns + 1000); nofile < need {
		fmt.Fprintf(stderr, "bench: open-file limit %d is below %d: the idle scenario may fail\n", nofile, need)
	}
	dir, err := os.MkdirTemp("", "kclb-bench-")
	if err != nil {
		return fmt.Errorf("scratch dir: %w", err)
	}
	if o.keep {
		fmt.Fprintln(stderr, "bench: scratch directory", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}

	var names []string
	for _, t := range strings.Split(o.targets, ",") {
		if t = strings.TrimSpace(t); t != "" {
			names = append(names, t)
		}
	}
	base, err := pickPortBase(o.portBase, o.portBaseSet)
	if err != nil {
		return err
	}
	var targets []target.Target
	var direct *target.Direct
	for _, name := range names {
		switch name {
		case "direct":
			direct = &target.Direct{}
			targets = append(targets, direct)
		case "kclb":
			bin := o.kclbBin
			if bin == "" {
				bin = filepath.Join(dir, "kclb")
				fmt.Fprintln(stderr, "bench: building ./cmd/kclb")
				if err := goBuild(root, bin, "./cmd/kclb"); err != nil {
					return err
				}
			}
			versions["kclb"] = "commit " + firstLine("git", "-C", root, "describe", "--always", "--dirty")
			targets = append(targets, target.NewKclb(bin, loop(base+500), loop(base+510)))
		case "haproxy":
			versions["HAProxy"] = firstLine("haproxy", "-v")
			targets = append(targets, target.NewHAProxy(loop(base+200), loop(base+210)))
		case "nginx":
			versions["nginx"] = firstLine("nginx", "-v")
			targets = append(targets, target.NewNginx(loop(base+300), loop(base+310)))
		default:
			return fmt.Errorf("-targets: unknown %q (want direct, kclb, haproxy, nginx)", name)
		}
	}

	certs := map[target.KeyType]*target.Cert{}
	for _, kt := range []target.KeyType{target.ECDSA, target.RSA} {
		if certs[kt], err = target.WriteCert(dir, kt); err != nil {
			return err
		}
	}

	var backends *target.Backends
	switch o.backend {
	case "kcsim":
		bin := filepath.Join(dir, "kcsim")
		fmt.Fprintln(stderr, "bench: building ./cmd/kcsim")
		if err := goBuild(root, bin, "./cmd/kcsim"); err != nil {
			return err
		}
		backends, err = target.StartKcsim(ctx, bin, dir, 3, base+81, base+1001)
		versions["backends"] = "kcsim, 3 nodes in one process"
	case "simple":
		bin := filepath.Join(dir, "backend")
		if err := goBuild(o.backendSrc, bin, "."); err != nil {
			return err
		}
		backends, err = target.StartSimple(ctx, bin, dir, 3, base+81)
		versions["backends"] = "3 processes of " + o.backendSrc
	default:
		return fmt.Errorf("-backend: unknown %q (want kcsim or simple)", o.backend)
	}
	if err != nil {
		return err
	}
	defer backends.Stop()
	if direct != nil {
		direct.Group = backends.Proc()[0]
	}

	s := &suite{
		opts: o, dir: dir, backends: backends, backendList: backends.List, targets: targets, certs: certs, progress: stderr,
		tty: isTerminal(stderr), paceSources: map[string]bool{},
	}
	for _, sc := range scs {
		if sc.rateOf != "" {
			s.paceSources[sc.rateOf] = true
		}
	}
	rep := &report.Report{
		Machine: procstat.ReadMachine(), Versions: versions, Date: time.Now(),
		Duration: o.duration, Warmup: o.warmup, Runs: o.runs, Targets: names,
		Command: commandLine(o), Subject: "kclb", GoalsFrom: "issue 16", Goals: issue16Goals(o.idleConns),
	}
	fmt.Fprintf(stderr, "bench: %d scenarios on %d targets, about %v (estimate, builds not included)\n",
		len(scs), len(names), estimate(scs, names, o).Round(time.Second))
	// HAProxy's median req/s per scenario, for the fixed-rate scenario.
	peaks := map[string]float64{}
	for i, sc := range scs {
		sc = fixRate(sc, peaks, s.builtinPeak, o)
		fmt.Fprintf(stderr, "bench: scenario %d/%d %s\n", i+1, len(scs), sc.name)
		rs := s.runScenario(ctx, sc)
		rep.Scenarios = append(rep.Scenarios, rs)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if h := report.Summarize(&rs, []string{"haproxy"}); len(h) == 1 {
			peaks[sc.name] = h[0].RPS
		}
	}
	fmt.Fprintf(stderr, "bench: done in %v\n", time.Since(start).Round(time.Second))
	return writeReport(rep, o.out, stdout)
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// portsOf lists every port the suite listens on for a base.
func portsOf(base int) []int {
	return []int{base + 81, base + 82, base + 83, base + 1001, base + 1002, base + 1003,
		base + 200, base + 210, base + 300, base + 310, base + 500, base + 510}
}

// portsFree reports the first port of base that is already in use, so a
// stray server there cannot answer in place of a target.
func portsFree(base int) error {
	for _, p := range portsOf(base) {
		ln, err := net.Listen("tcp", loop(p))
		if err != nil {
			return fmt.Errorf("port %d is in use: %w", p, err)
		}
		ln.Close()
	}
	return nil
}

// pickPortBase returns base if its ports are free; unless explicit, it
// falls back to other bases below the ephemeral port range.
func pickPortBase(base int, explicit bool) (int, error) {
	candidates := []int{base}
	if !explicit {
		candidates = append(candidates, 24000, 20000, 16000, 12000)
	}
	var errs []error
	for _, b := range candidates {
		err := portsFree(b)
		if err == nil {
			return b, nil
		}
		errs = append(errs, fmt.Errorf("-port-base %d: %w", b, err))
	}
	return 0, errors.Join(errs...)
}

func loop(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// commandLine reconstructs a short command for the report header.
func commandLine(o options) string {
	c := "go run ./bench"
	if o.quick {
		c += " -quick"
	}
	if o.scenarios != "" {
		c += " -scenarios " + o.scenarios
	}
	c += " -targets " + o.targets
	if len(o.tools) > 0 {
		c += " -driver " + o.driver
	}
	return c
}

// fixRate sets the rate of a scenario paced from another scenario's
// HAProxy peak (half of it), unless -rate was given, and says in the
// description where the rate came from. builtin holds HAProxy's peak
// measured by the built-in generator where an external tool measured the
// source row; the built-in generator paces the fixed rate, so its own
// peak is the one halved.
func fixRate(sc scenario, peaks, builtin map[string]float64, o options) scenario {
	if sc.rateOf == "" {
		return sc
	}
	switch p, b := peaks[sc.rateOf], builtin[sc.rateOf]; {
	case o.rateSet:
		sc.desc += fmt.Sprintf(" Rate: %.0f req/s (-rate).", sc.rate)
	case b > 0:
		sc.rate = b / 2
		sc.desc += fmt.Sprintf(" Rate: %.0f req/s, half of HAProxy's %.0f req/s under the built-in generator (closed loop, HAProxy's warm-up in %s of this run; the tool's median there was %.0f req/s, but the built-in generator that paces this row costs more client CPU per request, so half of the tool's peak would overload the shared cores).", sc.rate, b, sc.rateOf, p)
	case p > 0:
		sc.rate = p / 2
		sc.desc += fmt.Sprintf(" Rate: %.0f req/s, half of HAProxy's median %.0f req/s in %s of this run.", sc.rate, p, sc.rateOf)
	default:
		sc.desc += fmt.Sprintf(" Rate: %.0f req/s (-rate's default: HAProxy's %s was not measured in this run).", sc.rate, sc.rateOf)
	}
	return sc
}

// issue16Goals are the targets of issue 16 (high throughput), checked in
// the report's summary.
func issue16Goals(idleConns int) []report.Goal {
	type G = report.Goal
	return []G{
		{Label: "HTTP/1.1 keep-alive c64: req/s ≥ 1.0× HAProxy", Scenario: "http-ka-c64", Metric: report.MetricRPS, Versus: "haproxy", Factor: 1},
		{Label: "HTTP/1.1 keep-alive c64: CPU per request ≤ 1.0× HAProxy", Scenario: "http-ka-c64", Metric: report.MetricCPU, Versus: "haproxy", Factor: 1},
		{Label: "HTTP/1.1 keep-alive c1000: req/s ≥ 1.0× HAProxy", Scenario: "http-ka-c1000", Metric: report.MetricRPS, Versus: "haproxy", Factor: 1},
		{Label: "HTTP/1.1 keep-alive c1000: CPU per request ≤ 1.0× HAProxy", Scenario: "http-ka-c1000", Metric: report.MetricCPU, Versus: "haproxy", Factor: 1},
		{Label: "HTTPS keep-alive c64: req/s ≥ 1.0× HAProxy", Scenario: "https-ka-c64", Metric: report.MetricRPS, Versus: "haproxy", Factor: 1},
		{Label: "HTTP/2 c64 × 10 streams: req/s ≥ 0.8× HAProxy", Scenario: "h2-c64-m10", Metric: report.MetricRPS, Versus: "haproxy", Factor: 0.8},
		{Label: "HTTP/2 c64 × 10 streams: beat nginx", Scenario: "h2-c64-m10", Metric: report.MetricRPS, Versus: "nginx", Factor: 1},
		{Label: "HTTP/2 c64 × 10 streams: CPU per request ≤ 1.5× HAProxy", Scenario: "h2-c64-m10", Metric: report.MetricCPU, Versus: "haproxy", Factor: 1.5},
		{Label: "new TLS connection per request, ECDSA: ≥ 1.2× HAProxy", Scenario: "tls-hs-ecdsa", Metric: report.MetricRPS, Versus: "haproxy", Factor: 1.2},
		{Label: "new TLS connection per request, ECDSA: ≥ 1.0× nginx", Scenario: "tls-hs-ecdsa", Metric: report.MetricRPS, Versus: "nginx", Factor: 1},
		{Label: "new TLS connection per request, RSA 2048: ≥ 1.2× HAProxy", Scenario: "tls-hs-rsa", Metric: report.MetricRPS, Versus: "haproxy", Factor: 1.2},
		{Label: "new TLS connection per request, RSA 2048: ≥ 1.0× nginx", Scenario: "tls-hs-rsa", Metric: report.MetricRPS, Versus: "nginx", Factor: 1},
		{Label: "p99 at a fixed rate of half HAProxy's peak: ≤ HAProxy's p99 + 1 ms", Scenario: "http-ka-fixed", Metric: report.MetricP99, Versus: "haproxy", Factor: 1, Slack: 1e6},
		{Label: "allocations per proxied HTTP/1.1 request in steady state: 0",
			Note: "`go test -bench` with `-benchmem` over a real socket pair, not make bench (see the micro-benchmarks)"},
		{Label: "RSS at c1000 ≤ 1.25× HAProxy", Scenario: "http-ka-c1000", Metric: report.MetricRSS, Versus: "haproxy", Factor: 1.25},
		{Label: "idle connections ≤ 8 KiB each", Scenario: fmt.Sprintf("idle-%dk", idleConns/1000), Metric: report.MetricPerConn, Limit: 8 << 10},
	}
}

// writeReport prints the Markdown to stdout and, if out is set, splices it
// into out and writes the charts to <dir of out>/bench/.
func writeReport(rep *report.Report, out string, stdout io.Writer) error {
	var md strings.Builder
	if err := report.WriteMarkdown(&md, rep, "bench"); err != nil {
		return err
	}
	io.WriteString(stdout, md.String())
	if out == "" {
		return nil
	}
	chartDir := filepath.Join(filepath.Dir(out), "bench")
	if err := os.MkdirAll(chartDir, 0o755); err != nil {
		return fmt.Errorf("charts: %w", err)
	}
	write := func(name string, f func(io.Writer) error) error {
		var b strings.Builder
		if err := f(&b); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(chartDir, name), []byte(b.String()), 0o644); err != nil {
			return fmt.Errorf("charts: %w", err)
		}
		return nil
	}
	// Latency charts of scenarios not in this run would be stale.
	stale, _ := filepath.Glob(filepath.Join(chartDir, "latency-*.svg"))
	for _, f := range stale {
		os.Remove(f)
	}
	if err := write("throughput.svg", func(w io.Writer) error { return report.WriteThroughputSVG(w, rep) }); err != nil {
		return err
	}
	for i := range rep.Scenarios {
		sc := &rep.Scenarios[i]
		if sc.Kind != report.Throughput || len(sc.Runs) == 0 {
			continue
		}
		if err := write("latency-"+sc.Name+".svg", func(w io.Writer) error { return report.WriteLatencySVG(w, rep, sc) }); err != nil {
			return err
		}
	}
	old, err := os.ReadFile(out)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("read %s: %w", out, err)
	}
	if err := os.WriteFile(out, []byte(report.Splice(string(old), md.String())), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	return nil
}
