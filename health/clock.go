package health

import "time"

// Clock is the time source for scheduling check rounds. Tests inject a fake to drive time without sleeping. I/O
// timeouts (Options.Timeout) always use real time.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// After returns a channel that receives once d has elapsed.
	After(d time.Duration) <-chan time.Time
}

// realClock is the wall clock.
type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
