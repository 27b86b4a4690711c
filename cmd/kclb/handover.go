package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/kclb/kclb/internal/admin"
	"github.com/kclb/kclb/proxy"
	"github.com/kclb/kclb/vrrp"
)

// handover starts or ends a planned VRRP handover (issue 17, item 3),
// for POST /v1/vrrp/handover. Starting it on a Master: keep-alive is
// turned off on the public listeners (every HTTP/1.1 response closes its
// connection, HTTP/2 connections send GOAWAY after their streams, so each
// client's next request opens a new connection), kclb waits
// up to req.Drain for its client connections to close, closes those
// still idle (clients silent for the whole drain), and then every VRRP
// instance resigns
// (priority-0 advert, VIPs removed) and stays Backup at priority 1, so
// the peer takes over after its Skew_Time. Clients therefore never send
// a request on a connection the new Master does not know; connections
// opened during the drain are served and closed. Back restores the
// priorities (the peer is preempted after Master_Down_Interval when this
// edge's priority is higher).
func (in *instance) handover(ctx context.Context, req admin.HandoverRequest) (*admin.HandoverResult, error) {
	p := in.vrrps.Load()
	if p == nil || len(*p) == 0 {
		return nil, errors.New("no VRRP instance is configured")
	}
	res := &admin.HandoverResult{Back: req.Back}
	master := false
	for _, r := range *p {
		if r.inst.Status().State == vrrp.StateMaster {
			master = true
		}
	}
	fronts := in.Frontends()
	if !req.Back && master {
		for _, f := range fronts {
			f.srv.SetKeepAlives(false)
		}
		start := time.Now()
		// Every client connection of the public listeners, HTTP/1.1 and
		// HTTP/2 (in.conns counts them all).
		open := func() int64 { return in.conns.Counts().Open }
		for open() > 0 && time.Since(start) < req.Drain && ctx.Err() == nil {
			time.Sleep(time.Millisecond) // polling the connection count: there is no close signal
		}
		// A client that opens connections without pause always has one
		// in its handshake: it would be accepted here just before the VIP
		// leaves and reset by the peer. Hold new connections (their SYN is
		// dropped and retried by the client's kernel after 1 s, by then at
		// the peer), let the handshakes under way be accepted and served,
		// and resign once nothing has been open or queued for a moment.
		held := holdNew(fronts, true, in.logger)
		defer holdNew(held, false, in.logger)
		settled := time.Time{}
		for time.Since(start) < req.Drain && ctx.Err() == nil {
			if open() > 0 || queued(held) > 0 {
				settled = time.Time{}
			} else if settled.IsZero() {
				settled = time.Now()
			} else if time.Since(settled) >= handoverSettle {
				break
			}
			time.Sleep(time.Millisecond) // polling counts: there is no signal for an accept
		}
		res.DrainedMillis = float64(time.Since(start).Microseconds()) / 1000
		// Clients idle for the whole drain: close their connections now.
		for _, f := range fronts {
			f.srv.CloseIdle()
		}
		res.OpenConnections = int(open())
	}
	var errs []error
	for _, r := range *p {
		if err := r.inst.Handover(!req.Back); err != nil {
			errs = append(errs, fmt.Errorf("vrrp instance %q: %w", r.cfg.Name, err))
		}
	}
	// The VIPs are gone (or back): keep-alive may serve again.
	for _, f := range fronts {
		f.srv.SetKeepAlives(true)
	}
	res.VRRP = in.adminVRRP()
	res.WasMaster = master
	in.logger.Info("vrrp handover", "back", req.Back, "was_master", master,
		"drained_ms", res.DrainedMillis, "open_connections", res.OpenConnections)
	return res, errors.Join(errs...)
}

// handoverSettle is how long a draining Master must see no client
// connection and empty accept queues, with new connections held, before
// it resigns: a handshake whose SYN was answered before the hold
// completes within a round trip on the edge's LAN.
const handoverSettle = 20 * time.Millisecond

// holdNew holds (or releases) new connections on the frontends' sockets
// and returns those it changed. A socket that cannot be held (an MPTCP
// socket inherited from an older binary) is logged and left as it is:
// the handover then has the race the hold closes.
func holdNew(fronts []*frontend, on bool, log *slog.Logger) []*frontend {
	var done []*frontend
	for _, f := range fronts {
		if err := proxy.DropSYNs(f.raw, on); err != nil {
			log.Warn("handover: new connections not held", "listener", f.name, "err", err)
			continue
		}
		done = append(done, f)
	}
	return done
}

// queued returns the connections waiting in the frontends' accept queues.
func queued(fronts []*frontend) int {
	n := 0
	for _, f := range fronts {
		if q, err := proxy.AcceptQueue(f.raw); err == nil {
			n += q
		}
	}
	return n
}

// cmdHandover is `kclb handover [--wait] [--back]`.
func cmdHandover(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("handover", stderr, "[-s SOCKET | -a URL -token-file F] [--wait] [--back] [--drain D] [--timeout D]")
	var af adminFlags
	af.register(fs)
	wait := fs.Bool("wait", false, "wait until the peer holds the VIPs (with --back: until this edge is Master again, for the edge with the higher priority)")
	back := fs.Bool("back", false, "end the handover: restore this edge's priority (it takes the VIPs back if it is higher)")
	drain := fs.Duration("drain", admin.DefaultHandoverDrain, "how long to wait for client connections to close before the VIPs leave")
	timeout := fs.Duration("timeout", 30*time.Second, "how long --wait may take")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return errUsage
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *drain+10*time.Second)
	res, err := c.Handover(ctx, *back, *drain)
	cancel()
	if err != nil {
		return fmt.Errorf("handover: %w", err)
	}
	if af.json && !*wait {
		return printJSON(stdout, res)
	}
	if !af.json {
		if *back {
			fmt.Fprintln(stdout, "handover ended: configured priorities restored")
		} else if res.WasMaster {
			fmt.Fprintf(stdout, "handed over after %.0fms of drain (%d client connections still open)\n", res.DrainedMillis, res.OpenConnections)
		} else {
			fmt.Fprintln(stdout, "this edge is not Master: nothing moved; its priority is 1 (it will not preempt) until kclb handover --back")
		}
	}
	if !*wait {
		return nil
	}
	start := time.Now()
	deadline := start.Add(*timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := c.Status(ctx)
		cancel()
		if err != nil {
			return err
		}
		if done, what := handoverDone(st.VRRP, *back); done {
			if af.json {
				res.VRRP = st.VRRP
				return printJSON(stdout, res)
			}
			fmt.Fprintf(stdout, "%s after %.1fs\n", what, time.Since(start).Seconds())
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("handover: not done after %v: %s", *timeout, vrrpSummary(st.VRRP))
		}
		time.Sleep(50 * time.Millisecond) // polling the status: the API has no VRRP wait
	}
}

// handoverDone reports whether a handover (or its end) has taken effect:
// every instance Backup of a known peer, or, after --back, every instance
// Master again (for an edge whose priority is the higher one).
func handoverDone(list []admin.VRRPStatus, back bool) (bool, string) {
	for _, v := range list {
		if back {
			if v.Standby || v.State != "master" {
				return false, ""
			}
			continue
		}
		if v.State != "backup" || v.Master == "" {
			return false, ""
		}
	}
	if back {
		return true, "priorities restored: " + vrrpSummary(list)
	}
	return true, "the peer holds the VIPs: " + vrrpSummary(list)
}

func vrrpSummary(list []admin.VRRPStatus) string {
	s := ""
	for i, v := range list {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %s priority %d", v.Name, v.State, v.Priority)
		if v.Master != "" {
			s += " master " + v.Master
		}
	}
	return s
}

func init() { extraCommands["handover"] = cmdHandover }
