package report

import (
	"fmt"
	"strings"
)

// Metric is what a Goal compares.
type Metric uint8

// Metrics. The zero value is MetricRPS.
const (
	MetricRPS     Metric = iota // median req/s; higher is better
	MetricCPU                   // median proxy CPU seconds per request; lower is better
	MetricP99                   // p99 latency over all runs; lower is better
	MetricRSS                   // largest peak RSS; lower is better
	MetricPerConn               // median memory per held idle connection; lower is better
)

// String names the metric.
func (m Metric) String() string {
	switch m {
	case MetricCPU:
		return "CPU per request"
	case MetricP99:
		return "p99"
	case MetricRSS:
		return "peak RSS"
	case MetricPerConn:
		return "memory per idle connection"
	}
	return "req/s"
}

// Goal is one target (of an issue) checked against one scenario of the
// run: the subject's metric against a reference target's in the same
// interleaved run, or against an absolute limit.
type Goal struct {
	// Label states the target as the issue does.
	Label string
	// Scenario is the scenario measured. "" marks a target the benchmark
	// does not measure; Note then says where it is measured.
	Scenario string
	// Metric is the quantity compared.
	Metric Metric
	// Versus is the reference target ("haproxy", "nginx"); "" compares
	// with Limit.
	Versus string
	// Factor bounds the subject relative to the reference: met when
	// subject >= Factor*reference for MetricRPS, and when subject <=
	// Factor*reference + Slack for the others.
	Factor float64
	// Slack is added to the bound of lower-is-better metrics, in the
	// metric's unit (nanoseconds for MetricP99, bytes for memory).
	Slack float64
	// Limit is the absolute upper bound when Versus is "", in the metric's
	// unit (bytes for memory).
	Limit float64
	// Note replaces the measurement when Scenario is "".
	Note string
}

// Verdict is the outcome of checking a Goal.
type Verdict uint8

// Verdicts. The zero value is NotMeasured.
const (
	NotMeasured Verdict = iota // the scenario, the subject or the reference did not run
	Met
	NotMet
)

// String returns "not measured", "met" or "not met".
func (v Verdict) String() string {
	return [...]string{"not measured", "met", "not met"}[v]
}

// GoalResult is a checked Goal.
type GoalResult struct {
	Goal Goal
	// Subject and Reference are the compared values (Reference is the
	// limit for absolute goals); valid unless Verdict is NotMeasured.
	Subject, Reference float64
	Verdict            Verdict
	// Drivers names the load generators of the subject's runs.
	Drivers string
	// Why says what is missing when Verdict is NotMeasured.
	Why string
}

// value extracts m from a summary.
func value(s *Summary, m Metric) float64 {
	switch m {
	case MetricCPU:
		return s.CPUPer10k / 1e4
	case MetricP99:
		return float64(s.Latency.Quantile(0.99))
	case MetricRSS:
		return float64(s.PeakRSS)
	case MetricPerConn:
		return s.PerConn
	}
	return s.RPS
}

// Check evaluates g against r's scenarios.
func (g Goal) Check(r *Report) GoalResult {
	out := GoalResult{Goal: g}
	if g.Scenario == "" {
		out.Why = g.Note
		return out
	}
	var sc *Scenario
	for i := range r.Scenarios {
		if r.Scenarios[i].Name == g.Scenario {
			sc = &r.Scenarios[i]
		}
	}
	if sc == nil {
		out.Why = "scenario " + g.Scenario + " not run"
		return out
	}
	sums := Summarize(sc, r.Targets)
	subject := find(sums, r.subject())
	if subject == nil || subject.Requests == 0 {
		out.Why = "no " + r.subject() + " run"
		return out
	}
	out.Drivers = subject.Drivers
	out.Subject = value(subject, g.Metric)
	if g.Versus == "" {
		out.Reference = g.Limit
	} else {
		ref := find(sums, g.Versus)
		if ref == nil || ref.Requests == 0 {
			out.Why = "no " + g.Versus + " run"
			return out
		}
		out.Reference = value(ref, g.Metric)
	}
	var met bool
	switch {
	case g.Versus == "":
		met = out.Subject <= g.Limit
	case g.Metric == MetricRPS:
		met = out.Subject >= g.Factor*out.Reference
	default:
		met = out.Subject <= g.Factor*out.Reference+g.Slack
	}
	out.Verdict = NotMet
	if met {
		out.Verdict = Met
	}
	return out
}

func (r *Report) subject() string {
	if r.Subject == "" {
		return "kclb"
	}
	return r.Subject
}

// format renders a metric's value with its unit.
func format(m Metric, v float64) string {
	switch m {
	case MetricCPU:
		return fmt.Sprintf("%.2f CPU-s /100k req", v*1e5)
	case MetricP99:
		return fmt.Sprintf("%.2f ms", v/1e6)
	case MetricRSS:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	case MetricPerConn:
		return fmt.Sprintf("%.1f KiB", v/1024)
	}
	return thousands(v) + " req/s"
}

// versusText is the subject's value with its relation to the reference.
func (g GoalResult) versusText() string {
	v := format(g.Goal.Metric, g.Subject)
	switch {
	case g.Goal.Metric == MetricP99 && g.Goal.Versus != "":
		return fmt.Sprintf("%s (%+.2f ms)", v, (g.Subject-g.Reference)/1e6)
	case g.Goal.Versus != "" && g.Reference > 0:
		return fmt.Sprintf("%s (%.2f×)", v, g.Subject/g.Reference)
	}
	return v
}

// writeGoals writes the summary table of r.Goals, if any.
func writeGoals(b *strings.Builder, r *Report) {
	if len(r.Goals) == 0 {
		return
	}
	from := r.GoalsFrom
	if from != "" {
		from = " (" + from + ")"
	}
	fmt.Fprintf(b, "### Summary against the targets%s\n\n", from)
	fmt.Fprintf(b, "Each ratio compares %s with the reference target in the same interleaved run; the driver column names the load generator that measured %s's row.\n\n", r.subject(), r.subject())
	fmt.Fprintf(b, "| target | scenario | driver | %s | reference | verdict |\n|---|---|---|---|---|---|\n", r.subject())
	for _, g := range r.Goals {
		res := g.Check(r)
		if res.Verdict == NotMeasured {
			sc := g.Scenario
			if sc == "" {
				sc = "-"
			}
			fmt.Fprintf(b, "| %s | %s | - | - | - | not measured: %s |\n", g.Label, sc, res.Why)
			continue
		}
		ref := "limit " + format(g.Metric, res.Reference)
		if g.Versus != "" {
			ref = g.Versus + " " + format(g.Metric, res.Reference)
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | **%s** |\n", g.Label, g.Scenario, res.Drivers, res.versusText(), ref, res.Verdict)
	}
	b.WriteString("\n")
}

// writeCommands lists, for a scenario measured by external tools, the
// command line of each target's first run.
func writeCommands(b *strings.Builder, sc *Scenario) {
	seen := map[string]bool{}
	var lines []string
	for _, r := range sc.Runs {
		if r.Command == "" || seen[r.Target] {
			continue
		}
		seen[r.Target] = true
		lines = append(lines, fmt.Sprintf("- %s: `%s`", r.Target, strings.ReplaceAll(r.Command, "`", "'")))
	}
	if len(lines) > 0 {
		b.WriteString("\nCommands (first run of each target):\n\n" + strings.Join(lines, "\n") + "\n")
	}
}
