package config

import (
	"bytes"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	// Path is the key the problem is about, in the form
	// "backend.server[1].address"; empty for TOML syntax errors.
	Path string
	// Line is the 1-based line of the key in the file; 0 if unknown (for
	// example a required key that is absent is reported at its table's line,
	// or at 0 when the table is absent too).
	Line int
	// Msg describes the problem without repeating Path.
	Msg string
}

// String formats the problem as "path: msg", or just msg when Path is empty
// or msg already quotes the path (unknown keys).
func (p Problem) String() string {
	if p.Path == "" || strings.Contains(p.Msg, strconv.Quote(p.Path)) {
		return p.Msg
	}
	return p.Path + ": " + p.Msg
}

// Errors is every problem found in one configuration. Load, Parse and
// Validate return it (as error) when there is at least one problem.
type Errors struct {
	// File is the configuration file's path as given to Load; empty for Parse.
	File string
	// Problems are sorted by line; problems without a line come last.
	Problems []Problem
}

// Error lists one problem per line as "file:line: path: msg". Without a file
// name the prefix is "line N: "; without a line number the ":line" part is
// left out.
func (e *Errors) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		switch {
		case e.File != "" && p.Line > 0:
			b.WriteString(e.File + ":" + strconv.Itoa(p.Line) + ": ")
		case e.File != "":
			b.WriteString(e.File + ": ")
		case p.Line > 0:
			b.WriteString("line " + strconv.Itoa(p.Line) + ": ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

func (e *Errors) sort() {
	slices.SortStableFunc(e.Problems, func(a, b Problem) int {
		switch {
		case a.Line == b.Line:
			return 0
		case a.Line == 0:
			return 1
		case b.Line == 0:
			return -1
		}
		return a.Line - b.Line
	})
}

// syntaxProblem turns a TOML parse error into a Problem with its line. The
// line is counted from the error's byte offset: the library's own line number
// is one too high when the offending byte is a line's newline.
func syntaxProblem(data []byte, err error) Problem {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		line := pe.Position.Line
		if s := pe.Position.Start; s > 0 && s <= len(data) {
			line = 1 + bytes.Count(data[:s], []byte("\n"))
		}
		return Problem{Line: line, Msg: "TOML syntax: " + pe.Message}
	}
	return Problem{Msg: "TOML: " + err.Error()}
}

// locator finds the line of a key path such as "backend.server[1].name".
//
// The toml library records key positions but does not export them, so the
// locator re-parses prefixes of the document that end at line boundaries:
// the parser lists keys in document order, so the line of the k-th key is the
// first line whose prefix parses and holds more than k keys. A prefix that
// ends inside a multi-line value does not parse and is skipped, which makes
// the count a monotonic function of the line that can be binary searched.
// The work is capped by budget (bytes parsed) so hostile input stays cheap;
// past the cap lines are reported as 0.
type locator struct {
	data   []byte
	ends   []int          // ends[i] is the byte offset just past line i+1
	index  map[string]int // key path -> position in document order
	counts map[int]int    // line number -> key count of the first parsable prefix at or after it (-1: none)
	budget int
}

const locatorBudget = 8 << 20

func newLocator(data []byte, md toml.MetaData) *locator {
	l := &locator{
		data:   data,
		index:  make(map[string]int),
		counts: make(map[int]int),
		budget: locatorBudget,
	}
	for i, b := range data {
		if b == '\n' {
			l.ends = append(l.ends, i+1)
		}
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		l.ends = append(l.ends, len(data))
	}
	arrays := make(map[string]int) // array-of-tables path -> entries seen so far
	for i, k := range md.Keys() {
		var path strings.Builder
		for j := range k {
			if j > 0 {
				path.WriteByte('.')
			}
			path.WriteString(k[j])
			if md.Type(k[:j+1]...) != "ArrayHash" {
				continue
			}
			key := k[:j+1].String()
			if j == len(k)-1 {
				arrays[key]++
			}
			path.WriteString("[" + strconv.Itoa(arrays[key]-1) + "]")
		}
		if _, dup := l.index[path.String()]; !dup {
			l.index[path.String()] = i
		}
	}
	return l
}

// line returns the line of path, or of its closest enclosing key or table
// that appears in the document; 0 if none does or the budget is spent.
func (l *locator) line(path string) int {
	for path != "" {
		if k, ok := l.index[path]; ok {
			return l.lineOfKey(k)
		}
		path = parentPath(path)
	}
	return 0
}

// parentPath strips the last component: "a.b[1].c" -> "a.b[1]" -> "a.b" -> "a".
func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

func (l *locator) lineOfKey(k int) int {
	lo, hi := 1, len(l.ends) // find the smallest line n with count(n) > k
	found := 0
	for lo <= hi {
		mid := (lo + hi) / 2
		c, ok := l.count(mid)
		if !ok {
			return 0
		}
		if c > k {
			found, hi = mid, mid-1
		} else {
			lo = mid + 1
		}
	}
	return found
}

// count returns the number of keys in the first parsable prefix ending at
// line n or later; ok is false once the budget is spent.
func (l *locator) count(n int) (int, bool) {
	if c, ok := l.counts[n]; ok {
		return c, true
	}
	c := -1
	for m := n; m <= len(l.ends); m++ {
		if c2, ok := l.counts[m]; ok && m > n {
			c = c2
			break
		}
		end := l.ends[m-1]
		if l.budget < end {
			return 0, false
		}
		l.budget -= end
		var v map[string]any
		md, err := toml.NewDecoder(bytes.NewReader(l.data[:end])).Decode(&v)
		if err == nil {
			c = len(md.Keys())
			break
		}
	}
	if c < 0 {
		c = int(^uint(0) >> 1) // unreachable for a document that parsed
	}
	l.counts[n] = c
	return c, true
}
