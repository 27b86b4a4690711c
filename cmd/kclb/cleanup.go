package main

import (
	"github.com/kclb/kclb/internal/cmdline"

	"fmt"
	"io"
	"strings"

	"github.com/kclb/kclb/internal/configmap"
	"github.com/kclb/kclb/vrrp"
)

// cmdCleanupVIPs removes this node's configured VIPs after kclb died
// without resigning (issue 17, item 6a: after kill -9 the dead node's
// kernel kept answering ARP for the VIP). deploy/kclb.service runs it as
// ExecStopPost=, so it runs whenever the service stops, whatever the
// cause. It does nothing while a `kclb run` process lives in this network
// namespace: that process manages the VIPs (after a binary upgrade the
// new process holds them), and a starting kclb removes stale VIPs itself.
// Address owners (priority 255) keep their addresses: they are real.
func cmdCleanupVIPs(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("cleanup-vips", stderr, "[-c FILE]")
	path := fs.String("c", defaultConfig, "configuration `FILE`")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return errUsage
	}
	cfg, err := configmap.Load(*path)
	if err != nil {
		return err
	}
	if pid, err := cmdline.LiveKclbRun(); err != nil {
		return fmt.Errorf("cleanup-vips: looking for a running kclb: %w", err)
	} else if pid != 0 {
		fmt.Fprintf(stdout, "kclb run (pid %d) is alive in this network namespace; its VIPs are left to it\n", pid)
		return nil
	}
	var failed []string
	for _, in := range cfg.VRRP.Instances {
		if in.Priority == 255 {
			continue
		}
		removed, err := vrrp.RemoveVIPs(in.Interface, in.VIPs)
		for _, p := range removed {
			fmt.Fprintf(stdout, "vrrp instance %s: removed %v from %s\n", in.Name, p, in.Interface)
		}
		if err != nil {
			failed = append(failed, fmt.Sprintf("vrrp instance %s: %v", in.Name, err))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("cleanup-vips: %s", strings.Join(failed, "; "))
	}
	return nil
}

func init() { extraCommands["cleanup-vips"] = cmdCleanupVIPs }
