package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/kclb/kclb/config"
	"github.com/kclb/kclb/kcsim"
	"github.com/kclb/kclb/tlsconf"
)

// cmdDemo starts three Keycloak stand-ins and kclb in front of them on
// localhost with a self-signed certificate, until Ctrl-C.
func cmdDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", stderr, "")
	dir := fs.String("dir", filepath.Join(os.TempDir(), "kclb-demo"), "directory for the self-signed certificate")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	cfg := config.Default()
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	certFile, keyFile, err := tlsconf.GenerateSelfSigned(*dir, []string{"localhost", "127.0.0.1", "::1"}, 30*24*time.Hour)
	if err != nil {
		return fmt.Errorf("demo certificate: %w", err)
	}
	cfg.TLS.Certificates = []config.Certificate{{Cert: certFile, Key: keyFile}}
	cfg.Health.Interval = config.Dur(2 * time.Second)
	cfg.Health.Slowstart = config.Dur(10 * time.Second)
	// The admin socket and state file live in the demo directory, so the
	// demo needs no root and leaves nothing in /run or /var/lib.
	cfg.Admin.Socket = filepath.Join(*dir, "admin.sock")
	cfg.Global.StateFile = filepath.Join(*dir, "state.json")
	if err := cfg.Validate(); err != nil {
		return err
	}
	logger := newLogger(cfg.Global, os.Stderr)

	nodeCtx, stopNodes := context.WithCancel(context.Background())
	defer stopNodes()
	nodeErr := make(chan error, len(cfg.Backend.Servers))
	for _, s := range cfg.Backend.Servers {
		tl, err := net.Listen("tcp", s.Address)
		if err != nil {
			return fmt.Errorf("demo node %s: %w", s.Name, err)
		}
		ml, err := net.Listen("tcp", s.Management)
		if err != nil {
			tl.Close()
			return fmt.Errorf("demo node %s: %w", s.Name, err)
		}
		n := kcsim.New(kcsim.Options{Node: s.Name, ClusterSize: len(cfg.Backend.Servers), Logger: logger.With("kcsim", s.Name)})
		go func() { nodeErr <- n.Serve(nodeCtx, tl, ml) }()
	}

	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, logger, ready) }()
	select {
	case err := <-done:
		return err
	case <-ready:
	}
	fmt.Fprintf(stdout, `
kclb demo is running (Ctrl-C stops it)
  HTTPS:  https://localhost:8443/realms/test/.well-known/openid-configuration
  HTTP:   http://localhost:8080/  (308 redirect to HTTPS)
  nodes:  keycloak1..3 on 127.0.0.1:18081-18083, management 19001-19003
  cert:   %s

try:
  curl --cacert %s https://localhost:8443/realms/test/.well-known/openid-configuration
  curl --cacert %s -si https://localhost:8443/metrics      # never public: 404
  curl -si http://localhost:8080/realms/test/             # 308 to https
  curl -s -X POST 'http://127.0.0.1:19002/kcsim/control?db=down'   # make keycloak2 unready
  kclb status -s %s                  # server table
  kclb drain keycloak1 --wait -s %s
`, certFile, certFile, certFile, cfg.Admin.Socket, cfg.Admin.Socket)
	err = <-done
	stopNodes()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
