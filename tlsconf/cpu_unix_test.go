//go:build unix

package tlsconf

import (
	"syscall"
	"testing"
)

// cpuPerOp starts counting the process's CPU time (client and server
// together); the returned function reports it as cpu-ns/op, which other
// load on the machine disturbs far less than wall time.
func cpuPerOp(b *testing.B) func() {
	used := func() int64 {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return ru.Utime.Nano() + ru.Stime.Nano()
	}
	start := used()
	return func() { b.ReportMetric(float64(used()-start)/float64(b.N), "cpu-ns/op") }
}
