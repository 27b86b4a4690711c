package handoff

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The test binary plays the new process when this variable is set.
const envChild = "KCLB_HANDOFF_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(envChild); mode != "" {
		os.Exit(child(mode))
	}
	os.Exit(m.Run())
}

// child is the new process: it takes the listeners, serves one
// connection on the TCP one and answers the dialogue as mode says.
func child(mode string) int {
	h, err := Take()
	if err != nil {
		fmt.Println("take:", err)
		return 1
	}
	if os.Getenv(envSync) != "" || os.Getenv(envListeners) != "" {
		fmt.Println("the hand-over environment was not cleared")
		return 1
	}
	switch mode {
	case "fail":
		h.Fail(errors.New("listener \"https\":\nbad"))
		return 1
	case "silent":
		return 1
	}
	tcp, unix := h.Take("tcp"), h.Take("unix:/x")
	if tcp == nil || unix == nil || len(h.Rest()) != 0 {
		fmt.Println("listeners", tcp, unix)
		return 1
	}
	masters, err := h.Handshake(context.Background(), 10*time.Second)
	if err != nil {
		fmt.Println("handshake:", err)
		return 1
	}
	c, err := tcp.Accept()
	if err != nil {
		fmt.Println("accept:", err)
		return 1
	}
	fmt.Fprintf(c, "%s\n", strings.Join(masters, ","))
	c.Close()
	return 0
}

func startChild(t *testing.T, mode string, lns []Listener, out io.Writer) *Child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Start(exe, []string{"-test.run=^$"}, append(os.Environ(), envChild+"="+mode), lns, out, out)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestHandOver hands a TCP and a Unix listener to a new process, which
// serves on the TCP one after "released" and learns the names sent.
func TestHandOver(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	unix, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close()
	var out bytes.Buffer
	c := startChild(t, "ok", []Listener{{Key: "tcp", Ln: tcp}, {Key: "unix:/x", Ln: unix}}, &out)
	if err := c.AwaitReady(context.Background(), 20*time.Second); err != nil {
		t.Fatalf("AwaitReady: %v (child: %s)", err, out.String())
	}
	tcp.Close() // stop accepting here: only the new process accepts now
	if err := c.Release([]string{"VI_1", "VI_2"}); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", tcp.Addr().String())
	if err != nil {
		t.Fatalf("the handed socket does not accept: %v", err)
	}
	defer conn.Close()
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || line != "VI_1,VI_2\n" {
		t.Fatalf("new process answered %q, %v (child: %s)", line, err, out.String())
	}
	if err := <-c.exited; err != nil {
		t.Fatalf("child: %v: %s", err, out.String())
	}
}

// TestFailingChild: a new process that fails says why; one that exits
// silently is reported as exited.
func TestFailingChild(t *testing.T) {
	for _, tt := range []struct{ mode, want string }{
		{"fail", `the new process failed: listener "https": bad`},
		{"silent", ""}, // "exited before it was ready" or "closed the hand-over without a word"
	} {
		t.Run(tt.mode, func(t *testing.T) {
			var out bytes.Buffer
			c := startChild(t, tt.mode, nil, &out)
			if err := c.AwaitReady(context.Background(), 20*time.Second); err == nil || !strings.Contains(err.Error(), tt.want) || tt.want == "" && !strings.Contains(err.Error(), "exited before") && !errors.Is(err, errSilentExit) {
				t.Fatalf("AwaitReady = %v, want %q (child: %s)", err, tt.want, out.String())
			}
		})
	}
}

// TestNoHandOver: without the environment Take is a normal start.
func TestNoHandOver(t *testing.T) {
	h, err := Take()
	if err != nil || h.Upgrade() || h.Take("x") != nil {
		t.Fatalf("Take without a hand-over: %v %v", h, err)
	}
	h.Fail(errors.New("nothing to tell"))
	if m, err := h.Handshake(context.Background(), time.Second); m != nil || err != nil {
		t.Fatalf("Handshake without a hand-over: %v %v", m, err)
	}
}

// TestUpgradeWaitIsBounded pins issue 18, item 5(a): the old process's
// wait for the new one's "ready" is bounded. The dialogue socket used to
// be a blocking descriptor, on which the 60 s read deadline was silently
// ignored, so the old process waited for ever.
func TestUpgradeWaitIsBounded(t *testing.T) {
	mine, theirs, err := newDialogue()
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	defer theirs.Close() // held open and silent: a new process that hangs
	done := make(chan error, 1)
	go func() { done <- awaitReady(bufio.NewReader(mine), mine, 100*time.Millisecond) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not ready within") {
			t.Fatalf("awaitReady = %v, want the timeout", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("awaitReady ignored its timeout")
	}
	// A new process that fails says why.
	go say(theirs, "failed listener \"https\": bad")
	if err := awaitReady(bufio.NewReader(mine), mine, 10*time.Second); err == nil || !strings.Contains(err.Error(), `failed: listener "https": bad`) {
		t.Fatalf("awaitReady after \"failed\" = %v", err)
	}
}

// TestHandshakeEndsWithContext: the new process's wait for "released"
// ends when its context does, naming the cause.
func TestHandshakeEndsWithContext(t *testing.T) {
	mine, theirs, err := newDialogue()
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	h := &Inherited{sync: theirs}
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() {
		bufio.NewReader(mine).ReadString('\n') // "ready"
		cancel(errors.New("interrupted by SIGTERM"))
	}()
	_, err = h.Handshake(ctx, time.Minute)
	if err == nil || !strings.Contains(err.Error(), "interrupted by SIGTERM while waiting for the old process to release") {
		t.Fatalf("Handshake = %v", err)
	}
}
