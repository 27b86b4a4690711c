package health

import (
	"testing"

	"github.com/kclb/kclb/internal/backend"
)

func TestMachine(t *testing.T) {
	const (
		up       = backend.HealthUp
		down     = backend.HealthDown
		dead     = backend.HealthDead
		starting = backend.HealthStarting
	)
	ok := verdict{ok: true}
	bad := func(h backend.Health) verdict { return verdict{class: h} }
	// Each step: the pool's health before the round (set to simulate
	// changes behind the machine's back), the verdict, the wanted result.
	type step struct {
		cur  backend.Health
		v    verdict
		want backend.Health
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "fall after three failures", steps: []step{
			{up, bad(down), up}, {up, bad(down), up}, {up, bad(down), down},
		}},
		{name: "rise after two passes", steps: []step{
			{up, bad(dead), up}, {up, bad(dead), up}, {up, bad(dead), dead},
			{dead, ok, dead}, {dead, ok, up},
		}},
		{name: "a pass resets the failure count", steps: []step{
			{up, bad(down), up}, {up, bad(down), up}, {up, ok, up},
			{up, bad(down), up}, {up, bad(down), up}, {up, bad(down), down},
		}},
		{name: "own down follows the class", steps: []step{
			{up, bad(down), up}, {up, bad(down), up}, {up, bad(down), down},
			{down, bad(dead), dead}, {dead, bad(starting), starting}, {starting, bad(down), down},
		}},
		{name: "passive ejection (down): earlier passes do not count", steps: []step{
			{up, ok, up}, {up, ok, up}, {up, ok, up},
			{down, ok, down}, {down, ok, up},
		}},
		{name: "passive ejection (down) is kept while unready, dead when not live", steps: []step{
			{down, bad(down), down}, {down, bad(starting), down}, {down, ok, down},
			{down, bad(dead), dead}, {dead, bad(down), down},
		}},
		{name: "external dead: earlier passes do not count", steps: []step{
			{up, ok, up}, {up, ok, up}, {up, ok, up},
			{dead, ok, dead}, {dead, ok, up},
		}},
		{name: "external dead is not softened to down", steps: []step{
			{dead, bad(down), dead}, {dead, bad(starting), dead}, {dead, ok, dead}, {dead, bad(down), dead},
			{dead, ok, dead}, {dead, ok, up},
		}},
		{name: "external starting may only get worse or rise", steps: []step{
			{starting, bad(down), starting}, {starting, bad(dead), dead},
			{dead, bad(down), down}, // the checker owns Dead now
		}},
		{name: "external starting rises", steps: []step{
			{starting, ok, starting}, {starting, ok, up},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(2, 3)
			for i, st := range tc.steps {
				got := m.step(st.cur, st.v)
				if got != st.want {
					t.Fatalf("step %d (cur %v, ok %v, class %v): got %v, want %v", i, st.cur, st.v.ok, st.v.class, got, st.want)
				}
				m.recorded(got)
			}
		})
	}
}
