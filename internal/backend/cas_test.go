package backend

import "testing"

func TestCompareAndSetHealth(t *testing.T) {
	var events []string
	p, err := NewPool([]Spec{{Name: "a", Addr: "127.0.0.1:1"}}, PoolOptions{
		OnHealth: func(s *Server, from, to Health, reason string, panicMode bool) {
			if s != nil {
				events = append(events, from.String()+">"+to.String()+":"+reason)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := p.Lookup("a")
	tests := []struct {
		name      string
		old, to   Health
		reason    string
		applied   bool
		wantState Health
		events    int
	}{
		{name: "stale old is refused", old: HealthDown, to: HealthUp, reason: "x", applied: false, wantState: HealthUp, events: 0},
		{name: "matching old applies", old: HealthUp, to: HealthDead, reason: "refused", applied: true, wantState: HealthDead, events: 1},
		{name: "same state updates detail only", old: HealthDead, to: HealthDead, reason: "still refused", applied: true, wantState: HealthDead, events: 1},
		{name: "back up", old: HealthDead, to: HealthUp, reason: "ready", applied: true, wantState: HealthUp, events: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := p.CompareAndSetHealth(s, tc.old, tc.to, Detail{Reason: tc.reason})
			if got != tc.applied {
				t.Fatalf("applied = %v, want %v", got, tc.applied)
			}
			if s.Health() != tc.wantState {
				t.Fatalf("health = %v, want %v", s.Health(), tc.wantState)
			}
			if len(events) != tc.events {
				t.Fatalf("events = %q, want %d", events, tc.events)
			}
			if tc.applied && s.Detail().Reason != tc.reason {
				t.Fatalf("reason = %q, want %q", s.Detail().Reason, tc.reason)
			}
		})
	}
}
