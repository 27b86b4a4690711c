// Command kclb is an edge proxy for a Keycloak cluster: TLS termination,
// Keycloak-aware session affinity, deep health checks, an in-process VRRP
// virtual IP and a drain API for rolling restarts, in one binary.
//
// Usage:
//
//	kclb run -c /etc/kclb/config.toml   run the proxy
//	kclb check -c FILE                  validate a configuration (exit 0/1)
//	kclb demo                           local demo: 3 Keycloak stand-ins + kclb
//	kclb status|drain|ready|maint       operator commands (admin socket)
//	kclb import haproxy.cfg [keepalived.conf]  translate an existing setup
//	kclb version                        print the version
//
// cmd/kclb is the only place that reads configuration and wires the
// runtime packages together.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// errUsage marks a command-line mistake (exit status 2).
var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a subcommand and returns the process exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(args[1:], stderr)
	case "check":
		err = cmdCheck(args[1:], stdout, stderr)
	case "demo":
		err = cmdDemo(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "kclb", version)
	case "help", "-h", "--help":
		usage(stdout)
	default:
		if c, ok := extraCommands[args[0]]; ok {
			err = c(args[1:], stdout, stderr)
			break
		}
		fmt.Fprintf(stderr, "kclb: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage), errors.Is(err, flag.ErrHelp):
		return 2
	default:
		fmt.Fprintln(stderr, "kclb:", err)
		return 1
	}
}

// extraCommands are the operator commands that talk to a running kclb;
// each registers itself from its own file with an init function.
var extraCommands = map[string]func(args []string, stdout, stderr io.Writer) error{}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: kclb <command> [flags]

commands:
  run -c FILE      run the proxy with the configuration FILE
                   (SIGHUP reloads FILE, SIGUSR2 hands the sockets to a new binary)
  check -c FILE    validate FILE; prints every problem, exits 0 or 1
  demo             start three Keycloak stand-ins and kclb on localhost
  status [--json]  show the edge: servers, health, admin state, VRRP
  drain NAME [--wait] [--timeout D]   no new clients for NAME; logins in progress finish
  ready NAME [--wait-healthy]         put NAME back into rotation
  maint NAME       no traffic at all for NAME
  reload           re-read the configuration of the running kclb (errors are printed)
  import haproxy.cfg [keepalived.conf] [-o FILE]   translate an HAProxy + keepalived setup
  version          print the version

Run "kclb <command> -h" for the flags of a command.
`)
}
