package main

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kclb/kclb/internal/admin"
	"github.com/kclb/kclb/internal/config"
	"github.com/kclb/kclb/internal/metrics"
	"github.com/kclb/kclb/internal/peer"
)

// pairPlan is what [pair] builds; nil when there is no pair.
type pairPlan struct {
	Peer, Listen, SecretFile string
	Interval                 time.Duration
}

// pairOptions converts [pair].
func pairOptions(cfg *config.Config) *pairPlan {
	p := cfg.Pair
	if p.Peer == "" {
		return nil
	}
	return &pairPlan{Peer: p.Peer, Listen: p.Listen, SecretFile: p.SecretFile, Interval: p.Interval.Duration}
}

// pairListenerKey names the pair listener among the sockets a binary
// upgrade hands over.
const pairListenerKey = "pair-tcp:"

// pairHooks sets the admin options' pair hooks (admin changes are told to
// the peer; the status shows the pair) and returns the function that
// starts the pair once the admin server exists: it opens pair.listen (or
// takes it over from the previous process after an upgrade, as the admin
// listeners are), and runs the node until ctx ends. Without [pair] the
// options stay as they are and the function does nothing. [pair] changes
// need a restart.
func (in *instance) pairHooks(opts *admin.Options) func(ctx context.Context, wg *sync.WaitGroup, srv *admin.Server, inh *inherited) error {
	plan := pairOptions(in.Config())
	if plan == nil {
		return func(context.Context, *sync.WaitGroup, *admin.Server, *inherited) error { return nil }
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
	return func(ctx context.Context, wg *sync.WaitGroup, srv *admin.Server, inh *inherited) error {
		secret, err := os.ReadFile(plan.SecretFile)
		if err != nil {
			return fmt.Errorf("pair.secret_file: %w", err)
		}
		key, err := peer.DeriveKey(bytes.TrimSpace(secret))
		if err != nil {
			return fmt.Errorf("pair.secret_file: %w", err)
		}
		n, err := peer.New(peer.Options{Name: in.Config().Global.Name, Peer: plan.Peer, Key: key, Local: srv,
			Fingerprint: func() map[string]string { return in.Config().PairFingerprint() },
			Interval:    plan.Interval, Logger: in.logger.With("component", "pair")})
		if err != nil {
			return fmt.Errorf("pair: %w", err)
		}
		ln := inh.take(pairListenerKey + plan.Listen)
		if ln == nil {
			if ln, err = net.Listen("tcp", plan.Listen); err != nil {
				return fmt.Errorf("pair.listen: %w", err)
			}
		}
		if o, _ := in.observer.(*observer); o != nil {
			parts := slices.Sorted(maps.Keys(in.Config().PairFingerprint()))
			if err := o.Registry().Register(metrics.NewPairCollector(func() metrics.Pair {
				st := n.Status()
				return metrics.Pair{Up: st.Reachable, Parts: parts, Drift: st.Drift, Dropped: n.Dropped()}
			})); err != nil {
				ln.Close()
				return fmt.Errorf("metrics: %w", err)
			}
		}
		node.Store(n)
		in.mu.Lock()
		in.admins = append(in.admins, keyedListener{key: pairListenerKey + plan.Listen, ln: ln})
		in.mu.Unlock()
		in.logger.Info("pair channel listening", "listen", ln.Addr().String(), "peer", plan.Peer)
		// Once the listener is closed (handed to a new binary by an
		// upgrade), this process stops syncing too: only one process
		// merges the peer's changes into the state file.
		runCtx, stopRun := context.WithCancel(ctx)
		wg.Go(func() {
			defer stopRun()
			if err := n.Serve(ctx, ln); err != nil && !in.adminReleased.Load() {
				in.logger.Error("pair listener failed", "listen", plan.Listen, "err", err)
			}
		})
		// Catch up before the public listeners open: a restarted instance
		// never sends a new login to a node the peer drained meanwhile.
		// A peer that does not answer within a second is left to Run.
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		n.Sync(sctx)
		cancel()
		wg.Go(func() { n.Run(runCtx) })
		return nil
	}
}
