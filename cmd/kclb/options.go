package main

// This file is the whole configuration → runtime conversion: pure
// functions from a *config.Config to the option values the runtime
// packages are built with. They open nothing, read no file and start no
// goroutine; the instance adds its hooks (loggers, callbacks, the pool)
// to what they return. wiring_test.go proves that every configuration key
// changes what buildOptions returns, or names where else it is consumed,
// so a key cannot silently stop reaching the runtime.

import (
	"log/slog"
	"net"
	"os"
	"reflect"
	"slices"
	"strconv"
	"time"

	"github.com/kclb/kclb/internal/accesslog"
	"github.com/kclb/kclb/affinity"
	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/config"
	"github.com/kclb/kclb/internal/discovery"
	"github.com/kclb/kclb/health"
	"github.com/kclb/kclb/internal/pathpolicy"
	"github.com/kclb/kclb/proxy"
	"github.com/kclb/kclb/internal/proxyproto"
	"github.com/kclb/kclb/internal/ratelimit"
	"github.com/kclb/kclb/tlsconf"
	"github.com/kclb/kclb/vrrp"
)

// runtimeOptions is everything one configuration builds, as the runtime
// packages' own option types. Hook fields (loggers, callbacks, the pool,
// the router) are left unset: the instance fills them in.
type runtimeOptions struct {
	Log       logSettings
	ConnSlots int
	TLSPairs  []tlsconf.Pair
	TLS       tlsconf.Options
	Listeners []listenerPlan
	Servers   []backend.Spec
	Pool      backend.PoolOptions
	Balancer  string
	Affinity  *affinity.Options
	Handler   proxy.Options
	RateLimit ratelimit.Options
	Checks    checkPlan
	VRRP      []vrrp.Options
	Pair      *pairPlan
}

// buildOptions converts a whole configuration. A nil logger in it stands
// for the process logger.
func buildOptions(cfg *config.Config) runtimeOptions {
	pairs, tlsOpts := tlsOptions(cfg)
	ro := runtimeOptions{
		Log:       logOptions(cfg.Global),
		ConnSlots: connSlots(cfg),
		TLSPairs:  pairs,
		TLS:       tlsOpts,
		Listeners: listenerPlans(cfg, cfg.Listeners),
		Servers:   poolSpecs(cfg),
		Pool:      poolOptions(cfg),
		Balancer:  balancerName(cfg),
		Affinity:  affinityOptions(cfg),
		Handler:   handlerOptions(cfg, nil),
		RateLimit: rateLimitOptions(cfg),
		Checks:    checkOptions(cfg),
		Pair:      pairOptions(cfg),
	}
	for _, v := range cfg.VRRP.Instances {
		ro.VRRP = append(ro.VRRP, vrrpOptions(v))
	}
	return ro
}

// logSettings is what the process logger is built from.
type logSettings struct {
	Level slog.Level
	JSON  bool
}

// logOptions converts global.log_level and global.log_format.
func logOptions(g config.Global) logSettings {
	return logSettings{Level: g.LogLevel.SlogLevel(), JSON: g.LogFormat == config.LogJSON}
}

// connSlots is the size of the global client connection semaphore
// (global.maxconn); 0 means no limit.
func connSlots(cfg *config.Config) int { return max(cfg.Global.MaxConn, 0) }

// tlsOptions converts [tls]: the certificate files and the store options.
// No pairs means no TLS listener can be served.
func tlsOptions(cfg *config.Config) ([]tlsconf.Pair, tlsconf.Options) {
	var pairs []tlsconf.Pair
	for _, c := range cfg.TLS.Certificates {
		pairs = append(pairs, tlsconf.Pair{CertFile: c.Cert, KeyFile: c.Key, OCSPFile: c.OCSPFile})
	}
	var cas []string
	for _, l := range cfg.Listeners {
		if l.TLS && l.ClientAuth != config.ClientAuthOff && !slices.Contains(cas, l.ClientCA) {
			cas = append(cas, l.ClientCA)
		}
	}
	return pairs, tlsconf.Options{MinVersion: cfg.TLS.MinVersion.ID(), HTTP2: true, ClientCAFiles: cas, OCSPStapling: cfg.TLS.OCSPStapling}
}

// listenerPlan is one public listener as openFrontends builds it.
type listenerPlan struct {
	Name     string
	Bind     string
	Freebind bool
	// TLS listeners serve with the [tls] certificates and offer
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
}

// listenerPlans converts listeners (a subset of cfg.Listeners on reload).
func listenerPlans(cfg *config.Config, listeners []config.Listener) []listenerPlan {
	firstTLS := 0
	for _, l := range cfg.Listeners {
		if l.TLS {
			if _, p, err := net.SplitHostPort(l.Bind); err == nil {
				firstTLS, _ = strconv.Atoi(p)
			}
			break
		}
	}
	t := cfg.Timeouts
	var out []listenerPlan
	for _, l := range listeners {
		p := listenerPlan{
			Name: l.Name, Bind: l.Bind, Freebind: l.Freebind, TLS: l.TLS,
			Server: proxy.ServerOptions{
				HTTP2:                l.HTTP2,
				StdlibHTTP1:          l.StdlibHTTP1,
				StdlibHTTP2:          l.StdlibHTTP2,
				HeaderTimeout:        t.ClientHeader.Duration,
				ClientTimeout:        t.Client.Duration,
				WriteTimeout:         t.Client.Duration + t.Server.Duration,
				KeepAlive:            t.KeepAlive.Duration,
				MaxHeaderBytes:       cfg.Limits.MaxRequestHeaderBytes,
				MaxConcurrentStreams: cfg.Limits.H2MaxConcurrentStreams,
			},
		}
		if l.ProxyProtocol {
			p.Proxy = &proxyproto.Options{From: l.ProxyProtocolFrom, Timeout: t.ClientHeader.Duration}
		}
		if l.TLS && l.ClientAuth != config.ClientAuthOff {
			p.ClientAuth, p.ClientCA = tlsconf.ClientAuth(l.ClientAuth), l.ClientCA
		}
		switch {
		case l.TLS && l.HTTP2:
			p.NextProtos = []string{"h2", "http/1.1"}
		case l.TLS:
			p.NextProtos = []string{"http/1.1"}
		case l.RedirectHTTPS:
			p.RedirectPort = l.RedirectPort
			if p.RedirectPort == 0 {
				p.RedirectPort = firstTLS
			}
		}
		out = append(out, p)
	}
	return out
}

// poolSpecs converts configured servers to backend specs.
func poolSpecs(cfg *config.Config) []backend.Spec {
	specs := make([]backend.Spec, 0, len(cfg.Backend.Servers))
	for _, s := range cfg.Backend.Servers {
		maxconn := s.MaxConn
		if maxconn == 0 {
			maxconn = cfg.Backend.DefaultMaxConn
		}
		specs = append(specs, backend.Spec{
			Name: s.Name, Addr: s.Address, Mgmt: s.Management, Route: s.Route,
			Weight: s.Weight, MaxConn: maxconn, Backup: s.Backup,
		})
	}
	return specs
}

// poolOptions converts the pool's share of [health]; the hooks are left
// for the instance.
func poolOptions(cfg *config.Config) backend.PoolOptions {
	return backend.PoolOptions{
		PanicThreshold:     cfg.Health.PanicThreshold,
		PassiveFails:       passiveFails(cfg.Health.PassiveFails),
		MaxEjectionPercent: cfg.Health.PassiveMaxEjectionPercent,
	}
}

// passiveFails converts health.passive_fails (0 disables) to the pool's
// convention (negative disables).
func passiveFails(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// balancerName converts backend.balance to a balancer.New name.
func balancerName(cfg *config.Config) string {
	if cfg.Backend.Balance == config.BalanceRoundRobin {
		return "round_robin"
	}
	return "least_request"
}

// affinityOptions converts [affinity]; nil when affinity is off. A
// max_age of 0 is a session cookie, whose signed pin keeps the affinity
// package's default lifetime.
func affinityOptions(cfg *config.Config) *affinity.Options {
	a := cfg.Affinity
	if !a.Enabled {
		return nil
	}
	return &affinity.Options{
		CookieName:       a.Cookie,
		MaxAge:           a.MaxAge.Duration,
		Session:          a.MaxAge.Duration == 0,
		Secret:           a.Key,
		AuthSessionRoute: a.AuthSessionRoute,
		Learn:            a.LearnRoutes,
	}
}

// handlerOptions converts the proxy handler's settings. Pool, Router and
// Observer are left for the instance; logger (nil allowed) becomes the
// handler's logger. With global.access_log the access log goes to
// standard error, where the process log goes, in global.log_format.
func handlerOptions(cfg *config.Config, logger *slog.Logger) proxy.Options {
	var access *accesslog.Logger
	if cfg.Global.AccessLog {
		access = accesslog.New(accesslog.Options{
			Out:   os.Stderr,
			JSON:  cfg.Global.LogFormat == config.LogJSON,
			Query: cfg.Global.AccessLogQuery,
		})
	}
	retries := cfg.Limits.Retries
	if !cfg.Limits.Redispatch || retries == 0 {
		retries = -1
	}
	queue := cfg.Limits.QueueSize
	if queue == 0 {
		queue = -1 // no queue: the proxy's 0 means its default
	}
	return proxy.Options{
		Policy: pathpolicy.New(pathpolicy.Options{
			Public:        cfg.Paths.Public,
			AllowJS:       cfg.Paths.AllowJS,
			DenyRobots:    !cfg.Paths.AllowRobots,
			AdminNetworks: cfg.Paths.AdminNetworks,
		}),
		BlockedStatus:          cfg.Paths.BlockedStatus,
		Headers:                proxy.HeaderFamily(cfg.Backend.ProxyHeaders),
		TrustedProxies:         cfg.Backend.TrustedProxies,
		Security:               proxy.NewSecurityHeaders(cfg.Headers.HSTS, cfg.Headers.ContentTypeOptions, cfg.Headers.ReferrerPolicy, cfg.Headers.FrameOptions),
		FrameExempt:            cfg.Headers.FrameExempt,
		Retries:                retries,
		ConnectTimeout:         cfg.Timeouts.Connect.Duration,
		ServerTimeout:          cfg.Timeouts.Server.Duration,
		QueueTimeout:           cfg.Timeouts.Queue.Duration,
		QueueSize:              queue,
		IdleTimeout:            cfg.Timeouts.BackendIdle.Duration,
		MaxResponseHeaderBytes: int64(cfg.Limits.MaxResponseHeaderBytes),
		PublicHost:             cfg.Global.PublicHost,
		ForwardTrailers:        cfg.Backend.ForwardTrailers,
		ClientCertHeader:       proxy.CertHeader(cfg.Backend.ClientCertHeader),
		BodyBufferBytes:        orNone(cfg.Limits.BodyBufferBytes),
		BodyTimeout:            cfg.Timeouts.ClientBody.Duration,
		BodyWaitsPerClient:     int(orNone(cfg.Limits.BodyWaitsPerClient)),
		ClientTimeout:          cfg.Timeouts.Client.Duration,
		AccessLog:              access,
		Logger:                 logger,
	}
}

// rateLimitOptions converts the [[rate_limit]] rules (key = "client" is
// the only key: the client address); the handler's limiter is built from
// them.
func rateLimitOptions(cfg *config.Config) ratelimit.Options {
	var o ratelimit.Options
	for _, r := range cfg.RateLimits {
		o.Rules = append(o.Rules, ratelimit.Rule{
			Name: r.Name, Paths: r.Paths, Methods: r.Methods,
			Limit: r.Rate.Count, Per: r.Rate.Per, Burst: r.Burst,
			IPv6Prefix: r.IPv6Prefix, Exempt: r.Exempt,
		})
	}
	return o
}

// checkPlan is what the active checks and DNS discovery are built from.
type checkPlan struct {
	// Active runs the health checker (health.enabled).
	Active bool
	// Health lacks Logger, Observe and OnRoute.
	Health health.Options
	// Discovery is nil without backend.dns_name; it lacks Logger.
	Discovery *discovery.Options
	// Slowstart is the pool's slow start (Pool.SetSlowstart, at start and
	// on every reload): health.slowstart, both spelling "none" 0; none
	// with health checks off, as no server then "becomes ready".
	Slowstart time.Duration
}

// checkOptions converts [health] and the discovery keys of [backend].
func checkOptions(cfg *config.Config) checkPlan {
	p := checkPlan{Active: cfg.Health.Enabled, Health: healthOptions(cfg)}
	if cfg.Health.Enabled {
		p.Slowstart = cfg.Health.Slowstart.Duration
	}
	if b := cfg.Backend; b.DNSName != "" {
		mgmt := uint16(b.DNSManagementPort)
		if !cfg.Health.Enabled {
			mgmt = 0
		}
		p.Discovery = &discovery.Options{
			Name:     b.DNSName,
			Port:     uint16(b.DNSPort),
			MgmtPort: mgmt,
			Template: backend.Spec{MaxConn: b.DefaultMaxConn},
			Interval: b.DNSInterval.Duration,
			Grace:    cfg.Global.ShutdownGrace.Duration,
		}
	}
	return p
}

// healthOptions converts [health], deep probes included. The probes that
// use Keycloak's traffic port (well-known, lb-check, token) speak plain
// HTTP there, as the proxy does: health.scheme is the management port's.
func healthOptions(cfg *config.Config) health.Options {
	h := cfg.Health
	mode, ok := health.ParseClusterMode(h.ClusterCheck)
	if !ok {
		mode = health.ClusterOff // config validation rejects other values
	}
	o := health.Options{
		Path:               h.Path,
		LivePath:           h.LivePath,
		StartedPath:        h.StartedPath,
		Scheme:             h.Scheme.String(),
		TrafficScheme:      "http",
		CAFile:             h.CAFile,
		InsecureSkipVerify: h.InsecureSkipVerify,
		Interval:           h.Interval.Duration,
		Timeout:            h.Timeout.Duration,
		Rise:               h.Rise,
		Fall:               h.Fall,
		MaxBodyBytes:       int64(h.MaxBodyBytes),
		Realm:              h.Realm,
		WellKnown:          h.WellKnown,
		ClusterCheck:       mode,
		LBCheck:            h.LBCheck,
	}
	if h.TokenClientID != "" {
		o.TokenProbe = health.TokenProbe{
			ClientID:   h.TokenClientID,
			SecretFile: h.TokenSecretFile,
			Interval:   h.TokenInterval.Duration,
		}
	}
	return o
}

// vrrpOptions converts one [[vrrp.instance]]; Logger and Inherit are left
// for the instance. The vrrp package reads 0 as its default where the
// configuration means none: garp_repeat = 0 (no gratuitous ARP) and
// garp_delay = "0s" (no second burst) become its "negative means none".
func vrrpOptions(c config.VRRPInstance) vrrp.Options {
	o := vrrp.Options{
		Name:           c.Name,
		Interface:      c.Interface,
		VRID:           uint8(c.VRID),
		Priority:       uint8(c.Priority),
		AdvertInterval: c.AdvertInt.Duration,
		Version:        c.Version,
		AuthPass:       c.AuthPass,
		VIPs:           c.VIPs,
		UnicastPeers:   c.UnicastPeers,
		SourceAddr:     c.SourceAddress.Unmap(),
		Preempt:        c.Preempt,
		PreemptDelay:   c.PreemptDelay.Duration,
		TrackWeight:    uint8(c.TrackWeight),
		TrackRise:      c.TrackRise,
		TrackFall:      c.TrackFall,
		GARPRepeat:     c.GARPRepeat,
		GARPDelay:      c.GARPDelay.Duration,
		GARPRefresh:    c.GARPRefresh.Duration,
		NotifyMaster:   c.NotifyMaster,
		NotifyBackup:   c.NotifyBackup,
		NotifyFault:    c.NotifyFault,
	}
	if o.GARPRepeat == 0 {
		o.GARPRepeat = -1
	}
	if o.GARPDelay == 0 {
		o.GARPDelay = -1
	}
	return o
}

// vrrpTracks reports whether the instance follows the edge's health:
// track_weight = 0 means no tracking.
func vrrpTracks(c config.VRRPInstance) bool { return c.TrackWeight > 0 }

// restartOnlyChanges lists the keys that differ between old and cur and
// that a reload cannot apply: the process logger, the connection
// semaphore, the pool's passive-ejection and panic settings, and
// everything the admin interface and the pair channel were started with. The running process
// keeps the old values until it restarts.
func restartOnlyChanges(old, cur *config.Config) []string {
	var keys []string
	add := func(key string, changed bool) {
		if changed {
			keys = append(keys, key)
		}
	}
	og, cg := old.Global, cur.Global
	add("global.name", og.Name != cg.Name)
	add("global.maxconn", connSlots(old) != connSlots(cur))
	add("global.log_format", og.LogFormat != cg.LogFormat)
	add("global.log_level", og.LogLevel != cg.LogLevel)
	add("global.state_file", og.StateFile != cg.StateFile)
	op, cp := poolOptions(old), poolOptions(cur)
	add("health.passive_fails", op.PassiveFails != cp.PassiveFails)
	add("health.panic_threshold", op.PanicThreshold != cp.PanicThreshold)
	add("health.passive_max_ejection_percent", op.MaxEjectionPercent != cp.MaxEjectionPercent)
	add("[admin]", !reflect.DeepEqual(old.Admin, cur.Admin))
	add("[pair]", !reflect.DeepEqual(old.Pair, cur.Pair))
	return keys
}

// orNone maps a configuration's 0 ("none" / "off") to the proxy
// options' negative value (their 0 means "default").
func orNone(n int) int64 {
	if n == 0 {
		return -1
	}
	return int64(n)
}
