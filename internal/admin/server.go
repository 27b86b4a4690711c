// Package admin is kclb's operator interface: the versioned JSON API
// (status, drain/ready/maint, wait) served on the admin listeners, the
// self-contained stats page, the persistence of admin states in the state
// file, and the Client the kclb CLI uses to talk to a running instance.
//
// The admin listeners are never public: a Unix socket (trusted: access is
// controlled by the socket file's mode and group) and optionally a TCP
// address on which every request needs a bearer token (reads too, unless
// Options.PublicRead; the stats page's HTML excepted), a Host that names
// the listener, and a source address that has not failed the token too
// often (tcpauth.go).
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kclb/kclb/affinity"
	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/proxy"
)

// Until is the condition a wait request waits for.
type Until uint8

const (
	// UntilIdle: no request in flight or queued and no request started
	// within the quiet period (affinity clients have finished).
	UntilIdle Until = iota
	// UntilHealthy: health Up, confirmed by an active check that ran
	// after the wait began (when the server has active checks).
	UntilHealthy
)

// untilNames are the conditions' names in requests and output.
var untilNames = [...]string{UntilIdle: "idle", UntilHealthy: "healthy"}

// String returns "idle" or "healthy".
func (u Until) String() string {
	if int(u) < len(untilNames) {
		return untilNames[u]
	}
	return "idle"
}

// ParseUntil is the inverse of Until.String.
func ParseUntil(s string) (Until, bool) {
	for u, name := range untilNames {
		if s == name {
			return Until(u), true
		}
	}
	return 0, false
}

// Defaults for wait requests.
const (
	// DefaultQuiet is how long a server must have started no request to
	// count as idle.
	DefaultQuiet = 2 * time.Second
	// DefaultWaitTimeout bounds a wait request without timeout=.
	DefaultWaitTimeout = 60 * time.Second
	// MaxWaitTimeout is the longest wait accepted.
	MaxWaitTimeout = time.Hour
)

// Options configures a Server. Zero fields take the defaults named.
type Options struct {
	// Pool holds the servers. Required.
	Pool *backend.Pool
	// Name and Version identify the instance in the status.
	Name, Version string
	// Started is when the process started. Zero means the time of New.
	Started time.Time
	// Listeners returns the public listeners. Nil means none shown.
	Listeners func() []Listener
	// Proxy returns the request handler's counters. Nil means none shown.
	Proxy func() proxy.Stats
	// Affinity returns the affinity policy in force, nil when affinity is
	// off. Nil means affinity is off.
	Affinity func() *affinity.Affinity
	// VRRP returns the VRRP instances' status. Nil means VRRP is off.
	VRRP func() []VRRPStatus
	// State persists admin states. Nil disables persistence.
	State *StateFile
	// Token is the bearer token that authorises mutations on untrusted
	// (TCP) listeners. Empty means mutations are only possible on the
	// trusted (Unix socket) listener.
	Token string
	// PublicRead lets untrusted (TCP) callers read (status, servers,
	// wait, metrics) without the token. False (the default) requires it.
	PublicRead bool
	// Hosts are further Host header values accepted on untrusted (TCP)
	// listeners besides the listener's own address (and localhost:PORT
	// on loopback): names such as "kclb1.internal" (any port) or
	// "kclb1.internal:9100". Nil accepts only the address.
	Hosts []string
	// Metrics, if set, is served at /metrics.
	Metrics http.Handler
	// Traffic, if set, returns a server's response and byte counters for
	// the status. Nil leaves them out.
	Traffic func(*backend.Server) Traffic
	// Reload, if set, re-reads and applies the configuration for
	// POST /v1/reload (authorised callers only); its error is returned to
	// the caller. Nil answers 501.
	Reload func(ctx context.Context) error
	// Handover, if set, starts or ends a planned VRRP handover for
	// POST /v1/vrrp/handover (authorised callers only). Nil answers 501.
	Handover func(ctx context.Context, req HandoverRequest) (*HandoverResult, error)
	// Node is the writer recorded in the stamps of admin changes made on
	// this instance (see Stamp). Empty means Name.
	Node string
	// Replicate, if set, tells the pair's other instance about an admin
	// change made through the API, after it applied here; its result is
	// returned to the caller (ChangeResult.Peer). Nil means no pair.
	Replicate func(ctx context.Context) PeerResult
	// Pair, if set, returns the pair channel's view for the status. Nil
	// leaves it out.
	Pair func() *PairStatus
	// ActiveChecks is true when the health checker runs; wait?until=healthy
	// then requires a check that completed after the wait began.
	ActiveChecks bool
	// PollInterval is how often a wait re-evaluates its condition.
	// Default 100 ms.
	PollInterval time.Duration
	// Logger receives admin actions. Nil discards them.
	Logger *slog.Logger
}

// Server serves the admin API. Create it with New; it is safe for
// concurrent use.
type Server struct {
	opts  Options
	token []byte

	unauthorized atomic.Uint64
	misdirected  atomic.Uint64
	mutations    atomic.Uint64
	failures     failTable // failed tokens per source address
	recent       recent
	history      history

	mu    sync.Mutex // serialises admin changes and guards state
	state State
}

// New returns a Server. It returns an error if Pool is missing.
func New(opts Options) (*Server, error) {
	if opts.Pool == nil {
		return nil, errors.New("admin: Pool is required")
	}
	if opts.Started.IsZero() {
		opts.Started = time.Now()
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 100 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Node == "" {
		opts.Node = opts.Name
	}
	return &Server{opts: opts, token: []byte(opts.Token),
		state: State{Version: stateVersion, Servers: map[string]string{}}}, nil
}

// Restore loads the state file and applies the persisted admin states to
// the pool's servers, so a drained server stays drained across restarts.
// Entries for servers not in the pool are kept for later. It returns the
// names it applied. Without a state file it does nothing.
func (s *Server) Restore() ([]string, error) {
	if s.opts.State == nil {
		return nil, nil
	}
	st, err := s.opts.State.Load()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = st
	var applied []string
	for _, name := range st.Names() {
		a, _ := backend.ParseAdminState(st.Servers[name])
		if s.opts.Pool.Lookup(name) == nil {
			s.opts.Logger.Warn("state file names an unknown server; kept", "server", name, "admin", a.String())
			continue
		}
		if err := s.opts.Pool.SetAdmin(name, a); err != nil {
			return applied, fmt.Errorf("admin: restore %s: %w", name, err)
		}
		applied = append(applied, name)
		s.opts.Logger.Info("admin state restored", "server", name, "admin", a.String(), "state_file", s.opts.State.Path())
	}
	return applied, nil
}

// ApplyPersisted applies the persisted admin state of the server called
// name, if the state file has one and the server is in the pool. It is
// for servers that join after Restore (DNS discovery, reload), so that a
// drained server does not come back ready. It reports whether it applied
// a state.
func (s *Server) ApplyPersisted(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.state.Servers[name]
	if !ok {
		return false
	}
	a, _ := backend.ParseAdminState(v)
	srv := s.opts.Pool.Lookup(name)
	if srv == nil || srv.Admin() == a {
		return false
	}
	if err := s.opts.Pool.SetAdmin(name, a); err != nil {
		return false
	}
	s.opts.Logger.Info("admin state restored", "server", name, "admin", a.String())
	return true
}

// Unauthorized returns how many requests on untrusted listeners were
// refused for lack of a valid token (or after too many invalid ones).
func (s *Server) Unauthorized() uint64 { return s.unauthorized.Load() }

// Misdirected returns how many requests on untrusted listeners were
// refused because their Host did not name the listener.
func (s *Server) Misdirected() uint64 { return s.misdirected.Load() }

// Mutations returns how many admin state changes were requested and applied.
func (s *Server) Mutations() uint64 { return s.mutations.Load() }

// SetAdmin sets the admin state of the server called name and persists it.
// It returns the previous state. backend errors for an unknown name are
// wrapped in ErrUnknownServer. When the change applied but could not be
// persisted, the returned error wraps ErrNotPersisted.
func (s *Server) SetAdmin(name string, a backend.AdminState) (backend.AdminState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	srv := s.opts.Pool.Lookup(name)
	if srv == nil {
		return 0, fmt.Errorf("%w %q", ErrUnknownServer, name)
	}
	prev := srv.Admin()
	if err := s.opts.Pool.SetAdmin(name, a); err != nil {
		return 0, fmt.Errorf("%w %q", ErrUnknownServer, name)
	}
	s.mutations.Add(1)
	if s.state.Servers == nil {
		s.state.Servers = map[string]string{}
	}
	if a == backend.AdminReady {
		delete(s.state.Servers, name)
	} else {
		s.state.Servers[name] = a.String()
	}
	s.stampLocked(name, a)
	if s.opts.State != nil {
		s.state.Updated = time.Now().UTC()
		if err := s.opts.State.Save(s.state); err != nil {
			return prev, fmt.Errorf("%w: %w", ErrNotPersisted, err)
		}
	}
	return prev, nil
}

// ErrUnknownServer is returned by SetAdmin for a name not in the pool.
var ErrUnknownServer = errors.New("unknown server")

// ErrNotPersisted is returned by SetAdmin when the state changed but the
// state file could not be written.
var ErrNotPersisted = errors.New("admin state applied but not persisted")

// Serve serves the API on ln until ctx ends, then closes ln, or until ln
// is closed (a binary upgrade's hand-over). trusted marks a listener
// whose callers are authorised by the operating system (the Unix
// socket); on others mutations need the bearer token. Requests in
// progress (waits) are cancelled when ctx ends. Serve returns once the
// connections it accepted are done (for up to 2 s): after a hand-over,
// the ones that have not sent their request yet are answered first.
func (s *Server) Serve(ctx context.Context, ln net.Listener, trusted bool) error {
	srv := &http.Server{
		Handler:           s.Handler(trusted),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(s.opts.Logger.Handler(), slog.LevelDebug),
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if srv.Shutdown(sctx) != nil {
				srv.Close()
			}
		case <-done:
		}
	}()
	var busy busyConns
	srv.ConnState = busy.track
	err := srv.Serve(ln)
	// However the accepting ended (ctx, or the listener closed: a binary
	// upgrade's hand-over), the connections it accepted are answered,
	// within the same bound, before Serve returns: the process may exit
	// next, which would reset them. http.Server's Shutdown drops a
	// connection whose request arrives after it began, so it waits until
	// none is new or active first.
	bound := time.Now().Add(2 * time.Second)
	if ctx.Err() == nil {
		busy.wait(bound)
	}
	sctx, cancel := context.WithDeadline(context.Background(), bound)
	defer cancel()
	if srv.Shutdown(sctx) != nil {
		srv.Close()
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("admin: serve %s: %w", ln.Addr(), err)
}

// busyConns counts a server's connections that are new (no request read
// yet) or active, from its ConnState hook.
type busyConns struct {
	mu      sync.Mutex
	states  map[net.Conn]http.ConnState
	changed chan struct{} // closed and replaced at every change
}

func (b *busyConns) track(c net.Conn, st http.ConnState) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.states == nil {
		b.states = make(map[net.Conn]http.ConnState)
	}
	if st == http.StateClosed || st == http.StateHijacked {
		delete(b.states, c)
	} else {
		b.states[c] = st
	}
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
}

// wait returns once no connection is new or active, or at deadline.
func (b *busyConns) wait(deadline time.Time) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for {
		b.mu.Lock()
		busy := false
		for _, st := range b.states {
			busy = busy || st == http.StateNew || st == http.StateActive
		}
		if !busy {
			b.mu.Unlock()
			return
		}
		if b.changed == nil {
			b.changed = make(chan struct{})
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-t.C:
			return
		}
	}
}

// Handler returns the API handler for a listener; see Serve for trusted.
func (s *Server) Handler(trusted bool) http.Handler {
	mux := http.NewServeMux()
	h := &handler{s: s, trusted: trusted}
	mux.HandleFunc("GET /v1/status", h.status)
	mux.HandleFunc("GET /v1/servers/{name}", h.server)
	mux.HandleFunc("GET /v1/servers/{name}/wait", h.wait)
	mux.HandleFunc("POST /v1/servers/{name}/{action}", h.mutate)
	mux.HandleFunc("POST /v1/reload", h.reload)
	mux.HandleFunc("POST /v1/vrrp/handover", h.handover)
	if trusted {
		// Profiles only on the Unix socket: they are for the operator.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("GET /{$}", h.page)
	mux.HandleFunc("GET /stats", h.page)
	mux.HandleFunc("GET /stats.csv", h.csv)
	if s.opts.Metrics != nil {
		mux.Handle("GET /metrics", s.opts.Metrics)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path, nil)
	})
	if trusted {
		return mux
	}
	return h.guard(mux)
}

// handler serves one listener.
type handler struct {
	s       *Server
	trusted bool
}

// authorized reports whether r may change admin states.
func (h *handler) authorized(r *http.Request) bool {
	if h.trusted {
		return true
	}
	if len(h.s.token) == 0 {
		return false
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), h.s.token) == 1
}

// ReloadResult is the body of a successful POST /v1/reload.
type ReloadResult struct {
	Reloaded bool `json:"reloaded"`
}

// reload applies the configuration file again.
func (h *handler) reload(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(r) {
		h.s.unauthorized.Add(1)
		writeError(w, http.StatusUnauthorized, "reload needs a bearer token on this listener", nil)
		return
	}
	if h.s.opts.Reload == nil {
		writeError(w, http.StatusNotImplemented, "reload is not available", nil)
		return
	}
	if err := h.s.opts.Reload(r.Context()); err != nil {
		writeError(w, http.StatusUnprocessableEntity, err.Error(), nil)
		return
	}
	writeJSON(w, http.StatusOK, ReloadResult{Reloaded: true})
}

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error string `json:"error"`
	// Known lists the server names when the request named an unknown one.
	Known []string `json:"known,omitempty"`
	// Server is the server's state when a wait timed out.
	Server *ServerStatus `json:"server,omitempty"`
}

// ChangeResult is the body of a successful POST /v1/servers/{name}/{action}.
type ChangeResult struct {
	Previous string       `json:"previous"`
	Server   ServerStatus `json:"server"`
	// Peer is what happened on the pair's other instance; absent without
	// a [pair].
	Peer *PeerResult `json:"peer,omitempty"`
}

// WaitResult is the body of a successful wait.
type WaitResult struct {
	Until         string       `json:"until"`
	WaitedSeconds float64      `json:"waited_seconds"`
	Server        ServerStatus `json:"server"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string, srv *ServerStatus) {
	writeJSON(w, code, ErrorBody{Error: msg, Server: srv})
}

// Snapshot returns the current status; authorized fills Status.Authorized.
func (s *Server) Snapshot(authorized bool) Status {
	now := time.Now()
	o := s.opts
	st := Status{
		Name: o.Name, Version: o.Version, Started: o.Started,
		UptimeSeconds: now.Sub(o.Started).Seconds(), Authorized: authorized,
		Panic: o.Pool.Panic(), AnyAvailable: o.Pool.AnyAvailable(),
		Listeners: []Listener{}, Servers: []ServerStatus{},
	}
	if o.Listeners != nil {
		st.Listeners = append(st.Listeners, o.Listeners()...)
	}
	if o.Pair != nil {
		st.Pair = o.Pair()
	}
	servers := o.Pool.Servers()
	s.history.prune(servers)
	for _, srv := range servers {
		ss := serverStatus(srv, now)
		if n, ok := s.recent.requests(srv); ok {
			ss.RecentRequests = &n
		}
		s.history.fill(&ss, now)
		if st.Pair != nil && st.Pair.PeerView != nil {
			ss.PeerAdmin = st.Pair.PeerView[ss.Name]
			if ss.PeerAdmin == "" {
				ss.PeerAdmin = "absent"
			}
		}
		if o.Traffic != nil {
			tr := o.Traffic(srv)
			ss.Responses, ss.BytesIn, ss.BytesOut = &tr.Responses, tr.BytesIn, tr.BytesOut
		}
		st.Servers = append(st.Servers, ss)
	}
	if o.VRRP != nil {
		st.VRRP = o.VRRP()
	}
	if o.Proxy != nil {
		st.Proxy = proxyStatus(o.Proxy())
	}
	if o.Affinity != nil {
		if a := o.Affinity(); a != nil {
			st.Affinity = affinityStatus(a.Stats(), a.Routes())
		}
	}
	return st
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.s.Snapshot(h.authorized(r)))
}

// lookup finds the server named in the path or writes a 404.
func (h *handler) lookup(w http.ResponseWriter, r *http.Request) *backend.Server {
	name := r.PathValue("name")
	if srv := h.s.opts.Pool.Lookup(name); srv != nil {
		return srv
	}
	var known []string
	for _, srv := range h.s.opts.Pool.Servers() {
		known = append(known, srv.Name())
	}
	writeJSON(w, http.StatusNotFound, ErrorBody{Error: fmt.Sprintf("unknown server %q", name), Known: known})
	return nil
}

func (h *handler) server(w http.ResponseWriter, r *http.Request) {
	if srv := h.lookup(w, r); srv != nil {
		writeJSON(w, http.StatusOK, serverStatus(srv, time.Now()))
	}
}

func (h *handler) mutate(w http.ResponseWriter, r *http.Request) {
	action := r.PathValue("action")
	a, ok := backend.ParseAdminState(action)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown action %q (want drain, ready or maint)", action), nil)
		return
	}
	if !h.authorized(r) {
		h.s.unauthorized.Add(1)
		h.s.opts.Logger.Warn("admin request refused: missing or invalid token", "remote", r.RemoteAddr, "action", action, "server", r.PathValue("name"))
		w.Header().Set("WWW-Authenticate", `Bearer realm="kclb"`)
		writeError(w, http.StatusUnauthorized, "a valid bearer token is required to change admin states", nil)
		return
	}
	srv := h.lookup(w, r)
	if srv == nil {
		return
	}
	prev, err := h.s.SetAdmin(srv.Name(), a)
	if err != nil && !errors.Is(err, ErrNotPersisted) {
		writeError(w, http.StatusInternalServerError, err.Error(), nil)
		return
	}
	via := "tcp"
	if h.trusted {
		via = "unix"
	}
	h.s.opts.Logger.Info("admin state changed", "server", srv.Name(), "from", prev.String(), "to", a.String(), "via", via)
	st := serverStatus(srv, time.Now())
	if err != nil {
		h.s.opts.Logger.Error("admin state not persisted", "server", srv.Name(), "err", err)
		writeError(w, http.StatusInternalServerError, err.Error(), &st)
		return
	}
	writeJSON(w, http.StatusOK, ChangeResult{Previous: prev.String(), Server: st, Peer: h.s.replicate(r.Context())})
}

func (h *handler) wait(w http.ResponseWriter, r *http.Request) {
	srv := h.lookup(w, r)
	if srv == nil {
		return
	}
	q := r.URL.Query()
	until := UntilIdle
	if v := q.Get("until"); v != "" {
		var ok bool
		if until, ok = ParseUntil(v); !ok {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("until=%q: want idle or healthy", v), nil)
			return
		}
	}
	timeout, err := durationParam(q.Get("timeout"), DefaultWaitTimeout)
	if err != nil || timeout > MaxWaitTimeout {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("timeout=%q: want a duration up to %v", q.Get("timeout"), MaxWaitTimeout), nil)
		return
	}
	quiet, err := durationParam(q.Get("quiet"), DefaultQuiet)
	if err != nil || quiet > MaxWaitTimeout {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("quiet=%q: want a duration", q.Get("quiet")), nil)
		return
	}
	start := time.Now()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(h.s.opts.PollInterval)
	defer tick.Stop()
	for {
		now := time.Now()
		// The server may have been replaced (discovery): look it up again.
		if cur := h.s.opts.Pool.Lookup(srv.Name()); cur != nil {
			srv = cur
		}
		met, why := h.s.condition(srv, until, quiet, start, now)
		if met {
			writeJSON(w, http.StatusOK, WaitResult{Until: until.String(), WaitedSeconds: now.Sub(start).Seconds(), Server: serverStatus(srv, now)})
			return
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			st := serverStatus(srv, time.Now())
			writeError(w, http.StatusGatewayTimeout, fmt.Sprintf("timeout after %v waiting for %s to be %s: %s", timeout, srv.Name(), until, why), &st)
			return
		case <-r.Context().Done():
			return
		}
	}
}

// condition evaluates a wait condition for srv at now; when it is not met
// it says why.
func (s *Server) condition(srv *backend.Server, until Until, quiet time.Duration, start, now time.Time) (bool, string) {
	switch until {
	case UntilHealthy:
		if h := srv.Health(); h != backend.HealthUp {
			reason := srv.Detail().Reason
			if reason == "" {
				return false, "health " + h.String()
			}
			return false, "health " + h.String() + ": " + reason
		}
		if s.opts.ActiveChecks && srv.Mgmt() != "" {
			d := srv.Detail()
			if d.LastCheck.Before(start) {
				return false, "no health check has completed since the wait began"
			}
			if d.Fails > 0 {
				return false, "last health check failed: " + d.LastResult
			}
		}
		return true, ""
	default:
		c := srv.Counters()
		if c.InFlight > 0 || c.Queued > 0 {
			return false, fmt.Sprintf("%d requests in flight, %d queued", c.InFlight, c.Queued)
		}
		if lu := srv.LastUse(); !lu.IsZero() && now.Sub(lu) < quiet {
			return false, fmt.Sprintf("last request started %v ago (quiet period %v)", now.Sub(lu).Round(time.Millisecond), quiet)
		}
		return true, ""
	}
}

// durationParam parses a Go duration or a number of seconds; empty means def.
func durationParam(v string, def time.Duration) (time.Duration, error) {
	if v == "" {
		return def, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return d, nil
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil && secs >= 0 && secs <= MaxWaitTimeout.Seconds() {
		return time.Duration(secs * float64(time.Second)), nil
	}
	return 0, fmt.Errorf("bad duration %q", v)
}
