package admin

import (
	"testing"
	"time"

	"github.com/kclb/kclb/internal/backend"
)

// TestHistoryDowntime pins the downtime accounting and the check ring of
// the stats page (issue 15, item 8).
func TestHistoryDowntime(t *testing.T) {
	var h history
	t0 := time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	h.health("kc1", backend.HealthUp, backend.HealthDown, t0)
	h.health("kc1", backend.HealthDown, backend.HealthDead, t0.Add(5*time.Second)) // still not up
	h.health("kc1", backend.HealthDead, backend.HealthUp, t0.Add(10*time.Second))
	h.health("kc1", backend.HealthUp, backend.HealthStarting, t0.Add(20*time.Second))
	for i := range HistoryLen + 3 {
		h.check("kc1", t0.Add(time.Duration(i)*time.Second), time.Millisecond, i%2 == 0)
	}
	st := ServerStatus{Name: "kc1"}
	h.fill(&st, t0.Add(23*time.Second))
	if st.DowntimeSeconds != 13 || st.Downs != 2 || st.LastDown == nil || !st.LastDown.Equal(t0.Add(20*time.Second)) {
		t.Fatalf("downtime %v s, downs %d, last down %v; want 13 s, 2, t0+20s", st.DowntimeSeconds, st.Downs, st.LastDown)
	}
	if len(st.History) != HistoryLen || !st.History[0].Time.Equal(t0.Add(3*time.Second)) || st.History[0].OK ||
		!st.History[HistoryLen-1].Time.Equal(t0.Add(22*time.Second)) || !st.History[HistoryLen-1].OK {
		t.Fatalf("history %+v", st.History)
	}
	pool, _ := backend.NewPool([]backend.Spec{{Name: "kc2", Addr: "a:1"}}, backend.PoolOptions{})
	h.prune(pool.Servers())
	st = ServerStatus{Name: "kc1"}
	if h.fill(&st, t0); st.Downs != 0 || st.History != nil {
		t.Fatalf("removed server kept: %+v", st)
	}
}
