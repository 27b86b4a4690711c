package main

import (
	"github.com/kclb/kclb/internal/cmdline"

	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
)

// cmdDemo starts the local demo, which is a binary of its own
// (cmd/kclb-demo) so that kclb never links the Keycloak stand-in: it
// replaces this process with kclb-demo from kclb's own directory, with
// the same arguments.
func cmdDemo(args []string, stdout, stderr io.Writer) error {
	if cmdline.IsProbe(stderr) {
		return errUsage // its flags are kclb-demo's
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	demo := filepath.Join(filepath.Dir(self), "kclb-demo")
	if _, err := os.Stat(demo); errors.Is(err, os.ErrNotExist) {
		if slices.ContainsFunc(args, func(a string) bool { return a == "-h" || a == "-help" || a == "--help" }) {
			fmt.Fprintln(stderr, "usage: kclb demo [kclb-demo flags]: starts kclb-demo from kclb's directory (`make demo` builds both)")
			return errUsage
		}
		return fmt.Errorf("demo: the demo is its own program, %s, which is not installed here; `make demo` builds and starts it", demo)
	}
	if err := syscall.Exec(demo, append([]string{demo}, args...), os.Environ()); err != nil {
		return fmt.Errorf("demo: run %s: %w", demo, err)
	}
	return nil
}
