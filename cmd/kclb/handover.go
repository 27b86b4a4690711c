package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/kclb/kclb/internal/admin"
)

// cmdHandover is `kclb handover [--wait] [--back]`.
func cmdHandover(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("handover", stderr, "[-s SOCKET | -a URL -token-file F] [--wait] [--back] [--drain D] [--timeout D]")
	var af adminFlags
	af.register(fs)
	wait := fs.Bool("wait", false, "wait until the peer holds the VIPs (with --back: until this edge is Master again, for the edge with the higher priority)")
	back := fs.Bool("back", false, "end the handover: restore this edge's priority (it takes the VIPs back if it is higher)")
	drain := fs.Duration("drain", admin.DefaultHandoverDrain, "how long to wait for client connections to close before the VIPs leave")
	timeout := fs.Duration("timeout", 30*time.Second, "how long --wait may take")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return errUsage
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *drain+10*time.Second)
	res, err := c.Handover(ctx, *back, *drain)
	cancel()
	if err != nil {
		return fmt.Errorf("handover: %w", err)
	}
	if af.json && !*wait {
		return printJSON(stdout, res)
	}
	if !af.json {
		if *back {
			fmt.Fprintln(stdout, "handover ended: configured priorities restored")
		} else if res.WasMaster {
			fmt.Fprintf(stdout, "handed over after %.0fms of drain (%d client connections still open)\n", res.DrainedMillis, res.OpenConnections)
		} else {
			fmt.Fprintln(stdout, "this edge is not Master: nothing moved; its priority is 1 (it will not preempt) until kclb handover --back")
		}
	}
	if !*wait {
		return nil
	}
	start := time.Now()
	deadline := start.Add(*timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := c.Status(ctx)
		cancel()
		if err != nil {
			return err
		}
		if done, what := handoverDone(st.VRRP, *back); done {
			if af.json {
				res.VRRP = st.VRRP
				return printJSON(stdout, res)
			}
			fmt.Fprintf(stdout, "%s after %.1fs\n", what, time.Since(start).Seconds())
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("handover: not done after %v: %s", *timeout, vrrpSummary(st.VRRP))
		}
		time.Sleep(50 * time.Millisecond) // polling the status: the API has no VRRP wait
	}
}

// handoverDone reports whether a handover (or its end) has taken effect:
// every instance Backup of a known peer, or, after --back, every instance
// Master again (for an edge whose priority is the higher one).
func handoverDone(list []admin.VRRPStatus, back bool) (bool, string) {
	for _, v := range list {
		if back {
			if v.Standby || v.State != "master" {
				return false, ""
			}
			continue
		}
		if v.State != "backup" || v.Master == "" {
			return false, ""
		}
	}
	if back {
		return true, "priorities restored: " + vrrpSummary(list)
	}
	return true, "the peer holds the VIPs: " + vrrpSummary(list)
}

func vrrpSummary(list []admin.VRRPStatus) string {
	s := ""
	for i, v := range list {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %s priority %d", v.Name, v.State, v.Priority)
		if v.Master != "" {
			s += " master " + v.Master
		}
	}
	return s
}

func init() { extraCommands["handover"] = cmdHandover }
