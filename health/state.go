package health

import "github.com/kclb/kclb/internal/backend"

// verdict is one round's outcome as the state machine sees it.
type verdict struct {
	ok bool
	// class is where a failing server belongs: Down (live, not ready),
	// Dead (not live) or Starting. Ignored when ok.
	class backend.Health
}

// machine is the rise/fall state machine of one server. It is pure: it
// sees the pool's current health and one verdict per round and says what
// health to record. It never fights a change made behind its back (a
// passive ejection, discovery marking a new server Starting): such a state
// is kept until Rise passes, except that a Dead verdict always applies,
// since Dead is the only state panic mode never routes to.
type machine struct {
	rise, fall int

	passes, fails int
	// last is the health the machine last recorded or adopted.
	last backend.Health
	// external is set when the current non-Up state was set by someone
	// else; the machine then only moves it to Up (after Rise passes) or
	// to Dead.
	external bool
}

func newMachine(rise, fall int) *machine {
	return &machine{rise: max(rise, 1), fall: max(fall, 1), last: backend.HealthUp}
}

// step consumes one verdict given the pool's current health cur and
// returns the health to record (cur itself when nothing changes).
func (m *machine) step(cur backend.Health, v verdict) backend.Health {
	if cur != m.last {
		// Changed behind our back: counting starts over, so a passively
		// ejected server needs Rise fresh passes to return.
		m.passes, m.fails = 0, 0
		m.external = cur != backend.HealthUp
		m.last = cur
	}
	if v.ok {
		m.passes++
		m.fails = 0
		if cur == backend.HealthUp || m.passes >= m.rise {
			return backend.HealthUp
		}
		return cur
	}
	m.fails++
	m.passes = 0
	switch {
	case cur == backend.HealthUp:
		if m.fails >= m.fall {
			return v.class
		}
		return cur
	case m.external && v.class != backend.HealthDead:
		return cur
	}
	return v.class
}

// recorded tells the machine that h is now the pool's health because the
// machine's own verdict was applied.
func (m *machine) recorded(h backend.Health) {
	if h != m.last {
		m.external = false
	}
	m.last = h
}
