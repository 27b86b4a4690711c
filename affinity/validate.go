package affinity

import (
	"strings"
	"time"

	"github.com/kclb/kclb/internal/optcheck"
)

// Defaults New applies to zero Options fields.
const (
	DefaultCookieName = "KC_ROUTE"
	DefaultMaxAge     = 6 * time.Hour
)

// keycloakCookies are cookie names Keycloak sets itself (besides the
// AUTH_SESSION_ID family); the affinity cookie must not clobber them.
var keycloakCookies = []string{
	"KC_RESTART", "KC_AUTH_SESSION_HASH", "KC_STATE_CHECKER",
	"KEYCLOAK_IDENTITY", "KEYCLOAK_IDENTITY_LEGACY",
	"KEYCLOAK_SESSION", "KEYCLOAK_SESSION_LEGACY",
	"KEYCLOAK_REMEMBER_ME", "KEYCLOAK_LOCALE",
}

// FieldError is one problem with one Options field (the convention of
// internal/optcheck); Validate returns them joined.
type FieldError = optcheck.FieldError

// Validate checks the cookie rules New applies and returns nil or the
// *FieldErrors joined; New also needs a Secret of at least 16 bytes.
// Zero fields stand for their defaults.
func (o Options) Validate() error {
	var p optcheck.Problems
	add := p.Add
	switch c := o.CookieName; {
	case c == "":
	case !isToken(c):
		add("CookieName", "%q is not a valid cookie name", c)
	case strings.HasPrefix(strings.ToUpper(c), authSessionCookie):
		add("CookieName", "%q would clobber Keycloak's %s cookie and cause redirect loops; use e.g. %q", c, authSessionCookie, DefaultCookieName)
	default:
		for _, k := range keycloakCookies {
			if strings.EqualFold(c, k) {
				add("CookieName", "%q is one of Keycloak's own cookies; use e.g. %q", c, DefaultCookieName)
			}
		}
	}
	// Max-Age counts whole seconds.
	switch d := o.MaxAge; {
	case d < 0:
		add("MaxAge", "must not be negative, got %s", d)
	case d > 0 && d < time.Second:
		add("MaxAge", "%s is below 1s (the cookie's Max-Age counts seconds)", d)
	case d%time.Second != 0:
		add("MaxAge", "%s is not a whole number of seconds (the cookie's Max-Age counts seconds)", d)
	}
	return p.Err()
}
