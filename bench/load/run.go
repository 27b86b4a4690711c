package load

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kclb/kclb/bench/hist"
)

// Worker performs requests one at a time. Do returns nil on success or an
// error that Classify understands. A Worker is used by one goroutine.
type Worker interface {
	Do(ctx context.Context) error
	Close() error
}

// Config describes one load run.
type Config struct {
	// Workers is the number of concurrent workers (connections or streams).
	// Default 1.
	Workers int
	// Duration is how long requests are started. Default 1s.
	Duration time.Duration
	// Rate, if > 0, makes the run open-loop: Rate requests per second in
	// total, latency measured from each request's intended send time. If a
	// worker falls behind, the requests it owes are sent late and their
	// delay counts. Requests still unsent Grace after Duration are counted
	// as ErrTimeout without being sent. 0 means closed loop.
	Rate float64
	// Grace bounds how long an open-loop run may overrun; default 5s.
	Grace time.Duration
	// NewWorker builds worker i (0 <= i < Workers). Required.
	NewWorker func(i int) Worker
}

// Result is the outcome of a run.
type Result struct {
	// Requests is the number of successful requests.
	Requests uint64
	// Errors counts failed requests by kind.
	Errors [NumErrKinds]uint64
	// Latency holds the latency of successful requests, in nanoseconds.
	Latency hist.Histogram
	// Elapsed is the wall time from the first send to the last response.
	Elapsed time.Duration
	// Planned is the number of sends an open-loop schedule held; 0 for
	// closed loop.
	Planned int64
	// Sample holds the first error message seen of each kind ("" if none).
	Sample [NumErrKinds]string
}

// TotalErrors sums Errors.
func (r *Result) TotalErrors() uint64 {
	var n uint64
	for _, e := range r.Errors {
		n += e
	}
	return n
}

// RPS is successful requests per second of Elapsed.
func (r *Result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Merge adds o into r; Elapsed becomes the longer of the two.
func (r *Result) Merge(o *Result) {
	r.Requests += o.Requests
	for i := range r.Errors {
		r.Errors[i] += o.Errors[i]
	}
	r.Latency.Merge(&o.Latency)
	r.Elapsed = max(r.Elapsed, o.Elapsed)
	r.Planned += o.Planned
	for i, m := range o.Sample {
		if r.Sample[i] == "" {
			r.Sample[i] = m
		}
	}
}

// Progress is a live view of a running load, safe for concurrent reads.
// The zero value is ready to use.
type Progress struct {
	done atomic.Uint64
	errs atomic.Uint64
}

// Done is the number of successful requests so far.
func (p *Progress) Done() uint64 { return p.done.Load() }

// Errs is the number of failed requests so far.
func (p *Progress) Errs() uint64 { return p.errs.Load() }

// Run drives the workers for cfg.Duration and returns the merged result.
// prog, if non-nil, is updated as requests complete. Cancelling ctx stops
// the run early.
func Run(ctx context.Context, cfg Config, prog *Progress) *Result {
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.Duration <= 0 {
		cfg.Duration = time.Second
	}
	if prog == nil {
		prog = new(Progress)
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 5 * time.Second
	}
	workers := make([]Worker, cfg.Workers)
	for i := range workers {
		workers[i] = cfg.NewWorker(i)
	}
	results := make([]Result, cfg.Workers)
	start := time.Now()
	end := start.Add(cfg.Duration)
	var pacer *Pacer
	if cfg.Rate > 0 {
		pacer = NewPacer(start, cfg.Rate, cfg.Duration)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			defer workers[i].Close()
			res := &results[i]
			timer := time.NewTimer(time.Hour)
			defer timer.Stop()
			for ctx.Err() == nil {
				var t0 time.Time
				if pacer != nil {
					var ok bool
					if t0, ok = pacer.Next(); !ok {
						return
					}
					if time.Now().After(end.Add(cfg.Grace)) {
						if res.Errors[ErrTimeout] == 0 {
							res.Sample[ErrTimeout] = "open loop: request not sent before the end of the grace period"
						}
						res.Errors[ErrTimeout]++
						prog.errs.Add(1)
						continue
					}
					if d := time.Until(t0); d > 0 {
						timer.Reset(d)
						select {
						case <-ctx.Done():
							return
						case <-timer.C:
						}
					}
				} else {
					t0 = time.Now()
					if !t0.Before(end) {
						return
					}
				}
				err := workers[i].Do(ctx)
				if err != nil {
					if ctx.Err() != nil {
						return // cancelled mid-request: not the server's fault
					}
					k := Classify(err)
					if res.Errors[k] == 0 {
						res.Sample[k] = err.Error()
					}
					res.Errors[k]++
					prog.errs.Add(1)
					continue
				}
				res.Latency.RecordDuration(time.Since(t0))
				res.Requests++
				prog.done.Add(1)
			}
		})
	}
	wg.Wait()
	total := &Result{Elapsed: time.Since(start)}
	if pacer != nil {
		total.Planned = pacer.Planned()
	}
	for i := range results {
		total.Merge(&results[i])
	}
	total.Elapsed = time.Since(start)
	return total
}
