package importer

import (
	"fmt"
	"strings"
)

// HAProxy is a parsed HAProxy configuration: its sections in file order.
type HAProxy struct {
	// Sections in file order. Directives before the first section header
	// are kept in a leading section with an empty Kind.
	Sections []Section
}

// Section is one HAProxy section such as "backend keycloak_backend".
type Section struct {
	// Kind is the section keyword ("global", "defaults", "frontend",
	// "backend", "listen", ...); empty for directives before any header.
	Kind string
	// Name is the section's name argument; empty when it has none.
	Name string
	// Line is the 1-based line of the section header; 0 for the leading
	// section.
	Line int
	// Lines are the section's directives.
	Lines []Line
}

// Line is one directive: its words after quote and escape processing.
type Line struct {
	// Num is the 1-based line number.
	Num int
	// Args are the directive's words, at least one; Args[0] is the keyword.
	Args []string
}

// String returns the directive's words joined by single spaces, for
// messages and comments.
func (l Line) String() string { return strings.Join(l.Args, " ") }

// sectionKeywords start a new section in HAProxy's configuration.
var sectionKeywords = map[string]bool{
	"global": true, "defaults": true, "frontend": true, "backend": true,
	"listen": true, "userlist": true, "peers": true, "resolvers": true,
	"mailers": true, "program": true, "http-errors": true, "ring": true,
	"cache": true, "log-forward": true, "fcgi-app": true, "crt-store": true,
	"traces": true,
}

// ParseHAProxy splits an HAProxy configuration into sections and
// directives. It handles comments ('#' outside quotes), double quotes
// (with backslash escapes), single quotes (literal) and backslash escapes
// outside quotes; environment variables are not expanded. The only error
// is an unterminated quote, reported with its line number.
func ParseHAProxy(data []byte) (*HAProxy, error) {
	h := &HAProxy{}
	cur := (*Section)(nil)
	for i, raw := range strings.Split(string(data), "\n") {
		num := i + 1
		args, err := splitHAProxyLine(strings.TrimSuffix(raw, "\r"))
		if err != nil {
			return nil, fmt.Errorf("importer: haproxy line %d: %w", num, err)
		}
		if len(args) == 0 {
			continue
		}
		if sectionKeywords[args[0]] {
			s := Section{Kind: args[0], Line: num}
			if len(args) > 1 {
				s.Name = args[1]
			}
			h.Sections = append(h.Sections, s)
			cur = &h.Sections[len(h.Sections)-1]
			continue
		}
		if cur == nil {
			h.Sections = append(h.Sections, Section{})
			cur = &h.Sections[0]
		}
		cur.Lines = append(cur.Lines, Line{Num: num, Args: args})
	}
	return h, nil
}

// splitHAProxyLine splits one line into words.
func splitHAProxyLine(s string) ([]string, error) {
	var (
		args  []string
		word  strings.Builder
		in    bool // inside a word
		quote byte // 0, '"' or '\''
	)
	flush := func() {
		if in {
			args = append(args, word.String())
			word.Reset()
			in = false
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				word.WriteByte(c)
			}
		case quote == '"':
			switch {
			case c == '"':
				quote = 0
			case c == '\\' && i+1 < len(s):
				i++
				word.WriteByte(unescape(s[i]))
			default:
				word.WriteByte(c)
			}
		case c == ' ' || c == '\t':
			flush()
		case c == '#':
			flush()
			return args, nil
		case c == '"' || c == '\'':
			quote = c
			in = true
		case c == '\\' && i+1 < len(s):
			i++
			word.WriteByte(unescape(s[i]))
			in = true
		default:
			word.WriteByte(c)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	flush()
	return args, nil
}

// unescape returns the byte a backslash escape stands for.
func unescape(c byte) byte {
	switch c {
	case 'n':
		return '\n'
	case 't':
		return '\t'
	case 'r':
		return '\r'
	}
	return c
}
