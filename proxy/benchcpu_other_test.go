//go:build !unix

package proxy

import "testing"

// reportCPU does nothing where getrusage is unavailable.
func reportCPU(*testing.B) func() { return func() {} }
