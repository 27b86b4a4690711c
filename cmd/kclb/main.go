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
// usage, completion and the manual page (internal/cmdline) come from it and
// each command's flags. `run` is configmap.Spec handed to daemon.Run.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/kclb/kclb/internal/cmdline"
)

// version is the release version, set at build time with
// -ldflags "-X main.version=..." (the Makefile takes it from the newest
// git tag); "dev" for a plain go build.
var version = "dev"

// commit is the source revision, set like version; "" means Go's vcs.revision.
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

// commands returns the command table in the order of the usage text.
func commands() []cmdline.Command {
	cmds := []cmdline.Command{
		{Name: "run", Args: "-c FILE", Summary: "run the proxy with the configuration FILE (SIGHUP reloads FILE, SIGUSR2 hands the sockets to a new binary)",
			Run: func(args []string, _, stderr io.Writer) error { return cmdRun(args, stderr) }},
		{Name: "check", Args: "[-c] FILE [--syntax-only]", Summary: "validate FILE; prints every problem with its line, exits 0 or 1", Run: cmdCheck},
		{Name: "status", Args: "[--json]", Summary: "show the edge: servers, health, admin state (and the [pair] peer's), VRRP, configuration drift"},
		{Name: "drain", Args: "NAME [--wait] [--timeout D]", Summary: "no new clients for server NAME; logins in progress finish (on the [pair] peer too: exit 3 when it was not reached)"},
		{Name: "ready", Args: "NAME [--wait-healthy]", Summary: "put server NAME back into rotation (on the [pair] peer too)"},
		{Name: "maint", Args: "NAME", Summary: "no traffic at all for server NAME (on the [pair] peer too)"},
		{Name: "handover", Args: "[--wait] [--back] [--drain D]", Summary: "planned VRRP handover: this Master drains keep-alive clients and gives its VIPs to the peer; --back restores its priority"},
		{Name: "cleanup-vips", Args: "[-c FILE]", Summary: "remove this node's VRRP VIPs left by a kclb that died without resigning (ExecStopPost); does nothing while kclb runs"},
		{Name: "reload", Args: "", Summary: "re-read the configuration of the running kclb; waits, prints every problem and exits 1 if it was rejected"},
		{Name: "import", Args: "haproxy.cfg [keepalived.conf] [-o FILE] [--force]", Summary: "translate an HAProxy + keepalived setup; what cannot be translated is an error with its line", Run: cmdImport},
		{Name: "demo", Args: "[flags]", Summary: "start the local demo (bin/kclb-demo: three Keycloak stand-ins and this kclb)", Run: cmdDemo},
		{Name: "completion", Args: "bash|zsh|fish", Summary: "print the shell completion script", Run: cmdCompletion, Words: []string{"bash", "zsh", "fish"}},
		{Name: "manpage", Args: "", Summary: "print the kclb(1) manual page (roff)", Run: cmdManpage},
		{Name: "version", Args: "", Summary: "print the version, commit and Go version", Run: cmdVersion},
		{Name: "help", Args: "", Summary: "print this help", Run: func(_ []string, stdout, _ io.Writer) error { usage(stdout); return nil }},
	}
	for i := range cmds {
		if cmds[i].Run == nil {
			cmds[i].Run = extraCommands[cmds[i].Name]
		}
	}
	return cmds
}

// lookup returns the command called name.
func lookup(name string) (cmdline.Command, bool) {
	for _, c := range commands() {
		if c.Name == name {
			return c, c.Run != nil
		}
	}
	if f, ok := extraCommands[name]; ok {
		return cmdline.Command{Name: name, Run: f}, true
	}
	return cmdline.Command{}, false
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
	err := c.Run(args[1:], stdout, stderr)
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

func usage(w io.Writer) { cmdline.Usage(w, commands()) }

func cmdVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", stderr, "")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	fmt.Fprintln(stdout, cmdline.VersionLine(version, commit))
	return nil
}

// newFlagSet is cmdline.NewFlagSet: completion and the manual page learn each
// command's flags from the flag set it makes.
var newFlagSet = cmdline.NewFlagSet
