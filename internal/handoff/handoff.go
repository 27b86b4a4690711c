// Package handoff passes listening sockets from a running kclb to the
// new binary of a zero-downtime upgrade, and carries the short dialogue
// that decides when the old process lets go.
//
// The old process (Start) starts the new one with the sockets as extra
// file descriptors (listed in KCLB_UPGRADE_LISTENERS by key) and one end
// of a socket pair (KCLB_UPGRADE_SYNC) for the dialogue:
//
//	new → old: "ready" once it serves, or "failed <reason>" before it exits
//	old → new: "released <names>" once it stopped accepting; the names
//	           are what the new process should inherit (VRRP Masters)
//
// The kernel keeps queueing connections on the shared sockets
// throughout, so nothing is refused. The package knows nothing of what
// the sockets serve.
package handoff

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
)

// Environment variables of the hand-over.
const (
	envListeners = "KCLB_UPGRADE_LISTENERS" // "key=fd,key=fd", keys query-escaped
	envSync      = "KCLB_UPGRADE_SYNC"      // fd of the dialogue socket
)

// Timeout bounds how long the old process waits for the new one to be
// ready, and the new one for the old one's "released".
const Timeout = 60 * time.Second

// Listener is a listening socket with its hand-over key.
type Listener struct {
	Key string
	Ln  net.Listener
}

// Inherited are the listeners and dialogue socket a new process received
// from its predecessor; the zero value (and what Take returns without a
// hand-over) means a normal start, where every method does nothing.
type Inherited struct {
	listeners map[string]net.Listener // by key
	sync      *os.File
	// answered is set once the dialogue reached "ready" or "failed".
	answered bool
}

// Take reads the hand-over environment, if any, and clears it so that a
// later upgrade of this process starts clean.
func Take() (*Inherited, error) {
	h := &Inherited{}
	ls, sy := os.Getenv(envListeners), os.Getenv(envSync)
	os.Unsetenv(envListeners)
	os.Unsetenv(envSync)
	if sy == "" {
		return h, nil
	}
	fd, err := strconv.Atoi(sy)
	if err != nil {
		return h, fmt.Errorf("upgrade: bad %s %q", envSync, sy)
	}
	// Non-blocking, so that os.NewFile makes it pollable and read
	// deadlines work.
	if err := syscall.SetNonblock(fd, true); err != nil {
		return h, fmt.Errorf("upgrade: dialogue socket: %w", err)
	}
	syscall.CloseOnExec(fd) // notify commands must not hold the dialogue open
	h.sync = os.NewFile(uintptr(fd), "kclb-upgrade-sync")
	h.listeners = make(map[string]net.Listener)
	for item := range strings.SplitSeq(ls, ",") {
		if item == "" {
			continue
		}
		esc, fdText, ok := strings.Cut(item, "=")
		fd, err := strconv.Atoi(fdText)
		key, kerr := url.QueryUnescape(esc)
		if !ok || err != nil || kerr != nil {
			return h, fmt.Errorf("upgrade: bad listener entry %q", item)
		}
		f := os.NewFile(uintptr(fd), "kclb-listener-"+key)
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return h, fmt.Errorf("upgrade: inherited listener %s: %w", key, err)
		}
		h.listeners[key] = ln
	}
	return h, nil
}

// Upgrade reports whether this process was started by a hand-over.
func (h *Inherited) Upgrade() bool { return h.sync != nil }

// Take removes and returns the inherited listener under key, or nil.
func (h *Inherited) Take(key string) net.Listener {
	ln, ok := h.listeners[key]
	if !ok {
		return nil
	}
	delete(h.listeners, key)
	return ln
}

// Rest removes and returns the inherited listeners nobody took.
func (h *Inherited) Rest() map[string]net.Listener {
	rest := h.listeners
	h.listeners = nil
	return rest
}

// Fail tells the old process why this new process gives up (best effort;
// once per dialogue).
func (h *Inherited) Fail(err error) {
	if h.sync == nil || h.answered {
		return
	}
	h.answered = true
	say(h.sync, "failed "+oneLine(err))
	h.sync.Close()
}

// Handshake is the new process's side once it serves: say "ready", then
// wait up to timeout until the old process stopped accepting. It returns
// the names the old process handed on with "released". Without a
// hand-over it returns nil, nil at once. When ctx ends first, the error
// wraps its cause.
func (h *Inherited) Handshake(ctx context.Context, timeout time.Duration) ([]string, error) {
	if h.sync == nil {
		return nil, nil
	}
	h.answered = true
	defer h.sync.Close()
	if err := say(h.sync, "ready"); err != nil {
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	// The deadline is set before ctx can cut it short, so that its end
	// always wins over the timeout.
	if err := h.sync.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { h.sync.SetReadDeadline(time.Now()) })
	defer stop()
	line, err := bufio.NewReader(h.sync).ReadString('\n')
	w := strings.Fields(line)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("upgrade: waiting for \"released\": %w while waiting for the old process to release", context.Cause(ctx))
	}
	if err != nil {
		return nil, fmt.Errorf("upgrade: waiting for \"released\": %w", err)
	}
	if len(w) == 0 || w[0] != "released" {
		return nil, fmt.Errorf("upgrade: got %q, want \"released\"", strings.Join(w, " "))
	}
	return w[1:], nil
}

// Child is a new process started by Start, from the old process's side.
type Child struct {
	cmd    *exec.Cmd
	mine   *os.File
	r      *bufio.Reader
	exited chan error
}

// Start starts exe with args and env (the hand-over variables are added)
// and hands it lns, which keep serving here until Release. Its standard
// output and error are stdout and stderr.
func Start(exe string, args, env []string, lns []Listener, stdout, stderr io.Writer) (*Child, error) {
	mine, theirs, err := newDialogue()
	if err != nil {
		return nil, err
	}
	defer theirs.Close()
	files := []*os.File{theirs}
	defer func() {
		for _, f := range files[1:] {
			f.Close()
		}
	}()
	var entries []string
	for _, l := range lns {
		lf, err := listenerFile(l.Ln)
		if err != nil {
			mine.Close()
			return nil, fmt.Errorf("upgrade: listener %s: %w", l.Key, err)
		}
		files = append(files, lf)
		entries = append(entries, url.QueryEscape(l.Key)+"="+strconv.Itoa(2+len(files)))
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.ExtraFiles = files
	cmd.Env = append(env, envSync+"=3", envListeners+"="+strings.Join(entries, ","))
	if err := cmd.Start(); err != nil {
		mine.Close()
		return nil, fmt.Errorf("upgrade: start %s: %w", exe, err)
	}
	// Start put every descriptor it passed in blocking mode (File.Fd),
	// and a duplicate shares that flag with the listener here: put it
	// back, or an accept of this process blocks in the kernel, and the
	// Close after the hand-over waits for a connection that may never
	// come (a quiet pair listener held the old process for ever).
	for _, f := range files[1:] {
		setNonblock(f)
	}
	c := &Child{cmd: cmd, mine: mine, r: bufio.NewReader(mine), exited: make(chan error, 1)}
	go func() { c.exited <- cmd.Wait() }() // ends when the child exits
	return c, nil
}

// Pid returns the new process's id.
func (c *Child) Pid() int { return c.cmd.Process.Pid }

// AwaitReady waits up to timeout for the new process's "ready". On any
// other outcome (it failed and said why, exited, stayed silent, or ctx
// ended) it kills the new process and returns why.
func (c *Child) AwaitReady(ctx context.Context, timeout time.Duration) error {
	ready := make(chan error, 1)
	go func() { ready <- awaitReady(c.r, c.mine, timeout) }() // bounded by timeout
	var err error
	select {
	case err = <-ready:
	case err = <-c.exited:
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
		c.cmd.Process.Kill()
		c.mine.Close()
	}
	return err
}

// Release tells the ready new process that this one stopped accepting,
// handing it names, and ends the dialogue.
func (c *Child) Release(names []string) error {
	defer c.mine.Close()
	if err := say(c.mine, strings.Join(append([]string{"released"}, names...), " ")); err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	return nil
}

// CloseWaking closes a listener that was handed over. Its descriptor
// shares the blocking flag with the new process's, which os/exec and
// net.FileListener set for a moment; an accept that began then waits in
// the kernel, and Close waits for it. So while Close has not returned,
// it connects to the listener now and then: the connection wakes the
// accept (or the new process takes it and sees it close at once).
func CloseWaking(ln net.Listener) {
	done := make(chan struct{})
	go func() { // ends with Close
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

// oneLine flattens a multi-line error message for the dialogue.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
