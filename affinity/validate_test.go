package affinity

import (
	"testing"
	"time"

	"github.com/kclb/kclb/internal/optcheck"
)

// TestOptionsValidate: the cookie rules, one case per rule, each
// problem a *FieldError; New refuses exactly what Validate refuses.
func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want []string
	}{
		{"zero value", Options{}, nil},
		{"set", Options{CookieName: "LB", MaxAge: 90 * time.Second}, nil},
		{"not a token", Options{CookieName: "KC ROUTE"}, []string{`CookieName: "KC ROUTE" is not a valid cookie name`}},
		{"auth session, any case", Options{CookieName: "auth_session_id_kclb"}, []string{
			`CookieName: "auth_session_id_kclb" would clobber Keycloak's AUTH_SESSION_ID cookie and cause redirect loops; use e.g. "KC_ROUTE"`}},
		{"keycloak's own", Options{CookieName: "KC_RESTART"}, []string{`CookieName: "KC_RESTART" is one of Keycloak's own cookies; use e.g. "KC_ROUTE"`}},
		{"negative", Options{MaxAge: -time.Second}, []string{"MaxAge: must not be negative, got -1s"}},
		{"sub-second", Options{MaxAge: 500 * time.Millisecond}, []string{"MaxAge: 500ms is below 1s (the cookie's Max-Age counts seconds)"}},
		{"fractional", Options{MaxAge: 1500 * time.Millisecond}, []string{
			"MaxAge: 1.5s is not a whole number of seconds (the cookie's Max-Age counts seconds)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			problems := optcheck.Split(tt.opts.Validate())
			if len(problems) != len(tt.want) {
				t.Fatalf("Validate found %q, want %q", problems, tt.want)
			}
			for i, p := range problems {
				if fe, ok := p.(*FieldError); !ok || fe.Error() != tt.want[i] {
					t.Errorf("problem %d: %T %q, want *FieldError %q", i, p, p, tt.want[i])
				}
			}
			withSecret := tt.opts
			withSecret.Secret = testSecret
			_, err := New(withSecret, &firstEligible{})
			if refused := err != nil; refused != (len(problems) > 0) {
				t.Errorf("New refused: %v (%v); Validate: %d problems", refused, err, len(problems))
			}
		})
	}
}
