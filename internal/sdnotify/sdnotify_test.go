package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeSystemd listens on a unixgram socket like systemd's notify socket
// and sets $NOTIFY_SOCKET to it for the test.
type fakeSystemd struct {
	t    *testing.T
	conn *net.UnixConn
}

func newFakeSystemd(t *testing.T, abstract bool) *fakeSystemd {
	t.Helper()
	var name string
	if abstract {
		name = fmt.Sprintf("@kclb-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	} else {
		// t.TempDir paths can exceed the 108-byte sun_path limit.
		dir, err := os.MkdirTemp("", "sdn")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		name = filepath.Join(dir, "notify")
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", name)
	return &fakeSystemd{t: t, conn: conn}
}

// recv returns the next datagram, failing the test after 10 s.
func (f *fakeSystemd) recv() string {
	f.t.Helper()
	buf := make([]byte, 4096)
	f.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := f.conn.Read(buf)
	if err != nil {
		f.t.Fatalf("no notification received: %v", err)
	}
	return string(buf[:n])
}

// pending returns the datagrams already queued on the socket.
func (f *fakeSystemd) pending() []string {
	f.t.Helper()
	var got []string
	buf := make([]byte, 4096)
	for {
		f.conn.SetReadDeadline(time.Now())
		n, err := f.conn.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return got
			}
			f.t.Fatal(err)
		}
		got = append(got, string(buf[:n]))
	}
}

func TestHelpers(t *testing.T) {
	tests := []struct {
		name string
		send func() error
		want string // the datagram, or its first line for Reloading
	}{
		{"ready", Ready, "READY=1"},
		{"reloading", Reloading, "RELOADING=1"},
		{"stopping", Stopping, "STOPPING=1"},
		{"watchdog", WatchdogPing, "WATCHDOG=1"},
		{"status", func() error { return Status("serving\n3 servers") }, "STATUS=serving 3 servers"},
		{"notify", func() error { return Notify("READY=1\nSTATUS=up") }, "READY=1\nSTATUS=up"},
		{"mainpid", func() error { return MainPID(4242) }, "MAINPID=4242"},
	}
	for _, abstract := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/abstract=%v", tt.name, abstract), func(t *testing.T) {
				sd := newFakeSystemd(t, abstract)
				if err := tt.send(); err != nil {
					t.Fatal(err)
				}
				got := sd.recv()
				if tt.name != "reloading" {
					if got != tt.want {
						t.Fatalf("got %q, want %q", got, tt.want)
					}
					return
				}
				first, rest, _ := strings.Cut(got, "\n")
				if first != tt.want {
					t.Fatalf("got %q, want first line %q", got, tt.want)
				}
				v, ok := strings.CutPrefix(rest, "MONOTONIC_USEC=")
				if !ok {
					t.Fatalf("got %q, want MONOTONIC_USEC on the second line", got)
				}
				if us, err := strconv.ParseInt(v, 10, 64); err != nil || us <= 0 {
					t.Fatalf("MONOTONIC_USEC=%q is not a positive number", v)
				}
			})
		}
	}
}

func TestNotifyWithoutSocket(t *testing.T) {
	tests := []struct {
		name    string
		socket  string
		wantErr error // nil: want no error; errAny: want some error
	}{
		{"unset", "", nil},
		{"vsock", "vsock:2:1234", ErrUnsupportedSocket},
		{"relative", "notify.sock", ErrUnsupportedSocket},
		{"missing", "/nonexistent/kclb/notify.sock", errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("NOTIFY_SOCKET", tt.socket)
			err := Ready()
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("Ready() = %v, want nil", err)
			case tt.wantErr == errAny && err == nil:
				t.Fatal("Ready() = nil, want an error")
			case tt.wantErr != nil && tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
				t.Fatalf("Ready() = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

var errAny = errors.New("any error")

func TestWatchdogInterval(t *testing.T) {
	pid := strconv.Itoa(os.Getpid())
	tests := []struct {
		name   string
		usec   string
		pid    string
		want   time.Duration
		wantOK bool
	}{
		{"unset", "", "", 0, false},
		{"ten seconds", "10000000", "", 10 * time.Second, true},
		{"our pid", "20000", pid, 20 * time.Millisecond, true},
		{"other pid", "20000", "1", 0, false},
		{"bad pid", "20000", "x", 0, false},
		{"zero", "0", "", 0, false},
		{"negative", "-5", "", 0, false},
		{"garbage", "10s", "", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("WATCHDOG_USEC", tt.usec)
			t.Setenv("WATCHDOG_PID", tt.pid)
			got, ok := WatchdogInterval()
			if got != tt.want || ok != tt.wantOK {
				t.Fatalf("WatchdogInterval() = %v, %v; want %v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// TestWatchdogStopsWhenNotAlive lets alive report true three times and
// then false; exactly three pings must arrive. The test synchronises on
// alive's calls: a datagram written before alive is called again is
// already queued on the socket.
func TestWatchdogStopsWhenNotAlive(t *testing.T) {
	sd := newFakeSystemd(t, false)
	t.Setenv("WATCHDOG_USEC", "20000") // pings every 10ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	calls := make(chan int, 100)
	n := 0
	alive := func() bool {
		n++
		calls <- n
		return n <= 3
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Watchdog{}).Run(ctx, alive) }()

	for i := 0; i < 3; i++ {
		if got := sd.recv(); got != StateWatchdog {
			t.Fatalf("ping %d: got %q, want %q", i+1, got, StateWatchdog)
		}
	}
	// Wait until alive has said false three times, then check nothing
	// more was sent.
	deadline := time.After(10 * time.Second)
	for c := 0; c < 6; {
		select {
		case c = <-calls:
		case <-deadline:
			t.Fatal("alive was not called 6 times within 10s")
		}
	}
	if extra := sd.pending(); len(extra) > 0 {
		t.Fatalf("pings after alive turned false: %q", extra)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// TestWatchdogResumes checks that pings start again when alive recovers,
// using an injected Notify and Interval instead of the environment.
func TestWatchdogResumes(t *testing.T) {
	sent := make(chan string, 100)
	results := []bool{true, false, false, true}
	var i int
	alive := func() bool {
		r := i >= len(results) || results[i]
		i++
		return r
	}
	w := &Watchdog{Interval: 2 * time.Millisecond, Notify: func(s string) error { sent <- s; return nil }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, alive) }()
	for k := 0; k < 3; k++ {
		select {
		case s := <-sent:
			if s != StateWatchdog {
				t.Fatalf("got %q", s)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("ping %d not sent", k+1)
		}
	}
	cancel()
	<-done
	if i < 5 {
		t.Fatalf("3 pings after %d alive calls; want at least 5 (two were false)", i)
	}
}

func TestWatchdogDisabled(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "")
	called := false
	w := &Watchdog{Notify: func(string) error { called = true; return nil }}
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background(), nil) }()
	select {
	case err := <-done:
		if err != nil || called {
			t.Fatalf("Run = %v, pinged %v; want nil and no ping", err, called)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return without a watchdog")
	}
}

func TestChildEnv(t *testing.T) {
	env := []string{"PATH=/bin", "WATCHDOG_PID=17", "NOTIFY_SOCKET=/run/systemd/notify", "WATCHDOG_USEC=10000000", "XWATCHDOG_PID=1"}
	got := ChildEnv(env)
	want := []string{"PATH=/bin", "NOTIFY_SOCKET=/run/systemd/notify", "WATCHDOG_USEC=10000000", "XWATCHDOG_PID=1"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("ChildEnv = %q, want %q", got, want)
	}
	if len(env) != 5 || env[1] != "WATCHDOG_PID=17" {
		t.Fatalf("ChildEnv modified its argument: %q", env)
	}
}
