package importer

import (
	"fmt"
	"strings"
)

// Node is one keepalived statement: its words and, for statements
// followed by "{ ... }", the statements inside the braces.
type Node struct {
	// Line is the 1-based line of the statement's first word.
	Line int
	// Args are the statement's words; Args[0] is the keyword. Empty only
	// for a block that follows nothing ("{" at the start of the file).
	Args []string
	// HasBlock reports whether a "{ ... }" block followed the words.
	HasBlock bool
	// Block holds the statements inside the braces.
	Block []*Node
}

// Keyword returns Args[0], or "" when Args is empty.
func (n *Node) Keyword() string {
	if len(n.Args) == 0 {
		return ""
	}
	return n.Args[0]
}

// String returns the statement's words joined by single spaces.
func (n *Node) String() string { return strings.Join(n.Args, " ") }

// ParseKeepalived parses a keepalived configuration into its top-level
// statements. Comments start with '#' or '!' at the beginning of a word;
// double-quoted strings may contain spaces; braces are words of their own
// even without surrounding space, and a block's "{" may stand on the line
// after its statement. Unbalanced braces and unterminated quotes are
// errors with a line number.
func ParseKeepalived(data []byte) ([]*Node, error) {
	root := &Node{HasBlock: true}
	stack := []*Node{root}
	for i, raw := range strings.Split(string(data), "\n") {
		num := i + 1
		words, err := splitKeepalivedLine(strings.TrimSuffix(raw, "\r"))
		if err != nil {
			return nil, fmt.Errorf("importer: keepalived line %d: %w", num, err)
		}
		var args []string
		flush := func() {
			if len(args) > 0 {
				top := stack[len(stack)-1]
				top.Block = append(top.Block, &Node{Line: num, Args: args})
				args = nil
			}
		}
		for _, w := range words {
			switch w.brace {
			case '{':
				top := stack[len(stack)-1]
				var n *Node
				if len(args) == 0 && len(top.Block) > 0 && !top.Block[len(top.Block)-1].HasBlock {
					// "{" on the line after its statement.
					n = top.Block[len(top.Block)-1]
				} else {
					n = &Node{Line: num, Args: args}
					top.Block = append(top.Block, n)
					args = nil
				}
				n.HasBlock = true
				stack = append(stack, n)
			case '}':
				flush()
				if len(stack) == 1 {
					return nil, fmt.Errorf("importer: keepalived line %d: unexpected \"}\"", num)
				}
				stack = stack[:len(stack)-1]
			default:
				args = append(args, w.text)
			}
		}
		flush()
	}
	if len(stack) > 1 {
		n := stack[len(stack)-1]
		return nil, fmt.Errorf("importer: keepalived line %d: %q block is not closed", n.Line, n.String())
	}
	return root.Block, nil
}

// kaWord is a word of a keepalived line, or a brace.
type kaWord struct {
	text  string
	brace byte // '{' or '}' for an unquoted brace, else 0
}

// splitKeepalivedLine splits a line into words, with unquoted "{" and "}"
// as words of their own.
func splitKeepalivedLine(s string) ([]kaWord, error) {
	var (
		words []kaWord
		word  strings.Builder
		in    bool
	)
	flush := func() {
		if in {
			words = append(words, kaWord{text: word.String()})
			word.Reset()
			in = false
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			flush()
		case (c == '#' || c == '!') && !in:
			return words, nil
		case c == '{' || c == '}':
			flush()
			words = append(words, kaWord{text: string(c), brace: c})
		case c == '"':
			end := strings.IndexByte(s[i+1:], '"')
			if end < 0 {
				return nil, fmt.Errorf("unterminated quote")
			}
			word.WriteString(s[i+1 : i+1+end])
			in = true
			i += end + 1
		default:
			word.WriteByte(c)
			in = true
		}
	}
	flush()
	return words, nil
}
