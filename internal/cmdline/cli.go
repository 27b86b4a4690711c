// Package cmdline is the command-line machinery of the kclb binary: the
// command table's type, flag sets that completion and the manual page
// can learn flags from, the usage text, shell completion scripts (bash,
// zsh, fish), the kclb(1) manual page and the version line. It knows no
// command: cmd/kclb's table is the one definition of the command line.
package cmdline

import (
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// Command is one kclb subcommand.
type Command struct {
	// Name is the word after kclb.
	Name string
	// Args is the synopsis after the name: "[-c] FILE [--syntax-only]".
	Args string
	// Summary is one line for usage and the manual page.
	Summary string
	// Run executes the command; its flags are learnt by running it with
	// "-h" and a probe as stderr (NewFlagSet). Nil leaves the command out
	// of completion and the manual page.
	Run func(args []string, stdout, stderr io.Writer) error
	// Words are the values of its first argument, for completion
	// ("bash", "zsh", "fish"); server names and files are not listed.
	Words []string
}

// NewFlagSet returns the flag set of command name, printing its usage
// ("usage: kclb name synopsis" and the flags) to stderr. When stderr is
// the probe of completion or the manual page, the set is also handed to
// it: that is how they learn each command's flags from the command.
func NewFlagSet(name string, stderr io.Writer, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), strings.TrimSpace("usage: kclb "+name+" "+synopsis))
		fs.PrintDefaults()
	}
	if p, ok := stderr.(*flagProbe); ok {
		p.fs = fs
	}
	return fs
}

// IsSet reports whether flag name was given on the command line.
func IsSet(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

// ParseInterspersed parses flags that may follow positional arguments
// ("kclb drain NAME --wait") and returns the positional arguments.
func ParseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// Usage writes the usage text: every command of cmds with its synopsis
// and summary.
func Usage(w io.Writer, cmds []Command) {
	fmt.Fprint(w, "usage: kclb <command> [flags]\n\ncommands:\n")
	for _, c := range cmds {
		left := strings.TrimSpace(c.Name + " " + c.Args)
		if len(left) < 24 {
			fmt.Fprintf(w, "  %-24s %s\n", left, c.Summary)
		} else {
			fmt.Fprintf(w, "  %s\n  %-24s %s\n", left, "", c.Summary)
		}
	}
	fmt.Fprint(w, "\nRun \"kclb <command> -h\" for the flags of a command.\n")
}

// VersionLine is what `kclb version` prints: release version, commit and
// the Go toolchain. An empty commit is taken from the build information
// Go records (vcs.revision, "-dirty" when modified).
func VersionLine(version, commit string) string {
	rev, modified := commit, false
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && rev == "":
				rev = s.Value
			case s.Key == "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	switch {
	case rev == "":
		rev = "unknown"
	case modified && commit == "":
		rev += "-dirty"
	}
	return fmt.Sprintf("kclb %s (commit %s, %s %s/%s)", version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
