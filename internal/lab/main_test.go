package lab

import (
	"os"
	"testing"

	"github.com/kclb/kclb/internal/testlab"
)

// TestMain removes the binaries the labs built.
func TestMain(m *testing.M) {
	code := m.Run()
	testlab.RemoveBuilds()
	os.Exit(code)
}
