// Package driver runs the external HTTP load generators the benchmark can
// use instead of its own (bench/load): wrk for HTTP/1.1 and h2load
// (nghttp2) for HTTP/2, both as Debian packages them. It builds their
// command lines from a Job, runs them, and turns what they print into a
// load.Result, so a row measured by a tool users know reads like one from
// the built-in generator.
//
// Both tools run a closed loop for a fixed duration: wrk -t2 -c N -d D
// --latency with a done() hook of this package (report.lua) that prints the
// request count, the error counters and the latency distribution; h2load
// -t2 -c N -m M -D D --log-file, whose per-request log gives the latency of
// every request. Neither can pace a fixed request rate (wrk2 is not
// packaged), so open-loop rows stay with the built-in generator.
package driver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/kclb/kclb/bench/load"
)

// Tool names an external load generator.
type Tool uint8

// Tools. The zero value is Wrk.
const (
	Wrk    Tool = iota // wrk 4 (Debian package wrk), HTTP/1.1
	H2load             // h2load (Debian package nghttp2-client), HTTP/2 (or HTTP/1.1 with --h1)
)

// String returns the command name.
func (t Tool) String() string {
	if t == H2load {
		return "h2load"
	}
	return "wrk"
}

// Package returns the Debian package that installs the tool.
func (t Tool) Package() string {
	if t == H2load {
		return "nghttp2-client"
	}
	return "wrk"
}

// ParseTool returns the tool called name ("wrk" or "h2load").
func ParseTool(name string) (Tool, error) {
	switch name {
	case "wrk":
		return Wrk, nil
	case "h2load":
		return H2load, nil
	}
	return 0, fmt.Errorf("driver: unknown tool %q (want wrk or h2load)", name)
}

// Available reports whether the tool's binary is on PATH, with an error
// naming the package to install when it is not.
func (t Tool) Available() error {
	if _, err := exec.LookPath(t.String()); err != nil {
		return fmt.Errorf("driver: %s not found (apt-get install %s): %w", t, t.Package(), err)
	}
	return nil
}

// Job is one run of a tool.
type Job struct {
	// URL is the full http:// or https:// URL requested. Required.
	URL string
	// Host, if set, is sent as the Host header (wrk) or :authority (h2load)
	// instead of the URL's host:port.
	Host string
	// Conns is the number of connections (-c). Default 1; wrk and h2load
	// need at least Threads connections, so Threads is lowered to Conns.
	Conns int
	// Streams is h2load's concurrent streams per connection (-m). Default 1.
	// wrk ignores it.
	Streams int
	// Threads is the tool's thread count (-t). Default 2, as in issue 16's
	// method.
	Threads int
	// Duration is the measured time. wrk takes whole seconds, so it is
	// rounded up for wrk. Default 1s.
	Duration time.Duration
	// Close asks for a new connection per request (wrk: a Connection: close
	// header; wrk reconnects after each response). h2load cannot do this.
	Close bool
	// H1 makes h2load speak HTTP/1.1 (--h1) instead of HTTP/2.
	H1 bool
	// Timeout is wrk's per-request timeout (--timeout). Default 10s.
	Timeout time.Duration
	// Dir is a scratch directory for the Lua script and the request log.
	// Required.
	Dir string
}

func (j *Job) defaults() {
	if j.Conns <= 0 {
		j.Conns = 1
	}
	if j.Streams <= 0 {
		j.Streams = 1
	}
	if j.Threads <= 0 {
		j.Threads = 2
	}
	j.Threads = min(j.Threads, j.Conns)
	if j.Duration <= 0 {
		j.Duration = time.Second
	}
	if j.Timeout <= 0 {
		j.Timeout = 10 * time.Second
	}
}

// Outcome is what one run produced.
type Outcome struct {
	// Result holds the counts and latencies in bench/load's form. Requests
	// counts responses with a status below 400; Elapsed is the tool's own
	// measured duration.
	Result *load.Result
	// CPU is the user+system time the tool itself used.
	CPU time.Duration
	// Command is the command line that ran, for reports, with the
	// scratch files named as a user would (bench/driver/report.lua,
	// requests.log).
	Command string
}

// Run runs the tool for job and parses its output. Cancelling ctx kills
// the tool. An error means the tool could not run or its output could not
// be read; failed requests are counted in the Result instead.
func Run(ctx context.Context, t Tool, job Job) (*Outcome, error) {
	if job.URL == "" || job.Dir == "" {
		return nil, errors.New("driver: job needs a URL and a scratch directory")
	}
	job.defaults()
	switch t {
	case H2load:
		return runH2load(ctx, job)
	default:
		return runWrk(ctx, job)
	}
}

// execute runs name with args and returns its combined output and CPU
// time. The child is killed if ctx ends or the benchmark dies.
func execute(ctx context.Context, name string, args []string) (out []byte, cpu time.Duration, err error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Run()
	if cmd.ProcessState != nil {
		cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		return buf.Bytes(), cpu, fmt.Errorf("driver: %s: %w; output: %s", name, err, tailOf(buf.Bytes(), 400))
	}
	return buf.Bytes(), cpu, nil
}

// commandLine quotes args for display.
func commandLine(name string, args []string) string {
	parts := []string{name}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

func tailOf(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// setCount records n failures of kind k in r with a sample message.
func setCount(r *load.Result, k load.ErrKind, n uint64, sample string) {
	if n == 0 {
		return
	}
	r.Errors[k] += n
	if r.Sample[k] == "" {
		r.Sample[k] = sample
	}
}
