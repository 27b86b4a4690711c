// Package pathpolicy decides which request paths a public listener
// exposes, following Keycloak's reverse-proxy guide: /realms/,
// /resources/ and /.well-known/ are public, /admin/ only from admin
// networks, /metrics and /health never.
//
// Decisions are made on a canonical form of the path (percent-decoding
// repeated until stable, backslashes as slashes, ";" parameters dropped,
// empty and dot segments resolved, case folded for matching), and the
// proxy forwards that same canonical path, so kclb and Keycloak can never
// disagree about which resource a request names.
package pathpolicy

import (
	"net/netip"
	"strings"
)

// Verdict is the outcome of a path check.
type Verdict uint8

const (
	// Allow: forward the request.
	Allow Verdict = iota
	// Blocked: not a public path (answer with the configured status).
	Blocked
	// AdminDenied: an /admin/ path from outside the admin networks.
	AdminDenied
	// Invalid: the path cannot be canonicalised (bad escape, NUL, or it
	// climbs above the root).
	Invalid
)

// String returns a short lower-case name for logs and metrics labels.
func (v Verdict) String() string {
	switch v {
	case Allow:
		return "allow"
	case Blocked:
		return "blocked"
	case AdminDenied:
		return "admin_denied"
	case Invalid:
		return "invalid"
	}
	return "unknown"
}

// Options configures a Policy. The zero value exposes Keycloak's public
// paths plus /robots.txt and allows /admin/ from nowhere.
type Options struct {
	// Public lists path prefixes exposed to everyone. Nil means
	// DefaultPublic. A prefix ending in "/" also matches the path without
	// it ("/realms" matches "/realms/").
	Public []string
	// AllowJS also exposes /js/ (Keycloak 24 served its adapter there).
	AllowJS bool
	// DenyRobots hides /robots.txt (exposed by default).
	DenyRobots bool
	// AdminNetworks may reach /admin/. Empty means nobody.
	AdminNetworks []netip.Prefix
}

// DefaultPublic is the reverse-proxy guide's list of public prefixes.
var DefaultPublic = []string{"/realms/", "/resources/", "/.well-known/"}

// Policy checks paths. It is immutable and safe for concurrent use.
type Policy struct {
	public []string // lower-case prefixes
	exact  []string // lower-case exact paths
	admin  []netip.Prefix
}

// New builds a Policy from opts.
func New(opts Options) *Policy {
	pub := opts.Public
	if pub == nil {
		pub = DefaultPublic
	}
	p := &Policy{admin: opts.AdminNetworks}
	for _, s := range pub {
		p.public = append(p.public, strings.ToLower(s))
	}
	if opts.AllowJS {
		p.public = append(p.public, "/js/")
	}
	if !opts.DenyRobots {
		p.exact = append(p.exact, "/robots.txt")
	}
	return p
}

// Check canonicalises rawPath (the escaped path of the request target) and
// decides whether a client at addr may reach it. It returns the canonical
// path the proxy must forward (unescaped form) and the verdict.
func (p *Policy) Check(rawPath string, addr netip.Addr) (string, Verdict) {
	canon, ok := Canonical(rawPath)
	if !ok {
		return "", Invalid
	}
	lower := canon
	if hasUpper(canon) {
		lower = strings.ToLower(canon)
	}
	switch {
	case underPrefix(lower, "/admin/"):
		if p.adminAllowed(addr) {
			return canon, Allow
		}
		return canon, AdminDenied
	case underPrefix(lower, "/metrics/"), underPrefix(lower, "/health/"):
		return canon, Blocked
	}
	for _, pre := range p.public {
		if underPrefix(lower, pre) {
			return canon, Allow
		}
	}
	for _, ex := range p.exact {
		if lower == ex {
			return canon, Allow
		}
	}
	return canon, Blocked
}

func (p *Policy) adminAllowed(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, n := range p.admin {
		if n.Contains(addr) {
			return true
		}
	}
	return false
}

// underPrefix reports whether path lies under prefix, where a prefix
// ending in "/" also matches the bare directory ("/admin" for "/admin/").
func underPrefix(path, prefix string) bool {
	if strings.HasPrefix(path, prefix) {
		return true
	}
	if strings.HasSuffix(prefix, "/") {
		return path == prefix[:len(prefix)-1]
	}
	return false
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return true
		}
	}
	return false
}

// maxDecodeRounds bounds repeated percent-decoding (%2561 -> %61 -> a).
const maxDecodeRounds = 4

// Canonical returns the canonical, unescaped form of an escaped request
// path: percent-decoded until stable (at most a few rounds), "\" read as
// "/", ";parameters" removed from every segment, empty and "." segments
// dropped and ".." resolved. A trailing slash is kept. It reports false
// for malformed escapes, control characters, a path that does not start
// with "/" and a ".." that climbs above the root.
//
// A path that is already canonical is returned without allocating.
func Canonical(raw string) (string, bool) {
	if raw == "" || raw[0] != '/' {
		return "", false
	}
	if isSimple(raw) {
		return raw, true
	}
	s := raw
	for range maxDecodeRounds {
		if strings.IndexByte(s, '%') < 0 {
			break
		}
		d, ok := unescape(s)
		if !ok {
			return "", false
		}
		s = d
	}
	if strings.IndexByte(s, '%') >= 0 {
		// Still encoded after the bound: refuse rather than guess.
		return "", false
	}
	var segs []string
	trailing := false
	for seg := range strings.SplitSeq(strings.ReplaceAll(s, "\\", "/"), "/") {
		if i := strings.IndexByte(seg, ';'); i >= 0 {
			seg = seg[:i]
		}
		trailing = false
		switch seg {
		case "":
			trailing = true
			continue
		case ".":
			trailing = true
			continue
		case "..":
			if len(segs) == 0 {
				return "", false
			}
			segs = segs[:len(segs)-1]
			trailing = true
			continue
		}
		for i := 0; i < len(seg); i++ {
			if seg[i] < 0x20 || seg[i] == 0x7f {
				return "", false
			}
		}
		segs = append(segs, seg)
	}
	out := "/" + strings.Join(segs, "/")
	if trailing && len(segs) > 0 {
		out += "/"
	}
	return out, true
}

// isSimple reports whether raw needs no canonicalisation: only unreserved
// path characters, no "//", no dot segments, no ";", "%" or "\".
func isSimple(raw string) bool {
	prev := byte(0)
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '~', c == '+', c == ',', c == '=', c == '@', c == ':', c == '!', c == '$', c == '&', c == '\'', c == '(', c == ')', c == '*':
		case c == '/':
			if prev == '/' {
				return false
			}
		case c == '.':
			// A dot right after a slash may start a dot segment.
			if prev == '/' {
				j := i + 1
				if j == len(raw) || raw[j] == '/' || (raw[j] == '.' && (j+1 == len(raw) || raw[j+1] == '/')) {
					return false
				}
			}
		default:
			return false
		}
		prev = c
	}
	return true
}

// unescape decodes every %XX in s. It reports false for a malformed
// escape.
func unescape(s string) (string, bool) {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		h, ok1 := unhex(s[i+1])
		l, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", false
		}
		b.WriteByte(h<<4 | l)
		i += 2
	}
	return b.String(), true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
