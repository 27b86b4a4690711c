package affinity

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"
)

// KC_ROUTE value layout: <id>.<expiry>.<mac>
//
//	id     base64url (no padding) of the first idBytes bytes of
//	       HMAC-SHA256(idKey, server name): opaque, identical on every
//	       kclb sharing the secret, and never the server's address.
//	expiry Unix seconds, decimal, no sign and no leading zero.
//	mac    base64url (no padding) of the first macBytes bytes of
//	       HMAC-SHA256(macKey, "<id>.<expiry>").
//
// idKey and macKey are derived from the configured secret with distinct
// labels so an id can never be replayed as a MAC.
const (
	idBytes   = 12
	idLen     = 16 // base64 length of idBytes
	macBytes  = 16
	macLen    = 22 // base64 length of macBytes
	maxDigits = 12 // Unix seconds up to year ~33000
	minValue  = idLen + 1 + 1 + 1 + macLen
	maxValue  = idLen + 1 + maxDigits + 1 + macLen

	idLabel  = "kclb affinity cookie id v1"
	macLabel = "kclb affinity cookie mac v1"
)

var b64 = base64.RawURLEncoding

// Errors returned by DecodeCookie. Callers branch on them to count why a
// cookie was ignored.
var (
	// ErrCookieMalformed: the value does not have the KC_ROUTE layout.
	ErrCookieMalformed = errors.New("affinity: malformed cookie")
	// ErrCookieSignature: the MAC does not match (tampered value, or a
	// different secret).
	ErrCookieSignature = errors.New("affinity: bad cookie signature")
	// ErrCookieExpired: the signed expiry has passed.
	ErrCookieExpired = errors.New("affinity: cookie expired")
)

// cookieAttributes returns the attributes written after the affinity
// cookie's value: Max-Age (left out for a session cookie), Path=/ and
// HttpOnly.
func cookieAttributes(maxAge int64, session bool) string {
	if session {
		return "; Path=/; HttpOnly"
	}
	return "; Max-Age=" + strconv.FormatInt(maxAge, 10) + "; Path=/; HttpOnly"
}

// codec signs and verifies KC_ROUTE values with keys derived from one
// secret. It is safe for concurrent use.
type codec struct {
	idKey  []byte
	macKey []byte
	pool   sync.Pool // of *macState keyed with macKey
}

// macState is a reusable HMAC with scratch buffers, so verifying a cookie
// allocates nothing.
type macState struct {
	h    hash.Hash
	in   [idLen + 1 + maxDigits]byte
	sum  [sha256.Size]byte
	want [macLen]byte
	got  [macLen]byte
}

func newCodec(secret []byte) *codec {
	c := &codec{
		idKey:  derive(secret, idLabel),
		macKey: derive(secret, macLabel),
	}
	c.pool.New = func() any { return &macState{h: hmac.New(sha256.New, c.macKey)} }
	return c
}

func derive(secret []byte, label string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	return m.Sum(nil)
}

// id returns the opaque cookie id of the server called name.
func (c *codec) id(name string) string {
	m := hmac.New(sha256.New, c.idKey)
	m.Write([]byte(name))
	var sum [sha256.Size]byte
	var out [idLen]byte
	b64.Encode(out[:], m.Sum(sum[:0])[:idBytes])
	return string(out[:])
}

// encode returns the cookie value naming id, valid until exp (Unix
// seconds).
func (c *codec) encode(id string, exp int64) string {
	st := c.pool.Get().(*macState)
	defer c.pool.Put(st)
	buf := make([]byte, 0, maxValue)
	buf = append(buf, id...)
	buf = append(buf, '.')
	buf = strconv.AppendInt(buf, exp, 10)
	st.h.Reset()
	st.h.Write(buf)
	sum := st.h.Sum(st.sum[:0])
	buf = append(buf, '.')
	buf = buf[:len(buf)+macLen]
	b64.Encode(buf[len(buf)-macLen:], sum[:macBytes])
	return string(buf)
}

// decode verifies v and returns its id (a substring of v) and expiry. It
// checks the layout, then the MAC in constant time, then the expiry
// against now (Unix seconds); reason tells which check failed when ok is
// false. It does not allocate.
func (c *codec) decode(v string, now int64) (id string, exp int64, reason MissReason, ok bool) {
	if len(v) < minValue || len(v) > maxValue || v[idLen] != '.' || v[len(v)-macLen-1] != '.' {
		return "", 0, MissMalformed, false
	}
	id = v[:idLen]
	digits := v[idLen+1 : len(v)-macLen-1]
	mac := v[len(v)-macLen:]
	if !isB64URL(id) || !isB64URL(mac) {
		return "", 0, MissMalformed, false
	}
	exp, ok = parseUnix(digits)
	if !ok {
		return "", 0, MissMalformed, false
	}
	st := c.pool.Get().(*macState)
	n := copy(st.in[:], v[:len(v)-macLen-1])
	st.h.Reset()
	st.h.Write(st.in[:n])
	sum := st.h.Sum(st.sum[:0])
	b64.Encode(st.want[:], sum[:macBytes])
	copy(st.got[:], mac)
	good := hmac.Equal(st.want[:], st.got[:])
	c.pool.Put(st)
	if !good {
		return "", 0, MissSignature, false
	}
	if exp <= now {
		return "", 0, MissExpired, false
	}
	return id, exp, 0, true
}

// parseUnix parses 1..maxDigits decimal digits without a leading zero.
func parseUnix(s string) (int64, bool) {
	if len(s) == 0 || len(s) > maxDigits || s[0] == '0' {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		d := s[i] - '0'
		if d > 9 {
			return 0, false
		}
		n = n*10 + int64(d)
	}
	return n, true
}

func isB64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if !('A' <= ch && ch <= 'Z' || 'a' <= ch && ch <= 'z' || '0' <= ch && ch <= '9' || ch == '-' || ch == '_') {
			return false
		}
	}
	return true
}

// CookieID returns the opaque id that KC_ROUTE cookies use for the server
// called serverName under secret. It depends on the name and the secret
// only, so every kclb instance sharing the secret agrees on it.
func CookieID(secret []byte, serverName string) string {
	return newCodec(secret).id(serverName)
}

// EncodeCookie returns a KC_ROUTE cookie value naming serverName, signed
// with secret and valid until expires (truncated to the second). Affinity
// uses the same codec with cached keys; this form is for tests and tools.
func EncodeCookie(secret []byte, serverName string, expires time.Time) string {
	c := newCodec(secret)
	return c.encode(c.id(serverName), expires.Unix())
}

// DecodeCookie verifies a KC_ROUTE cookie value signed with secret and
// returns the server id it carries (compare with CookieID) and its expiry.
// It returns ErrCookieMalformed, ErrCookieSignature or ErrCookieExpired
// (expiry at or before now) when the value must be ignored.
func DecodeCookie(secret []byte, value string, now time.Time) (id string, expires time.Time, err error) {
	id, exp, reason, ok := newCodec(secret).decode(value, now.Unix())
	if !ok {
		switch reason {
		case MissSignature:
			return "", time.Time{}, ErrCookieSignature
		case MissExpired:
			return "", time.Time{}, ErrCookieExpired
		}
		return "", time.Time{}, ErrCookieMalformed
	}
	return id, time.Unix(exp, 0), nil
}

// maxRouteLen bounds a route so that learning cannot be fed huge keys.
const maxRouteLen = 255

// ParseAuthSessionRoute returns the route of an AUTH_SESSION_ID (or
// AUTH_SESSION_ID_LEGACY) cookie value: everything after the FIRST dot.
// This covers both Keycloak formats, `<uuid>.<route>` (up to 26.0) and
// `base64url(<id>.<sig>).<route>` (26.1 and later), because neither the
// UUID nor base64url contains a dot. ok is false when there is no route
// (no dot, nothing after it), when the part before the dot is empty or
// not made of UUID/base64 characters, or when the route is longer than
// 255 bytes or holds bytes a cookie value may not contain.
func ParseAuthSessionRoute(value string) (route string, ok bool) {
	i := strings.IndexByte(value, '.')
	if i <= 0 || i == len(value)-1 || len(value)-i-1 > maxRouteLen {
		return "", false
	}
	for j := 0; j < i; j++ {
		ch := value[j]
		if !('A' <= ch && ch <= 'Z' || 'a' <= ch && ch <= 'z' || '0' <= ch && ch <= '9' ||
			ch == '-' || ch == '_' || ch == '+' || ch == '/' || ch == '=') {
			return "", false
		}
	}
	route = value[i+1:]
	for j := 0; j < len(route); j++ {
		if !isCookieOctet(route[j]) {
			return "", false
		}
	}
	return route, true
}

// isCookieOctet reports whether ch may appear in a cookie value
// (RFC 6265 section 4.1.1 cookie-octet).
func isCookieOctet(ch byte) bool {
	return ch > 0x20 && ch < 0x7f && ch != '"' && ch != ',' && ch != ';' && ch != '\\'
}

// isToken reports whether s is a non-empty RFC 7230 token (a valid cookie
// name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch <= 0x20 || ch >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, ch) >= 0 {
			return false
		}
	}
	return true
}

// pairScanner walks the name=value pairs of Cookie header values
// (RFC 6265 section 5.4 syntax, parsed leniently: pairs split on ';',
// optional whitespace trimmed, surrounding double quotes removed from the
// value). It returns substrings of the header and never allocates.
type pairScanner struct {
	vals []string
	cur  string
	more bool // cur holds unread pairs
}

func newPairScanner(vals []string) pairScanner { return pairScanner{vals: vals} }

// next returns the next pair; ok is false at the end. A pair without '='
// is returned with an empty name (it can match no cookie).
func (p *pairScanner) next() (name, value string, ok bool) {
	for {
		if !p.more {
			if len(p.vals) == 0 {
				return "", "", false
			}
			p.cur, p.vals, p.more = p.vals[0], p.vals[1:], true
		}
		var part string
		if i := strings.IndexByte(p.cur, ';'); i >= 0 {
			part, p.cur = p.cur[:i], p.cur[i+1:]
		} else {
			part, p.cur, p.more = p.cur, "", false
		}
		part = trimOWS(part)
		if part == "" {
			continue
		}
		eq := strings.IndexByte(part, '=')
		if eq < 0 {
			return "", part, true
		}
		return trimOWS(part[:eq]), unquote(trimOWS(part[eq+1:])), true
	}
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

// setCookieNameValue returns the name and value of a Set-Cookie header
// value (the first pair, before any attribute).
func setCookieNameValue(v string) (name, value string) {
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	eq := strings.IndexByte(v, '=')
	if eq < 0 {
		return "", ""
	}
	return trimOWS(v[:eq]), unquote(trimOWS(v[eq+1:]))
}

// stripCookie removes every pair called name from one Cookie header value.
// Kept pairs, and the separator that preceded each of them, are copied
// byte for byte; leading and trailing whitespace of the whole value is
// dropped. It reports whether anything was removed. When the kept pairs
// are contiguous in v the result is a substring of v (no allocation).
func stripCookie(v, name string) (string, bool) {
	// First pass: is there anything to remove, and are the kept pairs
	// contiguous?
	var (
		removed          bool
		firstKept        = -1
		lastKeptEnd      int
		gap              bool // a removed pair lies between kept ones
		removedSinceKept bool
	)
	forEachPair(v, func(s, e int) {
		if pairName(v[s:e]) == name {
			removed = true
			if firstKept >= 0 {
				removedSinceKept = true
			}
			return
		}
		if firstKept < 0 {
			firstKept = s
		} else if removedSinceKept {
			gap = true
		}
		removedSinceKept = false
		lastKeptEnd = e
	})
	if !removed {
		return v, false
	}
	if firstKept < 0 {
		return "", true
	}
	if !gap {
		return v[firstKept:lastKeptEnd], true
	}
	var b strings.Builder
	b.Grow(len(v))
	prevEnd := -1 // end of the previous pair (kept or not)
	wrote := false
	forEachPair(v, func(s, e int) {
		sepStart := prevEnd
		prevEnd = e
		if pairName(v[s:e]) == name {
			return
		}
		if wrote {
			b.WriteString(v[sepStart:s])
		}
		b.WriteString(v[s:e])
		wrote = true
	})
	return b.String(), true
}

// forEachPair calls fn with the [start, end) offsets of the trimmed content
// of every non-empty ';'-separated pair of v.
func forEachPair(v string, fn func(start, end int)) {
	pos := 0
	for pos <= len(v) {
		end := strings.IndexByte(v[pos:], ';')
		if end < 0 {
			end = len(v)
		} else {
			end += pos
		}
		s, e := pos, end
		for s < e && (v[s] == ' ' || v[s] == '\t') {
			s++
		}
		for e > s && (v[e-1] == ' ' || v[e-1] == '\t') {
			e--
		}
		if s < e {
			fn(s, e)
		}
		pos = end + 1
	}
}

// pairName returns the trimmed name of a "name=value" pair, or "" when
// there is no '='.
func pairName(pair string) string {
	eq := strings.IndexByte(pair, '=')
	if eq < 0 {
		return ""
	}
	return trimOWS(pair[:eq])
}
