// Package config holds kclb's configuration: the Go form of the TOML file,
// its defaults, and the checks that reject a bad file before anything starts.
//
// The package is inert data. It opens no sockets and imports no other kclb
// package; internal/configmap turns a *Config into the runtime packages'
// options. Load and Parse decode a file, fill in defaults, and check the
// syntax, the types, the rules between keys and the files named; every
// problem found is reported at once in an *Errors with the key path and
// line. The ranges of the runtime's values are the runtime packages'
// rules (their Options.Validate): LoadWith takes them as LoadOptions.Check
// (configmap.Load passes its own) and reports them the same way.
//
// Field comments give the TOML key's default, i.e. the value it has after
// Load when the key is absent. docs/configuration.md is the user reference.
package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is one kclb configuration file. Build one with Load, Parse or
// Default; the zero value is not usable.
type Config struct {
	Global    Global     `toml:"global"`
	Timeouts  Timeouts   `toml:"timeouts"`
	Limits    Limits     `toml:"limits"`
	Listeners []Listener `toml:"listener"`
	TLS       TLS        `toml:"tls"`
	Backend   Backend    `toml:"backend"`
	Paths     Paths      `toml:"paths"`
	// RateLimits are the [[rate_limit]] rules. Default none.
	RateLimits []RateLimit `toml:"rate_limit"`
	Headers    Headers     `toml:"headers"`
	Affinity   Affinity    `toml:"affinity"`
	Health     Health      `toml:"health"`
	Admin      Admin       `toml:"admin"`
	VRRP       VRRP        `toml:"vrrp"`
	Pair       Pair        `toml:"pair"`

	// Warnings are non-fatal notes found while loading, such as a generated
	// affinity secret. Empty when there is nothing to say.
	Warnings []string `toml:"-"`
	// Path is the file the configuration came from; empty for Parse and Default.
	Path string `toml:"-"`
	// Hash is the hex SHA-256 of the file's bytes as Load read them
	// (compare with `sha256sum FILE`); empty for Parse and Default.
	Hash string `toml:"-"`
}

// Global is the [global] section.
type Global struct {
	// Name identifies this instance in logs and metrics. Default: the host name
	// (or "kclb" if it cannot be read).
	Name string `toml:"name"`
	// MaxConn limits concurrent client connections over all listeners.
	// Default 20000; must be >= 1.
	MaxConn int `toml:"maxconn"`
	// LogFormat is the log encoding. Default LogText.
	LogFormat LogFormat `toml:"log_format"`
	// LogLevel is the minimum level logged. Default LogInfo.
	LogLevel LogLevel `toml:"log_level"`
	// AccessLog enables one log line per request, in log_format, whatever
	// log_level says. Default true.
	AccessLog bool `toml:"access_log"`
	// AccessLogQuery adds each request's query string to the access log.
	// Default false: OAuth codes and tokens travel in queries.
	AccessLogQuery bool `toml:"access_log_query"`
	// ShutdownGrace is how long in-flight requests may finish after a stop
	// signal. Default 30s; must be >= 0.
	ShutdownGrace Duration `toml:"shutdown_grace"`
	// PublicHost is the host name (with an optional ":port") kclb gives as
	// Host to HTTP/1.0 and HTTP/2 requests that name none, usually
	// Keycloak's public host name. Default "": such requests are answered
	// 400. HTTP/1.1 requests without a Host are always 400.
	PublicHost string `toml:"public_host"`
	// StateFile persists admin state (drained/disabled servers) across
	// restarts. Default "/var/lib/kclb/state.json"; empty disables persistence.
	// Relative paths are resolved against the config file's directory.
	StateFile string `toml:"state_file"`
}

// Timeouts is the [timeouts] section. Every timeout must be > 0.
type Timeouts struct {
	// Connect bounds dialing a backend. Default 5s.
	Connect Duration `toml:"connect"`
	// Client bounds client inactivity while a request is in progress. Default 50s.
	Client Duration `toml:"client"`
	// Server bounds the wait for the backend's response. Default 50s.
	Server Duration `toml:"server"`
	// Queue bounds the wait for a free slot on a server at maxconn. Default 5s.
	Queue Duration `toml:"queue"`
	// ClientHeader bounds reading a request's headers (slowloris guard). Default 10s.
	ClientHeader Duration `toml:"client_header"`
	// ClientBody bounds reading the buffered part of a request body
	// (limits.body_buffer_bytes), never beyond Client. Default 10s.
	ClientBody Duration `toml:"client_body"`
	// KeepAlive is how long an idle client connection is kept open. Default 60s.
	KeepAlive Duration `toml:"keep_alive"`
	// BackendIdle is how long an idle pooled backend connection is kept. Default 90s.
	BackendIdle Duration `toml:"backend_idle"`
}

// Limits is the [limits] section.
type Limits struct {
	// MaxRequestHeaderBytes caps a request's header size. Default 65536; must be >= 4096.
	MaxRequestHeaderBytes int `toml:"max_request_header_bytes"`
	// MaxResponseHeaderBytes caps a backend response's header size. Keycloak's
	// login cookies exceed 4 KiB, so it must be >= 65536. Default 1048576.
	MaxResponseHeaderBytes int `toml:"max_response_header_bytes"`
	// Retries is how many times a failed backend connection is retried.
	// Default 3; 0..100.
	Retries int `toml:"retries"`
	// Redispatch lets a retry go to another server. Default true.
	Redispatch bool `toml:"redispatch"`
	// QueueSize is the number of requests that may wait for each server when
	// it is at maxconn; 0 answers 503 at once. Default 1024; must be >= 0.
	QueueSize int `toml:"queue_size"`
	// BodyBufferBytes is the request body size read completely before a
	// server slot is taken; of larger bodies that many bytes are read
	// first and the rest streams. 0 streams every body from the start.
	// Default 65536; 0..67108864.
	BodyBufferBytes int `toml:"body_buffer_bytes"`
	// BodyWaitsPerClient caps the requests of one client address waiting
	// for their body at once (more get 429); 0 means no cap. Default 16;
	// must be >= 0.
	BodyWaitsPerClient int `toml:"body_waits_per_client"`
	// H2MaxConcurrentStreams caps HTTP/2 streams per client connection.
	// Default 250; must be >= 1.
	H2MaxConcurrentStreams int `toml:"h2_max_concurrent_streams"`
}

// Listener is one [[listener]] entry: a socket clients connect to.
type Listener struct {
	// Name identifies the listener; required and unique.
	Name string `toml:"name"`
	// Bind is the host:port to listen on; required. The host is empty (all
	// addresses) or an IP literal, IPv6 in brackets ("[::]:443").
	Bind string `toml:"bind"`
	// TLS terminates TLS with the [tls] certificates. Default false.
	TLS bool `toml:"tls"`
	// HTTP2 offers h2 through ALPN; only valid with TLS. Default: the value of TLS.
	HTTP2 bool `toml:"http2"`
	// RedirectHTTPS makes a plain listener answer every request with a 308
	// redirect to https. Default false; not valid with TLS.
	RedirectHTTPS bool `toml:"redirect_https"`
	// RedirectPort is the port put in the redirect's Location (omitted there
	// when 443). Default 0, which Load replaces with the port of the first TLS
	// listener when RedirectHTTPS is set.
	RedirectPort int `toml:"redirect_port"`
	// Freebind sets IP_FREEBIND so a VRRP backup can bind the virtual IP before
	// it owns it. Default false.
	Freebind bool `toml:"freebind"`
	// StdlibHTTP1 serves HTTP/1.1 on this listener with Go's net/http server
	// instead of kclb's own (the default, which allocates nothing per
	// request). A fallback; it serves HTTP/2 too. Default false.
	StdlibHTTP1 bool `toml:"stdlib_http1"`
	// StdlibHTTP2 serves HTTP/2 on this TLS listener with Go's net/http
	// server instead of kclb's own. A fallback. Default false.
	StdlibHTTP2 bool `toml:"stdlib_http2"`
	// ProxyProtocol expects a PROXY protocol header (v1 or v2) at the
	// start of every connection and takes the client address from it.
	// Default false.
	ProxyProtocol bool `toml:"proxy_protocol"`
	// ProxyProtocolFrom are the networks of the PROXY senders; required
	// with ProxyProtocol, and connections from anywhere else are closed.
	// The header must arrive within timeouts.client_header. Default none.
	ProxyProtocolFrom []netip.Prefix `toml:"proxy_protocol_from"`
	// ClientAuth asks TLS clients for a certificate verified against
	// ClientCA (Keycloak's X.509 authenticator, RFC 8705 bound tokens).
	// Default ClientAuthOff; other values need tls = true and client_ca.
	ClientAuth ClientAuth `toml:"client_auth"`
	// ClientCA is the PEM file of CA certificates client certificates
	// must chain to; reloaded on SIGHUP. Default "". Relative paths as for
	// tls.certificate.cert.
	ClientCA string `toml:"client_ca"`
}

// TLS is the [tls] section, shared by all TLS listeners.
type TLS struct {
	// MinVersion is the lowest TLS version accepted. Default TLS12.
	MinVersion TLSVersion `toml:"min_version"`
	// Certificates are the served certificates, chosen by SNI; at least one
	// is required when any listener has TLS. Default none.
	Certificates []Certificate `toml:"certificate"`
	// OCSPStapling fetches an OCSP response in the background from the
	// responder each certificate names (its issuer must follow the leaf
	// in the file) and staples it. Default true; certificates naming no
	// responder are never stapled.
	OCSPStapling bool `toml:"ocsp_stapling"`
}

// Certificate is one [[tls.certificate]] entry. Load checks that both files
// exist and are readable; whether they form a pair is tlsconf's business.
type Certificate struct {
	// Cert is the PEM certificate chain file; required. Relative paths are
	// resolved against the config file's directory.
	Cert string `toml:"cert"`
	// Key is the PEM private key file; required. Relative paths as for Cert.
	Key string `toml:"key"`
	// OCSPFile is a DER OCSP response for this certificate, stapled
	// instead of fetching one (air-gapped sites; refresh the file and
	// SIGHUP). Default "". Relative paths as for Cert.
	OCSPFile string `toml:"ocsp_file"`
}

// Backend is the [backend] section: the Keycloak servers.
type Backend struct {
	// Balance is the selection policy. Default BalanceLeastRequest.
	Balance Balance `toml:"balance"`
	// ProxyHeaders is the forwarding header family; match Keycloak's
	// proxy-headers. Default ProxyXForwarded.
	ProxyHeaders ProxyHeaders `toml:"proxy_headers"`
	// TrustedProxies are the client networks whose forwarding headers are
	// kept; from everyone else they are replaced. A bare address means a
	// single host. Default none.
	TrustedProxies []netip.Prefix `toml:"trusted_proxies"`
	// ForwardTrailers passes request and response trailers on, except
	// those naming hop-by-hop, forwarding, client-certificate, framing or
	// security fields. Default false: every trailer is dropped.
	ForwardTrailers bool `toml:"forward_trailers"`
	// ClientCertHeader is the header family carrying a verified client
	// certificate to Keycloak; match spi-x509cert-lookup-provider.
	// Default CertHeaderRFC9440.
	ClientCertHeader CertHeader `toml:"client_cert_header"`
	// DefaultMaxConn is the per-server concurrent request limit for servers
	// whose maxconn is 0; 0 means no limit. Default 500; must be >= 0.
	DefaultMaxConn int `toml:"default_maxconn"`
	// DNSName, if set, discovers servers by resolving this name. Default "".
	DNSName string `toml:"dns_name"`
	// DNSPort is the traffic port of discovered servers. Default 8080.
	DNSPort int `toml:"dns_port"`
	// DNSInterval is how often DNSName is resolved. Default 10s; must be > 0.
	DNSInterval Duration `toml:"dns_interval"`
	// DNSManagementPort is the management port (health checks) of
	// discovered servers. Default 9000.
	DNSManagementPort int `toml:"dns_management_port"`
	// Servers are the static servers; at least one unless DNSName is set.
	Servers []Server `toml:"server"`
}

// Server is one [[backend.server]] entry: a Keycloak node.
type Server struct {
	// Name identifies the server in logs, metrics and the admin API;
	// required, unique, made of [A-Za-z0-9._-].
	Name string `toml:"name"`
	// Address is the traffic host:port (a host name is allowed); required.
	Address string `toml:"address"`
	// Management is the host:port of Keycloak's management interface (health,
	// metrics). Default ":9000"; Load fills an empty host with Address's
	// host, so after Load it is always a full host:port.
	Management string `toml:"management"`
	// Route is the Keycloak node name that appears as the AUTH_SESSION_ID
	// suffix for sessions this node owns. Default "" (learned at run time when
	// affinity.learn_routes is on). Unique when set.
	Route string `toml:"route"`
	// Weight is the relative share of traffic, 1..1000. Default 100.
	Weight int `toml:"weight"`
	// MaxConn is the server's concurrent request limit; 0 means
	// backend.default_maxconn, which Load copies in. Must be >= 0.
	MaxConn int `toml:"maxconn"`
	// Backup makes this a backup server (HAProxy's "backup"): it takes
	// traffic only while no other server is up and ready, before panic
	// mode. Default false.
	Backup bool `toml:"backup"`
}

// Paths is the [paths] section: which request paths reach Keycloak.
type Paths struct {
	// Public are the path prefixes anyone may reach. Each starts with "/".
	// Default ["/realms/", "/resources/", "/.well-known/"].
	Public []string `toml:"public"`
	// AllowJS also exposes /js/ (Keycloak 24's adapter). Default false.
	AllowJS bool `toml:"allow_js"`
	// AllowRobots exposes /robots.txt. Default true.
	AllowRobots bool `toml:"allow_robots"`
	// AdminNetworks are the client networks that may reach /admin/ and every
	// other non-public path. Default [127.0.0.0/8, ::1/128].
	AdminNetworks []netip.Prefix `toml:"admin_networks"`
	// BlockedStatus is the status answered for a blocked path: 403 or 404.
	// Default 404.
	BlockedStatus int `toml:"blocked_status"`
}

// RateLimit is one [[rate_limit]] rule: requests to Paths with one of
// Methods are limited to Rate per client key, with bursts of Burst; more
// are answered 429 with Retry-After. Every rule that matches a request
// counts it.
type RateLimit struct {
	// Name identifies the rule in metrics (label "rule"); required,
	// unique, made of [A-Za-z0-9._-].
	Name string `toml:"name"`
	// Paths are canonical path prefixes by segment, "*" standing for one
	// whole segment ("/realms/*/login-actions/authenticate"); at least one.
	Paths []string `toml:"paths"`
	// Methods the rule applies to (upper case); empty means every method.
	// Default none.
	Methods []string `toml:"methods"`
	// Rate is the sustained rate per client key, "COUNT/s|m|h"; required.
	Rate Rate `toml:"rate"`
	// Burst is how many requests an idle client may send at once.
	// Default 1; 1..1000000.
	Burst int `toml:"burst"`
	// Key is what a client is: "client" (its address, after the PROXY
	// protocol when a listener uses it). Default "client"; the only value.
	Key string `toml:"key"`
	// IPv6Prefix aggregates IPv6 clients to networks of this length.
	// Default 64; 1..128.
	IPv6Prefix int `toml:"ipv6_prefix"`
	// Exempt are client networks the rule never limits. Default none.
	Exempt []netip.Prefix `toml:"exempt"`
}

func (r *RateLimit) setDefaults() {
	r.Burst = 1
	r.Key = "client"
	r.IPv6Prefix = 64
}

// Headers is the [headers] section: security headers added to responses when
// the backend did not set them. An empty string disables a header.
type Headers struct {
	// HSTS is the Strict-Transport-Security value (TLS responses only).
	// Default "max-age=31536000; includeSubDomains".
	HSTS string `toml:"hsts"`
	// ContentTypeOptions is the X-Content-Type-Options value. Default "nosniff".
	ContentTypeOptions string `toml:"content_type_options"`
	// ReferrerPolicy is the Referrer-Policy value. Default "no-referrer".
	ReferrerPolicy string `toml:"referrer_policy"`
	// FrameOptions is the X-Frame-Options value. Default "SAMEORIGIN".
	FrameOptions string `toml:"frame_options"`
	// FrameExempt are path substrings whose responses never get framing
	// headers (Keycloak's iframes). Default
	// ["/login-status-iframe.html", "/3p-cookies/"].
	FrameExempt []string `toml:"frame_exempt"`
}

// Affinity is the [affinity] section: kclb's own sticky-session cookie.
type Affinity struct {
	// Enabled turns on cookie affinity. Default true.
	Enabled bool `toml:"enabled"`
	// Cookie is the affinity cookie's name. It must not be one of Keycloak's
	// cookies (AUTH_SESSION_ID... above all). Default "KC_ROUTE".
	Cookie string `toml:"cookie"`
	// MaxAge is the cookie's lifetime, sent as Max-Age and signed into the
	// cookie; 0 makes it a session cookie (no Max-Age; the signed pin
	// still lasts 6h and is renewed like any other). Default 6h; must be
	// 0 or a whole number of seconds >= 1s.
	MaxAge Duration `toml:"max_age"`
	// Secret is the HMAC key that signs the cookie, at least 16 bytes; share
	// it between edge nodes. Default "". Set Secret or SecretFile, not both.
	Secret string `toml:"secret"`
	// SecretFile names a file holding the secret (surrounding white space is
	// ignored). Default "". Relative paths are resolved against the config
	// file's directory.
	SecretFile string `toml:"secret_file"`
	// AuthSessionRoute honours the route suffix of Keycloak's AUTH_SESSION_ID
	// cookie when it names a known, available server. Default true.
	AuthSessionRoute bool `toml:"auth_session_route"`
	// LearnRoutes learns each server's route from the cookies it sets.
	// Default true.
	LearnRoutes bool `toml:"learn_routes"`

	// Key is the resolved HMAC key: Secret, the contents of SecretFile, or,
	// when neither is set, a random key generated at load time (with a
	// Warning). Filled by Load, Parse and Validate when Enabled; never read
	// from TOML.
	Key []byte `toml:"-"`
}

// Health is the [health] section: active checks against Keycloak's
// management port.
type Health struct {
	// Enabled turns on active checks; without them every server counts as
	// ready. Default true.
	Enabled bool `toml:"enabled"`
	// Path is the readiness endpoint. Default "/health/ready".
	Path string `toml:"path"`
	// LivePath is the liveness endpoint, used in panic mode. Default "/health/live".
	LivePath string `toml:"live_path"`
	// StartedPath is the startup endpoint. Default "/health/started".
	StartedPath string `toml:"started_path"`
	// Scheme is the management port's scheme. Default SchemeHTTP.
	Scheme Scheme `toml:"scheme"`
	// CAFile is a PEM bundle to verify the management port's certificate
	// (https only); empty uses the system roots. Default "".
	CAFile string `toml:"ca_file"`
	// InsecureSkipVerify skips certificate verification (https only). Default false.
	InsecureSkipVerify bool `toml:"insecure_skip_verify"`
	// Interval is the time between checks. Default 5s; must be > 0.
	Interval Duration `toml:"interval"`
	// Timeout bounds one check. Default 2s; must be > 0 and <= Interval.
	Timeout Duration `toml:"timeout"`
	// Rise is the consecutive successes that make a server ready. Default 2; >= 1.
	Rise int `toml:"rise"`
	// Fall is the consecutive failures that make a server unready. Default 3; >= 1.
	Fall int `toml:"fall"`
	// Slowstart ramps a newly ready server's weight up over this time; 0
	// disables. Default 60s; must be >= 0.
	Slowstart Duration `toml:"slowstart"`
	// PassiveFails is the consecutive failed requests that say a server is
	// unreachable (connect refused or timed out, reset before any response
	// byte) that mark it down between checks; 0 disables. Default 3; must
	// be >= 0.
	PassiveFails int `toml:"passive_fails"`
	// PassiveMaxEjectionPercent bounds the servers passive detection holds
	// out at once, in percent of the servers (rounded down, at least one);
	// the last ready server is never ejected. Default 34; 1..100.
	PassiveMaxEjectionPercent int `toml:"passive_max_ejection_percent"`
	// PanicThreshold is the fraction (0..1) of ready servers below which panic
	// mode sends traffic to live servers too; 0 means only when none is
	// ready. Default 0.
	PanicThreshold float64 `toml:"panic_threshold"`
	// MaxBodyBytes caps how much of a health response is read. Default 65536; >= 1.
	MaxBodyBytes int `toml:"max_body_bytes"`
	// Realm is the realm the deeper probes use (OIDC discovery, token
	// probe). Default "master".
	Realm string `toml:"realm"`
	// WellKnown also requires GET /realms/{realm}/.well-known/openid-configuration
	// on the traffic port to answer 200. Default false.
	WellKnown bool `toml:"well_known"`
	// ClusterCheck compares every node's vendor_cluster_size (management
	// /metrics): "off", "report" (flag a split node in status) or "eject"
	// (also take it out of rotation). Default "off".
	ClusterCheck string `toml:"cluster_check"`
	// LBCheck also requires Keycloak's multi-site /lb-check on the traffic
	// port to answer 200. Default false.
	LBCheck bool `toml:"lb_check"`
	// TokenClientID enables the authenticated probe: a client-credentials
	// token request for this client, sent to each node. Default "" (off).
	TokenClientID string `toml:"token_client_id"`
	// TokenSecretFile holds the probe client's secret (required with
	// token_client_id; never logged). Default "".
	TokenSecretFile string `toml:"token_secret_file"`
	// TokenInterval is the time between token probes. Default 30s.
	TokenInterval Duration `toml:"token_interval"`
}

// Admin is the [admin] section: the drain/status API.
type Admin struct {
	// Socket is the Unix socket path of the admin API; empty disables it.
	// Default "/run/kclb/admin.sock". Relative paths are resolved against the
	// config file's directory.
	Socket string `toml:"socket"`
	// SocketMode is the socket's permission mode. Default 0660.
	SocketMode FileMode `toml:"socket_mode"`
	// SocketGroup is the group that owns the socket; empty keeps the process's
	// group. Default "".
	SocketGroup string `toml:"socket_group"`
	// TCP is a host:port to also serve the admin API on, with bearer-token
	// authentication; empty disables it. Default "".
	TCP string `toml:"tcp"`
	// TokenFile holds the bearer token for TCP; required when TCP is set.
	// The token (surrounding white space ignored) must be at least
	// MinTokenBytes long. Default "". Relative paths as for Socket.
	TokenFile string `toml:"token_file"`
	// PublicRead lets TCP callers read (status, servers, wait, metrics)
	// without the token. Default false: every TCP request but the stats
	// page's HTML needs it.
	PublicRead bool `toml:"public_read"`
	// Hosts are further Host header values accepted on the TCP listener
	// besides its address (and localhost:PORT on loopback): "name" (any
	// port) or "name:port". Others get 421 (DNS-rebinding guard).
	// Default none.
	Hosts []string `toml:"hosts"`
}

// Pair is the [pair] section: the authenticated channel to the other kclb
// of an edge pair, which shares admin states (drain, ready, maint) and
// compares configurations (internal/peer). Without Peer the pair is off.
type Pair struct {
	// Peer is the other instance's pair.listen address, host:port.
	// Default "" (no pair).
	Peer string `toml:"peer"`
	// Listen is the host:port this instance accepts the peer's messages
	// on; required with Peer. An empty host means every address. Default "".
	Listen string `toml:"listen"`
	// SecretFile holds the secret shared by both instances (at least
	// MinPairSecretBytes after trimming white space), from which the
	// message key is derived; required with Peer. Default "". Relative
	// paths are resolved against the config file's directory.
	SecretFile string `toml:"secret_file"`
	// Interval is the time between two syncs with the peer (besides the
	// one after every admin change). Default 2s; must be > 0.
	Interval Duration `toml:"interval"`
}

// MinPairSecretBytes is the shortest pair secret accepted (e.g.
// `openssl rand -hex 32`).
const MinPairSecretBytes = 32

// VRRP is the [vrrp] section. No instances means VRRP is off.
type VRRP struct {
	// Instances are the [[vrrp.instance]] entries. Default none.
	Instances []VRRPInstance `toml:"instance"`
}

// VRRPInstance is one [[vrrp.instance]] entry: a virtual router (RFC 9568,
// or RFC 3768 for version 2).
type VRRPInstance struct {
	// Name identifies the instance in logs; required and unique.
	Name string `toml:"name"`
	// Interface is the network interface to run on; required.
	Interface string `toml:"interface"`
	// VRID is the virtual router ID, 1..255; required, unique per interface
	// and address family.
	VRID int `toml:"vrid"`
	// Priority is this node's priority, 1..255 (255 = address owner). Default 100.
	Priority int `toml:"priority"`
	// AdvertInt is the advertisement interval: 10ms..40.95s in steps of 10ms
	// for version 3, whole seconds 1s..255s for version 2. Default 1s.
	AdvertInt Duration `toml:"advert_int"`
	// Version is the VRRP version, 2 or 3. Default 3.
	Version int `toml:"version"`
	// AuthPass is the version 2 simple password (at most 8 bytes); empty
	// means no authentication. Not valid with version 3. Default "".
	AuthPass string `toml:"auth_pass"`
	// VIPs are the virtual addresses with their prefix length; a bare
	// address means /32 or /128. At least one; all of one family: IPv4, or
	// IPv6 (VRRPv3 over IPv6 from the interface's link-local address to
	// ff02::12, announced with unsolicited Neighbor Advertisements; version
	// 3 only).
	VIPs []netip.Prefix `toml:"vips"`
	// UnicastPeers, if set, are sent advertisements by unicast instead of
	// multicast; same family as VIPs (IPv6: the peers' link-local
	// addresses, which their adverts come from). Default none.
	UnicastPeers []netip.Addr `toml:"unicast_peers"`
	// SourceAddress is the address adverts are sent from and the
	// equal-priority tie-break compares (keepalived's unicast_src_ip); it
	// must be an address of the interface and not a VIP: IPv4 for IPv4 VIPs,
	// the interface's IPv6 link-local address for IPv6 VIPs. Default: the
	// interface's first IPv4 address that is not a VIP, or its link-local
	// address.
	SourceAddress netip.Addr `toml:"source_address"`
	// Preempt lets a higher priority node take over from a lower one. Default true.
	Preempt bool `toml:"preempt"`
	// PreemptDelay postpones preemption after startup. Default 0s; must be >= 0.
	PreemptDelay Duration `toml:"preempt_delay"`
	// TrackWeight is subtracted from Priority while the backend pool is
	// unhealthy, 0..254 (0 disables tracking). Default 50.
	TrackWeight int `toml:"track_weight"`
	// TrackRise is the consecutive healthy pool reports that restore the
	// priority. Default 2; >= 1.
	TrackRise int `toml:"track_rise"`
	// TrackFall is the consecutive unhealthy pool reports that lower it.
	// Default 3; >= 1.
	TrackFall int `toml:"track_fall"`
	// GARPRepeat is the gratuitous ARP / unsolicited NA count sent on becoming
	// master. Default 5; must be >= 0.
	GARPRepeat int `toml:"garp_repeat"`
	// GARPDelay is the pause before a second burst of gratuitous ARPs after
	// becoming master; 0 disables the second burst. Default 5s; must be >= 0.
	GARPDelay Duration `toml:"garp_delay"`
	// GARPRefresh repeats gratuitous ARPs periodically while master; 0
	// disables. Default 0s; must be >= 0.
	GARPRefresh Duration `toml:"garp_refresh"`
	// NotifyMaster is a command run on becoming master; empty = none. Default "".
	NotifyMaster string `toml:"notify_master"`
	// NotifyBackup is a command run on becoming backup; empty = none. Default "".
	NotifyBackup string `toml:"notify_backup"`
	// NotifyFault is a command run on entering the fault state; empty = none. Default "".
	NotifyFault string `toml:"notify_fault"`
}

// defaults returns a Config holding every section default and no list
// entries (no listeners, servers, certificates or VRRP instances).
func defaults() *Config {
	return &Config{
		Global: Global{
			MaxConn:       20000,
			LogFormat:     LogText,
			LogLevel:      LogInfo,
			AccessLog:     true,
			ShutdownGrace: Dur(30 * time.Second),
			StateFile:     "/var/lib/kclb/state.json",
		},
		Timeouts: Timeouts{
			Connect:      Dur(5 * time.Second),
			Client:       Dur(50 * time.Second),
			Server:       Dur(50 * time.Second),
			Queue:        Dur(5 * time.Second),
			ClientHeader: Dur(10 * time.Second),
			ClientBody:   Dur(10 * time.Second),
			KeepAlive:    Dur(60 * time.Second),
			BackendIdle:  Dur(90 * time.Second),
		},
		Limits: Limits{
			MaxRequestHeaderBytes:  65536,
			MaxResponseHeaderBytes: 1 << 20,
			Retries:                3,
			Redispatch:             true,
			QueueSize:              1024,
			H2MaxConcurrentStreams: 250,
			BodyBufferBytes:        65536,
			BodyWaitsPerClient:     16,
		},
		TLS: TLS{MinVersion: TLS12, OCSPStapling: true},
		Backend: Backend{
			Balance:           BalanceLeastRequest,
			ProxyHeaders:      ProxyXForwarded,
			DefaultMaxConn:    500,
			DNSPort:           8080,
			DNSInterval:       Dur(10 * time.Second),
			DNSManagementPort: 9000,
		},
		Paths: Paths{
			Public:      []string{"/realms/", "/resources/", "/.well-known/"},
			AllowRobots: true,
			AdminNetworks: []netip.Prefix{
				netip.MustParsePrefix("127.0.0.0/8"),
				netip.MustParsePrefix("::1/128"),
			},
			BlockedStatus: 404,
		},
		Headers: Headers{
			HSTS:               "max-age=31536000; includeSubDomains",
			ContentTypeOptions: "nosniff",
			ReferrerPolicy:     "no-referrer",
			FrameOptions:       "SAMEORIGIN",
			FrameExempt:        []string{"/login-status-iframe.html", "/3p-cookies/"},
		},
		Affinity: Affinity{
			Enabled:          true,
			Cookie:           "KC_ROUTE",
			MaxAge:           Dur(6 * time.Hour),
			AuthSessionRoute: true,
			LearnRoutes:      true,
		},
		Health: Health{
			Enabled:                   true,
			Path:                      "/health/ready",
			LivePath:                  "/health/live",
			StartedPath:               "/health/started",
			Scheme:                    SchemeHTTP,
			Interval:                  Dur(5 * time.Second),
			Timeout:                   Dur(2 * time.Second),
			Rise:                      2,
			Fall:                      3,
			Slowstart:                 Dur(60 * time.Second),
			PassiveFails:              3,
			PassiveMaxEjectionPercent: 34,
			MaxBodyBytes:              65536,
			Realm:                     "master",
			ClusterCheck:              "off",
			TokenInterval:             Dur(30 * time.Second),
		},
		Admin: Admin{
			Socket:     "/run/kclb/admin.sock",
			SocketMode: 0o660,
		},
		Pair: Pair{Interval: Dur(2 * time.Second)},
	}
}

// setDefaults gives a list entry its defaults before its keys are decoded.
// Fields missing here default to their zero value.
func (s *Server) setDefaults() {
	s.Management = ":9000"
	s.Weight = 100
}

func (v *VRRPInstance) setDefaults() {
	v.Priority = 100
	v.AdvertInt = Dur(time.Second)
	v.Version = 3
	v.Preempt = true
	v.TrackWeight = 50
	v.TrackRise = 2
	v.TrackFall = 3
	v.GARPRepeat = 5
	v.GARPDelay = Dur(5 * time.Second)
}

// Default returns a complete configuration for a local demo: a plain
// listener on 127.0.0.1:8080 redirecting to a TLS listener on
// 127.0.0.1:8443, and three servers keycloak1..3 at 127.0.0.1:18081..18083
// with management ports 127.0.0.1:19001..19003. It has no certificate, no
// state file, no admin socket and no VRRP: the caller adds certificate paths
// to TLS.Certificates and then calls Validate. Derived defaults (instance
// name, redirect port, server maxconn) are already filled in, and
// Affinity.Key holds a random key (noted in Warnings).
func Default() *Config {
	c := defaults()
	c.Global.StateFile = ""
	c.Admin.Socket = ""
	c.Listeners = []Listener{
		{Name: "http", Bind: "127.0.0.1:8080", RedirectHTTPS: true},
		{Name: "https", Bind: "127.0.0.1:8443", TLS: true, HTTP2: true},
	}
	for i := 1; i <= 3; i++ {
		var s Server
		s.setDefaults()
		s.Name = fmt.Sprintf("keycloak%d", i)
		s.Address = fmt.Sprintf("127.0.0.1:%d", 18080+i)
		s.Management = fmt.Sprintf("127.0.0.1:%d", 19000+i)
		c.Backend.Servers = append(c.Backend.Servers, s)
	}
	c.resolve(&validator{})
	return c
}

// Load reads and parses the file at path; relative paths inside it are
// resolved against the file's directory. A configuration problem is
// returned as an *Errors listing every problem; a file that cannot be read
// gives a plain wrapped error. It checks config's own rules only (keys,
// types, the rules between keys, the files named); LoadWith with
// configmap's check adds the runtime packages' rules, and is what kclb
// runs.
func Load(path string) (*Config, error) { return LoadWith(path, LoadOptions{}) }

// LoadSyntax is Load without any file access beyond path itself: every
// key, type, range and cross-key rule is checked, but the certificate,
// key, secret and token files the configuration names are not opened
// (so the affinity key from secret_file stays unset). It is the check
// for a configuration written on a workstation for another machine.
func LoadSyntax(path string) (*Config, error) {
	return LoadWith(path, LoadOptions{SyntaxOnly: true})
}

// LoadOptions are the options of LoadWith and ParseWith.
type LoadOptions struct {
	// SyntaxOnly opens no file the configuration names (LoadSyntax).
	SyntaxOnly bool
	// Check finds the problems config cannot see itself: the rules the
	// runtime packages own, applied to the options c converts to
	// (configmap.Problems), each Problem's Path naming the key that set
	// the value. It runs on every configuration that decoded, also one
	// with problems of its own, so that every problem is reported at
	// once; a problem about a key whose value config already refused
	// (or about a key inside it) is dropped. Its problems get their lines
	// as config's own do. Nil checks nothing more.
	Check func(c *Config) []Problem
}

// LoadWith is Load (or LoadSyntax) with the problems opts.Check finds
// added to config's own.
func LoadWith(path string, opts LoadOptions) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, errs := parse(data, filepath.Dir(path), opts)
	if errs != nil {
		errs.File = path
		return nil, errs
	}
	c.Path = path
	sum := sha256.Sum256(data)
	c.Hash = hex.EncodeToString(sum[:])
	return c, nil
}

// Parse decodes TOML data, applies defaults and validates the result.
// Relative file paths in it are resolved against baseDir (the current
// directory if empty). On any problem it returns a nil *Config and an
// *Errors listing all of them. Like Load it checks config's own rules.
func Parse(data []byte, baseDir string) (*Config, error) {
	return ParseWith(data, baseDir, LoadOptions{})
}

// ParseWith is Parse with opts (see LoadWith).
func ParseWith(data []byte, baseDir string, opts LoadOptions) (*Config, error) {
	c, errs := parse(data, baseDir, opts)
	if errs != nil {
		return nil, errs
	}
	return c, nil
}

func parse(data []byte, baseDir string, opts LoadOptions) (*Config, *Errors) {
	var raw map[string]any
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&raw)
	if err != nil {
		return nil, &Errors{Problems: []Problem{syntaxProblem(data, err)}}
	}
	d := &decoder{set: make(map[string]bool)}
	c := defaults()
	d.decodeStruct("", raw, c)
	d.finishParse(c)
	c.resolvePaths(baseDir)
	v := &validator{noFiles: opts.SyntaxOnly}
	c.resolve(v)
	c.validate(v)
	problems := append(d.problems, v.problems...)
	if opts.Check != nil {
		problems = addUnrefused(problems, opts.Check(c))
	}
	if len(problems) == 0 {
		return c, nil
	}
	loc := newLocator(data, md)
	for i := range problems {
		problems[i].Line = loc.line(problems[i].Path)
	}
	e := &Errors{Problems: problems}
	e.sort()
	return nil, e
}

// addUnrefused appends the problems of more to problems, except those
// about a key that one of problems is about, or one inside it: a value
// that did not decode is not checked further.
func addUnrefused(problems, more []Problem) []Problem {
	n := len(problems)
	for _, m := range more {
		refused := slices.ContainsFunc(problems[:n], func(p Problem) bool {
			return p.Path != "" && (m.Path == p.Path || strings.HasPrefix(m.Path, p.Path+".") || strings.HasPrefix(m.Path, p.Path+"["))
		})
		if !refused {
			problems = append(problems, m)
		}
	}
	return problems
}

// Validate fills in derived defaults that are still unset (instance name,
// redirect ports, management hosts, server maxconn, the affinity key) and
// checks every rule Load checks, including that referenced files are
// readable. Relative paths are taken relative to the current directory.
// It returns nil or an *Errors without line numbers. Warnings are appended
// to c.Warnings.
func (c *Config) Validate() error {
	v := &validator{}
	c.resolve(v)
	c.validate(v)
	if len(v.problems) == 0 {
		return nil
	}
	return &Errors{File: c.Path, Problems: v.problems}
}
