package driver

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/kclb/kclb/bench/hist"
	"github.com/kclb/kclb/bench/load"
)

// wrkScript is the done() hook passed to wrk with -s.
//
//go:embed report.lua
var wrkScript []byte

// ErrWrkOutput is wrapped by every ParseWrk error about the text itself.
var ErrWrkOutput = errors.New("driver: unreadable wrk output")

func wrkErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrWrkOutput}, args...)...)
}

// WrkArgs returns wrk's arguments for job; script is the path of the Lua
// hook. The duration is rounded up to whole seconds (wrk's unit).
func WrkArgs(job Job, script string) []string {
	job.defaults()
	secs := int64(math.Ceil(job.Duration.Seconds()))
	args := []string{"-t", strconv.Itoa(job.Threads), "-c", strconv.Itoa(job.Conns), "-d", fmt.Sprintf("%ds", secs),
		"--latency", "--timeout", fmt.Sprintf("%ds", max(1, int64(math.Ceil(job.Timeout.Seconds())))), "-s", script}
	if job.Host != "" {
		args = append(args, "-H", "Host: "+job.Host)
	}
	if job.Close {
		args = append(args, "-H", "Connection: close")
	}
	return append(args, job.URL)
}

func runWrk(ctx context.Context, job Job) (*Outcome, error) {
	script := filepath.Join(job.Dir, "kclb-wrk.lua")
	if err := os.WriteFile(script, wrkScript, 0o644); err != nil {
		return nil, fmt.Errorf("driver: write wrk script: %w", err)
	}
	args := WrkArgs(job, script)
	out, cpu, err := execute(ctx, "wrk", args)
	if err != nil {
		return nil, err
	}
	res, err := ParseWrk(out)
	if err != nil {
		return nil, fmt.Errorf("%w; output: %s", err, tailOf(out, 400))
	}
	// Shown with the script's path in the repository, for users to rerun.
	return &Outcome{Result: res, CPU: cpu, Command: commandLine("wrk", WrkArgs(job, "bench/driver/report.lua"))}, nil
}

// maxMicros bounds latencies and durations ParseWrk accepts (about 35
// years), so converting them to nanoseconds cannot overflow.
const maxMicros = 1 << 50

// wrkKeys are the counters the summary line must carry.
var wrkKeys = []string{"requests", "duration_us", "connect", "read", "write", "status", "timeout"}

// ParseWrk reads the output of wrk run with report.lua. Lines other than
// the hook's are ignored. Requests is wrk's completed requests less those
// with a status of 400 or more; errors map connect to ErrDial, read, write
// and timeout to their kinds, status to ErrStatus. The latency histogram is
// wrk's own, including the samples wrk adds to correct for coordinated
// omission (so its count can exceed the requests); when the hook printed
// percentiles instead of the full distribution, it is rebuilt from them.
func ParseWrk(out []byte) (*load.Result, error) {
	var (
		kv       map[string]uint64
		ended    bool
		pcts     [][2]float64 // percentile, µs
		haveDist bool
		res      = &load.Result{}
	)
	for line := range bytes.Lines(out) {
		line = bytes.TrimRight(line, "\r\n")
		f := bytes.Fields(line)
		if len(f) == 0 {
			continue
		}
		tag := string(f[0])
		if (tag == "kclb-wrk-lat" || tag == "kclb-wrk-pct") && (kv == nil || ended) {
			return nil, wrkErr("%s line outside the report", tag)
		}
		switch tag {
		case "kclb-wrk":
			if kv != nil {
				return nil, wrkErr("two summary lines")
			}
			var err error
			if kv, err = parseKV(f[1:]); err != nil {
				return nil, err
			}
		case "kclb-wrk-lat":
			if len(pcts) > 0 || len(f) != 3 {
				return nil, wrkErr("latency line %.60q", line)
			}
			us, err1 := strconv.ParseUint(string(f[1]), 10, 64)
			n, err2 := strconv.ParseUint(string(f[2]), 10, 64)
			if err1 != nil || err2 != nil || us > maxMicros || n > maxMicros {
				return nil, wrkErr("latency line %.60q", line)
			}
			res.Latency.RecordN(int64(us)*1000, n)
			haveDist = true
		case "kclb-wrk-pct":
			if haveDist || len(f) != 3 {
				return nil, wrkErr("percentile line %.60q", line)
			}
			p, err1 := strconv.ParseFloat(string(f[1]), 64)
			us, err2 := strconv.ParseUint(string(f[2]), 10, 64)
			if err1 != nil || err2 != nil || !(p > 0 && p <= 100) || us > maxMicros {
				return nil, wrkErr("percentile line %.60q", line)
			}
			if k := len(pcts); k > 0 && (p <= pcts[k-1][0] || float64(us) < pcts[k-1][1]) {
				return nil, wrkErr("percentiles out of order at %.60q", line)
			}
			pcts = append(pcts, [2]float64{p, float64(us)})
		case "kclb-wrk-end":
			if kv == nil || ended {
				return nil, wrkErr("end line outside the report")
			}
			ended = true
		}
	}
	if kv == nil {
		return nil, wrkErr("no kclb-wrk summary line (was wrk run with the report script?)")
	}
	if !ended {
		return nil, wrkErr("report cut short (no kclb-wrk-end line)")
	}
	for _, k := range wrkKeys {
		if _, ok := kv[k]; !ok {
			return nil, wrkErr("summary has no %s", k)
		}
	}
	if kv["status"] > kv["requests"] {
		return nil, wrkErr("%d status errors in %d requests", kv["status"], kv["requests"])
	}
	if kv["duration_us"] > maxMicros {
		return nil, wrkErr("duration %d µs", kv["duration_us"])
	}
	res.Requests = kv["requests"] - kv["status"]
	res.Elapsed = time.Duration(kv["duration_us"]) * time.Microsecond
	setCount(res, load.ErrDial, kv["connect"], fmt.Sprintf("wrk: %d connect errors", kv["connect"]))
	setCount(res, load.ErrRead, kv["read"], fmt.Sprintf("wrk: %d read errors", kv["read"]))
	setCount(res, load.ErrWrite, kv["write"], fmt.Sprintf("wrk: %d write errors", kv["write"]))
	setCount(res, load.ErrTimeout, kv["timeout"], fmt.Sprintf("wrk: %d timeouts", kv["timeout"]))
	setCount(res, load.ErrStatus, kv["status"], fmt.Sprintf("wrk: %d responses with status >= 400", kv["status"]))
	rebuild(&res.Latency, pcts, kv["requests"])
	return res, nil
}

// parseKV reads key=value fields with unsigned decimal values.
func parseKV(fields [][]byte) (map[string]uint64, error) {
	kv := make(map[string]uint64, len(fields))
	for _, f := range fields {
		k, v, ok := bytes.Cut(f, []byte("="))
		if !ok || len(k) == 0 {
			return nil, wrkErr("summary field %.40q", f)
		}
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return nil, wrkErr("summary field %.40q: %v", f, err)
		}
		if _, dup := kv[string(k)]; dup {
			return nil, wrkErr("summary field %q twice", k)
		}
		kv[string(k)] = n
	}
	return kv, nil
}

// rebuild fills h with total samples distributed as the percentile points
// say: the samples ranked between two points get the upper point's value,
// and those above the last point get the last value.
func rebuild(h *hist.Histogram, pcts [][2]float64, total uint64) {
	var prev uint64
	for i, pv := range pcts {
		rank := uint64(math.Round(float64(total) * pv[0] / 100))
		if i == len(pcts)-1 {
			rank = total
		}
		rank = min(max(rank, prev), total)
		h.RecordN(int64(pv[1])*1000, rank-prev)
		prev = rank
	}
}
