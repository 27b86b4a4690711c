// Package optcheck is the shape of the runtime packages' option checks:
// an Options.Validate returns every problem at once, as *FieldErrors
// joined with errors.Join, each naming the Go field it is about, so that
// internal/configmap can report it at the configuration key that set the
// field. health, proxy and affinity use FieldError itself; vrrp and
// internal/backend, which import nothing of kclb, declare the same type
// of their own.
package optcheck

import (
	"errors"
	"fmt"
)

// FieldError is one problem with one options field. Field names the Go
// field, with an index or a nested field where it applies ("VIPs[1]",
// "TokenProbe.SecretFile"); Msg says what is wrong without repeating it,
// in words that also read right after a configuration key ("300 is out of
// range 1..255").
type FieldError struct {
	Field string
	Msg   string
}

// Error returns "Field: Msg".
func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Problems collects FieldErrors for a Validate.
type Problems []error

// Add records a problem with field.
func (p *Problems) Add(field, format string, args ...any) {
	*p = append(*p, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

// Err returns the problems joined, or nil when there are none.
func (p Problems) Err() error { return errors.Join(p...) }

// Split lists the errors err joins (errors.Join, at any depth), or err
// alone; nil for nil.
func Split(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Split(e)...)
		}
		return out
	}
	return []error{err}
}
