package cmdline

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// LiveKclbRun returns the pid of a `kclb run` process other than this one in
// the same network namespace, or 0 if there is none. Processes whose
// /proc entries cannot be read (another user's, with hidepid) are not
// counted: under systemd they belong to other services.
func LiveKclbRun() (int, error) {
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
		if err != nil || !IsKclbRun(cl) {
			continue
		}
		if ns, err := os.Readlink(filepath.Join(dir, "ns", "net")); err == nil && ns == self {
			return pid, nil
		}
	}
	return 0, nil
}

// IsKclbRun reports whether a /proc cmdline is `kclb run ...` (the binary
// may be any path whose name starts with kclb, e.g. kclb.new during an
// upgrade).
func IsKclbRun(cmdline []byte) bool {
	args := bytes.Split(bytes.TrimRight(cmdline, "\x00"), []byte{0})
	return len(args) >= 2 && strings.HasPrefix(filepath.Base(string(args[0])), "kclb") && string(args[1]) == "run"
}

// IsTerminal reports whether w is a character device (a terminal).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
