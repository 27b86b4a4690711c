package configmap

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/kclb/kclb/affinity"
	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/config"
	"github.com/kclb/kclb/internal/optcheck"
	"github.com/kclb/kclb/internal/ratelimit"
	"github.com/kclb/kclb/proxy"
	"github.com/kclb/kclb/vrrp"
)

// Load is config.Load with the runtime packages' rules added (Problems):
// what `kclb run`, a reload and `kclb check` load a file with.
func Load(path string) (*config.Config, error) {
	return config.LoadWith(path, config.LoadOptions{Check: Problems})
}

// LoadSyntax is config.LoadSyntax with the runtime packages' rules added:
// `kclb check --syntax-only`.
func LoadSyntax(path string) (*config.Config, error) {
	return config.LoadWith(path, config.LoadOptions{SyntaxOnly: true, Check: Problems})
}

// Parse is config.Parse with the runtime packages' rules added.
func Parse(data []byte, baseDir string) (*config.Config, error) {
	return config.ParseWith(data, baseDir, config.LoadOptions{Check: Problems})
}

// Problems converts cfg as Spec does, validates every option value of
// the runtime packages, and returns each problem at the key that set the
// field it is about (config.LoadOptions.Check). It also refuses the
// values the runtime's sentinels cannot carry (conventionProblems).
func Problems(cfg *config.Config) []config.Problem {
	conv := conventionProblems(cfg)
	var ps []config.Problem
	spec := Spec(cfg)
	ps = append(ps, fieldProblems(spec.Checks.Health.Validate(), "health", healthKeys)...)
	ps = append(ps, fieldProblems(spec.Pool.Validate(), "health", poolKeys)...)
	ps = append(ps, fieldProblems(spec.Handler.Validate(), "", proxyKeys)...)
	for i, sp := range spec.Servers {
		ps = append(ps, fieldProblems(sp.Validate(), idx("backend.server", i), serverSpecKeys)...)
	}
	for i, r := range spec.RateLimit.Rules {
		ps = append(ps, fieldProblems(r.Validate(), idx("rate_limit", i), rateKeys)...)
	}
	// Checked once, not per listener, and also without listeners, as config did.
	ps = append(ps, fieldProblems(serverOptions(cfg).Validate(), "", serverKeys)...)
	ao := spec.Affinity
	if ao == nil { // config refuses a bad max_age of a disabled [affinity] too
		ao = &affinity.Options{MaxAge: cfg.Affinity.MaxAge.Duration}
	}
	ps = append(ps, fieldProblems(ao.Validate(), "affinity", affinityKeys)...)
	for _, err := range joined(vrrp.Check(spec.VRRP)) {
		var ie *vrrp.InstanceError
		if !errors.As(err, &ie) {
			ps = append(ps, config.Problem{Path: "vrrp.instance", Msg: err.Error()})
			continue
		}
		ps = append(ps, fieldProblems(ie.Err, idx("vrrp.instance", ie.Index), vrrpKeys)...)
	}
	// A value refused by the conventions is not checked further, and a
	// key two options are converted from (timeouts.client) is reported
	// once.
	n := len(conv)
	for _, p := range ps {
		refused := slices.ContainsFunc(conv[:n], func(c config.Problem) bool { return c.Path == p.Path })
		if !refused && !slices.Contains(conv[n:], p) {
			conv = append(conv, p)
		}
	}
	return conv
}

// vrrpKeys names the [[vrrp.instance]] key each vrrp.Options field is
// converted from (vrrpOptions); a *vrrp.FieldError about the field is
// reported at that key.
var vrrpKeys = map[string]string{
	"Name": "name", "Interface": "interface", "VRID": "vrid", "Priority": "priority",
	"AdvertInterval": "advert_int", "Version": "version", "AuthPass": "auth_pass",
	"VIPs": "vips", "UnicastPeers": "unicast_peers", "SourceAddr": "source_address",
	"Preempt": "preempt", "PreemptDelay": "preempt_delay", "TrackWeight": "track_weight",
	"TrackRise": "track_rise", "TrackFall": "track_fall", "GARPRepeat": "garp_repeat",
	"GARPDelay": "garp_delay", "GARPRefresh": "garp_refresh",
	"NotifyMaster": "notify_master", "NotifyBackup": "notify_backup", "NotifyFault": "notify_fault",
}

// vrrpUnkeyed are the vrrp.Options fields no key sets: the daemon's hooks
// and the upgrade's Inherit.
var vrrpUnkeyed = []string{"Logger", "Hook", "Observer", "Inherit"}

// healthKeys names the [health] key each health.Options field is
// converted from (healthOptions).
var healthKeys = map[string]string{
	"Path": "path", "LivePath": "live_path", "StartedPath": "started_path", "Scheme": "scheme",
	"CAFile": "ca_file", "InsecureSkipVerify": "insecure_skip_verify", "Interval": "interval",
	"Timeout": "timeout", "Rise": "rise", "Fall": "fall", "MaxBodyBytes": "max_body_bytes",
	"Realm": "realm", "WellKnown": "well_known", "ClusterCheck": "cluster_check", "LBCheck": "lb_check",
	"TokenProbe.ClientID": "token_client_id", "TokenProbe.SecretFile": "token_secret_file",
	"TokenProbe.Interval": "token_interval",
}

// healthUnkeyed are the health.Options fields no key sets: the daemon's
// hooks, and the ones the conversion fixes (the traffic port's plain
// HTTP) or leaves at health's default (jitter, the metrics path and cap).
var healthUnkeyed = []string{"Logger", "Clock", "OnRoute", "Observe", "TrafficScheme", "Jitter", "MetricsPath", "MaxMetricsBytes", "TokenProbe"}

// poolKeys names the [health] key each backend.PoolOptions field is
// converted from (poolOptions).
var poolKeys = map[string]string{
	"PanicThreshold": "panic_threshold", "PassiveFails": "passive_fails",
	"MaxEjectionPercent": "passive_max_ejection_percent",
}

// poolUnkeyed are the backend.PoolOptions fields no key sets: the
// daemon's hooks, EjectionTime (the pool's default), and Slowstart, which
// health.slowstart sets on the running pool (daemon.CheckPlan.Slowstart).
var poolUnkeyed = []string{"OnAvailable", "OnHealth", "EjectionTime", "Slowstart"}

// proxyKeys names the key each proxy.Options field is converted from
// (handlerOptions), as whole key paths: the handler's settings come from
// several tables.
var proxyKeys = map[string]string{
	"BlockedStatus": "paths.blocked_status", "Headers": "backend.proxy_headers",
	"TrustedProxies": "backend.trusted_proxies", "FrameExempt": "headers.frame_exempt",
	"Retries": "limits.retries", "ConnectTimeout": "timeouts.connect", "ServerTimeout": "timeouts.server",
	"QueueTimeout": "timeouts.queue", "BodyBufferBytes": "limits.body_buffer_bytes",
	"BodyTimeout": "timeouts.client_body", "BodyWaitsPerClient": "limits.body_waits_per_client",
	"ClientTimeout": "timeouts.client", "QueueSize": "limits.queue_size", "IdleTimeout": "timeouts.backend_idle",
	"MaxResponseHeaderBytes": "limits.max_response_header_bytes", "PublicHost": "global.public_host",
	"ForwardTrailers": "backend.forward_trailers", "ClientCertHeader": "backend.client_cert_header",
}

// proxyUnkeyed are the proxy.Options fields no single key sets: the
// daemon's hooks, the values built from a whole table (Policy from
// [paths], Security from [headers], AccessLog from global.access_log*),
// and the ones left at the proxy's default.
var proxyUnkeyed = []string{"Pool", "Router", "Policy", "RateLimit", "Security", "AccessLog", "Logger", "Observer",
	"MaxIdlePerServer", "StdlibTransport"}

// serverKeys names the key each proxy.ServerOptions field is converted
// from (serverOptions and listenerPlans).
var serverKeys = map[string]string{
	"HeaderTimeout": "timeouts.client_header", "ClientTimeout": "timeouts.client",
	"KeepAlive": "timeouts.keep_alive", "MaxHeaderBytes": "limits.max_request_header_bytes",
	"MaxConcurrentStreams": "limits.h2_max_concurrent_streams",
}

// serverUnkeyed are the proxy.ServerOptions fields no single key sets:
// the daemon's, WriteTimeout (timeouts.client plus timeouts.server, each
// checked itself), and each [[listener]]'s own switches, which no rule
// is about.
var serverUnkeyed = []string{"Handler", "TLS", "WriteTimeout", "ErrorLog", "Conns", "HTTP2", "StdlibHTTP1", "StdlibHTTP2"}

// serverSpecKeys names the [[backend.server]] key each backend.Spec
// field is converted from (poolSpecs).
var serverSpecKeys = map[string]string{
	"Name": "name", "Addr": "address", "Mgmt": "management", "Route": "route",
	"Weight": "weight", "MaxConn": "maxconn", "Backup": "backup",
}

// rateKeys names the [[rate_limit]] key each ratelimit.Rule field is
// converted from (rateLimitOptions).
var rateKeys = map[string]string{
	"Name": "name", "Paths": "paths", "Methods": "methods", "Limit": "rate", "Per": "rate",
	"Burst": "burst", "IPv6Prefix": "ipv6_prefix", "Exempt": "exempt",
}

// affinityKeys names the [affinity] key each affinity.Options field is
// converted from (affinityOptions).
var affinityKeys = map[string]string{
	"CookieName": "cookie", "MaxAge": "max_age", "Session": "max_age",
	"AuthSessionRoute": "auth_session_route", "Learn": "learn_routes",
}

// affinityUnkeyed are the affinity.Options fields no single key sets:
// Secret is config's resolved key (secret or secret_file, or generated),
// Now the clock.
var affinityUnkeyed = []string{"Secret", "Now"}

// fieldError is what each runtime package's FieldError gives: the Go
// field ("VIPs[1]") and the message.
func fieldError(err error) (field, msg string, ok bool) {
	var v *vrrp.FieldError
	if errors.As(err, &v) {
		return v.Field, v.Msg, true
	}
	var b *backend.FieldError
	if errors.As(err, &b) {
		return b.Field, b.Msg, true
	}
	// health, proxy and affinity share optcheck's.
	var o *optcheck.FieldError
	if errors.As(err, &o) {
		return o.Field, o.Msg, true
	}
	return "", "", false
}

// fieldProblems turns the field errors joined in err into problems at
// the keys of table under prefix ("vrrp.instance[0]"). An error that
// names no field in table is reported at prefix itself, with its field.
func fieldProblems(err error, prefix string, table map[string]string) []config.Problem {
	var ps []config.Problem
	for _, e := range joined(err) {
		field, msg, ok := fieldError(e)
		if !ok {
			ps = append(ps, config.Problem{Path: prefix, Msg: e.Error()})
			continue
		}
		key, ok := fieldKey(table, field)
		if !ok {
			ps = append(ps, config.Problem{Path: prefix, Msg: e.Error()})
			continue
		}
		ps = append(ps, config.Problem{Path: join(prefix, key), Msg: msg})
	}
	return ps
}

// fieldKey maps a Go field with an optional index ("VIPs[1]") to its key
// ("vips[1]") by table.
func fieldKey(table map[string]string, field string) (string, bool) {
	base, index := field, ""
	if i := strings.IndexByte(field, '['); i >= 0 {
		base, index = field[:i], field[i:]
	}
	key, ok := table[base]
	return key + index, ok
}

// joined lists the errors err joins (errors.Join), or err alone.
func joined(err error) []error { return optcheck.Split(err) }

func idx(list string, i int) string { return list + "[" + strconv.Itoa(i) + "]" }

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// conventionProblems refuses what the conversion cannot carry over to the
// runtime's "0 means the default, negative means off": a 0 (or "") in
// the file for a key that has no zero (the configuration writes the
// default itself, so 0 would silently become the default), and a
// negative value for a key whose "off" is 0 in the file (it would
// silently mean off). The messages are the ones config gave before the
// rules moved to the runtime packages.
func conventionProblems(cfg *config.Config) []config.Problem {
	var ps []config.Problem
	refuse := func(key string, bad bool, msg string) {
		if bad {
			ps = append(ps, config.Problem{Path: key, Msg: msg})
		}
	}
	const noZero = "must not be 0 (leave the key out for its default)"
	for i, in := range cfg.VRRP.Instances {
		key := idx("vrrp.instance", i)
		refuse(key+".priority", in.Priority == 0, noZero)
		refuse(key+".version", in.Version == 0, noZero)
		refuse(key+".advert_int", in.AdvertInt.Duration == 0, noZero)
		refuse(key+".track_rise", in.TrackRise == 0, noZero)
		refuse(key+".track_fall", in.TrackFall == 0, noZero)
		refuse(key+".garp_repeat", in.GARPRepeat < 0, strconv.Itoa(in.GARPRepeat)+" is less than 0")
		refuse(key+".garp_delay", in.GARPDelay.Duration < 0, "must not be negative, got "+in.GARPDelay.Duration.String())
	}
	h := cfg.Health
	for _, p := range []struct{ key, v string }{{"health.path", h.Path}, {"health.live_path", h.LivePath}, {"health.started_path", h.StartedPath}} {
		refuse(p.key, p.v == "", `"" must start with "/"`)
	}
	refuse("health.interval", h.Interval.Duration == 0, "must be greater than 0, got 0s")
	refuse("health.timeout", h.Timeout.Duration == 0, "must be greater than 0, got 0s")
	refuse("health.rise", h.Rise == 0, "0 is less than 1")
	refuse("health.fall", h.Fall == 0, "0 is less than 1")
	refuse("health.max_body_bytes", h.MaxBodyBytes == 0, "0 is less than 1")
	refuse("health.realm", h.Realm == "", `"" is not a realm name`)
	refuse("health.token_interval", h.TokenClientID != "" && h.TokenInterval.Duration == 0, "must be greater than 0, got 0s")
	refuse("health.slowstart", h.Slowstart.Duration < 0, "must not be negative, got "+h.Slowstart.Duration.String())
	refuse("health.passive_fails", h.PassiveFails < 0, strconv.Itoa(h.PassiveFails)+" is less than 0")
	refuse("health.passive_max_ejection_percent", h.PassiveMaxEjectionPercent == 0, noZero)
	t := cfg.Timeouts
	for _, d := range []struct {
		key string
		v   config.Duration
	}{
		{"timeouts.connect", t.Connect}, {"timeouts.server", t.Server}, {"timeouts.queue", t.Queue},
		{"timeouts.client_body", t.ClientBody}, {"timeouts.client", t.Client}, {"timeouts.backend_idle", t.BackendIdle},
	} {
		refuse(d.key, d.v.Duration == 0, "must be greater than 0, got 0s")
	}
	l := cfg.Limits
	refuse("limits.retries", l.Retries < 0 || !l.Redispatch && l.Retries > proxy.MaxRetries,
		fmt.Sprintf("%d is out of range 0..%d", l.Retries, proxy.MaxRetries))
	refuse("limits.queue_size", l.QueueSize < 0, strconv.Itoa(l.QueueSize)+" is less than 0")
	refuse("limits.body_buffer_bytes", l.BodyBufferBytes < 0, fmt.Sprintf("%d is out of range 0..%d", l.BodyBufferBytes, proxy.MaxBufferBytes))
	refuse("limits.body_waits_per_client", l.BodyWaitsPerClient < 0, strconv.Itoa(l.BodyWaitsPerClient)+" is less than 0")
	refuse("limits.max_response_header_bytes", l.MaxResponseHeaderBytes == 0,
		fmt.Sprintf("0 is out of range %d..%d", proxy.MinResponseHeaderBytes, proxy.MaxBufferBytes))
	refuse("paths.blocked_status", cfg.Paths.BlockedStatus == 0, "0 is not 403 or 404")
	refuse("backend.default_maxconn", cfg.Backend.DefaultMaxConn < 0, strconv.Itoa(cfg.Backend.DefaultMaxConn)+" is less than 0")
	for i, sv := range cfg.Backend.Servers {
		refuse(idx("backend.server", i)+".weight", sv.Weight == 0, fmt.Sprintf("0 is out of range 1..%d", backend.MaxWeight))
	}
	for i, r := range cfg.RateLimits {
		key := idx("rate_limit", i)
		refuse(key+".burst", r.Burst == 0, fmt.Sprintf("0 is out of range 1..%d", ratelimit.MaxBurst))
		refuse(key+".ipv6_prefix", r.IPv6Prefix == 0, "0 is out of range 1..128")
	}
	refuse("timeouts.client_header", t.ClientHeader.Duration == 0, "must be greater than 0, got 0s")
	refuse("timeouts.keep_alive", t.KeepAlive.Duration == 0, "must be greater than 0, got 0s")
	refuse("limits.max_request_header_bytes", l.MaxRequestHeaderBytes == 0,
		fmt.Sprintf("0 is out of range %d..%d", proxy.MinRequestHeaderBytes, proxy.MaxBufferBytes))
	refuse("limits.h2_max_concurrent_streams", l.H2MaxConcurrentStreams == 0, fmt.Sprintf("0 is out of range 1..%d", proxy.MaxStreams))
	return ps
}
