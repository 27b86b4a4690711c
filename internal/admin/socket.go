package admin

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"
)

// SocketOptions is the admin Unix socket.
type SocketOptions struct {
	// Path is the socket file; its directory is created if missing.
	Path string
	// Mode is the socket file's permission bits; 0 means 0660.
	Mode fs.FileMode
	// Group, when not "", is the group (name or numeric id) the socket
	// file is given to.
	Group string
}

// ListenSocket opens the admin Unix socket with o's mode and group. A
// stale socket file left by a crashed kclb is replaced; a socket another
// process still answers on is an error. Errors name the configuration
// key they come from (admin.socket, admin.socket_mode,
// admin.socket_group).
func ListenSocket(o SocketOptions) (net.Listener, error) {
	path := o.Path
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("admin.socket: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("admin.socket: %s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("admin.socket: %s is in use by another process", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("admin.socket: remove stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin.socket: %w", err)
	}
	mode := o.Mode
	if mode == 0 {
		mode = 0o660
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin.socket_mode: %w", err)
	}
	if o.Group != "" {
		gid, err := lookupGroup(o.Group)
		if err == nil {
			err = os.Chown(path, -1, gid)
		}
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("admin.socket_group: %w", err)
		}
	}
	return ln, nil
}

// lookupGroup resolves a group name or numeric id.
func lookupGroup(name string) (int, error) {
	if id, err := strconv.Atoi(name); err == nil {
		return id, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, err
	}
	id, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, errors.New("group " + name + " has a non-numeric id " + g.Gid)
	}
	return id, nil
}
