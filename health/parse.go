package health

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Report is a parsed Keycloak (SmallRye Health) response body such as
// {"status":"UP","checks":[{"name":"...","status":"UP"}]}.
type Report struct {
	// Status is the overall status, "UP" or "DOWN".
	Status string `json:"status"`
	// Checks are the individual checks; Keycloak may send none.
	Checks []CheckResult `json:"checks"`
}

// CheckResult is one entry of Report.Checks.
type CheckResult struct {
	// Name is the check's name, e.g. "Keycloak database connections async
	// health check".
	Name string `json:"name"`
	// Status is "UP" or "DOWN".
	Status string `json:"status"`
	// Data holds extra fields; a failing check carries "Failing since".
	Data map[string]any `json:"data,omitempty"`
}

// Statuses SmallRye Health uses.
const (
	statusUp   = "UP"
	statusDown = "DOWN"
)

// ParseHealth parses a health body. It fails when the body is not a single
// JSON object, when "status" is missing or is neither "UP" nor "DOWN", or
// when a check has no name or an unknown status. It does not judge whether
// the report is healthy: see Report.Up.
func ParseHealth(body []byte) (Report, error) {
	var r Report
	if err := json.Unmarshal(body, &r); err != nil {
		return Report{}, fmt.Errorf("health: parse body: %w", err)
	}
	if r.Status != statusUp && r.Status != statusDown {
		return Report{}, fmt.Errorf("health: parse body: status %q is neither UP nor DOWN", clip(r.Status))
	}
	for i, c := range r.Checks {
		if c.Name == "" {
			return Report{}, fmt.Errorf("health: parse body: check %d has no name", i)
		}
		if c.Status != statusUp && c.Status != statusDown {
			return Report{}, fmt.Errorf("health: parse body: check %q has status %q", clip(c.Name), clip(c.Status))
		}
	}
	return r, nil
}

// Up reports whether the overall status and every check are UP.
func (r Report) Up() bool {
	if r.Status != statusUp {
		return false
	}
	for _, c := range r.Checks {
		if c.Status != statusUp {
			return false
		}
	}
	return true
}

// Failing returns the first check that is not UP and its "Failing since"
// value (empty when Keycloak gave none). ok is false when every check is UP.
func (r Report) Failing() (name, since string, ok bool) {
	for _, c := range r.Checks {
		if c.Status == statusUp {
			continue
		}
		if v, found := c.Data["Failing since"]; found {
			since = clip(fmt.Sprint(v))
		}
		return clip(c.Name), since, true
	}
	return "", "", false
}

// Reason describes a report that is not Up, for Detail.Reason.
func (r Report) Reason() string {
	name, since, ok := r.Failing()
	switch {
	case !ok && r.Status == statusUp:
		return "status UP"
	case !ok:
		return "status " + r.Status + " with no failing check"
	case since != "":
		return fmt.Sprintf("check %q DOWN since %s", name, since)
	}
	return fmt.Sprintf("check %q DOWN", name)
}

// maxField caps how much of a peer-supplied string reaches logs and
// reasons.
const maxField = 120

// clip shortens s to maxField bytes on a rune boundary and makes it safe
// for a one-line log: control characters become spaces.
func clip(s string) string {
	if len(s) > maxField {
		cut := maxField
		for cut > 0 && !isRuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
