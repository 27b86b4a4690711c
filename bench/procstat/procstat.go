// Package procstat reads what the benchmark needs from Linux /proc: a
// process's CPU time (utime+stime of /proc/PID/stat), its resident set size
// (VmRSS of /proc/PID/status), its direct children, and a description of the
// machine (CPU model, core count, kernel).
package procstat

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// ClockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It is
// 100 on every Linux architecture Go supports.
const ClockTicks = 100

// ParseStatCPU returns utime+stime from the contents of /proc/PID/stat. The
// command name (field 2) may contain spaces and parentheses, so parsing
// starts after its last ')'.
func ParseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("procstat: stat: no ')' after comm")
	}
	fields := strings.Fields(string(b[i+1:]))
	// After comm: state(3) ppid(4) ... utime(14) stime(15).
	const utimeIdx = 14 - 3
	if len(fields) <= utimeIdx+1 {
		return 0, fmt.Errorf("procstat: stat: %d fields after comm, want > %d", len(fields), utimeIdx+1)
	}
	u, err := strconv.ParseUint(fields[utimeIdx], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("procstat: stat utime: %w", err)
	}
	s, err := strconv.ParseUint(fields[utimeIdx+1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("procstat: stat stime: %w", err)
	}
	// Reject tick counts whose sum would overflow a time.Duration.
	const maxTicks = uint64(math.MaxInt64 / int64(time.Second/ClockTicks))
	if u > maxTicks || s > maxTicks-u {
		return 0, fmt.Errorf("procstat: stat: implausible CPU ticks %d+%d", u, s)
	}
	return time.Duration(u+s) * (time.Second / ClockTicks), nil
}

// ParseStatusRSS returns VmRSS in bytes from the contents of /proc/PID/status.
// A process without VmRSS (a zombie, a kernel thread) yields 0 and no error.
func ParseStatusRSS(b []byte) (int64, error) {
	for line := range strings.SplitSeq(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("procstat: status: malformed VmRSS line %q", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("procstat: status VmRSS: %w", err)
		}
		return kb * 1024, nil
	}
	return 0, nil
}

// CPU returns the CPU time (user+system) process pid has used so far.
func CPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("procstat: %w", err)
	}
	return ParseStatCPU(b)
}

// RSS returns the resident set size of process pid in bytes.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("procstat: %w", err)
	}
	return ParseStatusRSS(b)
}

// Children returns the direct children of pid, read from
// /proc/PID/task/*/children. It returns an empty slice when there are none.
func Children(pid int) ([]int, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if err != nil {
		return nil, fmt.Errorf("procstat: %w", err)
	}
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // the thread exited meanwhile
		}
		for _, f := range strings.Fields(string(b)) {
			c, err := strconv.Atoi(f)
			if err != nil {
				return nil, fmt.Errorf("procstat: %s: %w", t, err)
			}
			out = append(out, c)
		}
	}
	return out, nil
}

// Group is a process and its direct children (nginx's workers), measured
// together. The zero value measures nothing and reports zeros.
type Group struct {
	// Root is the main process; 0 means none.
	Root int
	// WithChildren adds Root's direct children to every measurement.
	WithChildren bool
}

func (g Group) pids() []int {
	if g.Root == 0 {
		return nil
	}
	p := []int{g.Root}
	if g.WithChildren {
		if c, err := Children(g.Root); err == nil {
			p = append(p, c...)
		}
	}
	return p
}

// CPU sums the CPU time of the group. Processes that vanished are skipped.
func (g Group) CPU() time.Duration {
	var sum time.Duration
	for _, p := range g.pids() {
		if c, err := CPU(p); err == nil {
			sum += c
		}
	}
	return sum
}

// RSS sums VmRSS over the group, in bytes (shared pages count twice).
func (g Group) RSS() int64 {
	var sum int64
	for _, p := range g.pids() {
		if r, err := RSS(p); err == nil {
			sum += r
		}
	}
	return sum
}

// Machine describes the host for report headers.
type Machine struct {
	NumCPU    int
	CPUModel  string
	Kernel    string
	GoVersion string
	// LoadAvg is the 1, 5 and 15 minute load average when read, a hint of
	// how busy the machine already was.
	LoadAvg string
}

// ReadMachine gathers the Machine description; fields it cannot read are "?".
func ReadMachine() Machine {
	m := Machine{NumCPU: runtime.NumCPU(), CPUModel: "?", Kernel: "?", GoVersion: runtime.Version(), LoadAvg: "?"}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPUModel = ParseCPUModel(b)
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// ParseCPUModel returns the first "model name" of /proc/cpuinfo, or "?".
func ParseCPUModel(b []byte) string {
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}
