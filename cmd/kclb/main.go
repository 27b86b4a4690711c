// Command kclb is an edge proxy for a Keycloak cluster: TLS termination,
// Keycloak-aware session affinity, deep health checks, an in-process VRRP
// virtual IP and a drain API for rolling restarts, in one binary.
//
// Usage:
//
//	kclb run -c /etc/kclb/config.toml   run the proxy
//	kclb check [-c] FILE [--syntax-only] validate a configuration (exit 0/1)
//	kclb status|drain|ready|maint|reload operator commands (admin socket)
//	kclb import haproxy.cfg [keepalived.conf]  translate an existing setup
//	kclb completion bash|zsh|fish       shell completion script
//	kclb manpage                        the kclb(1) manual page
//	kclb version                        print the version
//
// The command table (commands) is the one definition of the command line:
// usage, completion scripts and the manual page are generated from it and
// from each command's flags. cmd/kclb is the only place that reads
// configuration and wires the runtime packages together.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

// version is the release version, set at build time with
// -ldflags "-X main.version=..." (the Makefile takes it from the newest
// git tag); "dev" for a plain go build.
var version = "dev"

// commit is the source revision, set like version; when empty it is taken
// from the build information Go records (vcs.revision).
var commit = ""

// defaultConfig is the configuration file run and check read without -c.
const defaultConfig = "/etc/kclb/config.toml"

// errUsage marks a command-line mistake (exit status 2).
var errUsage = errors.New("usage")

// errPeerNotApplied marks an admin change that applied on this instance
// but not on its [pair] peer (exit status 3).
var errPeerNotApplied = errors.New("applied on this instance only; the peer catches up when it can be reached")

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// command is one kclb subcommand.
type command struct {
	// name is the word after kclb.
	name string
	// args is the synopsis after the name: "[-c] FILE [--syntax-only]".
	args string
	// summary is one line for usage and the manual page.
	summary string
	// run executes the command; nil means the command registered itself
	// in extraCommands.
	run func(args []string, stdout, stderr io.Writer) error
	// words are the values of its first argument, for completion
	// ("bash", "zsh", "fish"); server names and files are not listed.
	words []string
}

// commands returns the command table in the order of the usage text.
func commands() []command {
	return []command{
		{name: "run", args: "-c FILE", summary: "run the proxy with the configuration FILE (SIGHUP reloads FILE, SIGUSR2 hands the sockets to a new binary)",
			run: func(args []string, _, stderr io.Writer) error { return cmdRun(args, stderr) }},
		{name: "check", args: "[-c] FILE [--syntax-only]", summary: "validate FILE; prints every problem with its line, exits 0 or 1", run: cmdCheck},
		{name: "status", args: "[--json]", summary: "show the edge: servers, health, admin state (and the [pair] peer's), VRRP, configuration drift"},
		{name: "drain", args: "NAME [--wait] [--timeout D]", summary: "no new clients for server NAME; logins in progress finish (on the [pair] peer too: exit 3 when it was not reached)"},
		{name: "ready", args: "NAME [--wait-healthy]", summary: "put server NAME back into rotation (on the [pair] peer too)"},
		{name: "maint", args: "NAME", summary: "no traffic at all for server NAME (on the [pair] peer too)"},
		{name: "handover", args: "[--wait] [--back] [--drain D]", summary: "planned VRRP handover: this Master drains keep-alive clients and gives its VIPs to the peer; --back restores its priority"},
		{name: "cleanup-vips", args: "[-c FILE]", summary: "remove this node's VRRP VIPs left by a kclb that died without resigning (ExecStopPost); does nothing while kclb runs"},
		{name: "reload", args: "", summary: "re-read the configuration of the running kclb; waits, prints every problem and exits 1 if it was rejected"},
		{name: "import", args: "haproxy.cfg [keepalived.conf] [-o FILE] [--force]", summary: "translate an HAProxy + keepalived setup; what cannot be translated is an error with its line", run: cmdImport},
		{name: "demo", args: "[flags]", summary: "start the local demo (bin/kclb-demo: three Keycloak stand-ins and this kclb)", run: cmdDemo},
		{name: "completion", args: "bash|zsh|fish", summary: "print the shell completion script", run: cmdCompletion, words: []string{"bash", "zsh", "fish"}},
		{name: "manpage", args: "", summary: "print the kclb(1) manual page (roff)", run: cmdManpage},
		{name: "version", args: "", summary: "print the version, commit and Go version", run: cmdVersion},
		{name: "help", args: "", summary: "print this help", run: func(_ []string, stdout, _ io.Writer) error { usage(stdout); return nil }},
	}
}

// lookup returns the command called name.
func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			if c.run == nil {
				c.run = extraCommands[name]
			}
			return c, c.run != nil
		}
	}
	if f, ok := extraCommands[name]; ok {
		return command{name: name, run: f}, true
	}
	return command{}, false
}

// run dispatches a subcommand and returns the process exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "-version", "--version":
		name = "version"
	case "-h", "-help", "--help":
		name = "help"
	}
	c, ok := lookup(name)
	if !ok {
		fmt.Fprintf(stderr, "kclb: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	err := c.run(args[1:], stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage), errors.Is(err, flag.ErrHelp):
		return 2
	case errors.Is(err, errPeerNotApplied):
		fmt.Fprintln(stderr, "kclb:", err)
		return 3
	default:
		fmt.Fprintln(stderr, "kclb:", err)
		return 1
	}
}

// extraCommands are the operator commands that talk to a running kclb;
// each registers itself from its own file with an init function and has
// its synopsis in commands.
var extraCommands = map[string]func(args []string, stdout, stderr io.Writer) error{}

func usage(w io.Writer) {
	fmt.Fprint(w, "usage: kclb <command> [flags]\n\ncommands:\n")
	for _, c := range commands() {
		left := strings.TrimSpace(c.name + " " + c.args)
		if len(left) < 24 {
			fmt.Fprintf(w, "  %-24s %s\n", left, c.summary)
		} else {
			fmt.Fprintf(w, "  %s\n  %-24s %s\n", left, "", c.summary)
		}
	}
	fmt.Fprint(w, "\nRun \"kclb <command> -h\" for the flags of a command.\n")
}

// versionLine is what `kclb version` prints: release version, commit and
// the Go toolchain.
func versionLine() string {
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

func cmdVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", stderr, "")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	fmt.Fprintln(stdout, versionLine())
	return nil
}

// newFlagSet returns the flag set of command name, printing its usage
// ("usage: kclb name synopsis" and the flags) to stderr. When stderr is
// a *flagProbe the set is also handed to it, which is how completion and
// the manual page learn each command's flags from the command itself.
func newFlagSet(name string, stderr io.Writer, synopsis string) *flag.FlagSet {
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

// flagSet reports whether flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}
