package backend

import "time"

// CompareAndSetHealth records the verdict h with its explanation d for s,
// like SetHealth, but only if the server's health is still old. It reports
// whether it applied. The health checker uses it so that a verdict computed
// from a stale reading never overwrites a concurrent change (for example a
// passive ejection between the checker's read and its write).
func (p *Pool) CompareAndSetHealth(s *Server, old, h Health, d Detail) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if Health(s.health.Load()) != old {
		return false
	}
	s.mu.Lock()
	if old != h {
		d.Since = time.Now()
	} else {
		d.Since = s.detail.Since
	}
	s.detail = d
	s.mu.Unlock()
	if old == h {
		return true
	}
	s.health.Store(uint32(h))
	if h != HealthUp {
		s.passiveFails.Store(0)
	}
	if p.opts.OnHealth != nil {
		p.opts.OnHealth(s, old, h, d.Reason, p.panic.Load())
	}
	p.recomputeLocked()
	return true
}
