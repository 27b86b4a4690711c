package driver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kclb/kclb/bench/load"
)

// ErrH2loadOutput is wrapped by every error about h2load's summary or
// request log text.
var ErrH2loadOutput = errors.New("driver: unreadable h2load output")

func h2Err(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrH2loadOutput}, args...)...)
}

// H2loadArgs returns h2load's arguments for job, writing the per-request
// log to logFile.
func H2loadArgs(job Job, logFile string) []string {
	job.defaults()
	args := []string{"-t", strconv.Itoa(job.Threads), "-c", strconv.Itoa(job.Conns), "-m", strconv.Itoa(job.Streams),
		"-D", fmt.Sprintf("%dms", max(1, job.Duration.Milliseconds())), "--log-file=" + logFile}
	if job.H1 {
		args = append(args, "--h1")
	}
	if job.Host != "" {
		args = append(args, "-H", ":authority: "+job.Host)
	}
	return append(args, job.URL)
}

func runH2load(ctx context.Context, job Job) (*Outcome, error) {
	if job.Close {
		return nil, errors.New("driver: h2load cannot open a new connection per request")
	}
	logFile := filepath.Join(job.Dir, "kclb-h2load.log")
	os.Remove(logFile)
	args := H2loadArgs(job, logFile)
	out, cpu, err := execute(ctx, "h2load", args)
	defer os.Remove(logFile)
	if err != nil {
		return nil, err
	}
	sum, err := ParseH2loadSummary(out)
	if err != nil {
		return nil, fmt.Errorf("%w; output: %s", err, tailOf(out, 400))
	}
	res := sum.Result()
	f, err := os.Open(logFile)
	if err != nil {
		return nil, fmt.Errorf("driver: h2load request log: %w", err)
	}
	defer f.Close()
	if _, err := ReadH2loadLog(f, res); err != nil {
		return nil, err
	}
	return &Outcome{Result: res, CPU: cpu, Command: commandLine("h2load", H2loadArgs(job, "requests.log"))}, nil
}

// H2loadSummary is what h2load prints at the end of a run.
type H2loadSummary struct {
	// Elapsed is the "finished in" time.
	Elapsed time.Duration
	// Total, Started, Done, Succeeded, Failed, Errored and Timeout are the
	// "requests:" counters (succeeded: completed with status 2xx or 3xx;
	// failed: the rest of done, HTTP errors included; errored: stream or
	// connection errors).
	Total, Started, Done, Succeeded, Failed, Errored, Timeout uint64
	// Status counts response heads by class: [0] 2xx, [1] 3xx, [2] 4xx,
	// [3] 5xx.
	Status [4]uint64
}

// Result converts the summary: Requests are the succeeded requests
// (completed with a 2xx or 3xx status), failed ones with a 4xx or 5xx
// status are ErrStatus, errored streams ErrRead, timeouts ErrTimeout,
// other failures ErrOther. A run that completed no request and counted no
// failure (h2load's way of reporting a refused connection) is one ErrDial.
// Latency is left empty (ReadH2loadLog fills it).
func (s *H2loadSummary) Result() *load.Result {
	r := &load.Result{Requests: s.Succeeded, Elapsed: s.Elapsed}
	status := min(s.Status[2]+s.Status[3], s.Failed)
	setCount(r, load.ErrStatus, status, fmt.Sprintf("h2load: %d 4xx and %d 5xx responses", s.Status[2], s.Status[3]))
	setCount(r, load.ErrRead, s.Errored, fmt.Sprintf("h2load: %d requests errored", s.Errored))
	setCount(r, load.ErrTimeout, s.Timeout, fmt.Sprintf("h2load: %d requests timed out", s.Timeout))
	if known := status + s.Errored + s.Timeout; s.Failed > known {
		setCount(r, load.ErrOther, s.Failed-known, fmt.Sprintf("h2load: %d requests failed", s.Failed-known))
	}
	if r.Requests == 0 && r.TotalErrors() == 0 {
		setCount(r, load.ErrDial, 1, "h2load: no request completed (could not connect?)")
	}
	return r
}

// ParseH2loadSummary reads the "finished in", "requests:" and "status
// codes:" lines of h2load's output; other lines are ignored.
func ParseH2loadSummary(out []byte) (*H2loadSummary, error) {
	var s H2loadSummary
	var seen [3]bool
	for line := range bytes.Lines(out) {
		l := strings.TrimSpace(string(line))
		switch {
		case strings.HasPrefix(l, "finished in "):
			d, _, _ := strings.Cut(strings.TrimPrefix(l, "finished in "), ",")
			e, err := parseH2Duration(d)
			if err != nil {
				return nil, err
			}
			s.Elapsed, seen[0] = e, true
		case strings.HasPrefix(l, "requests: "):
			c, err := counters(strings.TrimPrefix(l, "requests: "),
				"total", "started", "done", "succeeded", "failed", "errored", "timeout")
			if err != nil {
				return nil, err
			}
			s.Total, s.Started, s.Done, s.Succeeded, s.Failed, s.Errored, s.Timeout = c[0], c[1], c[2], c[3], c[4], c[5], c[6]
			seen[1] = true
		case strings.HasPrefix(l, "status codes: "):
			c, err := counters(strings.TrimPrefix(l, "status codes: "), "2xx", "3xx", "4xx", "5xx")
			if err != nil {
				return nil, err
			}
			copy(s.Status[:], c)
			seen[2] = true
		}
	}
	if seen != [3]bool{true, true, true} {
		return nil, h2Err("summary lines missing (finished in %v, requests %v, status codes %v)", seen[0], seen[1], seen[2])
	}
	// The status classes count response heads, also of streams still open
	// when the run stopped, so they may exceed done.
	if s.Succeeded > s.Done || s.Failed > s.Done || s.Done > s.Started {
		return nil, h2Err("inconsistent counters: %d succeeded and %d failed of %d done, %d started", s.Succeeded, s.Failed, s.Done, s.Started)
	}
	return &s, nil
}

// counters parses "N name, N name, ..." with exactly the given names in
// order.
func counters(s string, names ...string) ([]uint64, error) {
	parts := strings.Split(s, ",")
	if len(parts) != len(names) {
		return nil, h2Err("%d counters in %.80q, want %d", len(parts), s, len(names))
	}
	out := make([]uint64, len(names))
	for i, p := range parts {
		f := strings.Fields(p)
		if len(f) != 2 || f[1] != names[i] {
			return nil, h2Err("counter %.40q, want N %s", p, names[i])
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return nil, h2Err("counter %.40q: %v", p, err)
		}
		out[i] = n
	}
	return out, nil
}

// parseH2Duration reads h2load's durations: a decimal number and a unit of
// us, ms, s, m or h ("10.00s", "500.12ms").
func parseH2Duration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	num := strings.TrimRight(s, "abcdefghijklmnopqrstuvwxyz")
	unit := map[string]float64{"us": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}[s[len(num):]]
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || unit == 0 || !(v >= 0) || v*unit > float64(maxMicros)*1e3 {
		return 0, h2Err("duration %.30q", s)
	}
	return time.Duration(v * unit), nil
}

// ReadH2loadLog reads h2load's per-request log (start time in µs since
// the epoch, status code or -1, µs until the end of the response; tab
// separated) and records the latency of every request with a status of
// 200 to 399 in r.Latency. It returns the number of rows. Columns after the
// third are ignored (h2load may add some).
func ReadH2loadLog(rd io.Reader, r *load.Result) (rows int, err error) {
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 0, 4096), 4096)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		f := bytes.Split(line, []byte("\t"))
		if len(f) < 3 {
			return rows, h2Err("log row %d %.60q", rows+1, line)
		}
		status, err1 := strconv.Atoi(string(f[1]))
		us, err2 := strconv.ParseUint(string(bytes.TrimSpace(f[2])), 10, 64)
		if _, err := strconv.ParseUint(string(f[0]), 10, 64); err != nil || err1 != nil || err2 != nil || us > maxMicros || status < -1 || status > 999 {
			return rows, h2Err("log row %d %.60q", rows+1, line)
		}
		rows++
		if status >= 200 && status < 400 {
			r.Latency.Record(int64(us) * 1000)
		}
	}
	if err := sc.Err(); err != nil {
		return rows, h2Err("log: %v", err)
	}
	return rows, nil
}
