// Package kclbconf writes kclb configuration files (TOML) for the
// programs that start the real binary: the test labs, kclb-demo and the
// bench's target. A File is a list of sections in order; values are
// rendered as TOML (strings quoted and escaped, durations as quoted Go
// durations, string slices as arrays). It knows the names of the
// sections every writer needs, not their rules: the config package
// checks what is written when kclb reads it.
//
// It imports nothing of kclb's and not the testing package, so non-test
// binaries may use it.
package kclbconf

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// File is a configuration being written. The zero value is an empty file.
type File struct {
	b strings.Builder
}

// Raw is a value written as it is (an inline table, a literal array).
type Raw string

// Section appends [name] with the key/value pairs kv (key, value, key,
// value...; see Value for the value types). An odd kv panics.
func (f *File) Section(name string, kv ...any) *File {
	fmt.Fprintf(&f.b, "\n[%s]\n", name)
	return f.keys(kv)
}

// Table appends one element [[name]] of an array of tables with kv.
func (f *File) Table(name string, kv ...any) *File {
	fmt.Fprintf(&f.b, "\n[[%s]]\n", name)
	return f.keys(kv)
}

// Keys appends key/value pairs to the last section.
func (f *File) Keys(kv ...any) *File { return f.keys(kv) }

func (f *File) keys(kv []any) *File {
	if len(kv)%2 != 0 {
		panic(fmt.Sprintf("kclbconf: odd key/value list %v", kv))
	}
	for i := 0; i < len(kv); i += 2 {
		fmt.Fprintf(&f.b, "%s = %s\n", kv[i], Value(kv[i+1]))
	}
	return f
}

// Text appends s verbatim (a comment, or sections a caller already has
// as text).
func (f *File) Text(s string) *File {
	f.b.WriteString(s)
	if s != "" && !strings.HasSuffix(s, "\n") {
		f.b.WriteByte('\n')
	}
	return f
}

// Global appends [global] with name, then state_file = "" (no
// persistence) and access_log = false unless kv sets them, then kv.
func (f *File) Global(name string, kv ...any) *File {
	defaults := []any{"state_file", "", "access_log", false}
	all := []any{"name", name}
	for i := 0; i < len(defaults); i += 2 {
		if !hasKey(kv, defaults[i].(string)) {
			all = append(all, defaults[i], defaults[i+1])
		}
	}
	return f.Section("global", append(all, kv...)...)
}

func hasKey(kv []any, key string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == key {
			return true
		}
	}
	return false
}

// Listener appends a [[listener]] called name bound to bind, then kv
// ("tls", true, "http2", true, ...).
func (f *File) Listener(name, bind string, kv ...any) *File {
	return f.Table("listener", append([]any{"name", name, "bind", bind}, kv...)...)
}

// Certificate appends a [[tls.certificate]] with its certificate and key
// files.
func (f *File) Certificate(cert, key string) *File {
	return f.Table("tls.certificate", "cert", cert, "key", key)
}

// Server appends a [[backend.server]] with its traffic and management
// addresses, then kv.
func (f *File) Server(name, address, management string, kv ...any) *File {
	return f.Table("backend.server", append([]any{"name", name, "address", address, "management", management}, kv...)...)
}

// String returns the file's text.
func (f *File) String() string { return f.b.String() }

// WriteFile writes the file to path, readable by its owner only (it may
// name secrets).
func (f *File) WriteFile(path string) error {
	if err := os.WriteFile(path, []byte(f.b.String()), 0o600); err != nil {
		return fmt.Errorf("kclbconf: write %s: %w", path, err)
	}
	return nil
}

// Value renders v as a TOML value: string (a basic string), bool, the
// integer types, float64, time.Duration (a quoted Go duration such as
// "100ms"), []string (an array of strings) or Raw (as it is). Any other
// type panics: it is a mistake in the writer, not input.
func Value(v any) string {
	switch v := v.(type) {
	case string:
		return quote(v)
	case Raw:
		return string(v)
	case bool:
		return strconv.FormatBool(v)
	case int:
		return strconv.Itoa(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case uint8:
		return strconv.Itoa(int(v))
	case uint16:
		return strconv.Itoa(int(v))
	case uint32:
		return strconv.FormatUint(uint64(v), 10)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case time.Duration:
		return quote(v.String())
	case []string:
		q := make([]string, len(v))
		for i, s := range v {
			q[i] = quote(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	panic(fmt.Sprintf("kclbconf: cannot write a %T as TOML", v))
}

// quote returns s as a TOML basic string: backslash, quote and control
// characters escaped (\uXXXX), everything else as it is.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
