package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/kclb/kclb/internal/admin"
	"github.com/kclb/kclb/proxy"
	"github.com/kclb/kclb/vrrp"
)

// handover starts or ends a planned VRRP handover (issue 17, item 3),
// for POST /v1/vrrp/handover. Starting it on a Master: keep-alive is
// turned off on the public listeners (every HTTP/1.1 response closes its
// connection, HTTP/2 connections send GOAWAY after their streams, so each
// client's next request opens a new connection), kclb waits up to
// req.Drain for its client connections to close, closes those still idle
// (clients silent for the whole drain), and then every VRRP instance
// resigns (priority-0 advert, VIPs removed) and stays Backup at priority
// 1, so the peer takes over after its Skew_Time. Clients therefore never
// send a request on a connection the new Master does not know;
// connections opened during the drain are served and closed. Back
// restores the priorities (the peer is preempted after
// Master_Down_Interval when this edge's priority is higher).
func (d *Daemon) handover(ctx context.Context, req admin.HandoverRequest) (*admin.HandoverResult, error) {
	st := d.vrrp.Status()
	if len(st) == 0 {
		return nil, errors.New("no VRRP instance is configured")
	}
	res := &admin.HandoverResult{Back: req.Back}
	master := false
	for _, s := range st {
		if s.State == vrrp.StateMaster {
			master = true
		}
	}
	fronts := d.listeners.list()
	if !req.Back && master {
		for _, f := range fronts {
			f.srv.SetKeepAlives(false)
		}
		start := time.Now()
		// Every client connection of the public listeners, HTTP/1.1 and
		// HTTP/2 (d.conns counts them all).
		open := func() int64 { return d.conns.Counts().Open }
		for open() > 0 && time.Since(start) < req.Drain && ctx.Err() == nil {
			time.Sleep(time.Millisecond) // polling the connection count: there is no close signal
		}
		// A client that opens connections without pause always has one
		// in its handshake: it would be accepted here just before the VIP
		// leaves and reset by the peer. Hold new connections (their SYN is
		// dropped and retried by the client's kernel after 1 s, by then at
		// the peer), let the handshakes under way be accepted and served,
		// and resign once nothing has been open or queued for a moment.
		held := holdNew(onVIPs(fronts, d.current().VRRP), true, d.logger)
		defer holdNew(held, false, d.logger)
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
	err := d.vrrp.Handover(!req.Back)
	// The VIPs are gone (or back): keep-alive may serve again.
	for _, f := range fronts {
		f.srv.SetKeepAlives(true)
	}
	res.VRRP = adminVRRP(d.vrrp.Status())
	res.WasMaster = master
	d.logger.Info("vrrp handover", "back", req.Back, "was_master", master,
		"drained_ms", res.DrainedMillis, "open_connections", res.OpenConnections)
	return res, err
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
		if err := f.held.Hold(on); err != nil {
			log.Warn("handover: new connections not held", "listener", f.plan.Name, "err", err)
			continue
		}
		done = append(done, f)
	}
	return done
}

// onVIPs returns the frontends that take connections to a VIP of vrrps
// (bound to one, or to a wildcard address): a handover holds new
// connections on those only.
func onVIPs(fronts []*frontend, vrrps []vrrp.Options) []*frontend {
	var out []*frontend
	for _, f := range fronts {
		host, _, err := net.SplitHostPort(f.plan.Bind)
		if err != nil {
			continue
		}
		a, err := netip.ParseAddr(host)
		if host == "" || (err == nil && a.IsUnspecified()) {
			out = append(out, f)
			continue
		}
	vips:
		for _, o := range vrrps {
			for _, v := range o.VIPs {
				if err == nil && v.Addr() == a.Unmap() {
					out = append(out, f)
					break vips
				}
			}
		}
	}
	return out
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
