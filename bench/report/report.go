// Package report turns benchmark results into Markdown tables and SVG
// charts (throughput bars, latency percentile curves) without external
// tools.
package report

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kclb/kclb/bench/hist"
	"github.com/kclb/kclb/bench/load"
	"github.com/kclb/kclb/bench/procstat"
)

// Run is one measured run of one target in one scenario.
type Run struct {
	Target string
	// Index counts runs of this target from 1.
	Index int
	// Result is the load generator's outcome. For idle scenarios only
	// Requests (connections held) is set.
	Result *load.Result
	// ProxyCPU is the CPU time the target's processes used during the run.
	ProxyCPU time.Duration
	// BackendCPU is the CPU time all backends used during the run.
	BackendCPU time.Duration
	// PeakRSS is the largest sampled VmRSS of the target, bytes.
	PeakRSS int64
	// BaseRSS is the target's VmRSS before the run, bytes.
	BaseRSS int64
	// Resumed and Handshakes count client TLS handshakes (handshake scenarios).
	Resumed, Handshakes int64
	// ServerCounted is true when the backends reported ServerRequests and
	// Misroutes for the run (kcsim's /kcsim/stats).
	ServerCounted bool
	// ServerRequests is the number of traffic requests the backends served.
	ServerRequests int64
	// Misroutes counts login steps that reached a node not owning the login.
	Misroutes int64
	// FaultErr is set when a failure scenario could not inject its fault.
	FaultErr string
	// ClientCPU is the CPU time the load generator itself used.
	ClientCPU time.Duration
	// Driver names the load generator of the run: "builtin" (bench/load),
	// "wrk" or "h2load". "" reads as builtin.
	Driver string
	// Command is an external driver's command line; "" for builtin.
	Command string
}

// DriverName returns r.Driver, or "builtin" when it is empty.
func (r *Run) DriverName() string {
	if r.Driver == "" {
		return "builtin"
	}
	return r.Driver
}

// Kind is the table layout a scenario uses.
type Kind uint8

// Scenario kinds. The zero value is Throughput.
const (
	Throughput Kind = iota // req/s, latency, CPU per request
	Idle                   // memory per held connection
)

// String names the kind.
func (k Kind) String() string {
	if k == Idle {
		return "idle"
	}
	return "throughput"
}

// Scenario groups the runs of one scenario.
type Scenario struct {
	// Name is the scenario's short name ("http-ka-c64"), used in file names.
	Name string
	// Description is Markdown shown under the heading.
	Description string
	// Kind selects the table layout.
	Kind Kind
	// Runs are all measured runs, of every target, in run order.
	Runs []Run
	// Logins makes the report show misrouted login steps even when zero.
	Logins bool
	// OpenLoop marks a fixed-rate scenario: its req/s is the offered rate,
	// so the throughput chart leaves it out.
	OpenLoop bool
}

// Report is a whole benchmark session.
type Report struct {
	// Machine describes the host.
	Machine procstat.Machine
	// Versions maps a component name to its version line.
	Versions map[string]string
	// Date is when the session started.
	Date time.Time
	// Duration and Warmup are the per-run and per-target warm-up times.
	Duration, Warmup time.Duration
	// Runs is the number of runs per target and scenario.
	Runs int
	// Targets are the target names in display order.
	Targets []string
	// Command is the command line shown in the header.
	Command string
	// Scenarios are the results, in run order.
	Scenarios []Scenario
	// Subject is the target the Goals judge; default "kclb".
	Subject string
	// GoalsFrom names where the goals come from ("issue 16"); Goals, if
	// any, are checked in a summary table at the top of the report.
	GoalsFrom string
	Goals     []Goal
}

// Summary is one target's aggregate over its runs in a scenario.
type Summary struct {
	// Target is the target's name; Runs the number of runs aggregated.
	Target string
	Runs   int
	// RPS is the median of the runs' req/s; MinRPS and MaxRPS the extremes.
	RPS, MinRPS, MaxRPS float64
	// Latency is merged over all runs.
	Latency hist.Histogram
	// Requests and Errors are summed over runs.
	Requests uint64
	Errors   [load.NumErrKinds]uint64
	// Samples holds the first error message of each kind seen.
	Samples []string
	// CPUPer10k, BackPer10k and ClientPer10k are the medians of proxy,
	// backend and load-generator CPU seconds per 10k successful requests.
	CPUPer10k, BackPer10k, ClientPer10k float64
	// PeakRSS is the largest peak and BaseRSS the smallest pre-run RSS, bytes.
	PeakRSS, BaseRSS int64
	// PerConn is, for idle scenarios, the median bytes per held connection.
	PerConn float64
	// Resumed and Handshakes sum client TLS handshake counts.
	Resumed, Handshakes int64
	// Drivers lists the load generators of the runs ("builtin", "wrk",
	// "h2load"), joined with "+" when they differ.
	Drivers string
	// ServerCounted is true when every run had backend counts; then
	// ServerRequests (served by the backends), ClientRequests (sent,
	// successful or not) and Misroutes are summed over runs.
	ServerCounted  bool
	ServerRequests int64
	ClientRequests uint64
	Misroutes      int64
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Summarize aggregates sc's runs per target, in the order of targets.
func Summarize(sc *Scenario, targets []string) []Summary {
	var out []Summary
	for _, t := range targets {
		s := Summary{Target: t, ServerCounted: true}
		var rps, cpu, back, client, perConn []float64
		for _, r := range sc.Runs {
			if r.Target != t || r.Result == nil {
				continue
			}
			s.Runs++
			if d := r.DriverName(); !slices.Contains(strings.Split(s.Drivers, "+"), d) {
				s.Drivers = strings.TrimPrefix(s.Drivers+"+"+d, "+")
			}
			res := r.Result
			rps = append(rps, res.RPS())
			s.Latency.Merge(&res.Latency)
			s.Requests += res.Requests
			for i, e := range res.Errors {
				if e > 0 && s.Errors[i] == 0 && res.Sample[i] != "" {
					s.Samples = append(s.Samples, res.Sample[i])
				}
				s.Errors[i] += e
			}
			if res.Requests > 0 {
				cpu = append(cpu, r.ProxyCPU.Seconds()/float64(res.Requests)*1e4)
				back = append(back, r.BackendCPU.Seconds()/float64(res.Requests)*1e4)
				client = append(client, r.ClientCPU.Seconds()/float64(res.Requests)*1e4)
				perConn = append(perConn, float64(r.PeakRSS-r.BaseRSS)/float64(res.Requests))
			}
			s.PeakRSS = max(s.PeakRSS, r.PeakRSS)
			if s.BaseRSS == 0 || r.BaseRSS < s.BaseRSS {
				s.BaseRSS = r.BaseRSS
			}
			s.Resumed += r.Resumed
			s.Handshakes += r.Handshakes
			s.ServerCounted = s.ServerCounted && r.ServerCounted
			s.ServerRequests += r.ServerRequests
			s.ClientRequests += res.Requests + res.TotalErrors()
			s.Misroutes += r.Misroutes
		}
		if s.Runs == 0 {
			continue
		}
		s.RPS = median(rps)
		s.MinRPS, s.MaxRPS = slices.Min(rps), slices.Max(rps)
		s.CPUPer10k, s.BackPer10k, s.ClientPer10k, s.PerConn = median(cpu), median(back), median(client), median(perConn)
		out = append(out, s)
	}
	return out
}

func find(sums []Summary, t string) *Summary {
	for i := range sums {
		if sums[i].Target == t {
			return &sums[i]
		}
	}
	return nil
}

func ms(ns int64) string { return fmt.Sprintf("%.2f", float64(ns)/1e6) }

func ratio(a, b float64) string {
	if b <= 0 || a <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[0] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func errorText(e [load.NumErrKinds]uint64) string {
	var parts []string
	for k, n := range e {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", load.ErrKind(k), n))
		}
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, ", ")
}

// WriteMarkdown writes the report body: machine table, one table per
// scenario, chart links (relative to chartDir as seen from the document).
func WriteMarkdown(w io.Writer, r *Report, chartDir string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "## Results\n\nGenerated by `%s` on %s.\n\n", r.Command, r.Date.UTC().Format("2006-01-02 15:04 MST"))
	b.WriteString("| machine | |\n|---|---|\n")
	fmt.Fprintf(&b, "| CPU | %s (nproc %d) |\n| kernel | %s |\n| Go | %s |\n", r.Machine.CPUModel, r.Machine.NumCPU, r.Machine.Kernel, r.Machine.GoVersion)
	if r.Machine.LoadAvg != "" {
		fmt.Fprintf(&b, "| load average at start | %s |\n", r.Machine.LoadAvg)
	}
	keys := make([]string, 0, len(r.Versions))
	for k := range r.Versions {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "| %s | %s |\n", k, r.Versions[k])
	}
	fmt.Fprintf(&b, "| runs | %d per target, interleaved, %v each after a %v warm-up; medians shown |\n\n", r.Runs, r.Duration, r.Warmup)
	b.WriteString("The load generator, the proxy and the backends share the same cores: compare ratios measured in the same run, not absolute numbers. ")
	b.WriteString("Latency percentiles come from all runs of a target merged. CPU is utime+stime of the target's processes per 10k successful requests; for `direct` it is the serving backend's own CPU.\n\n")
	writeGoals(&b, r)
	fmt.Fprintf(&b, "![throughput relative to HAProxy](%s/throughput.svg)\n\n", chartDir)
	for i := range r.Scenarios {
		sc := &r.Scenarios[i]
		sums := Summarize(sc, r.Targets)
		fmt.Fprintf(&b, "### %s\n\n%s\n\n", sc.Name, sc.Description)
		if len(sums) == 0 {
			b.WriteString("(no runs)\n\n")
			continue
		}
		ha, di := find(sums, "haproxy"), find(sums, "direct")
		switch sc.Kind {
		case Idle:
			b.WriteString("| target | connections held | RSS before MiB | RSS peak MiB | KiB per connection | vs HAProxy | errors |\n|---|---|---|---|---|---|---|\n")
			for _, s := range sums {
				vs := "-"
				if ha != nil {
					vs = ratio(s.PerConn, ha.PerConn)
				}
				fmt.Fprintf(&b, "| %s | %s | %.1f | %.1f | %.1f | %s | %s |\n", s.Target, thousands(float64(s.Requests)/float64(s.Runs)),
					float64(s.BaseRSS)/(1<<20), float64(s.PeakRSS)/(1<<20), s.PerConn/1024, vs, errorText(s.Errors))
			}
		default:
			b.WriteString("| target | driver | runs | req/s | min..max | p50 ms | p90 ms | p99 ms | p99.9 ms | vs direct | vs HAProxy | CPU-s /10k req | backends CPU-s /10k | peak RSS MiB | errors |\n")
			b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
			for _, s := range sums {
				vd, vh := "-", "-"
				if di != nil {
					vd = ratio(s.RPS, di.RPS)
				}
				if ha != nil {
					vh = ratio(s.RPS, ha.RPS)
				}
				l := &s.Latency
				fmt.Fprintf(&b, "| %s | %s | %d | %s | %s..%s | %s | %s | %s | %s | %s | %s | %.2f | %.2f | %.1f | %s |\n",
					s.Target, s.Drivers, s.Runs, thousands(s.RPS), thousands(s.MinRPS), thousands(s.MaxRPS),
					ms(l.Quantile(0.5)), ms(l.Quantile(0.9)), ms(l.Quantile(0.99)), ms(l.Quantile(0.999)),
					vd, vh, s.CPUPer10k, s.BackPer10k, float64(s.PeakRSS)/(1<<20), errorText(s.Errors))
			}
			writeCommands(&b, sc)
			if hs := sums[0].Handshakes; hs > 0 {
				b.WriteString("\nTLS handshakes resumed: ")
				var parts []string
				for _, s := range sums {
					parts = append(parts, fmt.Sprintf("%s %d of %d", s.Target, s.Resumed, s.Handshakes))
				}
				b.WriteString(strings.Join(parts, "; ") + ".\n")
			}
			showMis := sc.Logins
			for _, s := range sums {
				showMis = showMis || s.Misroutes > 0
			}
			var counted []string
			for _, s := range sums {
				if s.ServerCounted && s.ClientRequests > 0 {
					c := fmt.Sprintf("%s %.3f", s.Target, float64(s.ServerRequests)/float64(s.ClientRequests))
					if showMis {
						c += fmt.Sprintf(" (misrouted login steps %d)", s.Misroutes)
					}
					counted = append(counted, c)
				}
			}
			for _, s := range sums {
				for _, m := range s.Samples {
					if len(m) > 220 {
						m = m[:80] + "…" + m[len(m)-140:]
					}
					fmt.Fprintf(&b, "\nFirst %s error: `%s`\n", s.Target, strings.ReplaceAll(m, "`", "'"))
				}
			}
			var gen []string
			for _, s := range sums {
				if s.ClientPer10k > 0 {
					gen = append(gen, fmt.Sprintf("%s %.2f", s.Target, s.ClientPer10k))
				}
			}
			if len(gen) > 0 {
				b.WriteString("\nLoad generator CPU-s /10k req: " + strings.Join(gen, "; ") + ".\n")
			}
			if len(counted) > 0 {
				b.WriteString("\nRequests counted by the backends per request sent: " + strings.Join(counted, "; ") + ".")
				if slices.ContainsFunc(sums, func(s Summary) bool { return s.Drivers != "builtin" }) {
					b.WriteString(" wrk and h2load do not count the requests in flight when they stop (up to one per connection and stream), so their rows can exceed 1.")
				}
				b.WriteString("\n")
			}
			fmt.Fprintf(&b, "\n![latency percentiles, %s](%s/latency-%s.svg)\n", sc.Name, chartDir, sc.Name)
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// defaultIntro starts a new benchmarks document; the generated section
// follows it and only that section is replaced by later runs.
const defaultIntro = `# Benchmarks

kclb side by side with HAProxy (Debian's package), optionally nginx, and the stand-in Keycloak nodes
served directly, all on the same machine and the same three stand-in nodes (` + "`cmd/kcsim`" + `, strict mode).
Produced by ` + "`go run ./bench`" + ` (source in ` + "`bench/`" + `):

- ` + "`go run ./bench`" + ` (` + "`make bench`" + `) runs the default suite (3 interleaved runs of 5 s per target after a
  1 s warm-up; under 10 minutes on 2 cores); ` + "`-quick`" + ` runs 1 run of 2 s (under 2 minutes).
- ` + "`-scenarios a,b`" + ` (names or prefixes; ` + "`fail`" + ` selects the failure scenarios, which only run when named),
  ` + "`-targets direct,kclb,haproxy,nginx`" + `, ` + "`-runs`" + `, ` + "`-duration`" + `, ` + "`-out`" + ` (this file; charts go to ` + "`bench/`" + ` beside it).
- ` + "`-driver wrk,h2load`" + ` (` + "`make bench DRIVER=wrk,h2load`" + `; ` + "`wrk`" + ` or ` + "`h2load`" + ` alone for one of them) measures
  the closed-loop HTTP/1.1 rows with wrk (` + "`wrk -t 2 -c N -d D --latency -s bench/driver/report.lua`" + `, plus
  ` + "`-H 'Connection: close'`" + ` for a new connection per request; the Lua ` + "`done()`" + ` hook prints the request and
  error counts and wrk's latency distribution, including its coordinated-omission correction) and the
  HTTP/2 row with h2load (` + "`h2load -t 2 -c 64 -m 10 -D D --log-file`" + `, latency from the per-request log).
  Over TLS, wrk resumes the session on every new connection (only a connection slot's first handshake
  is full; ` + "`bench/driver`" + ` tests this), so with wrk ` + "`tls-resume`" + ` runs on wrk while the full-handshake rows
  (` + "`tls-hs-ecdsa`" + `, ` + "`tls-hs-rsa`" + `) stay on the built-in generator, as do the fixed-rate row (wrk2 is not
  packaged), idle connections, the login mix and the warm-ups. Every row names its driver and the tools'
  command lines are listed under each table. With a tool listed, the runs default to issue 16's
  method, 2 interleaved runs of 10 s (about 11 minutes; ` + "`-runs 3 -duration 5s`" + ` for the default's 9).
- The generated section opens with a summary table: each target of issue 16, kclb's number, the
  reference's in the same interleaved run, met or not met.

How it measures: its own load generator (closed loop with N connections, or open loop at a fixed rate with
latency taken from each request's intended send time, so stalls are not hidden), a raw-socket HTTP/1.1 client
for the h1 scenarios, net/http and x/net/http2 for HTTP/2 and the login mix; latency in a log-bucketed histogram
(under 0.8 % error); proxy CPU from utime+stime of /proc/PID/stat; peak VmRSS sampled every 100 ms. Every proxy
gets the same topology: round robin over the three nodes, an affinity cookie, health checks on the management
port every 2 s (nginx open source has neither cookie affinity nor active checks), four security headers,
access logs off. Everything shares the same cores (and, on the project's machine, other developers' work):
compare ratios within one run, not absolute numbers across runs.
`

// Markers delimit the generated part of docs/benchmarks.md.
const (
	BeginMarker = "<!-- bench:begin (generated by go run ./bench; edits inside are overwritten) -->"
	EndMarker   = "<!-- bench:end -->"
)

// Splice replaces the text between BeginMarker and EndMarker in doc with
// body. If doc has no markers, a title and the marked body are appended.
func Splice(doc, body string) string {
	i := strings.Index(doc, BeginMarker)
	j := strings.Index(doc, EndMarker)
	if i >= 0 && j > i {
		return doc[:i+len(BeginMarker)] + "\n" + body + doc[j:]
	}
	if strings.TrimSpace(doc) == "" {
		doc = defaultIntro
	}
	return strings.TrimRight(doc, "\n") + "\n\n" + BeginMarker + "\n" + body + EndMarker + "\n"
}
