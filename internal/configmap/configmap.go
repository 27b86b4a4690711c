// Package configmap converts a kclb configuration (internal/config) into
// the option values the runtime is built with (a daemon.Spec). It is the
// one place that knows both sides: every function is pure, opening
// nothing, reading no file and starting no goroutine, and config's
// conventions ("0 means off") become the runtime packages' ("0 means the
// default, negative means off") here. The daemon adds its hooks
// (loggers, callbacks, the pool) to what it returns. cmd/kclb's
// wiring_test.go proves that every configuration key changes what Spec
// returns, or names where else it is consumed, so a key cannot silently
// stop reaching the runtime.
package configmap

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"slices"
	"strconv"

	"github.com/kclb/kclb/affinity"
	"github.com/kclb/kclb/health"
	"github.com/kclb/kclb/internal/accesslog"
	"github.com/kclb/kclb/internal/admin"
	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/config"
	"github.com/kclb/kclb/internal/daemon"
	"github.com/kclb/kclb/internal/discovery"
	"github.com/kclb/kclb/internal/pathpolicy"
	"github.com/kclb/kclb/internal/proxyproto"
	"github.com/kclb/kclb/internal/ratelimit"
	"github.com/kclb/kclb/proxy"
	"github.com/kclb/kclb/tlsconf"
	"github.com/kclb/kclb/vrrp"
)

// Spec converts a whole configuration.
func Spec(cfg *config.Config) *daemon.Spec {
	pairs, tlsOpts := tlsOptions(cfg)
	s := &daemon.Spec{
		Source:      daemon.Source{Path: cfg.Path, Hash: cfg.Hash, Warnings: cfg.Warnings},
		Name:        cfg.Global.Name,
		Log:         logOptions(cfg.Global),
		ConnSlots:   connSlots(cfg),
		TLSPairs:    pairs,
		TLS:         tlsOpts,
		Listeners:   listenerPlans(cfg),
		Servers:     poolSpecs(cfg),
		Pool:        poolOptions(cfg),
		Balancer:    balancerName(cfg),
		Affinity:    affinityOptions(cfg),
		AffinityKey: cfg.Affinity.Key,
		Handler:     handlerOptions(cfg),
		RateLimit:   rateLimitOptions(cfg),
		Checks:      checkOptions(cfg),
		Admin:       adminPlan(cfg),
		Pair:        pairOptions(cfg),
		// Hashed parts of what must match across the pair.
		PairFingerprint: cfg.PairFingerprint(),
		ShutdownGrace:   cfg.Global.ShutdownGrace.Duration,
		RestartOnly:     restartOnly(cfg),
		// Without a secret, config.Load generates the key.
		AffinityKeyGenerated: cfg.Affinity.Secret == "" && cfg.Affinity.SecretFile == "",
	}
	for _, v := range cfg.VRRP.Instances {
		s.VRRP = append(s.VRRP, vrrpOptions(v))
	}
	return s
}

// logOptions converts global.log_level and global.log_format.
func logOptions(g config.Global) daemon.LogSettings {
	return daemon.LogSettings{Level: g.LogLevel.SlogLevel(), JSON: g.LogFormat == config.LogJSON}
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

// listenerPlans converts the [[listener]] tables. A listener's own table
// is its Ident: a reload keeps it open while that is unchanged.
func listenerPlans(cfg *config.Config) []daemon.ListenerPlan {
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
	var out []daemon.ListenerPlan
	for _, l := range cfg.Listeners {
		p := daemon.ListenerPlan{
			Name: l.Name, Bind: l.Bind, Freebind: l.Freebind, TLS: l.TLS, Ident: l,
			Server: serverOptions(cfg),
		}
		p.Server.HTTP2, p.Server.StdlibHTTP1, p.Server.StdlibHTTP2 = l.HTTP2, l.StdlibHTTP1, l.StdlibHTTP2
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

// serverOptions converts the settings every listener's server shares
// ([timeouts] and [limits]); listenerPlans adds each listener's own.
func serverOptions(cfg *config.Config) proxy.ServerOptions {
	t := cfg.Timeouts
	return proxy.ServerOptions{
		HeaderTimeout:        t.ClientHeader.Duration,
		ClientTimeout:        t.Client.Duration,
		WriteTimeout:         t.Client.Duration + t.Server.Duration,
		KeepAlive:            t.KeepAlive.Duration,
		MaxHeaderBytes:       cfg.Limits.MaxRequestHeaderBytes,
		MaxConcurrentStreams: cfg.Limits.H2MaxConcurrentStreams,
	}
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

// handlerOptions converts the proxy handler's settings. Pool, Router,
// Observer and Logger are left for the daemon. With global.access_log the access log goes to
// standard error, where the process log goes, in global.log_format.
func handlerOptions(cfg *config.Config) proxy.Options {
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

// checkOptions converts [health] and the discovery keys of [backend].
func checkOptions(cfg *config.Config) daemon.CheckPlan {
	p := daemon.CheckPlan{Active: cfg.Health.Enabled, Health: healthOptions(cfg)}
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
		VRID:           c.VRID,
		Priority:       c.Priority,
		AdvertInterval: c.AdvertInt.Duration,
		Version:        c.Version,
		AuthPass:       c.AuthPass,
		VIPs:           c.VIPs,
		UnicastPeers:   c.UnicastPeers,
		SourceAddr:     c.SourceAddress.Unmap(),
		Preempt:        c.Preempt,
		PreemptDelay:   c.PreemptDelay.Duration,
		TrackWeight:    c.TrackWeight,
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

// adminPlan converts [admin] and global.state_file.
func adminPlan(cfg *config.Config) daemon.AdminPlan {
	ac := cfg.Admin
	return daemon.AdminPlan{
		Socket:     admin.SocketOptions{Path: ac.Socket, Mode: fs.FileMode(ac.SocketMode), Group: ac.SocketGroup},
		TCP:        ac.TCP,
		TokenFile:  ac.TokenFile,
		PublicRead: ac.PublicRead,
		Hosts:      ac.Hosts,
		StateFile:  cfg.Global.StateFile,
	}
}

// restartOnly lists the settings a reload cannot apply: the process
// logger, the connection semaphore, the pool's passive-ejection and
// panic settings, and everything the admin interface and the pair channel were started with.
// The running process keeps the old values until it restarts.
func restartOnly(cfg *config.Config) []daemon.Setting {
	g, p := cfg.Global, poolOptions(cfg)
	return []daemon.Setting{
		{Key: "global.name", Value: g.Name},
		{Key: "global.maxconn", Value: strconv.Itoa(connSlots(cfg))},
		{Key: "global.log_format", Value: fmt.Sprint(g.LogFormat)},
		{Key: "global.log_level", Value: fmt.Sprint(g.LogLevel)},
		{Key: "global.state_file", Value: g.StateFile},
		{Key: "health.passive_fails", Value: strconv.Itoa(p.PassiveFails)},
		{Key: "health.panic_threshold", Value: fmt.Sprint(p.PanicThreshold)},
		{Key: "health.passive_max_ejection_percent", Value: fmt.Sprint(p.MaxEjectionPercent)},
		{Key: "[admin]", Value: fmt.Sprintf("%#v", cfg.Admin)},
		{Key: "[pair]", Value: fmt.Sprintf("%#v", cfg.Pair)},
	}
}

// pairOptions converts [pair]; nil when there is no pair.
func pairOptions(cfg *config.Config) *daemon.PairPlan {
	p := cfg.Pair
	if p.Peer == "" {
		return nil
	}
	return &daemon.PairPlan{Peer: p.Peer, Listen: p.Listen, SecretFile: p.SecretFile, Interval: p.Interval.Duration}
}

// RestartOnlyChanges lists the keys that differ between old and cur and
// that a reload cannot apply (daemon.Spec.RestartOnly).
func RestartOnlyChanges(old, cur *config.Config) []string {
	return daemon.RestartOnlyChanges(Spec(old), Spec(cur))
}

// orNone maps a configuration's 0 ("none" / "off") to the proxy
// options' negative value (their 0 means "default").
func orNone(n int) int64 {
	if n == 0 {
		return -1
	}
	return int64(n)
}
