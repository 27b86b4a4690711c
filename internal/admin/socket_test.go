package admin

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestListenSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "admin.sock")
	ln, err := ListenSocket(SocketOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket file %v, %v: want mode 0660", fi, err)
	}
	if _, err := ListenSocket(SocketOptions{Path: path}); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second listener on a live socket: %v", err)
	}
	// A stale socket file (nobody answers) is replaced.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	ln, err = ListenSocket(SocketOptions{Path: path, Mode: 0o600})
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer ln.Close()
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	file := filepath.Join(dir, "plain")
	os.WriteFile(file, nil, 0o600)
	if _, err := ListenSocket(SocketOptions{Path: file}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("a regular file at the path: %v", err)
	}
	if _, err := ListenSocket(SocketOptions{Path: filepath.Join(dir, "g.sock"), Group: "no-such-group-kclb"}); err == nil || !strings.HasPrefix(err.Error(), "admin.socket_group:") {
		t.Fatalf("unknown group: %v", err)
	}
}

func TestLookupGroup(t *testing.T) {
	for _, tt := range []struct {
		name string
		want int
		ok   bool
	}{{"0", 0, true}, {"4242", 4242, true}, {"root", 0, true}, {"no-such-group-kclb", 0, false}} {
		got, err := lookupGroup(tt.name)
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("lookupGroup(%q) = %d, %v", tt.name, got, err)
		}
	}
}
