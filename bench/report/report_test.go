package report

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/kclb/kclb/bench/load"
	"github.com/kclb/kclb/bench/procstat"
)

func fakeResult(requests uint64, latency time.Duration, errs uint64) *load.Result {
	r := &load.Result{Requests: requests, Elapsed: time.Second}
	for range requests {
		r.Latency.RecordDuration(latency)
	}
	r.Errors[load.ErrStatus] = errs
	return r
}

func fakeReport() *Report {
	r := &Report{
		Machine:  procstat.Machine{NumCPU: 2, CPUModel: "Test CPU <x>", Kernel: "6.1", GoVersion: "go1.26"},
		Versions: map[string]string{"HAProxy": "2.6.12"},
		Date:     time.Date(2026, 11, 25, 21, 0, 0, 0, time.UTC),
		Duration: time.Second, Warmup: time.Second, Runs: 2,
		Targets: []string{"direct", "kclb", "haproxy"},
		Command: "go run ./bench -quick",
	}
	tp := Scenario{Name: "http-ka-c64", Description: "keep-alive", Kind: Throughput}
	for i := 1; i <= 2; i++ {
		tp.Runs = append(tp.Runs,
			Run{Target: "direct", Index: i, Result: fakeResult(3000, time.Millisecond, 0), ProxyCPU: 300 * time.Millisecond, PeakRSS: 10 << 20, ClientCPU: 600 * time.Millisecond},
			Run{Target: "kclb", Index: i, Result: fakeResult(uint64(1000+i*200), 4*time.Millisecond, 2), ProxyCPU: time.Second, PeakRSS: 30 << 20,
				Driver: "wrk", Command: "wrk -t 2 -c 64 http://k/"},
			Run{Target: "haproxy", Index: i, Result: fakeResult(2000, 2*time.Millisecond, 0), ProxyCPU: 500 * time.Millisecond, PeakRSS: 20 << 20,
				ServerCounted: true, ServerRequests: 2000, Misroutes: int64(i)})
	}
	idle := Scenario{Name: "idle-10k", Description: "idle", Kind: Idle, Runs: []Run{
		{Target: "kclb", Index: 1, Result: &load.Result{Requests: 1000}, BaseRSS: 10 << 20, PeakRSS: 10<<20 + 1000*20*1024},
		{Target: "haproxy", Index: 1, Result: &load.Result{Requests: 1000}, BaseRSS: 20 << 20, PeakRSS: 20<<20 + 1000*10*1024},
	}}
	open := Scenario{Name: "open", Kind: Throughput, OpenLoop: true, Runs: []Run{{Target: "kclb", Index: 1, Result: fakeResult(100, time.Millisecond, 0)}}}
	r.Scenarios = []Scenario{tp, idle, open}
	return r
}

func TestWriteMarkdown(t *testing.T) {
	var b bytes.Buffer
	if err := WriteMarkdown(&b, fakeReport(), "bench"); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"| CPU | Test CPU <x> (nproc 2) |",
		"| HAProxy | 2.6.12 |",
		// direct: 3000 req/s, ratio 1.00 to itself, 1.50 to HAProxy, 1 CPU-s per 10k.
		"| direct | builtin | 2 | 3,000 | 3,000..3,000 | 1.00 |",
		"| 1.00 | 1.50 | 1.00 |",
		// kclb: median of 1200 and 1400 is 1300, 0.65 of HAProxy's 2000.
		"| kclb | wrk | 2 | 1,300 | 1,200..1,400 | 4.00 | 4.00 | 4.00 | 4.00 | 0.43 | 0.65 |",
		"- kclb: `wrk -t 2 -c 64 http://k/`",
		"status 4 |",
		"| haproxy | builtin | 2 | 2,000 |",
		// idle: 20 KiB per connection for kclb, twice HAProxy's 10.
		"| kclb | 1,000 | 10.0 | 29.5 | 20.0 | 2.00 | 0 |",
		"![latency percentiles, http-ka-c64](bench/latency-http-ka-c64.svg)",
		"Requests counted by the backends per request sent: haproxy 1.000 (misrouted login steps 3). wrk and h2load do not count",
		"Load generator CPU-s /10k req: direct 2.00.",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q\n%s", want, md)
		}
	}
}

// TestGoals checks the summary against targets on known numbers (issue
// 16: "the summary table against each target (met or not, with the
// number)").
func TestGoals(t *testing.T) {
	r := fakeReport()
	tests := []struct {
		name string
		goal Goal
		want Verdict
		row  string
	}{
		{"req/s below HAProxy", Goal{Label: "rps", Scenario: "http-ka-c64", Metric: MetricRPS, Versus: "haproxy", Factor: 1}, NotMet,
			"| rps | http-ka-c64 | wrk | 1,300 req/s (0.65×) | haproxy 2,000 req/s | **not met** |"},
		{"req/s above a share of direct", Goal{Label: "rps2", Scenario: "http-ka-c64", Metric: MetricRPS, Versus: "direct", Factor: 0.4}, Met,
			"| rps2 | http-ka-c64 | wrk | 1,300 req/s (0.43×) | direct 3,000 req/s | **met** |"},
		// kclb: median of 1 s / 1200 and 1 s / 1400 requests; HAProxy 0.5 s / 2000.
		{"CPU per request", Goal{Label: "cpu", Scenario: "http-ka-c64", Metric: MetricCPU, Versus: "haproxy", Factor: 1}, NotMet,
			"| cpu | http-ka-c64 | wrk | 77.38 CPU-s /100k req (3.10×) | haproxy 25.00 CPU-s /100k req | **not met** |"},
		{"CPU per request, loose", Goal{Label: "cpu4", Scenario: "http-ka-c64", Metric: MetricCPU, Versus: "haproxy", Factor: 4}, Met, ""},
		{"p99 over HAProxy's + 1 ms", Goal{Label: "p99", Scenario: "http-ka-c64", Metric: MetricP99, Versus: "haproxy", Factor: 1, Slack: 1e6}, NotMet,
			"| p99 | http-ka-c64 | wrk | 4.00 ms (+2.00 ms) | haproxy 2.00 ms | **not met** |"},
		{"p99 within HAProxy's + 3 ms", Goal{Label: "p99b", Scenario: "http-ka-c64", Metric: MetricP99, Versus: "haproxy", Factor: 1, Slack: 3e6}, Met, ""},
		{"RSS", Goal{Label: "rss", Scenario: "http-ka-c64", Metric: MetricRSS, Versus: "haproxy", Factor: 1.25}, NotMet,
			"| rss | http-ka-c64 | wrk | 30.0 MiB (1.50×) | haproxy 20.0 MiB | **not met** |"},
		{"idle memory under a limit", Goal{Label: "idle", Scenario: "idle-10k", Metric: MetricPerConn, Limit: 32 << 10}, Met,
			"| idle | idle-10k | builtin | 20.0 KiB | limit 32.0 KiB | **met** |"},
		{"idle memory over a limit", Goal{Label: "idle8", Scenario: "idle-10k", Metric: MetricPerConn, Limit: 8 << 10}, NotMet, ""},
		{"scenario not run", Goal{Label: "h2", Scenario: "h2-c64-m10", Versus: "haproxy", Factor: 1}, NotMeasured,
			"| h2 | h2-c64-m10 | - | - | - | not measured: scenario h2-c64-m10 not run |"},
		{"reference not run", Goal{Label: "nginx", Scenario: "http-ka-c64", Versus: "nginx", Factor: 1}, NotMeasured,
			"not measured: no nginx run |"},
		{"measured elsewhere", Goal{Label: "allocs", Note: "go test -bench"}, NotMeasured, "| allocs | - | - | - | - | not measured: go test -bench |"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.goal.Check(r); got.Verdict != tc.want {
				t.Fatalf("verdict %v (%+v), want %v", got.Verdict, got, tc.want)
			}
			if tc.row == "" {
				return
			}
			rr := *r
			rr.Goals = []Goal{tc.goal}
			var b bytes.Buffer
			if err := WriteMarkdown(&b, &rr, "bench"); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(b.String(), tc.row) {
				t.Fatalf("summary lacks %q\n%s", tc.row, b.String())
			}
		})
	}
}

func TestSplice(t *testing.T) {
	tests := []struct {
		name, doc, body string
		want            []string
	}{
		{name: "empty doc", doc: "", body: "B1\n", want: []string{"# Benchmarks", BeginMarker + "\nB1\n" + EndMarker}},
		{name: "keeps prose and replaces body", doc: "# T\nintro\n" + BeginMarker + "\nold\n" + EndMarker + "\nafter\n", body: "new\n",
			want: []string{"# T\nintro\n", BeginMarker + "\nnew\n" + EndMarker + "\nafter\n"}},
		{name: "doc without markers", doc: "# Mine\n", body: "x\n", want: []string{"# Mine\n\n" + BeginMarker}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Splice(tc.doc, tc.body)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Fatalf("Splice = %q, lacks %q", got, w)
				}
			}
			if strings.Contains(got, "old") {
				t.Fatalf("old body kept: %q", got)
			}
			if again := Splice(got, tc.body); again != got {
				t.Fatalf("Splice not idempotent:\n%q\n%q", got, again)
			}
		})
	}
}

// checkSVG parses doc as XML and counts elements by local name.
func checkSVG(t *testing.T, doc []byte) map[string]int {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	d.Strict = true
	counts := map[string]int{}
	depth := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v\n%s", err, doc)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if depth == 0 && (el.Name.Local != "svg" || el.Name.Space != "http://www.w3.org/2000/svg") {
				t.Fatalf("root element %v", el.Name)
			}
			depth++
			counts[el.Name.Local]++
		case xml.EndElement:
			depth--
		}
	}
	if depth != 0 {
		t.Fatalf("unbalanced elements")
	}
	return counts
}

func TestSVGs(t *testing.T) {
	r := fakeReport()
	var b bytes.Buffer
	if err := WriteThroughputSVG(&b, r); err != nil {
		t.Fatal(err)
	}
	c := checkSVG(t, b.Bytes())
	// 1 background + 3 bars + 3 legend boxes; the open-loop scenario has none.
	if c["rect"] != 7 {
		t.Errorf("throughput chart has %d rects, want 7\n%s", c["rect"], b.String())
	}
	b.Reset()
	if err := WriteLatencySVG(&b, r, &r.Scenarios[0]); err != nil {
		t.Fatal(err)
	}
	c = checkSVG(t, b.Bytes())
	if c["polyline"] != 3 {
		t.Errorf("latency chart has %d curves, want 3", c["polyline"])
	}
	if !strings.Contains(b.String(), "Test CPU") && strings.Contains(b.String(), "<x>") {
		t.Error("unescaped text")
	}
}
