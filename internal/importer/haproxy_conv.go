package importer

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// hapConv maps one HAProxy configuration onto the output.
type hapConv struct {
	file     string
	out      *output
	warnings []Warning

	crtBase        string
	globalMaxconn  *intOrigin
	feMaxconn      []intOrigin
	defaultBackend string // from the first frontend's default_backend
	backendDone    bool   // a backend (or listen with servers) was imported
	certs          map[string]bool
	listenerNames  map[string]bool
	headersSet     map[string]bool // output keys of [headers] set from the input
	minTLS         *strOrigin
	// defaultsBackend are server-related directives of defaults sections;
	// they precede the imported backend's own.
	defaultsBackend []Line
	// prefix is Keycloak's http-relative-path ("/auth") when the checks
	// show one; "" otherwise.
	prefix string

	// acls are the ACL definitions of the section being converted.
	acls map[string][]aclDef
	// adminNets are the client networks access rules let reach the admin
	// paths (adminFrom names the rules); publicPaths the prefixes a
	// "deny if !public ..." rule left open to everyone.
	adminNets   []netip.Prefix
	adminFrom   []string
	publicPaths []string
	publicFrom  []strOrigin
	deniedAll   []string
	// binds are the listeners by normalised bind address, for merging
	// dual-stack and repeated binds.
	binds map[string]*table
}

type intOrigin struct {
	n    int
	from string
}

type strOrigin struct {
	s    string
	from string
}

func (c *hapConv) from(l Line) string {
	return c.file + ":" + strconv.Itoa(l.Num) + " " + strings.Join(redact(l.Args), " ")
}

// add records a message of severity sev about line l.
func (c *hapConv) add(sev Severity, l Line, format string, args ...any) {
	c.warnings = append(c.warnings, Warning{File: c.file, Line: l.Num, Directive: strings.Join(redact(l.Args), " "), Severity: sev, Msg: fmt.Sprintf(format, args...)})
}

// warn: l was translated, with a change in behaviour to know about.
func (c *hapConv) warn(l Line, format string, args ...any) { c.add(Warn, l, format, args...) }

// fail: l could not be translated; its meaning would be lost.
func (c *hapConv) fail(l Line, format string, args ...any) { c.add(Error, l, format, args...) }

// info: l needs nothing in kclb (handled elsewhere, or by default).
func (c *hapConv) info(l Line, format string, args ...any) { c.add(Note, l, format, args...) }

func (c *hapConv) addSection(sev Severity, s Section, format string, args ...any) {
	d := strings.TrimSpace(s.Kind + " " + s.Name)
	c.warnings = append(c.warnings, Warning{File: c.file, Line: s.Line, Directive: d, Severity: sev, Msg: fmt.Sprintf(format, args...)})
}

func (c *hapConv) warnSection(s Section, format string, args ...any) {
	c.addSection(Warn, s, format, args...)
}

func (c *hapConv) failSection(s Section, format string, args ...any) {
	c.addSection(Error, s, format, args...)
}

const msgNotMapped = "no kclb equivalent; not imported"

func (c *hapConv) convert(h *HAProxy) {
	c.certs = make(map[string]bool)
	c.listenerNames = make(map[string]bool)
	c.headersSet = make(map[string]bool)
	c.binds = make(map[string]*table)
	var proxies, backends []Section
	for _, s := range h.Sections {
		switch s.Kind {
		case "global":
			for _, l := range s.Lines {
				c.globalLine(l)
			}
		case "defaults":
			for _, l := range s.Lines {
				if isBackendKeyword(l) {
					c.defaultsBackend = append(c.defaultsBackend, l)
					continue
				}
				c.proxyLine(s, l, true, true)
			}
		case "frontend", "listen":
			proxies = append(proxies, s)
		case "backend":
			backends = append(backends, s)
		case "":
			for _, l := range s.Lines {
				c.fail(l, "directive outside any section; not imported")
			}
		default:
			c.failSection(s, "%s sections have no kclb equivalent; not imported", s.Kind)
		}
	}
	for _, s := range proxies {
		if isStats(s) && !hasServers(s) {
			c.statsSection(s)
			continue
		}
		c.proxySection(s, true, hasServers(s))
	}
	for _, s := range backends {
		switch {
		case c.backendDone && s.Name != c.defaultBackend:
			c.failSection(s, "kclb proxies to one Keycloak cluster; only the default backend is imported")
		case c.defaultBackend == "" || s.Name == c.defaultBackend:
			c.proxySection(s, false, true)
		default:
			c.failSection(s, "not the frontend's default_backend %q; not imported", c.defaultBackend)
		}
	}
	if !c.backendDone {
		c.warnings = append(c.warnings, Warning{File: c.file, Severity: Error, Msg: "no backend with servers found; add [[backend.server]] entries"})
	}
	c.finishGlobal()
	c.finishHeaders()
	c.finishPaths()
}

// isStats reports whether s is a stats page section.
func isStats(s Section) bool {
	for _, l := range s.Lines {
		if l.Args[0] == "stats" {
			return true
		}
	}
	return false
}

func hasServers(s Section) bool {
	for _, l := range s.Lines {
		if l.Args[0] == "server" {
			return true
		}
	}
	return false
}

func (c *hapConv) globalLine(l Line) {
	a := l.Args
	switch a[0] {
	case "maxconn":
		if n, ok := c.intArg(l, 1); ok {
			c.globalMaxconn = &intOrigin{n, c.from(l)}
		}
	case "daemon", "master-worker":
		c.info(l, "handled by systemd: kclb runs in the foreground under Type=notify (deploy/kclb.service)")
	case "chroot":
		c.info(l, "handled by systemd: the unit's sandbox (ProtectSystem=strict, PrivateTmp=yes) replaces the chroot")
	case "user", "group", "uid", "gid":
		c.info(l, "handled by systemd: the unit runs kclb as user and group kclb")
	case "pidfile":
		c.info(l, "handled by systemd: it tracks the main process itself")
	case "nbthread", "nbproc", "cpu-map":
		c.info(l, "kclb uses every CPU; limit it with the unit's CPUAffinity= or CPUQuota=")
	case "log":
		c.logLine(l)
	case "hard-stop-after":
		if len(a) > 1 {
			if d, err := parseHAProxyTime(a[1]); err == nil && d > 0 {
				c.out.global.set("shutdown_grace", tomlDur(d), "from "+c.from(l))
				c.warn(l, "requests in flight get global.shutdown_grace at shutdown; raise TimeoutStopSec in the unit (systemctl edit kclb) above it")
				return
			}
		}
		c.fail(l, "not a time; not imported")
	case "spread-checks", "server-state-file", "server-state-base", "ssl-server-verify", "ca-base", "h1-case-adjust", "max-spread-checks", "busy-polling", "maxsslconn", "maxconnrate", "maxsessrate", "maxpipes", "ulimit-n", "node", "description", "strict-limits", "quiet", "zero-warning", "noepoll", "nopoll", "nosplice", "nogetaddrinfo", "noreuseport":
		c.info(l, "nothing to set in kclb (it spreads its checks, keeps admin states in global.state_file, talks plain HTTP to Keycloak and sizes itself)")
	case "stats":
		c.statsGlobal(l)
	case "crt-base":
		if len(a) > 1 {
			c.crtBase = a[1]
		}
	case "ssl-default-bind-options":
		c.sslOptions(l, a[1:])
	case "ssl-default-bind-ciphers", "ssl-default-bind-ciphersuites", "ssl-default-bind-curves", "tune.ssl.default-dh-param":
		c.warn(l, "Go's TLS stack chooses cipher suites and curves; only tls.min_version can be set")
	default:
		if strings.HasPrefix(a[0], "tune.") {
			c.info(l, "kclb sizes its buffers and limits itself (limits.* for header sizes)")
			return
		}
		c.fail(l, msgNotMapped)
	}
}

// logLine handles "log TARGET ...": the journal takes kclb's logs.
func (c *hapConv) logLine(l Line) {
	if len(l.Args) > 1 {
		switch t := l.Args[1]; {
		case t == "global" || t == "stdout" || t == "stderr" || t == "/dev/log" || strings.HasPrefix(t, "/run/") || strings.HasPrefix(t, "/var/run/"):
			c.info(l, "kclb logs to stderr, which systemd's journal collects (global.log_format, global.log_level, global.access_log)")
		default:
			c.warn(l, "kclb logs to stderr, which systemd's journal collects; send them on to %s with the journal's syslog forwarding (ForwardToSyslog= and rsyslog)", t)
		}
		return
	}
	c.info(l, "kclb logs to the journal")
}

// statsGlobal maps "stats socket PATH [mode M] [level L] ..." onto [admin].
func (c *hapConv) statsGlobal(l Line) {
	a := l.Args
	if len(a) < 3 || a[1] != "socket" {
		c.info(l, "the admin socket has no idle timeout or other settings; not imported")
		return
	}
	if !strings.HasPrefix(a[2], "/") {
		c.fail(l, "kclb's admin API listens on a Unix socket, or on admin.tcp with a bearer token (admin.token_file); not imported")
		return
	}
	ad := c.out.admin
	ad.set("socket", tomlString("/run/kclb/admin.sock"), "from "+c.from(l)+" (kclb's socket lives in its RuntimeDirectory; `kclb status` and the drain commands use it)")
	for i := 3; i+1 < len(a); i += 2 {
		switch a[i] {
		case "mode":
			if m, err := strconv.ParseUint(a[i+1], 8, 32); err == nil && m <= 0o777 {
				ad.set("socket_mode", tomlString(fmt.Sprintf("%04o", m)), "from "+c.from(l))
			}
		case "group", "gid":
			ad.set("socket_group", tomlString(a[i+1]), "from "+c.from(l))
		}
	}
}

// sslOptions handles ssl-min-ver and no-tlsvXX options (bind or global).
func (c *hapConv) sslOptions(l Line, opts []string) {
	for i := 0; i < len(opts); i++ {
		switch o := opts[i]; o {
		case "ssl-min-ver":
			if i+1 < len(opts) {
				i++
				c.setMinTLS(l, opts[i])
			}
		case "no-sslv3", "no-tlsv10", "no-tlsv11", "no-tls-tickets":
			// kclb never offers SSLv3, TLS 1.0 or 1.1.
		case "no-tlsv12":
			c.setMinTLS(l, "TLSv1.3")
		default:
			c.warn(l, "TLS option %q has no kclb equivalent", o)
		}
	}
}

func (c *hapConv) setMinTLS(l Line, v string) {
	switch v {
	case "TLSv1.3":
		c.minTLS = &strOrigin{"1.3", c.from(l)}
	case "TLSv1.2":
		c.minTLS = &strOrigin{"1.2", c.from(l)}
	default:
		c.minTLS = &strOrigin{"1.2", c.from(l)}
		c.warn(l, "kclb accepts TLS 1.2 and later only")
	}
}

// proxySection handles a frontend, backend or listen section. fe and be
// say whether its frontend and backend directives are imported.
func (c *hapConv) proxySection(s Section, fe, be bool) {
	if be && c.backendDone {
		c.failSection(s, "kclb proxies to one Keycloak cluster; the servers of this section are not imported")
		be = false
	}
	var (
		redirects []Line
		listeners []*table
		b         backendState
	)
	if be {
		b.lines = append(b.lines, c.defaultsBackend...)
	}
	c.acls = make(map[string][]aclDef)
	for _, l := range s.Lines {
		if l.Args[0] == "acl" && len(l.Args) > 2 {
			c.acls[l.Args[1]] = append(c.acls[l.Args[1]], parseACLCriterion(l, l.Args[2:]))
		}
	}
	for _, l := range s.Lines {
		switch k := l.Args[0]; {
		case k == "bind" && fe:
			listeners = append(listeners, c.bind(l)...)
		case (k == "redirect" || k == "http-request" && len(l.Args) > 1 && l.Args[1] == "redirect") && fe:
			redirects = append(redirects, l)
		case isBackendKeyword(l) && be:
			b.lines = append(b.lines, l)
		case isBackendKeyword(l) || k == "bind" || k == "redirect":
			// Belongs to the part of a listen section not imported.
			if k == "server" {
				c.fail(l, "not imported (only one backend is)")
			}
		default:
			c.proxyLine(s, l, fe, be)
		}
	}
	for _, l := range redirects {
		c.redirect(l, listeners)
	}
	if be {
		c.backendDone = true
		c.backend(s, &b)
	}
}

// isBackendKeyword reports directives about servers and their checks.
func isBackendKeyword(l Line) bool {
	switch l.Args[0] {
	case "server", "default-server", "balance", "cookie", "http-check", "fullconn", "hash-type":
		return true
	case "option":
		return len(l.Args) > 1 && (l.Args[1] == "httpchk" || l.Args[1] == "ssl-hello-chk" || l.Args[1] == "tcp-check")
	}
	return false
}

// proxyLine handles directives valid in defaults, frontend, backend and
// listen sections.
func (c *hapConv) proxyLine(s Section, l Line, fe, be bool) {
	a := l.Args
	switch a[0] {
	case "mode":
		if len(a) > 1 && a[1] != "http" {
			c.fail(l, "kclb proxies HTTP only")
		}
	case "timeout":
		c.timeout(l)
	case "retries":
		if n, ok := c.intArg(l, 1); ok {
			c.out.limits.set("retries", tomlInt(n), "from "+c.from(l))
		}
	case "option", "no":
		c.option(l)
	case "maxconn":
		if n, ok := c.intArg(l, 1); ok {
			c.feMaxconn = append(c.feMaxconn, intOrigin{n, c.from(l)})
		}
	case "log":
		c.logLine(l)
	case "stats":
		c.fail(l, "stats outside a stats section; kclb serves its stats page on the admin listener (admin.tcp), not on a public one")
	case "default_backend":
		if len(a) > 1 && c.defaultBackend == "" {
			c.defaultBackend = a[1]
		} else if len(a) > 1 && a[1] != c.defaultBackend {
			c.fail(l, "kclb proxies to one Keycloak cluster; backend %q is not imported", a[1])
		}
	case "use_backend":
		c.fail(l, "kclb proxies to one Keycloak cluster; content switching is not imported")
	case "http-response":
		c.httpResponse(l)
	case "http-request":
		c.httpRequest(l)
	case "acl":
		c.info(l, "an ACL is imported with the access rules that use it; each rule's message says whether it was")
	case "block":
		c.denyRule(l, a[1:])
	case "stick-table", "stick", "tcp-request", "tcp-response", "http-after-response":
		c.fail(l, "kclb has no stick tables, per-client counters or TCP rules (connection filtering); per-client request rates are [[rate_limit]] rules (paths, methods, rate, burst per client address): write the one this implemented; not imported")
	case "compression", "errorfile", "errorloc", "errorloc302", "errorloc303", "http-error", "errorfiles":
		c.fail(l, "kclb passes Keycloak's responses through unchanged (no compression or custom error pages); not imported")
	case "capture", "unique-id-format", "unique-id-header", "log-format", "log-tag", "declare", "description", "id":
		c.info(l, "kclb's access log has a fixed schema (global.access_log) with a request id of its own")
	case "http-reuse", "fullconn", "hash-type", "http-check-state":
		c.info(l, "kclb pools and reuses its connections to Keycloak itself")
	default:
		c.fail(l, msgNotMapped)
	}
}

var timeoutKeys = map[string][2]string{
	"connect":         {"timeouts", "connect"},
	"client":          {"timeouts", "client"},
	"server":          {"timeouts", "server"},
	"queue":           {"timeouts", "queue"},
	"http-request":    {"timeouts", "client_header"},
	"http-keep-alive": {"timeouts", "keep_alive"},
	"check":           {"health", "timeout"},
}

func (c *hapConv) timeout(l Line) {
	a := l.Args
	if len(a) < 3 {
		c.fail(l, "missing value")
		return
	}
	k, ok := timeoutKeys[a[1]]
	if !ok && (a[1] == "tunnel" || a[1] == "client-fin" || a[1] == "server-fin" || a[1] == "tarpit") {
		c.info(l, "Keycloak needs no tunnels (WebSockets); kclb ends idle connections after timeouts.client, timeouts.server and timeouts.keep_alive")
		return
	}
	if !ok {
		c.fail(l, msgNotMapped)
		return
	}
	d, err := parseHAProxyTime(a[2])
	if err != nil || d <= 0 {
		c.fail(l, "%q is not a positive HAProxy time; not imported", a[2])
		return
	}
	t := c.out.timeouts
	if k[0] == "health" {
		t = c.out.health
	}
	t.set(k[1], tomlDur(d), "from "+c.from(l))
}

// parseHAProxyTime parses an HAProxy time: a number with an optional unit
// us, ms (the default), s, m, h or d.
func parseHAProxyTime(s string) (time.Duration, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 || i > 12 {
		return 0, fmt.Errorf("bad time %q", s)
	}
	n, _ := strconv.ParseInt(s[:i], 10, 64)
	unit := map[string]time.Duration{
		"": time.Millisecond, "us": time.Microsecond, "ms": time.Millisecond,
		"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour,
	}
	u, ok := unit[s[i:]]
	if !ok {
		return 0, fmt.Errorf("bad time unit in %q", s)
	}
	if n > int64(math.MaxInt64/u) {
		return 0, fmt.Errorf("time %q is too long", s)
	}
	return time.Duration(n) * u, nil
}

func (c *hapConv) option(l Line) {
	a := l.Args
	neg := a[0] == "no"
	if neg {
		a = a[1:]
	}
	if len(a) < 2 || a[0] != "option" {
		c.fail(l, msgNotMapped)
		return
	}
	switch a[1] {
	case "redispatch":
		c.out.limits.set("redispatch", tomlBool(!neg), "from "+c.from(l))
	case "httplog":
		c.out.global.set("access_log", tomlBool(!neg), "from "+c.from(l))
	case "dontlognull":
		c.out.global.note("%s: kclb logs one line per request, so connections without a request are never logged", c.from(l))
	case "forwardfor":
		c.out.backend.set("proxy_headers", tomlString("xforwarded"), "from "+c.from(l)+" (kclb replaces X-Forwarded-* from clients outside trusted_proxies)")
	case "http-server-close", "http-keep-alive", "httpclose", "http-pretend-keepalive", "http-buffer-request":
		c.out.global.note("%s: kclb keeps client and backend connections alive (timeouts.keep_alive, timeouts.backend_idle)", c.from(l))
	default:
		c.fail(l, msgNotMapped)
	}
}

// bindArgOptions are bind options that take an argument.
var bindArgOptions = map[string]bool{
	"crt": true, "alpn": true, "npn": true, "ssl-min-ver": true, "ssl-max-ver": true,
	"ciphers": true, "ciphersuites": true, "curves": true, "ecdhe": true, "ca-file": true,
	"crl-file": true, "verify": true, "name": true, "process": true, "interface": true,
	"mss": true, "tcp-ut": true, "backlog": true, "maxconn": true, "nice": true, "id": true,
	"level": true, "mode": true, "user": true, "group": true, "uid": true, "gid": true,
	"crt-list": true, "sigalgs": true, "client-sigalgs": true, "thread": true,
	"namespace": true, "proto": true, "tls-ticket-keys": true, "ca-sign-file": true,
	"ca-sign-pass": true, "severity-output": true, "label": true, "ca-verify-file": true,
}

// bind turns "bind ADDR[,ADDR] [options]" into listeners.
func (c *hapConv) bind(l Line) []*table {
	a := l.Args
	if len(a) < 2 {
		c.fail(l, "missing address")
		return nil
	}
	var (
		tls, h2 bool
		mtls    bool // a client-certificate option was reported
		crts    []string
		bad     []string
		// verify and caFile are the client-certificate options kclb
		// maps (client_auth, client_ca).
		verify, caFile string
	)
	for i := 2; i < len(a); i++ {
		o := a[i]
		arg := ""
		if bindArgOptions[o] {
			if i+1 >= len(a) {
				bad = append(bad, o)
				continue
			}
			i++
			arg = a[i]
		}
		switch o {
		case "ssl":
			tls = true
		case "crt":
			if c.crtBase != "" && !strings.HasPrefix(arg, "/") {
				arg = path.Join(c.crtBase, arg)
			}
			crts = append(crts, arg)
		case "alpn":
			h2 = strings.Contains(","+arg+",", ",h2,")
		case "ssl-min-ver":
			c.setMinTLS(l, arg)
		case "no-sslv3", "no-tlsv10", "no-tlsv11", "v4v6", "v6only":
		case "accept-proxy", "accept-netscaler-cip":
			c.fail(l, "kclb accepts the PROXY protocol (%s) only from the senders a listener names: set proxy_protocol = true and proxy_protocol_from = [the load balancers' networks] on this [[listener]]; not imported", o)
		case "verify":
			verify = arg
		case "ca-file":
			caFile = arg
		case "crl-file", "ca-verify-file", "ca-ignore-err", "crt-ignore-err":
			if !mtls {
				c.fail(l, "kclb verifies client certificates against client_ca only, without CRLs or ignored errors (%s %s); not imported", o, arg)
			}
			mtls = true
		case "name", "process", "thread", "nice", "id", "defer-accept", "tfo", "backlog", "maxconn", "level", "severity-output", "label":
			// Tuning and naming: nothing kclb needs.
		case "ciphers", "ciphersuites", "curves", "ecdhe", "sigalgs", "client-sigalgs", "prefer-client-ciphers", "no-tls-tickets", "npn", "strict-sni":
			c.warn(l, "Go's TLS stack chooses cipher suites, curves and session tickets (%s is not imported); only tls.min_version can be set", o)
		default:
			bad = append(bad, o)
		}
	}
	if len(bad) > 0 {
		c.fail(l, "bind option(s) %s not supported; not imported", strings.Join(bad, ", "))
	}
	if tls {
		for _, crt := range crts {
			if strings.HasSuffix(crt, "/") {
				c.fail(l, "crt %s is a directory; kclb needs one [[tls.certificate]] per certificate file", crt)
				continue
			}
			if c.certs[crt] {
				continue
			}
			c.certs[crt] = true
			t := newTable("tls.certificate", true)
			t.note("from %s (HAProxy's combined PEM: kclb reads the certificate chain and the key from the same file)", c.from(l))
			t.set("cert", tomlString(crt), "")
			t.set("key", tomlString(crt), "")
			c.out.certs = append(c.out.certs, t)
		}
		if len(crts) == 0 {
			c.fail(l, "ssl without crt; add a [[tls.certificate]]")
		}
	}
	clientAuth := ""
	switch {
	case verify == "" || verify == "none":
		if caFile != "" {
			c.warn(l, "ca-file %s without verify optional/required: HAProxy asks for no client certificate, and neither does kclb (client_auth stays \"off\")", caFile)
		}
	case verify != "optional" && verify != "required":
		c.fail(l, "verify %s is not none, optional or required; not imported", verify)
	case !tls:
		c.fail(l, "verify %s without ssl; not imported", verify)
	case caFile == "":
		c.fail(l, "verify %s without ca-file: kclb needs the CA client certificates must chain to (client_ca); not imported", verify)
	default:
		clientAuth = verify
	}
	var out []*table
	for _, addr := range strings.Split(a[1], ",") {
		bindAddr, port, err := haproxyBindAddr(addr)
		if err != nil {
			c.fail(l, "%v; not imported", err)
			continue
		}
		// Go's wildcard listener accepts IPv4 and IPv6: "*:443", "0.0.0.0:443",
		// ":::443" and "[::]:443 v4v6" are all one ":443" listener.
		if h, _, _ := net.SplitHostPort(bindAddr); h == "" || h == "0.0.0.0" || h == "::" {
			bindAddr = ":" + port
		}
		if t, dup := c.binds[bindAddr]; dup {
			if (t.vals["tls"].val == "true") != tls {
				c.fail(l, "binds %s like the listener %s with TLS %v; kclb listens once per address; not imported", bindAddr, strings.Trim(t.vals["name"].val, `"`), !tls)
				continue
			}
			c.info(l, "the same listener as %s: kclb's %q accepts IPv4 and IPv6", t.notes[0][len("from "):], bindAddr)
			out = append(out, t)
			continue
		}
		name := "http"
		if tls {
			name = "https"
		}
		if base := name; c.listenerNames[name] {
			name = base + "-" + port
			for n := 2; c.listenerNames[name]; n++ {
				name = fmt.Sprintf("%s-%s-%d", base, port, n)
			}
		}
		c.listenerNames[name] = true
		t := newTable("listener", true)
		t.note("from %s", c.from(l))
		t.set("name", tomlString(name), "")
		t.set("bind", tomlString(bindAddr), "")
		t.set("tls", tomlBool(tls), "")
		if tls {
			cm := "kclb offers HTTP/2 through ALPN by default"
			if h2 {
				cm = "from alpn h2"
			}
			t.set("http2", tomlBool(true), cm)
		}
		if clientAuth != "" {
			t.set("client_auth", tomlString(clientAuth), "from verify "+clientAuth+" (a certificate that does not verify is a TLS alert, as in HAProxy)")
			t.set("client_ca", tomlString(caFile), "from ca-file")
		}
		c.out.listeners = append(c.out.listeners, t)
		c.binds[bindAddr] = t
		out = append(out, t)
	}
	return out
}

// haproxyBindAddr converts an HAProxy bind address ("*:80", ":::443",
// "ipv4@10.0.0.1:80") to kclb's host:port and returns the port.
func haproxyBindAddr(s string) (string, string, error) {
	for _, p := range []string{"ipv4@", "ipv6@"} {
		s = strings.TrimPrefix(s, p)
	}
	if strings.HasPrefix(s, "/") || strings.Contains(s, "@") {
		return "", "", fmt.Errorf("address %q is not an IP socket", s)
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", "", fmt.Errorf("address %q has no port", s)
	}
	host, port := s[:i], s[i+1:]
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("address %q: port %q is not a single port", s, port)
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "*" || host == "" {
		return ":" + port, port, nil
	}
	if net.ParseIP(host) == nil {
		return "", "", fmt.Errorf("address %q: kclb binds IP addresses, not host names", s)
	}
	return net.JoinHostPort(host, port), port, nil
}

// redirect maps "redirect scheme https ..." onto the plain listeners of
// the same frontend.
func (c *hapConv) redirect(l Line, listeners []*table) {
	a := l.Args
	if a[0] == "http-request" {
		a = a[1:]
	}
	if len(a) < 3 || a[1] != "scheme" || a[2] != "https" {
		c.fail(l, "kclb only redirects whole plain listeners to https (listener.redirect_https); not imported")
		return
	}
	cond := strings.Join(a[3:], " ")
	code := ""
	if len(a) > 4 && a[3] == "code" {
		code = a[4]
		cond = strings.Join(a[5:], " ")
	}
	switch cond {
	case "", "if !{ ssl_fc }", "unless { ssl_fc }":
	default:
		c.fail(l, "condition %q dropped: kclb redirects every request on a plain listener with redirect_https", cond)
	}
	tlsPort := 0
	for _, t := range c.out.listeners {
		if t.vals["tls"].val == "true" {
			_, p, _ := net.SplitHostPort(strings.Trim(t.vals["bind"].val, `"`))
			tlsPort, _ = strconv.Atoi(p)
			break
		}
	}
	cm := "from " + c.from(l)
	if code != "" && code != "308" {
		cm += " (kclb answers 308, which keeps the method)"
	}
	n := 0
	for _, t := range listeners {
		if t.vals["tls"].val == "true" {
			continue
		}
		t.set("redirect_https", tomlBool(true), cm)
		if tlsPort != 0 {
			t.set("redirect_port", tomlInt(tlsPort), "port of the TLS listener")
		}
		n++
	}
	if n == 0 {
		c.info(l, "no plain listener in this section to redirect")
	}
}

// headerKeys maps response headers to [headers] keys.
var headerKeys = map[string]string{
	"strict-transport-security": "hsts",
	"x-content-type-options":    "content_type_options",
	"referrer-policy":           "referrer_policy",
	"x-frame-options":           "frame_options",
}

func (c *hapConv) httpResponse(l Line) {
	a := l.Args
	if len(a) < 2 || (a[1] != "set-header" && a[1] != "add-header") || len(a) < 4 {
		c.fail(l, "kclb only adds the security headers of [headers]; not imported")
		return
	}
	name, value, cond := a[2], a[3], strings.Join(a[4:], " ")
	lower := strings.ToLower(name)
	key, ok := headerKeys[lower]
	switch {
	case lower == "x-xss-protection":
		c.info(l, "X-XSS-Protection is obsolete (browsers removed the XSS auditor); not imported")
		return
	case !ok:
		c.fail(l, "kclb adds only Strict-Transport-Security, X-Content-Type-Options, Referrer-Policy and X-Frame-Options; not imported")
		return
	case strings.Contains(value, "%["):
		c.fail(l, "log-format expressions in header values are not supported; not imported")
		return
	}
	if cond != "" && !(key == "hsts" && (cond == "if { ssl_fc }" || cond == "if { ssl_fc } ")) {
		c.fail(l, "condition %q dropped", cond)
	}
	h := c.out.headers
	cm := "from " + c.from(l) + " (added only when Keycloak did not set it)"
	if key == "frame_options" {
		switch strings.ToUpper(value) {
		case "SAMEORIGIN":
		case "DENY":
			c.warn(l, "kclb sends X-Frame-Options SAMEORIGIN when Keycloak sets none, and never on its iframe pages (headers.frame_exempt): DENY breaks Keycloak's session iframe (login-status-iframe.html) and admin console")
			cm = "not DENY (" + c.file + ":" + strconv.Itoa(l.Num) + "): DENY breaks Keycloak's session iframe"
		default:
			c.warn(l, "X-Frame-Options %s is obsolete; kclb uses SAMEORIGIN", value)
		}
		value = "SAMEORIGIN"
	}
	h.set(key, tomlString(value), cm)
	c.headersSet[key] = true
}

func (c *hapConv) httpRequest(l Line) {
	a := l.Args
	if len(a) < 2 {
		c.fail(l, msgNotMapped)
		return
	}
	switch a[1] {
	case "deny", "reject", "tarpit", "auth":
		if a[1] == "auth" {
			c.fail(l, "kclb asks no password in front of Keycloak; not imported")
			return
		}
		c.denyRule(l, a[2:])
		return
	case "set-header", "add-header", "del-header", "replace-header":
		if len(a) < 3 {
			break
		}
		name := strings.ToLower(a[2])
		switch {
		case a[1] == "del-header" && strippedHeader(name):
			c.info(l, "kclb removes %s from every request of a client outside backend.trusted_proxies (all clients by default), like the forwarding, tracing and client-certificate headers", a[2])
			return
		case strings.HasPrefix(name, "x-forwarded-"):
			c.info(l, "kclb sets X-Forwarded-For/-Proto/-Host/-Port itself (backend.proxy_headers) and replaces them for clients outside backend.trusted_proxies")
			return
		case a[1] != "del-header" && name == "ssl_client_cert" && len(a) > 3 && strings.Contains(a[3], "ssl_c_der"):
			c.out.backend.set("client_cert_header", tomlString("haproxy"), "from "+c.from(l)+" (kclb sets SSL_CLIENT_CERT and CERT_CHAIN_n from the certificate it verified, for Keycloak's haproxy x509cert-lookup provider)")
			c.info(l, "kclb sets SSL_CLIENT_CERT (base64 DER) itself from a verified client certificate, and removes client-sent copies")
			return
		case a[1] != "del-header" && strings.HasPrefix(name, "cert_chain"):
			c.info(l, "kclb sets CERT_CHAIN_0, CERT_CHAIN_1... itself (backend.client_cert_header = \"haproxy\")")
			return
		case a[1] != "del-header" && (strings.HasPrefix(name, "ssl-client-") || strings.HasPrefix(name, "ssl_client_") || strings.Contains(name, "client-cert") || strings.Contains(name, "client_cert")):
			c.fail(l, "kclb forwards a verified client certificate only in the headers of backend.client_cert_header (rfc9440, haproxy's SSL_CLIENT_CERT, nginx's ssl-client-cert, envoy's x-forwarded-client-cert), not %s: pick the one Keycloak's spi-x509cert-lookup-provider reads; not imported", a[2])
			return
		case name == "x-real-ip" || name == "forwarded":
			c.warn(l, "kclb removes %s from clients and sends the client address as X-Forwarded-For (backend.proxy_headers = \"xforwarded\", what Keycloak's proxy-headers=xforwarded reads); not sent", a[2])
			return
		}
	case "redirect":
		return // handled with the section's listeners
	case "track-sc0", "track-sc1", "track-sc2", "sc-inc-gpc0", "sc-inc-gpc1", "sc-set-gpt0":
		c.fail(l, "kclb has no stick tables or per-client counters; per-client request rates are [[rate_limit]] rules: write the one this implemented; not imported")
		return
	case "set-log-level", "capture", "set-var", "unset-var", "set-mark", "set-tos", "set-nice":
		c.fail(l, "kclb has no per-request variables or log levels; not imported")
		return
	}
	c.fail(l, msgNotMapped)
}

// strippedHeader reports whether kclb removes the request header name
// (lower case) from clients outside backend.trusted_proxies; the list
// follows proxy/edge.go (untrustedHeader).
func strippedHeader(name string) bool {
	switch name {
	case "forwarded", "x-real-ip", "traceparent", "tracestate", "baggage", "b3", "uber-trace-id", "x-ot-span-context":
		return true
	}
	for _, p := range []string{"x-forwarded-", "x-original-", "x-b3-", "ssl-client-", "cert-chain", "client-cert", "x-client-cert", "x-ssl-"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// statsSection maps a "listen stats" section onto kclb's admin TCP
// listener, which serves the stats page (/stats) and /metrics.
func (c *hapConv) statsSection(s Section) {
	ad := c.out.admin
	for _, l := range s.Lines {
		a := l.Args
		switch a[0] {
		case "bind":
			if len(a) < 2 {
				c.fail(l, "missing address")
				continue
			}
			if ad.has("tcp") {
				c.fail(l, "kclb has one admin TCP listener (admin.tcp); not imported")
				continue
			}
			addr, _, err := haproxyBindAddr(strings.Split(a[1], ",")[0])
			if err != nil {
				c.fail(l, "%v; not imported", err)
				continue
			}
			if len(a) > 2 && !slices.Equal(a[2:], []string{"v4v6"}) {
				c.fail(l, "bind options %s: kclb's admin listener speaks plain HTTP with a bearer token; not imported", strings.Join(a[2:], " "))
			}
			ad.set("tcp", tomlString(addr), "stats page and metrics, from "+c.from(l))
			ad.set("token_file", tomlString("/etc/kclb/admin.token"), "bearer token for changes over admin.tcp: head -c 32 /dev/urandom | base64 > /etc/kclb/admin.token")
			c.warn(l, "kclb's admin listener (admin.tcp) serves the stats page at /stats and metrics at /metrics; reads and changes (drain, ready, maint, reload) need the bearer token (set admin.public_read = true to open reads): create /etc/kclb/admin.token (admin.token_file, at least 32 bytes)")
		case "stats":
			sub := ""
			if len(a) > 1 {
				sub = a[1]
			}
			switch sub {
			case "enable", "refresh", "show-legends", "show-node", "show-desc", "hide-version", "realm":
				c.info(l, "kclb's stats page needs no setting (it refreshes itself)")
			case "uri":
				if len(a) > 2 && a[2] != "/stats" && a[2] != "/" {
					c.warn(l, "kclb serves the stats page at /stats (and /) on admin.tcp, not at %s", a[2])
				} else {
					c.info(l, "kclb serves the stats page at /stats on admin.tcp")
				}
			case "auth":
				c.warn(l, "kclb's stats page and metrics are readable without a password; bind admin.tcp to a management address only (not a public one) if the page was private; changes need the bearer token")
			case "admin":
				c.warn(l, "HAProxy let anyone reaching the page change servers; kclb's page changes them only with the bearer token (open /stats#token=TOKEN)")
			default:
				c.fail(l, msgNotMapped)
			}
		case "mode", "timeout", "log", "option", "maxconn", "no":
			c.info(l, "part of the stats section; kclb's admin listener needs no setting")
		default:
			c.fail(l, msgNotMapped)
		}
	}
}

// finishPaths writes [paths] from the access rules, and says what kclb
// exposes.
func (c *hapConv) finishPaths() {
	p := c.prefix
	pt := c.out.paths
	if len(c.publicPaths) > 0 {
		var froms []string
		for _, f := range c.publicFrom {
			froms = append(froms, f.from)
		}
		pt.set("public", tomlStrings(c.publicPaths), "the paths "+strings.Join(froms, "; ")+" left open to everyone")
	}
	if len(c.adminNets) > 0 {
		var nets []string
		for _, n := range c.adminNets {
			nets = append(nets, n.String())
		}
		pt.set("admin_networks", tomlStrings(nets), "the networks "+strings.Join(c.adminFrom, "; ")+" let through")
		msg := "the access rules were translated: " + p + "/admin/ is served only to paths.admin_networks " + strings.Join(nets, ", ")
		if len(c.publicPaths) > 0 {
			msg += "; other paths outside paths.public (such as " + p + "/metrics and " + p + "/health) are blocked for every client, where HAProxy let those networks reach them"
		}
		if p != "" {
			msg += "; under http-relative-path " + p + " the admin console " + p + "/admin/ is blocked for every client (kclb lets paths.admin_networks reach /admin/ at the root only)"
		}
		c.warnings = append(c.warnings, Warning{File: c.file, Severity: Warn, Msg: msg})
		return
	}
	msg := "every path was proxied; kclb serves only " + p + "/realms/, " + p + "/resources/ and " + p + "/.well-known/ publicly and /admin/ only to paths.admin_networks (default 127.0.0.0/8 and ::1): add your administrators' networks there"
	if p != "" {
		msg += "; under http-relative-path " + p + " the admin console " + p + "/admin/ is blocked for every client (kclb lets paths.admin_networks reach /admin/ at the root only)"
	}
	c.warnings = append(c.warnings, Warning{File: c.file, Severity: Warn, Msg: msg})
}

func (c *hapConv) intArg(l Line, i int) (int, bool) {
	if i >= len(l.Args) {
		c.fail(l, "missing value; not imported")
		return 0, false
	}
	n, err := strconv.Atoi(l.Args[i])
	if err != nil || n < 0 {
		c.fail(l, "%q is not a number; not imported", l.Args[i])
		return 0, false
	}
	return n, true
}

// finishGlobal sets global.maxconn and tls.min_version.
func (c *hapConv) finishGlobal() {
	g := c.out.global
	var fe *intOrigin
	if len(c.feMaxconn) > 0 {
		// HAProxy's maxconn in defaults/frontend limits each frontend; kclb
		// has one limit over all listeners, so the last one set counts.
		fe = &c.feMaxconn[len(c.feMaxconn)-1]
	}
	switch {
	case fe != nil && (c.globalMaxconn == nil || fe.n < c.globalMaxconn.n):
		cm := "from " + fe.from + " (per-frontend limit"
		if c.globalMaxconn != nil {
			cm += ", lower than " + c.globalMaxconn.from
		}
		g.set("maxconn", tomlInt(fe.n), cm+")")
	case c.globalMaxconn != nil:
		g.set("maxconn", tomlInt(c.globalMaxconn.n), "from "+c.globalMaxconn.from)
	}
	if c.minTLS != nil {
		c.out.tls.set("min_version", tomlString(c.minTLS.s), "from "+c.minTLS.from)
	}
}

// finishHeaders writes kclb's defaults for the headers the input did not
// set: they are only added when Keycloak sent none.
func (c *hapConv) finishHeaders() {
	defaults := []struct{ key, header, val string }{
		{"hsts", "Strict-Transport-Security", "max-age=31536000; includeSubDomains"},
		{"content_type_options", "X-Content-Type-Options", "nosniff"},
		{"referrer_policy", "Referrer-Policy", "no-referrer"},
		{"frame_options", "X-Frame-Options", "SAMEORIGIN"},
	}
	var order []string
	for _, d := range defaults {
		order = append(order, d.key)
		if !c.headersSet[d.key] {
			c.out.headers.set(d.key, tomlString(d.val), "kclb default; "+c.file+" did not set "+d.header)
		}
	}
	reorder(c.out.headers, order)
}
