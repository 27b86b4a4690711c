package daemon

import (
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/kclb/kclb/internal/admin"
	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/discovery"
	"github.com/kclb/kclb/internal/handoff"
)

// Keys of the admin listeners among the handed-over sockets; public
// listeners are keyed by their bind address.
const (
	adminUnixKey = "admin-unix:"
	adminTCPKey  = "admin-tcp:"
)

// adminListener is an admin listener with its hand-over key.
type adminListener = handoff.Listener

// startAdmin starts the operator interface (admin API, stats page,
// metrics) on the Unix socket and TCP address of the Spec, after applying
// the admin states persisted in the state file. Its goroutines stop at
// Stop. Changes to the AdminPlan need a restart.
//
// After a binary upgrade the admin listeners come from inh (the old
// process's sockets, so the socket file is never re-created and no
// command is refused during the hand-over); otherwise they are opened.
func (d *Daemon) startAdmin(inh *handoff.Inherited) error {
	spec := d.current()
	ac := spec.Admin
	var state *admin.StateFile
	if ac.StateFile != "" {
		state = admin.NewStateFile(ac.StateFile)
	}
	token := ""
	if ac.TCP != "" {
		b, err := os.ReadFile(ac.TokenFile)
		if err != nil {
			return fmt.Errorf("admin.token_file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return fmt.Errorf("admin.token_file: %s is empty", ac.TokenFile)
		}
	}
	opts := admin.Options{
		Pool:         d.pool,
		Name:         spec.Name,
		Version:      d.opts.Version,
		Started:      d.started,
		Listeners:    d.adminListeners,
		Proxy:        d.proxyStats,
		Affinity:     d.Affinity,
		VRRP:         func() []admin.VRRPStatus { return adminVRRP(d.vrrp.Status()) },
		State:        state,
		Token:        token,
		PublicRead:   ac.PublicRead,
		Hosts:        ac.Hosts,
		ActiveChecks: spec.Checks.Active,
		Reload:       d.Reload,
		Handover:     d.handover,
		Logger:       d.logger.With("component", "admin"),
	}
	o, _ := d.observer.(*observer)
	if o != nil {
		opts.Metrics = o.Handler()
		opts.Traffic = func(s *backend.Server) admin.Traffic {
			t := o.Traffic(s)
			return admin.Traffic{BytesIn: t.BytesIn, BytesOut: t.BytesOut, Responses: admin.CodeCounts{
				Informational: t.Codes[1], Success: t.Codes[2], Redirect: t.Codes[3], ClientError: t.Codes[4], ServerError: t.Codes[5]}}
		}
	}
	startPair := d.pairHooks(&opts)
	srv, err := admin.New(opts)
	if err != nil {
		return err
	}
	if o != nil {
		o.admin.Store(srv)
	}
	if _, err := srv.Restore(); err != nil {
		// Refusing to start would turn a damaged state file into an
		// outage; say loudly that persisted states were not applied.
		d.logger.Error("admin states from the state file NOT applied; every server starts ready", "err", err)
	}

	ctx := d.runCtx
	d.wg.Go(func() { srv.Run(ctx) })

	var lns []adminListener
	closeAll := func() {
		for _, k := range lns {
			k.Ln.Close()
		}
	}
	serveOn := func(k adminListener, trusted bool) {
		lns = append(lns, k)
		d.wg.Go(func() {
			if err := srv.Serve(ctx, k.Ln, trusted); err != nil && !d.adminReleased.Load() {
				d.logger.Error("admin listener failed", "listener", k.Key, "err", err)
			}
		})
	}
	if ac.Socket.Path != "" {
		key := adminUnixKey + ac.Socket.Path
		ln := inh.Take(key)
		if ln == nil {
			var err error
			if ln, err = admin.ListenSocket(ac.Socket); err != nil {
				return err
			}
			d.logger.Info("admin API listening", "socket", ac.Socket.Path, "mode", fmt.Sprintf("%04o", ac.Socket.Mode.Perm()))
		} else {
			d.logger.Info("admin API listening (inherited from the previous process)", "socket", ac.Socket.Path)
		}
		serveOn(adminListener{Key: key, Ln: ln}, true)
	}
	if ac.TCP != "" {
		key := adminTCPKey + ac.TCP
		ln := inh.Take(key)
		if ln == nil {
			var err error
			if ln, err = net.Listen("tcp", ac.TCP); err != nil {
				closeAll()
				return fmt.Errorf("admin.tcp: %w", err)
			}
		}
		d.logger.Info("admin API listening", "tcp", ln.Addr().String())
		serveOn(adminListener{Key: key, Ln: ln}, false)
	}
	d.mu.Lock()
	d.admins = lns
	d.mu.Unlock()
	return startPair(srv, inh)
}

// handedAdmin returns the admin listeners, for a binary upgrade.
func (d *Daemon) handedAdmin() []adminListener {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]adminListener(nil), d.admins...)
}

// releaseAdmin stops accepting on the admin listeners after a binary
// upgrade handed them over. The socket file stays: the new process serves
// on the same socket. Requests already accepted finish.
func (d *Daemon) releaseAdmin() {
	d.adminReleased.Store(true)
	for _, k := range d.handedAdmin() {
		if u, ok := k.Ln.(*net.UnixListener); ok {
			u.SetUnlinkOnClose(false)
		}
		handoff.CloseWaking(k.Ln)
	}
}

// adoptAdmin makes this process remove the admin socket file when it
// stops, once it owns the socket (after the hand-over completed): a
// listener built from an inherited descriptor would leave it behind.
func (d *Daemon) adoptAdmin() {
	for _, k := range d.handedAdmin() {
		if u, ok := k.Ln.(*net.UnixListener); ok {
			u.SetUnlinkOnClose(true)
		}
	}
}

// persistingMembership is the pool as DNS discovery sees it: a server it
// adds gets its persisted admin state at once, so a server drained
// before a kclb restart stays drained when discovery finds it again.
type persistingMembership struct {
	*backend.Pool
	d *Daemon
}

// Add implements discovery.Pool.
func (m persistingMembership) Add(spec backend.Spec) *backend.Server {
	s := m.Pool.Add(spec)
	if a := m.d.adminServer(); a != nil {
		a.ApplyPersisted(spec.Name)
	}
	return s
}

var _ discovery.Pool = persistingMembership{}

// discoveryMembership returns the pool for discovery.New.
func (d *Daemon) discoveryMembership() discovery.Pool {
	return persistingMembership{Pool: d.pool, d: d}
}

// reapplyAdminState applies persisted admin states to servers that joined
// the pool after start (call it after a reload changed the membership).
func (d *Daemon) reapplyAdminState() {
	a := d.adminServer()
	if a == nil {
		return
	}
	for _, s := range d.pool.Servers() {
		a.ApplyPersisted(s.Name())
	}
}
