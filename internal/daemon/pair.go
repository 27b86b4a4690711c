package daemon

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/kclb/kclb/internal/admin"
	"github.com/kclb/kclb/internal/handoff"
	"github.com/kclb/kclb/internal/metrics"
	"github.com/kclb/kclb/internal/peer"
)

// pairListenerKey names the pair listener among the sockets a binary
// upgrade hands over.
const pairListenerKey = "pair-tcp:"

// pairHooks sets the admin options' pair hooks (admin changes are told to
// the peer; the status shows the pair) and returns the function that
// starts the pair once the admin server exists: it opens pair.listen (or
// takes it over from the previous process after an upgrade, as the admin
// listeners are), and runs the node until Stop. Without [pair] the
// options stay as they are and the function does nothing. [pair] changes
// need a restart.
func (d *Daemon) pairHooks(opts *admin.Options) func(srv *admin.Server, inh *handoff.Inherited) error {
	plan := d.current().Pair
	if plan == nil {
		return func(*admin.Server, *handoff.Inherited) error { return nil }
	}
	var node atomic.Pointer[peer.Node]
	opts.Replicate = func(ctx context.Context) admin.PeerResult {
		if n := node.Load(); n != nil {
			return n.Replicate(ctx)
		}
		return admin.PeerResult{Peer: plan.Peer, Error: "the pair channel is not started yet"}
	}
	opts.Pair = func() *admin.PairStatus {
		if n := node.Load(); n != nil {
			return n.Status()
		}
		return &admin.PairStatus{Peer: plan.Peer, Error: "not started yet"}
	}
	return func(srv *admin.Server, inh *handoff.Inherited) error {
		ctx := d.runCtx
		secret, err := os.ReadFile(plan.SecretFile)
		if err != nil {
			return fmt.Errorf("pair.secret_file: %w", err)
		}
		key, err := peer.DeriveKey(bytes.TrimSpace(secret))
		if err != nil {
			return fmt.Errorf("pair.secret_file: %w", err)
		}
		n, err := peer.New(peer.Options{Name: d.current().Name, Peer: plan.Peer, Key: key, Local: srv,
			Fingerprint: func() map[string]string { return d.current().PairFingerprint },
			Interval:    plan.Interval, Logger: d.logger.With("component", "pair")})
		if err != nil {
			return fmt.Errorf("pair: %w", err)
		}
		ln := inh.Take(pairListenerKey + plan.Listen)
		if ln == nil {
			if ln, err = net.Listen("tcp", plan.Listen); err != nil {
				return fmt.Errorf("pair.listen: %w", err)
			}
		}
		if o, _ := d.observer.(*observer); o != nil {
			parts := slices.Sorted(maps.Keys(d.current().PairFingerprint))
			if err := o.Registry().Register(metrics.NewPairCollector(func() metrics.Pair {
				st := n.Status()
				return metrics.Pair{Up: st.Reachable, Parts: parts, Drift: st.Drift, Dropped: n.Dropped()}
			})); err != nil {
				ln.Close()
				return fmt.Errorf("metrics: %w", err)
			}
		}
		node.Store(n)
		d.mu.Lock()
		d.admins = append(d.admins, adminListener{Key: pairListenerKey + plan.Listen, Ln: ln})
		d.mu.Unlock()
		d.logger.Info("pair channel listening", "listen", ln.Addr().String(), "peer", plan.Peer)
		// Once the listener is closed (handed to a new binary by an
		// upgrade), this process stops syncing too: only one process
		// merges the peer's changes into the state file.
		runCtx, stopRun := context.WithCancel(ctx)
		d.wg.Go(func() {
			defer stopRun()
			if err := n.Serve(ctx, ln); err != nil && !d.adminReleased.Load() {
				d.logger.Error("pair listener failed", "listen", plan.Listen, "err", err)
			}
		})
		// Catch up before the public listeners open: a restarted instance
		// never sends a new login to a node the peer drained meanwhile.
		// A peer that does not answer within a second is left to Run.
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		n.Sync(sctx)
		cancel()
		d.wg.Go(func() { n.Run(runCtx) })
		return nil
	}
}
