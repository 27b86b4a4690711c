package backend

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
	p.setHealthLocked(s, h, d)
	return true
}
