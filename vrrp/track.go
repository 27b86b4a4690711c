package vrrp

import "fmt"

// Health is what this node can serve, as the caller reports it with Instance.SetHealth.
// Each step worse lowers the effective priority by one TrackWeight, so in a pair the VIP
// moves to the node whose view is better, and two nodes that see the same thing drop by
// the same amount and keep their order (no flapping). The zero value is HealthOK.
type Health uint8

// Health levels, from best to worst.
const (
	// HealthOK: the node serves normally; the configured priority applies.
	HealthOK Health = iota
	// HealthDegraded: the node serves, but worse than it should (kclb: panic mode, every
	// Keycloak node unready but live). Priority - TrackWeight.
	HealthDegraded
	// HealthDown: the node cannot serve a client (kclb: no Keycloak node live, or a listener
	// failed). Priority - 2*TrackWeight.
	HealthDown
)

// String returns "ok", "degraded" or "down".
func (h Health) String() string {
	switch h {
	case HealthOK:
		return "ok"
	case HealthDegraded:
		return "degraded"
	case HealthDown:
		return "down"
	}
	return fmt.Sprintf("Health(%d)", uint8(h))
}

// tracker applies rise/fall hysteresis to health reports. The zero value is not useful; use
// newTracker. It starts at HealthOK (keepalived's default without init_fail).
type tracker struct {
	rise, fall int
	level      Health
	run        int  // consecutive reports that differ from level in direction worse
	worse      bool // the direction run counts
}

func newTracker(rise, fall int) tracker {
	return tracker{rise: max(rise, 1), fall: max(fall, 1)}
}

// observe counts one report and returns whether the tracked level changed. Reports that
// agree with the current level reset the count, so rise and fall count consecutive
// reports: fall consecutive worse reports (whichever worse level) or rise consecutive
// better ones change the level to the latest report.
func (t *tracker) observe(h Health) bool {
	if h == t.level {
		t.run = 0
		return false
	}
	worse := h > t.level
	if worse != t.worse {
		t.run, t.worse = 0, worse
	}
	t.run++
	need := t.rise
	if worse {
		need = t.fall
	}
	if t.run < need {
		return false
	}
	t.level, t.run = h, 0
	return true
}
