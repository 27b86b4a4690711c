package health

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test leaves a goroutine behind (a check
// loop, discovery loop or probe that outlived its Run).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
