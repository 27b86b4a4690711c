package main

import (
	"io"
	"os"

	"github.com/kclb/kclb/internal/config"
	"github.com/kclb/kclb/internal/configmap"
	"github.com/kclb/kclb/internal/daemon"
)

// cmdRun runs the proxy until SIGINT or SIGTERM (internal/daemon does
// the work). Signal handling is installed first, so that SIGINT and
// SIGTERM end the process at every stage of startup.
func cmdRun(args []string, stderr io.Writer) error {
	ctx, stop := interruptContext()
	defer stop()
	fs := newFlagSet("run", stderr, "[-c FILE]")
	path := fs.String("c", defaultConfig, "configuration `FILE`")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	cfg, err := daemon.During(ctx, "loading the configuration "+*path, func() (*config.Config, error) { return configmap.Load(*path) })
	if err != nil {
		return err
	}
	spec := configmap.Spec(cfg)
	load := func() (*daemon.Spec, error) {
		cfg, err := configmap.Load(cfg.Path)
		if err != nil {
			return nil, err
		}
		return configmap.Spec(cfg), nil
	}
	return daemon.Run(ctx, spec, daemon.Options{Logger: spec.Log.Logger(os.Stderr), Version: version, Load: load})
}
