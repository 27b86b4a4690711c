package importer

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// table is one TOML table of the output, with a comment per key.
type table struct {
	name  string // "global", "backend.server", ...
	array bool   // [[name]] instead of [name]
	notes []string
	keys  []string
	vals  map[string]entry
}

// entry is one key's rendered TOML value and where it came from.
type entry struct {
	val, comment string
}

func newTable(name string, array bool) *table {
	return &table{name: name, array: array, vals: make(map[string]entry)}
}

// set stores key = val (already TOML) with comment, replacing an earlier
// value but keeping the key's position.
func (t *table) set(key, val, comment string) {
	if _, ok := t.vals[key]; !ok {
		t.keys = append(t.keys, key)
	}
	t.vals[key] = entry{val, comment}
}

// has reports whether key was set.
func (t *table) has(key string) bool { _, ok := t.vals[key]; return ok }

// note adds a comment line above the table header.
func (t *table) note(format string, args ...any) {
	t.notes = append(t.notes, fmt.Sprintf(format, args...))
}

// empty reports whether the table has nothing to render.
func (t *table) empty() bool { return len(t.keys) == 0 && len(t.notes) == 0 }

// commentCol is the column where key comments start.
const commentCol = 40

func (t *table) render(b *strings.Builder) {
	b.WriteByte('\n')
	for _, n := range t.notes {
		writeComment(b, "", n)
	}
	if t.array {
		b.WriteString("[[" + t.name + "]]\n")
	} else {
		b.WriteString("[" + t.name + "]\n")
	}
	for _, k := range t.keys {
		e := t.vals[k]
		line := k + " = " + e.val
		if e.comment == "" {
			b.WriteString(line + "\n")
			continue
		}
		if n := utf8.RuneCountInString(line); n < commentCol-1 {
			line += strings.Repeat(" ", commentCol-1-n)
		}
		writeComment(b, line+" ", e.comment)
	}
}

// writeComment writes "# text" after prefix, making sure no newline or
// control character in text can end the comment early.
func writeComment(b *strings.Builder, prefix, text string) {
	text = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(text, "\uFFFD"))
	b.WriteString(prefix + "# " + text + "\n")
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r < ' ' || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func tomlInt(n int) string { return strconv.Itoa(n) }

func tomlBool(v bool) string { return strconv.FormatBool(v) }

func tomlDur(d time.Duration) string { return tomlString(fmtDur(d)) }

func tomlStrings(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = tomlString(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// fmtDur writes d in the largest unit that divides it: "5s", "2m", "500ms".
func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	case d%time.Millisecond == 0:
		return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
	}
	return d.String()
}
