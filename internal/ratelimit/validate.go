package ratelimit

import (
	"strconv"
	"strings"

	"github.com/kclb/kclb/internal/optcheck"
)

// Rule defaults and bounds.
const (
	// DefaultBurst is Rule.Burst's default: no burst beyond the rate.
	DefaultBurst = 1
	// DefaultIPv6Prefix is Rule.IPv6Prefix's default: a client usually
	// holds a whole /64.
	DefaultIPv6Prefix = 64
	// MaxBurst bounds Rule.Burst.
	MaxBurst = 1000000
)

// FieldError is one problem with one Rule field (the convention of
// internal/optcheck); Validate returns them joined.
type FieldError = optcheck.FieldError

// Validate checks r as New does (but the length of its window, which
// needs the rate and burst together) and returns nil or the
// *FieldErrors joined. Zero Burst and IPv6Prefix stand for their
// defaults.
func (r Rule) Validate() error {
	var p optcheck.Problems
	if r.Name == "" {
		p.Add("Name", "is required")
	}
	if len(r.Paths) == 0 {
		p.Add("Paths", "at least one path is required")
	}
	for j, s := range r.Paths {
		if msg := PatternProblem(s); msg != "" {
			p.Add("Paths["+strconv.Itoa(j)+"]", "%q %s", s, msg)
		}
	}
	for j, m := range r.Methods {
		if m == "" || strings.ContainsFunc(m, func(c rune) bool { return c < 'A' || c > 'Z' }) {
			p.Add("Methods["+strconv.Itoa(j)+"]", "%q is not an upper-case method name such as \"POST\"", m)
		}
	}
	if r.Limit <= 0 || r.Per <= 0 {
		p.Add("Limit", "%d per %s: both must be positive", r.Limit, r.Per)
	}
	if r.Burst < 0 || r.Burst > MaxBurst {
		p.Add("Burst", "%d is out of range 1..%d", r.Burst, MaxBurst)
	}
	if r.IPv6Prefix < 0 || r.IPv6Prefix > 128 {
		p.Add("IPv6Prefix", "%d is out of range 1..128", r.IPv6Prefix)
	}
	return p.Err()
}

// PatternProblem says what is wrong with a path pattern, or returns "":
// it starts with "/", has no empty or dot segment (rules match canonical
// paths) and uses "*" only as a whole segment.
func PatternProblem(s string) string {
	if !strings.HasPrefix(s, "/") {
		return "must start with \"/\""
	}
	body := strings.TrimSuffix(s[1:], "/")
	if body == "" {
		return ""
	}
	for seg := range strings.SplitSeq(body, "/") {
		switch {
		case seg == "":
			return "has an empty segment"
		case seg == "." || seg == "..":
			return "has a dot segment (rules match canonical paths)"
		case seg != "*" && strings.ContainsAny(seg, "*%\\;"):
			return "may use \"*\" only as a whole segment, and no '%', '\\' or ';'"
		case strings.ContainsFunc(seg, func(c rune) bool { return c < 0x20 || c == 0x7f }):
			return "contains a control character"
		}
	}
	return ""
}
