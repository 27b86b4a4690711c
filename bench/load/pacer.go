package load

import (
	"sync/atomic"
	"time"
)

// Pacer hands out the intended send times of an open-loop run: request i is
// due at start + i/rate, for every i whose time falls before end. Many
// workers may call Next concurrently; each intended time is handed out once.
// A Pacer must be made with NewPacer.
type Pacer struct {
	start    time.Time
	interval float64 // nanoseconds between sends
	limit    int64   // number of sends before end
	n        atomic.Int64
}

// NewPacer schedules rate requests per second from start for d. A rate
// of 0 or less schedules nothing.
func NewPacer(start time.Time, rate float64, d time.Duration) *Pacer {
	p := &Pacer{start: start}
	if rate > 0 && d > 0 {
		p.interval = 1e9 / rate
		// Count of i >= 0 with i*interval < d.
		lim := int64(float64(d) / p.interval)
		if float64(lim)*p.interval < float64(d) {
			lim++
		}
		p.limit = lim
	}
	return p
}

// Next returns the next intended send time, or false when the schedule is
// exhausted.
func (p *Pacer) Next() (time.Time, bool) {
	i := p.n.Add(1) - 1
	if i >= p.limit {
		return time.Time{}, false
	}
	return p.start.Add(time.Duration(float64(i) * p.interval)), true
}

// Planned is the total number of sends the schedule holds.
func (p *Pacer) Planned() int64 { return p.limit }
