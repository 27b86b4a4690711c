package main

import (
	"github.com/kclb/kclb/internal/cmdline"

	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/kclb/kclb/internal/admin"
	"github.com/kclb/kclb/internal/backend"
)

// The operator commands talk to a running kclb over its admin API:
//
//	kclb status [--json]
//	kclb drain NAME [--wait] [--timeout D] [--quiet D]
//	kclb ready NAME [--wait-healthy] [--timeout D]
//	kclb maint NAME
//
// with -s SOCKET (default /run/kclb/admin.sock) or -a URL -token-file F.
func init() {
	extraCommands["status"] = cmdStatus
	extraCommands["drain"] = func(args []string, stdout, stderr io.Writer) error {
		return cmdAdminState("drain", backend.AdminDrain, args, stdout, stderr)
	}
	extraCommands["ready"] = func(args []string, stdout, stderr io.Writer) error {
		return cmdAdminState("ready", backend.AdminReady, args, stdout, stderr)
	}
	extraCommands["maint"] = func(args []string, stdout, stderr io.Writer) error {
		return cmdAdminState("maint", backend.AdminMaint, args, stdout, stderr)
	}
	extraCommands["reload"] = cmdReload
}

// cmdReload asks the running kclb to re-read its configuration file; a
// configuration error is printed and the command exits 1 (the running
// configuration stays in force).
func cmdReload(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("reload", stderr, "[-s SOCKET | -a URL -token-file F]")
	var af adminFlags
	af.register(fs)
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return errUsage
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Reload(ctx); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	fmt.Fprintln(stdout, "configuration reloaded")
	return nil
}

// adminFlags are the connection flags every operator command takes.
type adminFlags struct {
	socket, addr, tokenFile string
	json                    bool
}

func (f *adminFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.socket, "s", admin.DefaultSocket, "admin Unix `SOCKET` of the running kclb")
	fs.StringVar(&f.addr, "a", "", "admin TCP `URL` instead of the socket, e.g. http://127.0.0.1:9100")
	fs.StringVar(&f.tokenFile, "token-file", "", "`FILE` holding the bearer token for -a")
	fs.BoolVar(&f.json, "json", false, "print the API's JSON instead of text")
}

// client returns the admin client the flags select.
func (f *adminFlags) client() (*admin.Client, error) {
	return admin.Dial(f.socket, f.addr, f.tokenFile)
}

// cmdStatus prints the status of a running kclb.
func cmdStatus(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", stderr, "[-s SOCKET | -a URL -token-file F] [--json]")
	var af adminFlags
	af.register(fs)
	color := fs.String("color", "auto", "colour the table: auto (when stdout is a terminal), always, never")
	pos, err := cmdline.ParseInterspersed(fs, args)
	if err != nil {
		return errUsage
	}
	if len(pos) != 0 {
		fmt.Fprintln(stderr, "usage: kclb status [-s SOCKET | -a URL -token-file F] [--json]")
		return errUsage
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	if af.json {
		return printJSON(stdout, st)
	}
	useColor := *color == "always" || (*color == "auto" && cmdline.IsTerminal(stdout) && os.Getenv("NO_COLOR") == "")
	admin.WriteStatus(stdout, st, useColor)
	return nil
}

// cmdAdminState sets a server's admin state and optionally waits.
func cmdAdminState(verb string, state backend.AdminState, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(verb, stderr, "NAME [flags]")
	var af adminFlags
	af.register(fs)
	var wait, waitHealthy *bool
	var quiet *time.Duration
	switch state {
	case backend.AdminDrain:
		wait = fs.Bool("wait", false, "wait until the server has no requests in flight and no client traffic for the quiet period")
		quiet = fs.Duration("quiet", admin.DefaultQuiet, "with --wait: how long without a new request counts as idle")
	case backend.AdminReady:
		waitHealthy = fs.Bool("wait-healthy", false, "wait until a fresh health check reports the server up")
	}
	timeout := fs.Duration("timeout", 2*time.Minute, "how long --wait or --wait-healthy may take")
	pos, err := cmdline.ParseInterspersed(fs, args)
	if err != nil {
		return errUsage
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "usage: kclb %s NAME [flags]\n", verb)
		fs.PrintDefaults()
		return errUsage
	}
	name := pos[0]
	c, err := af.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	res, err := c.SetAdmin(ctx, name, state)
	cancel()
	if err != nil {
		return fmt.Errorf("%s %s: %w", verb, name, err)
	}
	until, doWait := admin.UntilIdle, wait != nil && *wait
	if waitHealthy != nil && *waitHealthy {
		until, doWait = admin.UntilHealthy, true
	}
	// --json prints one document: the change, and the wait's outcome
	// when there was one.
	out := changeOutput{Change: res}
	if af.json && !doWait {
		if err := printJSON(stdout, out); err != nil {
			return err
		}
	}
	if !af.json {
		fmt.Fprintf(stdout, "%s: %s -> %s (health %s, %d in flight)\n", name, res.Previous, res.Server.Admin, res.Server.Health, res.Server.InFlight)
	}
	peerErr := peerOutcome(stdout, name, res.Peer, af.json)
	if !doWait {
		return peerErr
	}
	var q time.Duration
	if quiet != nil {
		q = *quiet
	}
	if !af.json {
		fmt.Fprintf(stdout, "%s: waiting up to %v for it to be %s\n", name, *timeout, until)
	}
	ctx, cancel = context.WithTimeout(context.Background(), *timeout+10*time.Second)
	defer cancel()
	wr, err := c.Wait(ctx, name, until, *timeout, q)
	if af.json {
		out.Wait = wr
		printJSON(stdout, out)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", verb, name, err)
	}
	if af.json {
		return peerErr
	}
	fmt.Fprintf(stdout, "%s: %s after %.1fs\n", name, until, wr.WaitedSeconds)
	return peerErr
}

// peerOutcome reports what happened on the [pair] peer (nothing without a
// pair) and returns errPeerNotApplied when the peer was not told: the
// command then exits 3, after any --wait, which runs on this instance.
func peerOutcome(stdout io.Writer, name string, res *admin.PeerResult, quiet bool) error {
	if res == nil {
		return nil
	}
	if res.Applied {
		if !quiet {
			fmt.Fprintf(stdout, "%s: applied on the pair peer %s too\n", name, res.Peer)
		}
		return nil
	}
	return fmt.Errorf("%s: pair peer %s not reached (%s): %w", name, res.Peer, res.Error, errPeerNotApplied)
}

// changeOutput is what drain, ready and maint print with --json.
type changeOutput struct {
	Change *admin.ChangeResult `json:"change"`
	// Wait is the outcome of --wait or --wait-healthy; null when the
	// wait failed (the error goes to standard error) or was not asked for.
	Wait *admin.WaitResult `json:"wait,omitempty"`
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
