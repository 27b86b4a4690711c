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
	list, what, err := c.WaitHandover(*back, *timeout)
	if err != nil {
		return fmt.Errorf("handover: %w", err)
	}
	if af.json {
		res.VRRP = list
		return printJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "%s after %.1fs\n", what, time.Since(start).Seconds())
	return nil
}

func init() { extraCommands["handover"] = cmdHandover }
