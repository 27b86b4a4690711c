//go:build !linux

package sdnotify

// monotonicUsec reports false: systemd only runs on Linux.
func monotonicUsec() (int64, bool) { return 0, false }
