package health

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/optcheck"
)

// ClusterMode says what the checker does when a node's cluster view
// disagrees with the majority of nodes.
type ClusterMode uint8

const (
	// ClusterOff: no cluster check (zero value).
	ClusterOff ClusterMode = iota
	// ClusterReport: flag the node (Detail.Split) but keep it in rotation.
	ClusterReport
	// ClusterEject: flag the node and count the disagreement as a failed
	// check, so it leaves rotation (Down) after Fall rounds.
	ClusterEject
)

// String returns "off", "report" or "eject".
func (m ClusterMode) String() string {
	switch m {
	case ClusterOff:
		return "off"
	case ClusterReport:
		return "report"
	case ClusterEject:
		return "eject"
	}
	return "unknown"
}

// ParseClusterMode is the inverse of ClusterMode.String.
func ParseClusterMode(s string) (ClusterMode, bool) {
	switch s {
	case "off", "":
		return ClusterOff, true
	case "report":
		return ClusterReport, true
	case "eject":
		return ClusterEject, true
	}
	return 0, false
}

// TokenProbe configures the authenticated probe: a client-credentials
// token request for a dedicated probe client. The zero value (empty
// ClientID) disables it.
type TokenProbe struct {
	// ClientID is the probe client's id in Options.Realm. Empty disables
	// the probe.
	ClientID string
	// SecretFile is the path of a file holding the client secret
	// (surrounding whitespace is ignored). It is read before each probe,
	// so a rotated secret is picked up. The secret never appears in logs,
	// reasons or errors.
	SecretFile string
	// Interval between token requests to one server while they succeed.
	// After a failure the request is repeated every round until it
	// succeeds, and every failing round counts towards Fall like a failed
	// readiness check. Zero means 30s.
	Interval time.Duration
}

// Options configures a Checker. The zero value checks GET /health/ready
// over HTTP with Keycloak's recommended load-balancer settings: a zero
// field means its Default constant. Validate checks the rules New
// applies.
type Options struct {
	// Path is the readiness path on the management port. Empty means
	// "/health/ready".
	Path string
	// LivePath tells Down (live, not ready) from Dead. Empty means
	// "/health/live".
	LivePath string
	// StartedPath tells a node that is still starting. Empty means
	// "/health/started".
	StartedPath string
	// Scheme is "http" or "https" for the management port. Empty means
	// "http".
	Scheme string
	// TrafficScheme is the scheme of the traffic port, used by the
	// well-known, lb-check and token probes. Empty means Scheme.
	TrafficScheme string
	// CAFile is a PEM bundle verifying the servers' certificates. Empty
	// means the system roots.
	CAFile string
	// InsecureSkipVerify disables certificate verification.
	InsecureSkipVerify bool
	// Interval between check rounds on one server. Zero means 5s.
	Interval time.Duration
	// Timeout for each HTTP request of a round (real time). Zero means 2s.
	Timeout time.Duration
	// Rise is the number of consecutive passing rounds that bring a server
	// back Up. Zero means 2.
	Rise int
	// Fall is the number of consecutive failing rounds that take an Up
	// server out. Zero means 3.
	Fall int
	// MaxBodyBytes caps a health body; a larger body fails the check.
	// Zero means 64 KiB.
	MaxBodyBytes int64
	// Jitter spreads rounds by ±Jitter×Interval (and delays each server's
	// first round by up to Jitter×Interval) so checks do not align. Zero
	// means 0.1; negative disables; values above 0.5 mean 0.5.
	Jitter float64
	// Realm is the realm used by the well-known and token probes. Required
	// when either is enabled.
	Realm string
	// WellKnown adds GET /realms/{Realm}/.well-known/openid-configuration
	// on the traffic port to every round (200 with a JSON document that
	// names an issuer).
	WellKnown bool
	// ClusterCheck reads vendor_cluster_size from /metrics on the
	// management port and compares the nodes' views: the majority view is
	// the most common size among the fresh views (ties go to the larger
	// size), and a node seeing another size is flagged Split. At least two
	// views are needed. A split into equal halves that each see the same
	// size is not detected. Zero means off.
	ClusterCheck ClusterMode
	// MetricsPath is the metrics path on the management port. Empty means
	// "/metrics".
	MetricsPath string
	// MaxMetricsBytes caps how much of /metrics is read. Zero means 4 MiB.
	MaxMetricsBytes int64
	// TokenProbe configures the authenticated probe; zero disables it.
	TokenProbe TokenProbe
	// LBCheck adds Keycloak's multi-site GET /lb-check on the traffic
	// port to every round (200 expected).
	LBCheck bool
	// Logger receives check-level detail at debug level. Health
	// transitions are reported through the pool's OnHealth hook, not
	// logged here. Nil means slog.Default().
	Logger *slog.Logger
	// Clock schedules rounds. Nil means the wall clock.
	Clock Clock
	// OnRoute, if set, is called when the checker learns a server's
	// Keycloak node name (the node label of vendor_cluster_size) or
	// the name changes. It is called from the server's check goroutine.
	// Metrics are fetched when OnRoute is set even if ClusterCheck is off.
	OnRoute func(route string, s *backend.Server)
	// Observe, if set, is called after every round with its latency and
	// outcome, for metrics. It is called from the server's check
	// goroutine and must not block.
	Observe func(s *backend.Server, latency time.Duration, ok bool)
}

// Defaults applied to zero Options fields, from Keycloak's HAProxy guide:
// inter 5s fall 3 rise 2 (its slowstart 60s is the pool's:
// backend.PoolOptions.Slowstart).
const (
	DefaultPath            = "/health/ready"
	DefaultLivePath        = "/health/live"
	DefaultStartedPath     = "/health/started"
	DefaultMetricsPath     = "/metrics"
	DefaultInterval        = 5 * time.Second
	DefaultTimeout         = 2 * time.Second
	DefaultRise            = 2
	DefaultFall            = 3
	DefaultMaxBodyBytes    = 64 << 10
	DefaultMaxMetricsBytes = 4 << 20
	DefaultJitter          = 0.1
	DefaultTokenInterval   = 30 * time.Second
)

// FieldError is one problem with one Options field (the convention of
// internal/optcheck); Validate returns them joined.
type FieldError = optcheck.FieldError

// Validate checks every rule New applies to o except the CA file's
// contents (New reads it), and returns nil or the *FieldErrors joined.
// Zero fields stand for their defaults and are valid; "off" is the zero
// value for the optional probes (WellKnown, ClusterCheck, TokenProbe,
// LBCheck) and a negative Jitter for the spread.
func (o Options) Validate() error {
	var p optcheck.Problems
	add := p.Add
	for _, p := range []struct{ name, v string }{
		{"Path", o.Path}, {"LivePath", o.LivePath}, {"StartedPath", o.StartedPath}, {"MetricsPath", o.MetricsPath},
	} {
		switch {
		case p.v == "":
		case !strings.HasPrefix(p.v, "/"):
			add(p.name, "%q must start with \"/\"", p.v)
		case strings.ContainsFunc(p.v, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			add(p.name, "%q contains white space or control characters", p.v)
		}
	}
	for _, s := range []struct{ name, v string }{{"Scheme", o.Scheme}, {"TrafficScheme", o.TrafficScheme}} {
		if s.v != "" && s.v != "http" && s.v != "https" {
			add(s.name, "%q is not \"http\" or \"https\"", s.v)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"Interval", o.Interval}, {"Timeout", o.Timeout}, {"TokenProbe.Interval", o.TokenProbe.Interval}} {
		if d.v < 0 {
			add(d.name, "must be greater than 0, got %s", d.v)
		}
	}
	for _, n := range []struct {
		name string
		v    int64
	}{{"Rise", int64(o.Rise)}, {"Fall", int64(o.Fall)}, {"MaxBodyBytes", o.MaxBodyBytes}, {"MaxMetricsBytes", o.MaxMetricsBytes}} {
		if n.v < 0 {
			add(n.name, "%d is less than 1", n.v)
		}
	}
	if o.ClusterCheck > ClusterEject {
		add("ClusterCheck", "%d is not a known cluster mode", o.ClusterCheck)
	}
	if o.TokenProbe.ClientID != "" && o.TokenProbe.SecretFile == "" {
		add("TokenProbe.SecretFile", "is required with the probe's client ID")
	}
	switch {
	case strings.ContainsAny(o.Realm, "/?#% "):
		add("Realm", "%q is not a realm name", o.Realm)
	case o.Realm == "" && (o.WellKnown || o.TokenProbe.ClientID != ""):
		add("Realm", "is required by the well-known and token probes")
	}
	return p.Err()
}

// withDefaults validates o and fills zero fields.
func (o Options) withDefaults() (Options, error) {
	if err := o.Validate(); err != nil {
		return o, fmt.Errorf("health: %w", err)
	}
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&o.Path, DefaultPath)
	def(&o.LivePath, DefaultLivePath)
	def(&o.StartedPath, DefaultStartedPath)
	def(&o.MetricsPath, DefaultMetricsPath)
	def(&o.Scheme, "http")
	def(&o.TrafficScheme, o.Scheme)
	zero := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	zero(&o.Interval, DefaultInterval)
	zero(&o.Timeout, DefaultTimeout)
	if o.Rise == 0 {
		o.Rise = DefaultRise
	}
	if o.Fall == 0 {
		o.Fall = DefaultFall
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.MaxMetricsBytes == 0 {
		o.MaxMetricsBytes = DefaultMaxMetricsBytes
	}
	switch {
	case o.Jitter == 0:
		o.Jitter = DefaultJitter
	case o.Jitter < 0:
		o.Jitter = 0
	case o.Jitter > 0.5:
		o.Jitter = 0.5
	}
	if o.TokenProbe.ClientID != "" {
		zero(&o.TokenProbe.Interval, DefaultTokenInterval)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	return o, nil
}

// tlsConfig builds the client TLS configuration for HTTPS probes.
func (o Options) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.InsecureSkipVerify}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("health: CAFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("health: CAFile %s: no PEM certificate", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}
