package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kclb/kclb/internal/sdnotify"
)

// Zero-downtime binary upgrade. SIGUSR2 makes the running kclb start the
// binary now installed at its own path with the same arguments, handing
// it the listening sockets (duplicated file descriptors): the public
// listeners, the admin Unix socket and the admin TCP listener. The kernel
// keeps queueing connections on the same sockets throughout, so nothing
// is refused, and the admin socket file is never removed or re-created:
//
//  1. the old process starts the new one with the listeners as extra
//     files and one end of a socket pair for the hand-over dialogue;
//  2. the new process builds its runtime on the inherited sockets,
//     serves, finishes its first health round and writes "ready" (or
//     "failed <reason>" before it exits);
//  3. the old process detaches its VRRP instances (they stop advertising
//     but neither resign nor remove the VIPs), stops accepting on every
//     listener (leaving the socket file in place), and writes "released"
//     with the names of the instances that were Master;
//  4. the new process starts VRRP, those instances directly as Master on
//     the VIPs already in place, so the peer never sees a gap longer than
//     the hand-over (a few milliseconds); the old one finishes the
//     requests in flight within the shutdown grace period and exits 0.
//
// If the new process fails or does not say "ready" within upgradeTimeout,
// the old one logs why, kills it and keeps serving. The old process runs
// its side in the background: its main loop keeps answering systemd's
// watchdog and SIGTERM throughout.

// Environment variables of the hand-over.
const (
	envUpgradeListeners = "KCLB_UPGRADE_LISTENERS" // "key=fd,key=fd", keys query-escaped
	envUpgradeSync      = "KCLB_UPGRADE_SYNC"      // fd of the dialogue socket
)

// upgradeTimeout bounds how long the old process waits for the new one
// to be ready, and the new one for the old one's "released".
const upgradeTimeout = 60 * time.Second

// Keys of the admin listeners among the inherited sockets; public
// listeners are keyed by their bind address.
const (
	adminUnixKey = "admin-unix:"
	adminTCPKey  = "admin-tcp:"
)

// inherited are the listeners and dialogue socket a new process received
// from its predecessor; the zero value means a normal start.
type inherited struct {
	listeners map[string]net.Listener // by bind address or admin key
	sync      *os.File
	// answered is set once the dialogue reached "ready" or "failed".
	answered bool
}

// takeInherited reads the hand-over environment, if any, and clears it so
// that a later upgrade of this process starts clean.
func takeInherited() (*inherited, error) {
	in := &inherited{}
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
	// Non-blocking, so that os.NewFile makes it pollable and read
	// deadlines work.
	if err := syscall.SetNonblock(fd, true); err != nil {
		return in, fmt.Errorf("upgrade: dialogue socket: %w", err)
	}
	syscall.CloseOnExec(fd) // notify commands must not hold the dialogue open
	in.sync = os.NewFile(uintptr(fd), "kclb-upgrade-sync")
	in.listeners = make(map[string]net.Listener)
	for item := range strings.SplitSeq(ls, ",") {
		if item == "" {
			continue
		}
		esc, fdText, ok := strings.Cut(item, "=")
		fd, err := strconv.Atoi(fdText)
		key, kerr := url.QueryUnescape(esc)
		if !ok || err != nil || kerr != nil {
			return in, fmt.Errorf("upgrade: bad listener entry %q", item)
		}
		f := os.NewFile(uintptr(fd), "kclb-listener-"+key)
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return in, fmt.Errorf("upgrade: inherited listener %s: %w", key, err)
		}
		in.listeners[key] = ln
	}
	return in, nil
}

// take removes and returns the inherited listener under key, or nil.
func (h *inherited) take(key string) net.Listener {
	ln, ok := h.listeners[key]
	if !ok {
		return nil
	}
	delete(h.listeners, key)
	return ln
}

// say writes one line of the hand-over dialogue.
func say(f *os.File, word string) error {
	_, err := f.WriteString(word + "\n")
	return err
}

// readLine reads one line of the dialogue within timeout.
func readLine(r *bufio.Reader, f *os.File, timeout time.Duration) ([]string, error) {
	if err := f.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	return strings.Fields(line), nil
}

// errSilentExit is awaitReady's error when the new process closed the
// dialogue (exited) without saying "ready" or "failed".
var errSilentExit = errors.New("upgrade: the new process closed the hand-over without a word")

// awaitReady is the old process's wait for the new one's first word:
// nil for "ready", the new process's reason for "failed", a timeout
// error if it says nothing within timeout.
func awaitReady(r *bufio.Reader, f *os.File, timeout time.Duration) error {
	w, err := readLine(r, f, timeout)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("upgrade: the new process was not ready within %v", timeout)
	case errors.Is(err, io.EOF):
		return errSilentExit
	case err != nil:
		return fmt.Errorf("upgrade: waiting for \"ready\": %w", err)
	case len(w) > 0 && w[0] == "ready":
		return nil
	case len(w) > 0 && w[0] == "failed":
		return fmt.Errorf("upgrade: the new process failed: %s", strings.Join(w[1:], " "))
	}
	return fmt.Errorf("upgrade: got %q, want \"ready\"", strings.Join(w, " "))
}

// fail tells the old process why this new process gives up (best effort;
// once per dialogue).
func (h *inherited) fail(err error) {
	if h.sync == nil || h.answered {
		return
	}
	h.answered = true
	say(h.sync, "failed "+oneLine(err))
	h.sync.Close()
}

// childHandshake is the new process's side: report ready, wait until the
// old process detached VRRP and stopped accepting. It returns the names of
// the VRRP instances that were Master there (to inherit).
func (h *inherited) childHandshake(ctx context.Context) (masters []string, err error) {
	if h.sync == nil {
		return nil, nil
	}
	h.answered = true
	defer h.sync.Close()
	if err := say(h.sync, "ready"); err != nil {
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	w, err := during(ctx, "waiting for the old process to release", func() ([]string, error) {
		return readLine(bufio.NewReader(h.sync), h.sync, upgradeTimeout)
	})
	if err != nil {
		return nil, fmt.Errorf("upgrade: waiting for \"released\": %w", err)
	}
	if len(w) == 0 || w[0] != "released" {
		return nil, fmt.Errorf("upgrade: got %q, want \"released\"", strings.Join(w, " "))
	}
	return w[1:], nil
}

// upgrade is the old process's side. It returns nil once the new process
// serves on the listeners and this one has stopped VRRP and accepting; the
// caller then drains and exits. On error (or when ctx ends first) the new
// process is killed and this one keeps serving.
func (in *instance) upgrade(ctx context.Context) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	mine, theirs, err := newDialogue()
	if err != nil {
		return err
	}
	defer mine.Close()
	defer theirs.Close()

	fronts := in.Frontends()
	handed := in.handedAdmin()
	for _, f := range fronts {
		handed = append(handed, keyedListener{key: f.spec.Bind, ln: f.raw})
	}
	files := []*os.File{theirs}
	var entries []string
	for _, h := range handed {
		lf, err := listenerFile(h.ln)
		if err != nil {
			return fmt.Errorf("upgrade: listener %s: %w", h.key, err)
		}
		defer lf.Close()
		files = append(files, lf)
		entries = append(entries, url.QueryEscape(h.key)+"="+strconv.Itoa(2+len(files)))
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.ExtraFiles = files
	cmd.Env = append(sdnotify.ChildEnv(os.Environ()), envUpgradeSync+"=3", envUpgradeListeners+"="+strings.Join(entries, ","))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("upgrade: start %s: %w", exe, err)
	}
	// Start put every descriptor it passed in blocking mode (File.Fd),
	// and a duplicate shares that flag with the listener here: put it
	// back, or an accept of this process blocks in the kernel, and the
	// Close of releaseAdmin waits for a connection that may never come
	// (a quiet pair listener held the old process for ever).
	for _, f := range files[1:] {
		setNonblock(f)
	}
	in.logger.Info("upgrade: new process started", "pid", cmd.Process.Pid, "binary", exe)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	theirs.Close()

	r := bufio.NewReader(mine)
	ready := make(chan error, 1)
	go func() { ready <- awaitReady(r, mine, upgradeTimeout) }()
	select {
	case err = <-ready:
	case err = <-exited:
		// It may have said why just before exiting.
		if werr := <-ready; werr != nil && !errors.Is(werr, errSilentExit) {
			err = werr
		} else {
			err = fmt.Errorf("upgrade: the new process exited before it was ready: %v", err)
		}
	case <-ctx.Done():
		err = fmt.Errorf("upgrade: %w", context.Cause(ctx))
	}
	if err != nil {
		cmd.Process.Kill()
		return err
	}
	// The new process serves on the same sockets: detach VRRP (the VIPs
	// stay), stop accepting here, then let it take VRRP over.
	masters := in.detachVRRP()
	for _, f := range fronts {
		f.stopAccepting()
	}
	in.releaseAdmin()
	if err := say(mine, strings.Join(append([]string{"released"}, masters...), " ")); err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	// Under systemd the new process becomes the service's main process.
	if err := sdnotify.MainPID(cmd.Process.Pid); err != nil {
		in.logger.Warn("upgrade: telling systemd the new main pid", "err", err)
	}
	in.logger.Info("upgrade: handed over to the new process", "pid", cmd.Process.Pid, "vrrp_masters", strings.Join(masters, ","))
	return nil
}

// closeWaking closes a listener that was handed over. Its descriptor
// shares the blocking flag with the new process's, which os/exec and
// net.FileListener set for a moment; an accept that began then waits in
// the kernel, and Close waits for it. So while Close has not returned,
// connect to the listener now and then: the connection wakes the accept
// (or the new process takes it and sees it close at once).
func closeWaking(ln net.Listener) {
	done := make(chan struct{})
	go func() {
		ln.Close()
		close(done)
	}()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if c, err := net.DialTimeout(ln.Addr().Network(), ln.Addr().String(), 100*time.Millisecond); err == nil {
				c.Close()
			}
		}
	}
}

// setNonblock puts the open file description of f in non-blocking mode
// without marking f itself blocking (as f.Fd would).
func setNonblock(f *os.File) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) { syscall.SetNonblock(int(fd), true) })
}

// newDialogue returns the two ends of the hand-over dialogue socket. Both
// are non-blocking, so os.NewFile makes them pollable and read deadlines
// bound every wait (a blocking descriptor silently ignores them).
func newDialogue() (mine, theirs *os.File, err error) {
	pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("upgrade: socketpair: %w", err)
	}
	return os.NewFile(uintptr(pair[0]), "kclb-upgrade-parent"), os.NewFile(uintptr(pair[1]), "kclb-upgrade-child"), nil
}

// keyedListener is a listener with its hand-over key.
type keyedListener struct {
	key string
	ln  net.Listener
}

// listenerFile duplicates a TCP or Unix listener's socket for a child.
func listenerFile(ln net.Listener) (*os.File, error) {
	switch l := ln.(type) {
	case *net.TCPListener:
		return l.File()
	case *net.UnixListener:
		return l.File()
	}
	return nil, fmt.Errorf("%T cannot be handed over", ln)
}
