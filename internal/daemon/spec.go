// Package daemon is kclb's runtime: it builds the proxy, the backend
// pool, the health checks, the VRRP instances, the admin interface and
// the public listeners from a Spec, serves until its context ends,
// applies a new Spec on reload, hands its sockets to a new binary on
// upgrade, and shuts down gracefully. It owns every long-lived goroutine
// of a running kclb.
//
// The life of a daemon is Build (no socket opened) → Start (listeners
// serve) → Swap (a reload, any number of times) → Stop (VRRP resigns,
// listeners drain within the grace period). Run strings them together
// for `kclb run` with signals and systemd notification.
//
// The package never reads configuration: a Spec holds the runtime
// packages' own option values, converted by internal/configmap.
package daemon

import (
	"io"
	"log/slog"
	"time"

	"github.com/kclb/kclb/affinity"
	"github.com/kclb/kclb/health"
	"github.com/kclb/kclb/internal/admin"
	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/discovery"
	"github.com/kclb/kclb/internal/proxyproto"
	"github.com/kclb/kclb/internal/ratelimit"
	"github.com/kclb/kclb/proxy"
	"github.com/kclb/kclb/tlsconf"
	"github.com/kclb/kclb/vrrp"
)

// Spec is everything one configuration builds, as the runtime packages'
// own option types. Hook fields (loggers, callbacks, the pool, the
// router) are left unset: the daemon fills them in. A Spec is not
// modified by the daemon once handed over, except that Swap may give it
// the running affinity key (see AffinityKeyGenerated).
type Spec struct {
	// Source says where the Spec came from; it decides nothing.
	Source Source
	// Name is the instance name the status API shows.
	Name string
	// Log is what the process logger is built from (by the caller;
	// the daemon only notices a reload changing it).
	Log LogSettings
	// ConnSlots is the size of the global client connection
	// semaphore; 0 means no limit.
	ConnSlots int
	// TLSPairs are the certificate files; none means no TLS listener
	// can be served.
	TLSPairs []tlsconf.Pair
	TLS      tlsconf.Options
	// Listeners are the public listeners.
	Listeners []ListenerPlan
	// Servers are the configured backend servers.
	Servers []backend.Spec
	// Pool lacks OnHealth and OnAvailable.
	Pool backend.PoolOptions
	// Balancer is a balancer.New name.
	Balancer string
	// Affinity is nil when affinity is off.
	Affinity *affinity.Options
	// AffinityKey is the affinity signing key even when affinity is
	// off; AffinityKeyGenerated says it was generated at load (no
	// secret configured): a reload then keeps the running key, or
	// every affinity cookie would turn invalid at once.
	AffinityKey          []byte
	AffinityKeyGenerated bool
	// Handler lacks Pool, Router, Observer, RateLimit and Logger.
	Handler   proxy.Options
	RateLimit ratelimit.Options
	Checks    CheckPlan
	// VRRP are the VRRP instances; Logger and Inherit are left unset.
	VRRP  []vrrp.Options
	Admin AdminPlan
	// Pair is the pair channel; nil when there is no pair.
	Pair *PairPlan
	// PairFingerprint hashes, part by part, what must be the same on
	// both instances of a pair (the peer compares it for drift).
	PairFingerprint map[string]string
	// ShutdownGrace is how long requests in flight get at shutdown; 0
	// closes them at once.
	ShutdownGrace time.Duration
	// RestartOnly are the settings a reload cannot apply, in the order
	// a reload names them when they changed.
	RestartOnly []Setting
}

// Source is where a Spec was loaded from.
type Source struct {
	// Path is the configuration file (logged on reload).
	Path string
	// Hash identifies its contents (kclb_config_hash).
	Hash string
	// Warnings are logged when the Spec is built or swapped in.
	Warnings []string
}

// Setting is one restart-only setting: its key path and a rendering of
// its value, compared between the running and a reloaded Spec.
type Setting struct {
	Key, Value string
}

// LogSettings is what the process logger is built from.
type LogSettings struct {
	Level slog.Level
	JSON  bool
}

// Logger returns the process logger writing to w: text, or JSON lines.
func (l LogSettings) Logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.Level}
	if l.JSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// ListenerPlan is one public listener as the listener set opens it.
type ListenerPlan struct {
	Name     string
	Bind     string
	Freebind bool
	// TLS listeners serve with the store's certificates and offer
	// NextProtos through ALPN.
	TLS        bool
	NextProtos []string
	// ClientAuth asks TLS clients for a certificate verified against
	// the store's pool for ClientCA.
	ClientAuth tlsconf.ClientAuth
	ClientCA   string
	// RedirectPort, when not 0, makes a plain listener answer every
	// request with a redirect to https on that port.
	RedirectPort int
	// Proxy, when not nil, makes the listener expect PROXY protocol
	// headers; it lacks Counters.
	Proxy *proxyproto.Options
	// Server lacks Handler, TLS, ErrorLog and Conns.
	Server proxy.ServerOptions
	// Ident decides whether a reload keeps the listener open: an open
	// listener whose Ident is deeply equal to a new plan's is kept with
	// its connections (settings outside it, such as timeouts, apply to
	// listeners opened later). Nil compares the whole plan.
	Ident any
}

// CheckPlan is what the active checks and DNS discovery are built from.
type CheckPlan struct {
	// Active runs the health checker.
	Active bool
	// Health lacks Logger, Observe and OnRoute.
	Health health.Options
	// Discovery is nil without DNS discovery; it lacks Logger.
	Discovery *discovery.Options
	// Slowstart is the pool's slow start (Pool.SetSlowstart, at start
	// and on every Swap); 0 means none.
	Slowstart time.Duration
}

// AdminPlan is what the operator interface is started with; a reload
// does not change it.
type AdminPlan struct {
	// Socket is the admin Unix socket; an empty Path means none.
	Socket admin.SocketOptions
	// TCP is the admin TCP address; "" means none. TokenFile holds its
	// bearer token.
	TCP, TokenFile string
	// PublicRead and Hosts are admin.Options.PublicRead and Hosts.
	PublicRead bool
	Hosts      []string
	// StateFile persists admin states; "" means none.
	StateFile string
}

// PairPlan is what the pair channel (internal/peer) is started with; a
// reload does not change it.
type PairPlan struct {
	// Peer is the other instance's pair address; Listen is this one's.
	Peer, Listen string
	// SecretFile holds the shared secret the message key is derived from.
	SecretFile string
	// Interval is how often the states are exchanged.
	Interval time.Duration
}

// RestartOnlyChanges lists the keys of old.RestartOnly whose value
// differs in cur.
func RestartOnlyChanges(old, cur *Spec) []string {
	var keys []string
	for _, s := range cur.RestartOnly {
		for _, o := range old.RestartOnly {
			if o.Key == s.Key && o.Value != s.Value {
				keys = append(keys, s.Key)
			}
		}
	}
	return keys
}
