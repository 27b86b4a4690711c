package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kclb/kclb/bench/driver"
	"github.com/kclb/kclb/bench/load"
	"github.com/kclb/kclb/bench/procstat"
	"github.com/kclb/kclb/bench/report"
	"github.com/kclb/kclb/bench/target"
)

// backendSet is what the suite needs from the running backends.
type backendSet interface {
	// Proc measures the backend processes.
	Proc() []procstat.Group
	// Stats returns server-side counters, ok false when unavailable.
	Stats(ctx context.Context) (target.ServerStats, bool)
	// Control applies a kcsim control form to node i.
	Control(ctx context.Context, i int, form string) error
}

// suite runs scenarios against a fixed set of targets and backends.
type suite struct {
	opts        options
	dir         string
	backends    backendSet
	backendList []target.Backend
	targets     []target.Target
	certs       map[target.KeyType]*target.Cert
	progress    io.Writer // progress lines; nil = none
	// tty makes the progress line rewrite itself in place; otherwise a
	// plain line is printed every second.
	tty bool
	// paceSources names the scenarios a later fixed-rate scenario takes
	// its rate from. When an external tool measures one of them, its
	// HAProxy warm-up runs the built-in generator for at least
	// calibrationTime and builtinPeak records that req/s: the fixed-rate
	// row is paced by the built-in generator, which costs more client CPU
	// per request than wrk, so half of wrk's peak would overload the
	// cores the client shares with the proxy.
	paceSources map[string]bool
	builtinPeak map[string]float64
}

// calibrationTime is the shortest HAProxy warm-up that measures a
// built-in-generator peak for a fixed-rate scenario.
const calibrationTime = 3 * time.Second

func (s *suite) env(sc scenario) target.Env {
	return target.Env{
		Dir: s.dir, Backends: s.backendList, Cert: s.certs[sc.key],
		MaxConn: s.opts.idleConns + 1000, ReadyPath: helloPath,
	}
}

func (s *suite) logf(format string, args ...any) {
	if s.progress != nil {
		fmt.Fprintf(s.progress, format+"\n", args...)
	}
}

func addrOf(t target.Target, sc scenario) string {
	if sc.tls {
		return t.HTTPSAddr()
	}
	return t.HTTPAddr()
}

// runScenario starts the targets that apply to sc, warms each up, runs
// the runs interleaved (A B C A B C) and stops the targets. A target that
// fails to start is reported in the description and skipped.
func (s *suite) runScenario(ctx context.Context, sc scenario) report.Scenario {
	rs := report.Scenario{Name: sc.name, Description: sc.desc, Kind: sc.kind(), Logins: sc.mode == modeMix, OpenLoop: sc.rate > 0}
	switch tool, ok, why := driverFor(sc, s.opts.tools); {
	case ok:
		rs.Description += fmt.Sprintf(" Load: %s (warm-ups: the built-in generator).", tool)
	case why != "":
		rs.Description += " Load: built-in generator; " + why + "."
	}
	env := s.env(sc)
	var active []target.Target
	for _, t := range s.targets {
		if _, isDirect := t.(*target.Direct); isDirect && (sc.tls || sc.fault != "" || sc.noDirect) {
			continue // the stand-ins serve plain HTTP only; faults hit node 2, direct uses node 1
		}
		active = append(active, t)
	}
	if sc.mode == modeIdle {
		failed := map[string]bool{}
		for run := 1; run <= s.opts.runs && ctx.Err() == nil; run++ {
			for _, t := range active {
				if failed[t.Name()] {
					continue
				}
				if err := t.Start(ctx, env); err != nil {
					failed[t.Name()] = true
					rs.Description += fmt.Sprintf(" **%s did not start:** %v.", t.Name(), oneLine(err))
					continue
				}
				rs.Runs = append(rs.Runs, s.measureIdle(ctx, sc, t, run))
				t.Stop()
			}
		}
		return rs
	}
	var started []target.Target
	for _, t := range active {
		if err := t.Start(ctx, env); err != nil {
			s.logf("bench: %s: %v", t.Name(), err)
			rs.Description += fmt.Sprintf(" **%s did not start:** %v.", t.Name(), oneLine(err))
			continue
		}
		started = append(started, t)
	}
	defer func() {
		for _, t := range started {
			t.Stop()
		}
	}()
	_, external, _ := driverFor(sc, s.opts.tools)
	calibrate := external && s.paceSources[sc.name]
	for _, t := range started {
		w := s.opts.warmup
		if calibrate && t.Name() == "haproxy" {
			w = max(w, calibrationTime)
		}
		if w <= 0 {
			continue
		}
		r := s.measure(ctx, sc, t, 0, w)
		if calibrate && t.Name() == "haproxy" && r.Result != nil && r.Result.TotalErrors() == 0 {
			if s.builtinPeak == nil {
				s.builtinPeak = map[string]float64{}
			}
			s.builtinPeak[sc.name] = r.Result.RPS()
		}
	}
	d := max(s.opts.duration, sc.minDuration)
	for run := 1; run <= s.opts.runs && ctx.Err() == nil; run++ {
		for _, t := range started {
			r := s.measure(ctx, sc, t, run, d)
			if r.FaultErr != "" && !strings.Contains(rs.Description, r.FaultErr) {
				rs.Description += " **Fault injection failed:** " + oneLine(errors.New(r.FaultErr)) + "."
			}
			rs.Runs = append(rs.Runs, r)
		}
	}
	return rs
}

// injectFault posts sc.fault to node 2 at d/3 and sc.clear at 2d/3 (or
// when stop closes). It returns the first error.
func (s *suite) injectFault(ctx context.Context, sc scenario, d time.Duration, stop <-chan struct{}) error {
	select {
	case <-time.After(d / 3):
	case <-stop:
		return nil
	case <-ctx.Done():
		return nil
	}
	err := s.backends.Control(ctx, 1, sc.fault)
	select {
	case <-time.After(d / 3):
	case <-stop:
	case <-ctx.Done():
	}
	// Clear even if ctx is done, so the backends are usable afterwards.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	return errors.Join(err, s.backends.Control(cctx, 1, sc.clear))
}

func oneLine(err error) string {
	msg := err.Error()
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	out := []rune{}
	for _, r := range msg {
		if r == '\n' || r == '|' {
			r = ' '
		}
		out = append(out, r)
	}
	return string(out)
}

func (s *suite) backendCPU() time.Duration {
	var sum time.Duration
	for _, g := range s.backends.Proc() {
		sum += g.CPU()
	}
	return sum
}

// sampler records a group's peak RSS and prints a progress line every
// second until stop is called.
type sampler struct {
	peak atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func (s *suite) startSampler(g procstat.Group, label string, begin time.Time, total time.Duration, count func() (ok, errs uint64)) *sampler {
	sm := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	sm.peak.Store(g.RSS())
	go func() {
		defer close(sm.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		n := 0
		var lastOK uint64
		for {
			select {
			case <-sm.stop:
				if s.progress != nil && s.tty {
					fmt.Fprint(s.progress, "\r\033[K")
				}
				return
			case <-tick.C:
			}
			if r := g.RSS(); r > sm.peak.Load() {
				sm.peak.Store(r)
			}
			if n++; n%10 == 0 && s.progress != nil && count != nil {
				ok, errs := count()
				start, end := "\r\033[K", ""
				if !s.tty {
					start, end = "", "\n"
				}
				fmt.Fprintf(s.progress, "%s  %s  %4.1fs/%v  %8.0f req/s  ok %d  err %d  rss %.1f MiB%s",
					start, label, time.Since(begin).Seconds(), total, float64(ok-lastOK), ok, errs, float64(sm.peak.Load())/(1<<20), end)
				lastOK = ok
			}
		}
	}()
	return sm
}

func (sm *sampler) finish() int64 {
	close(sm.stop)
	<-sm.done
	return sm.peak.Load()
}

// measure runs sc once against t for d. Run 0 is a warm-up.
func (s *suite) measure(ctx context.Context, sc scenario, t target.Target, run int, d time.Duration) report.Run {
	tool, external, _ := driverFor(sc, s.opts.tools)
	external = external && run > 0 // warm-ups use the built-in generator: wrk counts whole seconds
	cfg, stats, cleanup := loadFor(sc, addrOf(t, sc), s.certs[sc.key], sc.workers)
	cfg.Duration = d
	if external {
		stats = nil
	}
	g := t.Proc()
	label := fmt.Sprintf("%s %s run %d/%d", sc.name, t.Name(), run, s.opts.runs)
	if run == 0 {
		label = fmt.Sprintf("%s %s warm-up", sc.name, t.Name())
	}
	var prog load.Progress
	baseRSS := g.RSS()
	st0, ok0 := s.backends.Stats(ctx)
	self := procstat.Group{Root: os.Getpid()}
	c0, b0, g0 := g.CPU(), s.backendCPU(), self.CPU()
	count := func() (uint64, uint64) { return prog.Done(), prog.Errs() }
	if external {
		count = nil // the tools report at the end only
	}
	sm := s.startSampler(g, label, time.Now(), d, count)
	var faultErr chan error
	stopFault := make(chan struct{})
	if sc.fault != "" && run > 0 {
		faultErr = make(chan error, 1)
		go func() { faultErr <- s.injectFault(ctx, sc, d, stopFault) }()
	}
	var res *load.Result
	var toolCPU time.Duration
	command := ""
	if external {
		res, toolCPU, command = s.runTool(ctx, tool, sc, addrOf(t, sc), d)
	} else {
		res = load.Run(ctx, cfg, &prog)
	}
	close(stopFault)
	var ferr error
	if faultErr != nil {
		ferr = <-faultErr
	}
	peak := sm.finish()
	c1, b1, g1 := g.CPU(), s.backendCPU(), self.CPU()
	cleanup()
	st1, ok1 := s.backends.Stats(ctx)
	r := report.Run{Target: t.Name(), Index: run, Result: res, ProxyCPU: c1 - c0, BackendCPU: b1 - b0, PeakRSS: peak, BaseRSS: baseRSS}
	r.ClientCPU = g1 - g0
	r.Driver = builtinName
	if external {
		r.ClientCPU, r.Driver, r.Command = toolCPU, tool.String(), command
	}
	if ferr != nil {
		r.FaultErr = ferr.Error()
	}
	if ok0 && ok1 {
		r.ServerCounted = true
		r.ServerRequests = st1.Requests - st0.Requests
		r.Misroutes = st1.Misroutes - st0.Misroutes
	}
	if stats != nil {
		r.Resumed, r.Handshakes = stats()
	}
	if run > 0 {
		if command != "" && run == 1 {
			s.logf("  %s", command)
		}
		s.logf("  %-34s %9.0f req/s  p50 %6.2f ms  p99 %7.2f ms  cpu %5.2f s  err %d",
			label, res.RPS(), float64(res.Latency.Quantile(0.5))/1e6, float64(res.Latency.Quantile(0.99))/1e6,
			r.ProxyCPU.Seconds(), res.TotalErrors())
	}
	return r
}

// runTool runs sc once against addr with an external load generator. A
// tool that fails to run or whose output cannot be read yields a result
// with one ErrOther carrying the reason, so the report shows it.
func (s *suite) runTool(ctx context.Context, tool driver.Tool, sc scenario, addr string, d time.Duration) (res *load.Result, cpu time.Duration, command string) {
	scheme := "http://"
	if sc.tls {
		scheme = "https://"
	}
	out, err := driver.Run(ctx, tool, driver.Job{
		URL: scheme + addr + sc.path, Host: "localhost", Conns: sc.workers, Streams: sc.streams,
		Duration: d, Close: sc.newConn, Dir: s.dir,
	})
	if err != nil {
		res = &load.Result{Elapsed: d}
		res.Errors[load.ErrOther] = 1
		res.Sample[load.ErrOther] = err.Error()
		return res, 0, ""
	}
	return out.Result, out.CPU, out.Command
}

// measureIdle opens sc.workers keep-alive connections to t, sends one
// request on each, holds them, samples the target's RSS, then closes them.
func (s *suite) measureIdle(ctx context.Context, sc scenario, t target.Target, run int) report.Run {
	g := t.Proc()
	addr := addrOf(t, sc)
	var tc *tls.Config
	if sc.tls {
		tc = clientTLS(s.certs[sc.key], false)
	}
	label := fmt.Sprintf("%s %s run %d/%d", sc.name, t.Name(), run, s.opts.runs)
	res := &load.Result{}
	baseRSS := g.RSS()
	var held atomic.Uint64
	var failed atomic.Uint64
	begin := time.Now()
	sm := s.startSampler(g, label, begin, 0, func() (uint64, uint64) { return held.Load(), failed.Load() })

	req := load.BuildRequest("localhost", sc.path, false)
	conns := make([]net.Conn, sc.workers)
	var errMu sync.Mutex // guards res.Errors
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			br := bufio.NewReaderSize(nil, 16<<10)
			d := net.Dialer{Timeout: 10 * time.Second}
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(conns) {
					return
				}
				err := func() error {
					c, err := d.DialContext(ctx, "tcp", addr)
					if err != nil {
						return &load.Error{Kind: load.ErrDial, Err: err}
					}
					c.SetDeadline(time.Now().Add(10 * time.Second))
					if tc != nil {
						tlc := tls.Client(c, tc)
						if err := tlc.HandshakeContext(ctx); err != nil {
							c.Close()
							return &load.Error{Kind: load.ErrTLS, Err: err}
						}
						c = tlc
					}
					if _, err := c.Write(req); err != nil {
						c.Close()
						return &load.Error{Kind: load.ErrWrite, Err: err}
					}
					br.Reset(c)
					r, err := load.ParseResponse(br)
					if err == nil && (r.Close || r.Status >= 400) {
						err = &load.Error{Kind: load.ErrStatus, Err: fmt.Errorf("status %d close %v", r.Status, r.Close)}
					}
					if err == nil && br.Buffered() > 0 {
						err = &load.Error{Kind: load.ErrParse, Err: errors.New("extra bytes after response")}
					}
					if err != nil {
						c.Close()
						return err
					}
					c.SetDeadline(time.Time{})
					conns[i] = c
					return nil
				}()
				if err != nil {
					failed.Add(1)
					errMu.Lock()
					res.Errors[load.Classify(err)]++
					errMu.Unlock()
					continue
				}
				held.Add(1)
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(begin)
	res.Requests = held.Load()
	// Hold the connections idle for a second while the sampler watches RSS.
	select {
	case <-ctx.Done():
	case <-time.After(time.Second):
	}
	peak := sm.finish()
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	r := report.Run{Target: t.Name(), Index: run, Result: res, PeakRSS: peak, BaseRSS: baseRSS}
	s.logf("  %-34s held %d  rss %.1f -> %.1f MiB  %.1f KiB/conn  err %d", label, res.Requests,
		float64(baseRSS)/(1<<20), float64(peak)/(1<<20), float64(peak-baseRSS)/float64(max(res.Requests, 1))/1024, res.TotalErrors())
	return r
}
