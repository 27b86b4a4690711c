package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
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
	if f.addr == "" {
		return admin.NewUnixClient(f.socket), nil
	}
	addr := f.addr
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	token := ""
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("token file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	return admin.NewTCPClient(addr, token), nil
}

// parseInterspersed parses flags that may follow positional arguments
// ("kclb drain NAME --wait") and returns the positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
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

// cmdStatus prints the status of a running kclb.
func cmdStatus(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", stderr, "[-s SOCKET | -a URL -token-file F] [--json]")
	var af adminFlags
	af.register(fs)
	color := fs.String("color", "auto", "colour the table: auto (when stdout is a terminal), always, never")
	pos, err := parseInterspersed(fs, args)
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
	useColor := *color == "always" || (*color == "auto" && isTerminal(stdout) && os.Getenv("NO_COLOR") == "")
	printStatus(stdout, st, useColor)
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
	pos, err := parseInterspersed(fs, args)
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

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// ANSI colours for states.
const (
	ansiReset  = "\x1b[0m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiRed    = "\x1b[31m"
	ansiBlue   = "\x1b[34m"
	ansiGrey   = "\x1b[90m"
)

func stateColor(s string) string {
	switch s {
	case "up", "ready", "master":
		return ansiGreen
	case "drain", "down", "backup":
		return ansiYellow
	case "dead", "fault":
		return ansiRed
	case "starting":
		return ansiBlue
	case "maint":
		return ansiGrey
	}
	return ""
}

// printStatus writes st as a table. Colour codes are added after the
// columns are aligned so they do not disturb the widths.
func printStatus(w io.Writer, st *admin.Status, color bool) {
	fmt.Fprintf(w, "kclb %s (version %s), up %s", st.Name, st.Version, (time.Duration(st.UptimeSeconds) * time.Second).String())
	if st.Panic {
		fmt.Fprint(w, ", PANIC MODE")
	}
	if !st.AnyAvailable {
		fmt.Fprint(w, ", NO SERVER AVAILABLE")
	}
	fmt.Fprintln(w)
	for _, l := range st.Listeners {
		tls := ""
		if l.TLS {
			tls = " (tls)"
		}
		fmt.Fprintf(w, "listener %s %s%s\n", l.Name, l.Addr, tls)
	}
	for _, v := range st.VRRP {
		state := v.State
		if color {
			state = stateColor(v.State) + state + ansiReset
		}
		fmt.Fprintf(w, "vrrp %s %s priority %d", v.Name, state, v.Priority)
		if v.Master != "" {
			fmt.Fprintf(w, " master %s", v.Master)
		}
		if v.Health != "" && v.Health != "ok" {
			fmt.Fprintf(w, " tracking %s", v.Health)
		}
		if v.Standby {
			fmt.Fprint(w, " HANDED OVER (kclb handover --back returns it)")
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "  adverts sent %d received %d (as master %d, priority 0 %d), timer lag max %.1fms, errors %d, dropped %s\n",
			v.AdvertsSent, v.AdvertsReceived, v.AdvertsAsMaster, v.Resignations, v.MaxTimerLagMillis, v.Errors, formatDrops(v.Drops))
	}
	printPair(w, st)
	fmt.Fprintln(w)
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	peerCol := ""
	if st.Pair != nil {
		peerCol = "PEER\t"
	}
	fmt.Fprintln(tw, "SERVER\tHEALTH\tADMIN\t"+peerCol+"INFLIGHT\tQUEUED\tREQUESTS\tERRORS\tREDISP\tLAST10S\tIDLE\tCHECK P/F\tSINCE\tREASON")
	for _, s := range st.Servers {
		idle := "never"
		if s.IdleSeconds != nil {
			idle = (time.Duration(*s.IdleSeconds*1000) * time.Millisecond).Round(100 * time.Millisecond).String()
		}
		check := "-"
		if s.Check != nil {
			check = fmt.Sprintf("%.1fms %d/%d", s.Check.LatencyMillis, s.Passes, s.Fails)
		}
		since := time.Since(s.Since).Round(time.Second).String()
		recent := "-"
		if s.RecentRequests != nil {
			recent = fmt.Sprint(*s.RecentRequests)
		}
		name := s.Name
		if s.Backup {
			name += " (backup)"
		}
		adminCol := s.Admin
		if st.Pair != nil {
			adminCol += "\t" + cmp.Or(s.PeerAdmin, "?")
			if s.PeerAdmin != "" && s.PeerAdmin != s.Admin {
				adminCol += " DIFFERS"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", name, s.Health, adminCol,
			s.InFlight, s.Queued, s.Requests, s.Errors, s.Redispatches, recent, idle, check, since, s.Reason)
	}
	tw.Flush()
	lines := strings.SplitAfter(b.String(), "\n")
	for i, line := range lines {
		if color && i > 0 && i <= len(st.Servers) {
			s := st.Servers[i-1]
			line = colorField(line, len(s.Name), s.Health)
			line = colorAfter(line, s.Health, s.Admin)
		}
		io.WriteString(w, line)
	}
}

// printPair writes the [pair] lines of the status: the peer, whether it
// answers, the parts of the configuration that differ, refused messages.
func printPair(w io.Writer, st *admin.Status) {
	p := st.Pair
	if p == nil {
		return
	}
	peer := p.Peer
	if p.PeerName != "" {
		peer += " (" + p.PeerName + ")"
	}
	contact := "never"
	if !p.LastContact.IsZero() {
		contact = time.Since(p.LastContact).Round(100*time.Millisecond).String() + " ago"
	}
	if p.Reachable {
		fmt.Fprintf(w, "pair peer %s reachable, last contact %s\n", peer, contact)
	} else {
		fmt.Fprintf(w, "pair peer %s UNREACHABLE (last contact %s): %s\n", peer, contact, p.Error)
	}
	if len(p.Drift) > 0 {
		fmt.Fprintf(w, "pair CONFIGURATION DRIFT: %s differ from the peer's\n", strings.Join(p.Drift, ", "))
	}
	var disagree []string
	for _, s := range st.Servers {
		if s.PeerAdmin != "" && s.PeerAdmin != s.Admin {
			disagree = append(disagree, fmt.Sprintf("%s (%s here, %s there)", s.Name, s.Admin, s.PeerAdmin))
		}
	}
	if len(disagree) > 0 {
		fmt.Fprintf(w, "pair DISAGREES on %s\n", strings.Join(disagree, ", "))
	}
	if len(p.Dropped) > 0 {
		fmt.Fprintf(w, "pair messages dropped %s\n", formatDrops(p.Dropped))
	}
}

// formatDrops prints VRRP drop counters as "0" or "12 (unknown_peer 10, ttl 2)".
func formatDrops(d map[string]uint64) string {
	var total uint64
	keys := make([]string, 0, len(d))
	for k, n := range d {
		total += n
		keys = append(keys, k)
	}
	if total == 0 {
		return "0"
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, d[k]))
	}
	return fmt.Sprintf("%d (%s)", total, strings.Join(parts, ", "))
}

// colorField colours the word starting after the name column.
func colorField(line string, nameLen int, word string) string {
	i := strings.Index(line[nameLen:], word)
	if i < 0 {
		return line
	}
	i += nameLen
	return line[:i] + stateColor(word) + word + ansiReset + line[i+len(word):]
}

// colorAfter colours the first occurrence of word after prev.
func colorAfter(line, prev, word string) string {
	p := strings.Index(line, prev+ansiReset)
	if p < 0 {
		return line
	}
	p += len(prev + ansiReset)
	i := strings.Index(line[p:], word)
	if i < 0 {
		return line
	}
	i += p
	return line[:i] + stateColor(word) + word + ansiReset + line[i+len(word):]
}
