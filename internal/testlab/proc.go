package testlab

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Proc is a process started by a lab. Its standard output and error go
// through a pipe into the log file Log, line by line, and to every
// channel returned by Watch. It is killed (SIGKILL) in t.Cleanup, and its
// log's tail is printed there if the test failed.
type Proc struct {
	Cmd  *exec.Cmd
	Name string
	Log  string // path of the log file

	done chan struct{} // closed once Wait returned; then err is set
	err  error

	mu       sync.Mutex // guards lines and watchers
	lines    []Line
	watchers []watcher
	read     chan struct{} // closed when the output pipe ended
}

type watcher struct {
	match func(string) bool
	ch    chan string
}

// Start runs args inside node n as the process called name (its log is
// <Dir>/<name>.log).
func (l *Lab) Start(n, name string, args ...string) *Proc {
	l.T.Helper()
	return l.StartCmd(l.Command(n, args...), name)
}

// StartCmd starts cmd (whose Stdout and Stderr it sets) as the process
// called name.
func (l *Lab) StartCmd(cmd *exec.Cmd, name string) *Proc {
	t := l.T
	t.Helper()
	p := &Proc{Cmd: cmd, Name: name, Log: l.Path(name + ".log"), done: make(chan struct{}), read: make(chan struct{})}
	logf, err := os.Create(p.Log)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		logf.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	pw.Close() // the child (and any process it hands its descriptors to) holds it
	go p.copyLines(pr, logf)
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Signal(syscall.SIGKILL)
		<-p.done
		// A process the command handed its output to (a binary upgrade)
		// may still write: stop reading after a moment.
		select {
		case <-p.read:
		case <-time.After(time.Second):
			pr.Close()
			<-p.read
		}
		if t.Failed() {
			t.Logf("--- %s log (tail) ---\n%s", name, tail(strings.Join(p.Lines(), "\n"), 4000))
		}
	})
	return p
}

func (p *Proc) copyLines(pr, logf *os.File) {
	defer close(p.read)
	defer logf.Close()
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		logf.WriteString(line + "\n")
		p.mu.Lock()
		p.lines = append(p.lines, Line{At: time.Now(), Text: line})
		for _, w := range p.watchers {
			if w.match(line) {
				select {
				case w.ch <- line:
				default: // the watcher's buffer is full: it has seen enough
				}
			}
		}
		p.mu.Unlock()
	}
}

// Done is closed when the process has exited; Err is then its exit error.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err returns the exit error, valid once Done is closed.
func (p *Proc) Err() error { return p.err }

// Pid returns the process id.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Signal sends s unless the process has exited.
func (p *Proc) Signal(s syscall.Signal) {
	select {
	case <-p.done:
	default:
		_ = p.Cmd.Process.Signal(s)
	}
}

// Wait waits up to timeout for the process to exit, failing the test if
// it does not, and then for its output to be read.
func (p *Proc) Wait(t testing.TB, timeout time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %v", p.Name, timeout)
	}
	// The exit can come before the reader has taken the last lines from
	// the pipe: wait for the output to end too (briefly: a process the
	// command handed its output to may hold the pipe open).
	select {
	case <-p.read:
	case <-time.After(time.Second):
	}
}

// Line is one line of a process's output with the time it was read.
type Line struct {
	At   time.Time
	Text string
}

// Stamped returns the output lines so far with the time each was read.
func (p *Proc) Stamped() []Line {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Line(nil), p.lines...)
}

// Lines returns the output lines so far.
func (p *Proc) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, len(p.lines))
	for i, l := range p.lines {
		out[i] = l.Text
	}
	return out
}

// Stop kills the process and waits until it exited and its output ended
// (for a watcher such as tcpdump or ip monitor whose lines are read
// afterwards).
func (p *Proc) Stop() {
	p.Signal(syscall.SIGKILL)
	<-p.done
	<-p.read
}

// Has reports whether an output line so far contains s.
func (p *Proc) Has(s string) bool {
	for _, l := range p.Lines() {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// Watch returns a channel that receives every future output line
// containing substr (up to 64 unread lines are kept).
func (p *Proc) Watch(substr string) <-chan string {
	return p.WatchFunc(func(l string) bool { return strings.Contains(l, substr) })
}

// WatchFunc returns a channel that receives every future output line
// match accepts (up to 64 unread lines are kept).
func (p *Proc) WatchFunc(match func(string) bool) <-chan string {
	ch := make(chan string, 64)
	p.mu.Lock()
	p.watchers = append(p.watchers, watcher{match, ch})
	p.mu.Unlock()
	return ch
}

// WaitFor waits up to timeout for an output line containing substr,
// printed before the call or after it, and fails the test, naming what,
// if none comes or the output ends first. It returns the line.
func (p *Proc) WaitFor(t testing.TB, substr, what string, timeout time.Duration) string {
	t.Helper()
	ch := make(chan string, 64)
	p.mu.Lock()
	for _, l := range p.lines {
		if strings.Contains(l.Text, substr) {
			p.mu.Unlock()
			return l.Text
		}
	}
	p.watchers = append(p.watchers, watcher{func(l string) bool { return strings.Contains(l, substr) }, ch})
	p.mu.Unlock()
	return p.WaitLine(t, ch, what, timeout)
}

// WaitLine waits up to timeout for a line from ch (from Watch) and fails
// the test, naming what, if none arrives or the process exits first.
func (p *Proc) WaitLine(t testing.TB, ch <-chan string, what string, timeout time.Duration) string {
	t.Helper()
	select {
	case l := <-ch:
		return l
	case <-p.read: // the output ended: the process (and any it handed it to) exited
		select {
		case l := <-ch:
			return l
		default:
		}
		<-p.done
		t.Fatalf("%s exited (%v) before %s", p.Name, p.err, what)
	case <-time.After(timeout):
		t.Fatalf("%s: no %s within %v", p.Name, what, timeout)
	}
	return ""
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
