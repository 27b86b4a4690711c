// Package kcsim is a Keycloak stand-in for kclb's tests, benchmarks and demo.
//
// A Node serves a traffic port (login flow, OIDC discovery and token
// endpoints, static resources, Keycloak's security headers and cookies) and a
// management port (/health/*, /metrics) the way docs/keycloak.md describes
// Keycloak 26, plus a few test hooks that are NOT Keycloak: /echo,
// /bigheader and /stream on the traffic port, /kcsim/control and
// /kcsim/stats on the management port.
//
// Failure switches (database down, cluster split, slow responses, refused
// connections, starting up, failing token endpoint, wrong AUTH_SESSION_ID
// routes as in keycloak#43933) are set with methods or
// through the control endpoint, so tests and `make demo` can drive a proxy
// through Keycloak's failure modes.
package kcsim

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Node. The zero value is usable: node "keycloak",
// realm "test", 26.1 cookies with the route attached, cluster "ISPN" of size 1.
type Options struct {
	// Node is the node name: the route suffix of AUTH_SESSION_ID and the
	// node label of vendor_cluster_size. Default "keycloak".
	Node string
	// Realm is the only realm served. Default "test".
	Realm string
	// Strict makes the node accept only auth sessions and codes it created
	// itself, and count misroutes, so tests can prove affinity. When false
	// any well-formed cookie or code is accepted (like a Keycloak 26
	// cluster with distributed sessions).
	Strict bool
	// CookieFormat is the AUTH_SESSION_ID encoding. Default Format261.
	CookieFormat CookieFormat
	// NoRoute disables the ".<node>" route suffix (Keycloak's
	// should-attach-route=false). Default false: the route is attached.
	NoRoute bool
	// WrongRoute is the share of new auth sessions whose AUTH_SESSION_ID
	// route names another node instead of this one, as Keycloak 26.1 does
	// with its signed cookie (keycloak#43933: the route is right only with
	// probability 2/cluster-size). 0 (the default) never, 1 always; values
	// outside [0, 1] are clamped. The wrong sessions are spread evenly and
	// deterministically (the n-th new session is wrong when floor(n*p)
	// grows) and their routes cycle through Peers, so a test sees the same
	// sequence on every run. SetWrongRoute changes it at run time.
	WrongRoute float64
	// Peers are the names of the other nodes, used as wrong routes. If
	// empty, a wrong route is "<Node>-peer", a node nobody knows.
	// StartCluster fills in the other members.
	Peers []string
	// ClusterName is the cluster label of vendor_ metrics. Default "ISPN".
	ClusterName string
	// ClusterSize is the value of vendor_cluster_size while not split.
	// Default 1.
	ClusterSize int
	// MultiSite serves Keycloak's multi-site GET /lb-check on the traffic
	// port (200 {"status":"UP"}, or 503 DOWN while SetSiteOffline is on).
	// Default false: /lb-check is a 404, as on a Keycloak without that
	// feature.
	MultiSite bool
	// ProbeSecret, if set, is the only client_secret accepted for the
	// client_credentials grant. Default "": any secret is accepted.
	ProbeSecret string
	// ShutdownDelay is how long Serve keeps serving traffic with readiness
	// DOWN ("Graceful Shutdown") after its context is done, like Keycloak's
	// --shutdown-delay. Default 0.
	ShutdownDelay time.Duration
	// ShutdownTimeout bounds the graceful close of open connections after
	// that; remaining connections are then closed. Default 2s.
	ShutdownTimeout time.Duration
	// Logger receives switch changes and serve errors. If nil, logs are discarded.
	Logger *slog.Logger
}

// withDefaults returns o with defaults filled in.
func (o Options) withDefaults() Options {
	if o.Node == "" {
		o.Node = "keycloak"
	}
	if o.Realm == "" {
		o.Realm = "test"
	}
	if o.CookieFormat == "" {
		o.CookieFormat = Format261
	}
	if o.ClusterName == "" {
		o.ClusterName = "ISPN"
	}
	if o.ClusterSize <= 0 {
		o.ClusterSize = 1
	}
	o.WrongRoute = clampShare(o.WrongRoute)
	o.Peers = slices.Clone(o.Peers)
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Node is one simulated Keycloak server. Create it with New; its methods are
// safe for concurrent use. A Node may be served again after Serve returns
// (a restart): switches, counters and sessions survive.
type Node struct {
	opts    Options
	log     *slog.Logger
	signKey []byte
	traffic http.Handler
	mgmt    http.Handler
	pages   pages

	// Switches.
	dbDown       atomic.Bool
	failingSince atomic.Int64 // unix nanoseconds when dbDown went on
	split        atomic.Bool
	merges       atomic.Int64 // split on→off transitions
	delay        atomic.Int64 // time.Duration
	starting     atomic.Bool
	tokenFail    atomic.Bool
	siteOffline  atomic.Bool
	shutdown     atomic.Bool   // graceful shutdown in progress
	wrongRoute   atomic.Uint64 // math.Float64bits of the WrongRoute share
	newSessions  atomic.Uint64 // auth sessions created, for WrongRoute

	stats counters
	store store

	refuseMu      sync.Mutex // guards refuse, refuseChanged and conns
	refuse        bool
	refuseChanged chan struct{} // closed and replaced on every change of refuse
	conns         map[net.Conn]struct{}
}

// New returns a Node configured by opts (see Options for defaults).
// An unknown CookieFormat falls back to Format261 and is logged.
func New(opts Options) *Node {
	opts = opts.withDefaults()
	n := &Node{
		opts:          opts,
		log:           opts.Logger.With("node", opts.Node),
		signKey:       []byte("kcsim-realm-key-" + opts.Realm),
		refuseChanged: make(chan struct{}),
		conns:         make(map[net.Conn]struct{}),
	}
	if !opts.CookieFormat.valid() {
		n.log.Warn("unknown cookie format, using 26.1", "format", string(opts.CookieFormat))
		n.opts.CookieFormat = Format261
	}
	n.wrongRoute.Store(math.Float64bits(opts.WrongRoute))
	n.store.init()
	n.pages = newPages(n.opts)
	n.traffic = &trafficHandler{n: n}
	n.mgmt = n.newManagementHandler()
	return n
}

// Name returns the node name (the route).
func (n *Node) Name() string { return n.opts.Node }

// Options returns the effective options (defaults filled in).
func (n *Node) Options() Options { return n.opts }

// TrafficHandler returns the handler of the traffic port (8080 in Keycloak).
// Delay applies; Refuse does not (it acts on the listener in Serve).
func (n *Node) TrafficHandler() http.Handler { return n.traffic }

// ManagementHandler returns the handler of the management port (9000).
func (n *Node) ManagementHandler() http.Handler { return n.mgmt }

// SetDatabaseDown switches the database health check: readiness answers 503
// with the DOWN body whose "Failing since" is the moment it went down.
func (n *Node) SetDatabaseDown(down bool) {
	if down && !n.dbDown.Load() {
		n.failingSince.Store(time.Now().UnixNano())
	}
	if n.dbDown.Swap(down) != down {
		n.log.Info("kcsim switch", "db_down", down)
	}
}

// SetSplit makes vendor_cluster_size report 1 instead of ClusterSize.
// Healing a split increments vendor_jgroups_merge3_get_num_merge_events.
func (n *Node) SetSplit(split bool) {
	if old := n.split.Swap(split); old != split {
		if !split {
			n.merges.Add(1)
		}
		n.log.Info("kcsim switch", "split", split)
	}
}

// SetDelay delays every traffic response by d (0 disables). The wait ends
// early if the client goes away.
func (n *Node) SetDelay(d time.Duration) {
	if d < 0 {
		d = 0
	}
	if time.Duration(n.delay.Swap(int64(d))) != d {
		n.log.Info("kcsim switch", "delay", d)
	}
}

// SetStarting makes /health/started and /health/ready report DOWN while
// /health/live stays UP, as during Keycloak's startup.
func (n *Node) SetStarting(starting bool) {
	if n.starting.Swap(starting) != starting {
		n.log.Info("kcsim switch", "starting", starting)
	}
}

// SetTokenFail makes the token endpoint answer 500 while health stays UP.
func (n *Node) SetTokenFail(fail bool) {
	if n.tokenFail.Swap(fail) != fail {
		n.log.Info("kcsim switch", "token_fail", fail)
	}
}

// SetSiteOffline makes /lb-check answer 503 DOWN (with Options.MultiSite),
// as when the site is taken offline; health stays UP.
func (n *Node) SetSiteOffline(off bool) {
	if n.siteOffline.Swap(off) != off {
		n.log.Info("kcsim switch", "site_offline", off)
	}
}

// SetRefuse makes the traffic port refuse connections. While on, Serve
// closes the traffic listener (new connections get ECONNREFUSED, as from a
// dead process) and closes every open traffic connection; when turned off
// it listens again on the same address. The management port is unaffected.
func (n *Node) SetRefuse(refuse bool) {
	n.refuseMu.Lock()
	defer n.refuseMu.Unlock()
	if n.refuse == refuse {
		return
	}
	n.refuse = refuse
	close(n.refuseChanged)
	n.refuseChanged = make(chan struct{})
	n.log.Info("kcsim switch", "refuse", refuse)
}

// SetWrongRoute sets the share of new auth sessions whose route names
// another node (see Options.WrongRoute); p is clamped to [0, 1].
func (n *Node) SetWrongRoute(p float64) {
	p = clampShare(p)
	if math.Float64frombits(n.wrongRoute.Swap(math.Float64bits(p))) != p {
		n.log.Info("kcsim switch", "wrong_route", p)
	}
}

// clampShare clamps p to [0, 1]; NaN counts as 0.
func clampShare(p float64) float64 {
	switch {
	case p >= 1:
		return 1
	case p > 0:
		return p
	}
	return 0
}

// sessionRoute returns the route to attach to a new auth session's cookie:
// this node's name, or for a WrongRoute share of the sessions another
// node's. It reports whether the route is wrong.
func (n *Node) sessionRoute() (string, bool) {
	p := math.Float64frombits(n.wrongRoute.Load())
	k := n.newSessions.Add(1) // this is the k-th session (1-based)
	if p <= 0 || math.Floor(float64(k)*p) == math.Floor(float64(k-1)*p) {
		return n.opts.Node, false
	}
	if len(n.opts.Peers) == 0 {
		return n.opts.Node + "-peer", true
	}
	wrong := uint64(math.Floor(float64(k) * p)) // 1, 2, 3, ... over the wrong sessions
	return n.opts.Peers[(wrong-1)%uint64(len(n.opts.Peers))], true
}

// Switches is a snapshot of a node's failure switches.
type Switches struct {
	DatabaseDown bool          `json:"db_down"`
	Split        bool          `json:"split"`
	Delay        time.Duration `json:"delay_ns"`
	Refuse       bool          `json:"refuse"`
	Starting     bool          `json:"starting"`
	TokenFail    bool          `json:"token_fail"`
	SiteOffline  bool          `json:"site_offline"`
	ShuttingDown bool          `json:"shutting_down"`
	// WrongRoute is the share of new auth sessions given another node's
	// route (Options.WrongRoute).
	WrongRoute float64 `json:"wrong_route"`
}

// Switches returns the current switch settings.
func (n *Node) Switches() Switches {
	refuse, _ := n.refuseState()
	return Switches{
		DatabaseDown: n.dbDown.Load(),
		Split:        n.split.Load(),
		Delay:        time.Duration(n.delay.Load()),
		Refuse:       refuse,
		Starting:     n.starting.Load(),
		TokenFail:    n.tokenFail.Load(),
		SiteOffline:  n.siteOffline.Load(),
		ShuttingDown: n.shutdown.Load(),
		WrongRoute:   math.Float64frombits(n.wrongRoute.Load()),
	}
}

// refuseState returns the refuse switch and the channel closed on its next change.
func (n *Node) refuseState() (bool, <-chan struct{}) {
	n.refuseMu.Lock()
	defer n.refuseMu.Unlock()
	return n.refuse, n.refuseChanged
}

// trackConn is the traffic server's ConnState hook.
func (n *Node) trackConn(c net.Conn, s http.ConnState) {
	n.refuseMu.Lock()
	defer n.refuseMu.Unlock()
	switch s {
	case http.StateNew:
		n.conns[c] = struct{}{}
	case http.StateClosed, http.StateHijacked:
		delete(n.conns, c)
	}
}

// closeConns closes every open traffic connection.
func (n *Node) closeConns() {
	n.refuseMu.Lock()
	defer n.refuseMu.Unlock()
	for c := range n.conns {
		c.Close()
		delete(n.conns, c)
	}
}

// Serve serves the traffic port on traffic and the management port on mgmt
// (either may be nil to serve only the other) until ctx is done, then closes
// both listeners and all connections and returns nil. With ShutdownDelay
// set, readiness first reports DOWN for that long while traffic is served.
// It returns an error if a listener fails or cannot be re-opened after
// Refuse. Serve takes ownership of the listeners.
func (n *Node) Serve(ctx context.Context, traffic, mgmt net.Listener) error {
	n.shutdown.Store(false)
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServing()

	errc := make(chan error, 2)
	running := 0
	if mgmt != nil {
		running++
		go func() { errc <- n.serveManagement(serveCtx, mgmt) }()
	}
	if traffic != nil {
		running++
		go func() { errc <- n.serveTraffic(serveCtx, traffic) }()
	}

	var err error
	select {
	case <-ctx.Done():
		if d := n.opts.ShutdownDelay; d > 0 {
			n.shutdown.Store(true)
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case err = <-errc:
				running--
			}
			t.Stop()
		}
	case err = <-errc:
		running--
	}
	stopServing()
	for ; running > 0; running-- {
		if e := <-errc; err == nil {
			err = e
		}
	}
	return err
}

// serveManagement serves the management handler on ln until ctx is done.
func (n *Node) serveManagement(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: n.mgmt, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelDebug)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		n.shutdownServer(srv)
		<-errc
		return nil
	case err := <-errc:
		return fmt.Errorf("kcsim %s: serve management on %s: %w", n.opts.Node, ln.Addr(), err)
	}
}

// serveTraffic serves the traffic handler on ln until ctx is done, closing
// and re-opening the listener as the refuse switch changes.
func (n *Node) serveTraffic(ctx context.Context, ln net.Listener) error {
	network, addr := ln.Addr().Network(), ln.Addr().String()
	srv := &http.Server{
		Handler:           n.traffic,
		ConnState:         n.trackConn,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	for {
		refusing, changed := n.refuseState()
		if refusing {
			if ln != nil {
				ln.Close()
				ln = nil
			}
			n.closeConns()
			select {
			case <-ctx.Done():
				n.shutdownServer(srv)
				return nil
			case <-changed:
				continue
			}
		}
		if ln == nil {
			var err error
			if ln, err = relisten(ctx, network, addr); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("kcsim %s: re-listen after refuse: %w", n.opts.Node, err)
			}
		}
		errc := make(chan error, 1)
		go func(l net.Listener) { errc <- srv.Serve(l) }(ln)
		select {
		case <-ctx.Done():
			n.shutdownServer(srv)
			<-errc
			return nil
		case <-changed:
			ln.Close()
			<-errc
			ln = nil
		case err := <-errc:
			return fmt.Errorf("kcsim %s: serve traffic on %s: %w", n.opts.Node, addr, err)
		}
	}
}

// shutdownServer closes srv gracefully within ShutdownTimeout, then hard.
func (n *Node) shutdownServer(srv *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), n.opts.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		srv.Close()
	}
}

// Relisten opens network/addr again, retrying for up to about 2 s while
// the kernel has not released the port yet: for restarting a node on the
// address it had (kcsimtest's Cluster.Start).
func Relisten(ctx context.Context, network, addr string) (net.Listener, error) {
	return relisten(ctx, network, addr)
}

// relisten opens network/addr again, retrying briefly (up to about 2 s) in
// case the kernel has not released the port yet.
func relisten(ctx context.Context, network, addr string) (net.Listener, error) {
	var lastErr error
	for i := 0; i < 40; i++ {
		ln, err := net.Listen(network, addr)
		if err == nil {
			return ln, nil
		}
		lastErr = err
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	return nil, fmt.Errorf("listen %s %s: %w", network, addr, lastErr)
}

// OtherNodes returns names without names[i], in order starting after i
// (so each node's first peer is the next one): the Peers of node i of a
// cluster.
func OtherNodes(names []string, i int) []string {
	out := make([]string, 0, len(names))
	for j := 1; j < len(names); j++ {
		out = append(out, names[(i+j)%len(names)])
	}
	return out
}
