package kcsim

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// CookieFormat selects how AUTH_SESSION_ID values are encoded. The zero
// value ("") means Format261.
type CookieFormat string

const (
	// Format261 is Keycloak 26.1 and later:
	// base64url(<id>.<base64url HS512 signature>) followed by ".<route>".
	Format261 CookieFormat = "26.1"
	// FormatLegacy is Keycloak up to 26.0: <id>.<route>.
	FormatLegacy CookieFormat = "legacy"
)

// String returns the format's name; the zero value prints as "26.1".
func (f CookieFormat) String() string {
	if f == "" {
		return string(Format261)
	}
	return string(f)
}

// valid reports whether f is a known format (the zero value included).
func (f CookieFormat) valid() bool {
	return f == "" || f == Format261 || f == FormatLegacy
}

// ErrMalformedAuthSession is returned by ParseAuthSessionID when a value is
// not an AUTH_SESSION_ID in either known format.
var ErrMalformedAuthSession = errors.New("kcsim: malformed AUTH_SESSION_ID")

// AuthSessionID is a decoded AUTH_SESSION_ID cookie value.
type AuthSessionID struct {
	// ID is the auth session id (a UUID).
	ID string
	// Signature is the base64url signature (26.1 format only, else "").
	Signature string
	// Route is everything after the first dot: the node name, or "" when
	// no route is attached.
	Route string
	// Format is the detected encoding.
	Format CookieFormat
}

// RouteOf returns the route of an AUTH_SESSION_ID value: everything after
// the first dot, or "" when there is none. It works for both formats
// because base64url has no dot.
func RouteOf(value string) string {
	if i := strings.IndexByte(value, '.'); i >= 0 {
		return value[i+1:]
	}
	return ""
}

// ParseAuthSessionID decodes an AUTH_SESSION_ID value in either format. It
// returns ErrMalformedAuthSession (wrapped) when the value is neither a
// "<uuid>[.route]" nor a "base64url(<uuid>.<sig>)[.route]".
func ParseAuthSessionID(value string) (AuthSessionID, error) {
	head, route := value, ""
	if i := strings.IndexByte(value, '.'); i >= 0 {
		head, route = value[:i], value[i+1:]
	}
	if isUUID(head) {
		return AuthSessionID{ID: head, Route: route, Format: FormatLegacy}, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return AuthSessionID{}, fmt.Errorf("%w: %q: %w", ErrMalformedAuthSession, value, err)
	}
	id, sig, ok := strings.Cut(string(raw), ".")
	if !ok || !isUUID(id) || sig == "" {
		return AuthSessionID{}, fmt.Errorf("%w: %q: payload is not <uuid>.<signature>", ErrMalformedAuthSession, value)
	}
	if _, err := base64.RawURLEncoding.DecodeString(sig); err != nil {
		return AuthSessionID{}, fmt.Errorf("%w: %q: signature: %w", ErrMalformedAuthSession, value, err)
	}
	return AuthSessionID{ID: id, Signature: sig, Route: route, Format: Format261}, nil
}

// EncodeAuthSessionID builds an AUTH_SESSION_ID value for id in format f,
// signing with key (26.1 only) and appending ".route" unless route is "".
func EncodeAuthSessionID(f CookieFormat, id, route string, key []byte) string {
	var v string
	if f == FormatLegacy {
		v = id
	} else {
		m := hmac.New(sha512.New, key)
		m.Write([]byte(id))
		sig := base64.RawURLEncoding.EncodeToString(m.Sum(nil))
		v = base64.RawURLEncoding.EncodeToString([]byte(id + "." + sig))
	}
	if route != "" {
		v += "." + route
	}
	return v
}

// isUUID reports whether s looks like a canonical 8-4-4-4-12 hex UUID.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// newUUID returns a random version-4 UUID string.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}

// randToken returns n random bytes as base64url.
func randToken(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
