package main

import (
	"github.com/kclb/kclb/internal/cmdline"

	"fmt"
	"io"

	"github.com/kclb/kclb/internal/configmap"
	"github.com/kclb/kclb/internal/daemon"
)

// cmdCheck validates a configuration like `haproxy -c`:
// `kclb check [-c] FILE [--syntax-only]`. Every problem is printed with
// its line; the exit status is 0 or 1. With --syntax-only nothing beyond
// the file itself is read: certificates, keys and secret files are not
// opened (for a configuration written on a workstation).
func cmdCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", stderr, "[-c] FILE [--syntax-only]")
	path := fs.String("c", defaultConfig, "configuration `FILE` (or give FILE as the argument)")
	syntax := fs.Bool("syntax-only", false, "check keys, types and rules only; do not read the certificate, key and secret files")
	pos, err := cmdline.ParseInterspersed(fs, args)
	if err != nil {
		return errUsage
	}
	switch {
	case len(pos) > 1:
		fmt.Fprintf(stderr, "kclb check: one configuration file at a time (got %q)\n", pos)
		fs.Usage()
		return errUsage
	case len(pos) == 1 && cmdline.IsSet(fs, "c") && *path != pos[0]:
		fmt.Fprintf(stderr, "kclb check: -c %s and %s name two files\n", *path, pos[0])
		return errUsage
	case len(pos) == 1:
		*path = pos[0]
	}
	load := configmap.Load
	if *syntax {
		load = configmap.LoadSyntax
	}
	cfg, err := load(*path)
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	if *syntax {
		fmt.Fprintf(stdout, "configuration file %s is valid (syntax only: certificate, key and secret files not read)\n", *path)
		return nil
	}
	if err := daemon.Check(configmap.Spec(cfg)); err != nil {
		return fmt.Errorf("%s: %w", *path, err)
	}
	fmt.Fprintf(stdout, "configuration file %s is valid\n", *path)
	return nil
}
