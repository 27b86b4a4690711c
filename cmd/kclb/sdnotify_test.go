package main

import (
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSystemdNotifications runs kclb under a fake systemd notify socket:
// READY=1 after the listeners are bound, WATCHDOG=1 pings while it runs,
// RELOADING=1 then READY=1 around a reload, STOPPING=1 at SIGTERM.
func TestSystemdNotifications(t *testing.T) {
	e := newEnv(t, envOptions{noProc: true})
	sock := filepath.Join(e.dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 256)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				close(msgs)
				return
			}
			for line := range strings.SplitSeq(string(buf[:n]), "\n") {
				if line != "" {
					msgs <- line
				}
			}
		}
	}()
	next := func(want string) {
		t.Helper()
		deadline := time.After(15 * time.Second)
		for {
			select {
			case m := <-msgs:
				if m == want {
					return
				}
			case <-deadline:
				t.Fatalf("no %s from kclb", want)
			}
		}
	}
	p := startKclbEnv(t, e.cfgPath, 2, []string{"NOTIFY_SOCKET=" + sock, "WATCHDOG_USEC=400000"})
	next("READY=1")
	next("WATCHDOG=1")
	next("WATCHDOG=1")
	p.cmd.Process.Signal(syscall.SIGHUP)
	next("RELOADING=1")
	next("READY=1")
	p.cmd.Process.Signal(syscall.SIGTERM)
	next("STOPPING=1")
	<-p.done
	if p.err != nil {
		t.Fatalf("exit after SIGTERM: %v", p.err)
	}
}
