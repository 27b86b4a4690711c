package main

import (
	"io"
	"os"
	"runtime/debug"
	"runtime/metrics"

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
	logger := spec.Log.Logger(os.Stderr)
	logger.Info("garbage collection target", "gogc", tuneGC())
	return daemon.Run(ctx, spec, daemon.Options{Logger: logger, Version: version, Load: load})
}

// defaultGCPercent is kclb's garbage collection target (GOGC) unless the
// environment sets GOGC. Proxying allocates next to nothing per request,
// so the heap between collections is mostly connection setup, and a full
// TLS handshake allocates: at 200 instead of Go's 100 an ECDSA handshake
// cost 9-23 % less CPU, while peak RSS at 1000 keep-alive connections
// stayed the same (docs/benchmarks.md, session 7).
const defaultGCPercent = 200

// tuneGC applies defaultGCPercent unless GOGC is set, and returns the
// target in effect (-1 for off).
func tuneGC() int64 {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
}
