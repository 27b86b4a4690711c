package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kclb/kclb/internal/config"
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
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	if pid, err := liveKclb(); err != nil {
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

// liveKclb returns the pid of a `kclb run` process other than this one in
// the same network namespace, or 0 if there is none. Processes whose
// /proc entries cannot be read (another user's, with hidepid) are not
// counted: under systemd they belong to other services.
func liveKclb() (int, error) {
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return 0, err
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	me := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == me {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		cl, err := os.ReadFile(filepath.Join(dir, "cmdline"))
		if err != nil || !isKclbRun(cl) {
			continue
		}
		if ns, err := os.Readlink(filepath.Join(dir, "ns", "net")); err == nil && ns == self {
			return pid, nil
		}
	}
	return 0, nil
}

// isKclbRun reports whether a /proc cmdline is `kclb run ...` (the binary
// may be any path whose name starts with kclb, e.g. kclb.new during an
// upgrade).
func isKclbRun(cmdline []byte) bool {
	args := bytes.Split(bytes.TrimRight(cmdline, "\x00"), []byte{0})
	return len(args) >= 2 && strings.HasPrefix(filepath.Base(string(args[0])), "kclb") && string(args[1]) == "run"
}

func init() { extraCommands["cleanup-vips"] = cmdCleanupVIPs }
