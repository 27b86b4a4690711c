package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kclb/kclb/sdnotify"
)

// Zero-downtime binary upgrade. SIGUSR2 makes the running kclb start the
// binary now installed at its own path with the same arguments, handing
// it the listening sockets (duplicated file descriptors), so the kernel
// keeps queueing connections on the same sockets throughout and nothing
// is refused:
//
//  1. the old process starts the new one with the listeners as extra
//     files and one end of a socket pair for the hand-over dialogue;
//  2. the new process builds its runtime on the inherited sockets,
//     serves, and writes "ready";
//  3. the old process detaches its VRRP instances (they stop advertising
//     but neither resign nor remove the VIPs), stops accepting, and writes
//     "released" with the names of the instances that were Master;
//  4. the new process starts VRRP, those instances directly as Master on
//     the VIPs already in place, so the peer never sees a gap longer than
//     an advert interval; the old one finishes the requests in flight
//     within the shutdown grace period and exits 0.
//
// If the new process fails before "ready" (bad binary, bad config), it is
// killed and the old one keeps serving.

// Environment variables of the hand-over.
const (
	envUpgradeListeners = "KCLB_UPGRADE_LISTENERS" // "bind=fd,bind=fd"
	envUpgradeSync      = "KCLB_UPGRADE_SYNC"      // fd of the dialogue socket
)

// upgradeTimeout bounds how long the old process waits for the new one.
const upgradeTimeout = 60 * time.Second

// inherited are the listeners and dialogue socket a new process received
// from its predecessor; the zero value means a normal start.
type inherited struct {
	listeners map[string]net.Listener // by bind address
	sync      *os.File
}

// takeInherited reads the hand-over environment, if any, and clears it so
// that a later upgrade of this process starts clean.
func takeInherited() (inherited, error) {
	var in inherited
	ls, sy := os.Getenv(envUpgradeListeners), os.Getenv(envUpgradeSync)
	os.Unsetenv(envUpgradeListeners)
	os.Unsetenv(envUpgradeSync)
	if sy == "" {
		return in, nil
	}
	fd, err := strconv.Atoi(sy)
	if err != nil {
		return in, fmt.Errorf("upgrade: bad %s %q", envUpgradeSync, sy)
	}
	in.sync = os.NewFile(uintptr(fd), "kclb-upgrade-sync")
	in.listeners = make(map[string]net.Listener)
	for item := range strings.SplitSeq(ls, ",") {
		if item == "" {
			continue
		}
		bind, fdText, ok := strings.Cut(item, "=")
		fd, err := strconv.Atoi(fdText)
		if !ok || err != nil {
			return in, fmt.Errorf("upgrade: bad listener entry %q", item)
		}
		f := os.NewFile(uintptr(fd), "kclb-listener-"+bind)
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return in, fmt.Errorf("upgrade: inherited listener %s: %w", bind, err)
		}
		in.listeners[bind] = ln
	}
	return in, nil
}

// say writes one line of the hand-over dialogue.
func say(f *os.File, word string) error {
	_, err := f.WriteString(word + "\n")
	return err
}

// expect reads one line of the dialogue and checks it is word.
func expect(r *bufio.Reader, f *os.File, word string, timeout time.Duration) error {
	f.SetReadDeadline(time.Now().Add(timeout))
	line, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("upgrade: waiting for %q: %w", word, err)
	}
	if strings.TrimSpace(line) != word {
		return fmt.Errorf("upgrade: got %q, want %q", strings.TrimSpace(line), word)
	}
	return nil
}

// childHandshake is the new process's side: report ready, wait until the
// old process detached VRRP and stopped accepting. It returns the names of
// the VRRP instances that were Master there (to inherit).
func (h inherited) childHandshake() (masters []string, err error) {
	if h.sync == nil {
		return nil, nil
	}
	defer h.sync.Close()
	if err := say(h.sync, "ready"); err != nil {
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	h.sync.SetReadDeadline(time.Now().Add(upgradeTimeout))
	line, err := bufio.NewReader(h.sync).ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("upgrade: waiting for \"released\": %w", err)
	}
	f := strings.Fields(line)
	if len(f) == 0 || f[0] != "released" {
		return nil, fmt.Errorf("upgrade: got %q, want \"released\"", strings.TrimSpace(line))
	}
	return f[1:], nil
}

// upgrade is the old process's side. It returns nil once the new process
// serves on the listeners and this one has stopped VRRP and accepting; the
// caller then drains and exits. On error this process keeps serving.
func (in *instance) upgrade(ctx context.Context) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("upgrade: socketpair: %w", err)
	}
	mine := os.NewFile(uintptr(pair[0]), "kclb-upgrade-parent")
	theirs := os.NewFile(uintptr(pair[1]), "kclb-upgrade-child")
	defer mine.Close()
	defer theirs.Close()

	fronts := in.Frontends()
	files := []*os.File{theirs}
	var entries []string
	for _, f := range fronts {
		tl, ok := f.raw.(*net.TCPListener)
		if !ok {
			return fmt.Errorf("upgrade: listener %q is not TCP", f.name)
		}
		lf, err := tl.File()
		if err != nil {
			return fmt.Errorf("upgrade: listener %q: %w", f.name, err)
		}
		defer lf.Close()
		files = append(files, lf)
		entries = append(entries, f.spec.Bind+"="+strconv.Itoa(2+len(files)))
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.ExtraFiles = files
	cmd.Env = append(sdnotify.ChildEnv(os.Environ()), envUpgradeSync+"=3", envUpgradeListeners+"="+strings.Join(entries, ","))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("upgrade: start %s: %w", exe, err)
	}
	in.logger.Info("upgrade: new process started", "pid", cmd.Process.Pid, "binary", exe)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	theirs.Close()

	r := bufio.NewReader(mine)
	ready := make(chan error, 1)
	go func() { ready <- expect(r, mine, "ready", upgradeTimeout) }()
	select {
	case err = <-ready:
	case err = <-exited:
		err = fmt.Errorf("upgrade: new process exited before it was ready: %v", err)
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		cmd.Process.Kill()
		return err
	}
	// The new process serves on the same sockets: detach VRRP (the VIPs
	// stay), stop accepting here, then let it take VRRP over.
	masters := in.detachVRRP()
	for _, f := range fronts {
		f.ln.Close()
	}
	if err := say(mine, strings.Join(append([]string{"released"}, masters...), " ")); err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	// Under systemd the new process becomes the service's main process.
	if err := sdnotify.MainPID(cmd.Process.Pid); err != nil {
		in.logger.Warn("upgrade: telling systemd the new main pid", "err", err)
	}
	in.logger.Info("upgrade: handed over to the new process", "pid", cmd.Process.Pid)
	return nil
}
