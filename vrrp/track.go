package vrrp

// tracker applies rise/fall hysteresis to health reports. The zero value is not useful; use
// newTracker. It starts healthy (keepalived's default without init_fail).
type tracker struct {
	rise, fall int
	healthy    bool
	run        int // consecutive reports that disagree with healthy
}

func newTracker(rise, fall int) tracker {
	return tracker{rise: max(rise, 1), fall: max(fall, 1), healthy: true}
}

// observe counts one report and returns whether the tracked health changed. Reports that
// agree with the current health reset the count, so rise and fall count consecutive reports.
func (t *tracker) observe(ok bool) bool {
	if ok == t.healthy {
		t.run = 0
		return false
	}
	t.run++
	need := t.fall
	if ok {
		need = t.rise
	}
	if t.run < need {
		return false
	}
	t.healthy, t.run = ok, 0
	return true
}
