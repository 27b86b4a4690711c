package importer

import (
	"fmt"
	"math"
	"net"
	"path"
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

func (c *hapConv) warn(l Line, format string, args ...any) {
	c.warnings = append(c.warnings, Warning{File: c.file, Line: l.Num, Directive: strings.Join(redact(l.Args), " "), Msg: fmt.Sprintf(format, args...)})
}

func (c *hapConv) warnSection(s Section, format string, args ...any) {
	d := strings.TrimSpace(s.Kind + " " + s.Name)
	c.warnings = append(c.warnings, Warning{File: c.file, Line: s.Line, Directive: d, Msg: fmt.Sprintf(format, args...)})
}

const msgNotMapped = "no kclb equivalent; not imported"

func (c *hapConv) convert(h *HAProxy) {
	c.certs = make(map[string]bool)
	c.listenerNames = make(map[string]bool)
	c.headersSet = make(map[string]bool)
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
				c.warn(l, "directive outside any section; not imported")
			}
		default:
			c.warnSection(s, "%s sections have no kclb equivalent; not imported", s.Kind)
		}
	}
	for _, s := range proxies {
		if isStats(s) {
			c.warnSection(s, "the stats page is replaced by the admin socket ([admin] socket, `kclb status`); kclb never serves it publicly")
			continue
		}
		c.proxySection(s, true, hasServers(s))
	}
	for _, s := range backends {
		switch {
		case c.backendDone && s.Name != c.defaultBackend:
			c.warnSection(s, "kclb proxies to one Keycloak cluster; only the default backend is imported")
		case c.defaultBackend == "" || s.Name == c.defaultBackend:
			c.proxySection(s, false, true)
		default:
			c.warnSection(s, "not the frontend's default_backend %q; not imported", c.defaultBackend)
		}
	}
	if !c.backendDone {
		c.warnings = append(c.warnings, Warning{File: c.file, Msg: "no backend with servers found; add [[backend.server]] entries"})
	}
	c.finishGlobal()
	c.finishHeaders()
	c.pathsWarning()
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
		c.warn(l, "handled by systemd: kclb runs in the foreground under Type=notify (deploy/kclb.service)")
	case "chroot":
		c.warn(l, "handled by systemd: the unit's sandbox (ProtectSystem=strict, PrivateTmp=yes) replaces the chroot")
	case "user", "group", "uid", "gid":
		c.warn(l, "handled by systemd: the unit runs kclb as user and group kclb")
	case "pidfile":
		c.warn(l, "handled by systemd: it tracks the main process itself")
	case "nbthread", "nbproc", "cpu-map":
		c.warn(l, "kclb uses every CPU; limit it with the unit's CPUAffinity= or CPUQuota=")
	case "log":
		c.warn(l, "kclb logs to stderr, which systemd's journal collects (global.log_format, global.log_level)")
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
		c.warn(l, msgNotMapped)
	}
}

// statsGlobal maps "stats socket PATH [mode M] [level L] ..." onto [admin].
func (c *hapConv) statsGlobal(l Line) {
	a := l.Args
	if len(a) < 3 || a[1] != "socket" {
		c.warn(l, "the admin socket has no idle timeout or other settings; not imported")
		return
	}
	if !strings.HasPrefix(a[2], "/") {
		c.warn(l, "kclb's admin API listens on a Unix socket, or on admin.tcp with a bearer token (admin.token_file); not imported")
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
		c.warnSection(s, "kclb proxies to one Keycloak cluster; the servers of this section are not imported")
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
				c.warn(l, "not imported (only one backend is)")
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
			c.warn(l, "kclb proxies HTTP only")
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
		c.warn(l, "kclb logs to stderr, which systemd's journal collects (global.log_format, global.log_level)")
	case "stats":
		c.warn(l, "the stats page is replaced by the admin socket ([admin] socket, `kclb status`); kclb never serves it publicly")
	case "default_backend":
		if len(a) > 1 && c.defaultBackend == "" {
			c.defaultBackend = a[1]
		} else if len(a) > 1 && a[1] != c.defaultBackend {
			c.warn(l, "kclb proxies to one Keycloak cluster; backend %q is not imported", a[1])
		}
	case "use_backend":
		c.warn(l, "kclb proxies to one Keycloak cluster; content switching is not imported")
	case "http-response":
		c.httpResponse(l)
	case "http-request":
		c.httpRequest(l)
	case "acl":
		c.warn(l, "kclb has no ACLs; which paths are public is set in [paths]")
	default:
		c.warn(l, msgNotMapped)
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
		c.warn(l, "missing value")
		return
	}
	k, ok := timeoutKeys[a[1]]
	if !ok {
		c.warn(l, msgNotMapped)
		return
	}
	d, err := parseHAProxyTime(a[2])
	if err != nil || d <= 0 {
		c.warn(l, "%q is not a positive HAProxy time; not imported", a[2])
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
		c.warn(l, msgNotMapped)
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
		c.warn(l, msgNotMapped)
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
		c.warn(l, "missing address")
		return nil
	}
	var (
		tls, h2 bool
		crts    []string
		bad     []string
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
		case "no-sslv3", "no-tlsv10", "no-tlsv11", "v4v6":
		default:
			bad = append(bad, o)
		}
	}
	if len(bad) > 0 {
		c.warn(l, "bind option(s) %s not supported; not imported", strings.Join(bad, ", "))
	}
	if tls {
		for _, crt := range crts {
			if strings.HasSuffix(crt, "/") {
				c.warn(l, "crt %s is a directory; kclb needs one [[tls.certificate]] per certificate file", crt)
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
			c.warn(l, "ssl without crt; add a [[tls.certificate]]")
		}
	}
	var out []*table
	for _, addr := range strings.Split(a[1], ",") {
		bindAddr, port, err := haproxyBindAddr(addr)
		if err != nil {
			c.warn(l, "%v; not imported", err)
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
		c.out.listeners = append(c.out.listeners, t)
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
		c.warn(l, "kclb only redirects whole plain listeners to https (listener.redirect_https); not imported")
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
		c.warn(l, "condition %q dropped: kclb redirects every request on a plain listener with redirect_https", cond)
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
		c.warn(l, "no plain listener in this section to redirect")
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
		c.warn(l, "kclb only adds the security headers of [headers]; not imported")
		return
	}
	name, value, cond := a[2], a[3], strings.Join(a[4:], " ")
	lower := strings.ToLower(name)
	key, ok := headerKeys[lower]
	switch {
	case lower == "x-xss-protection":
		c.warn(l, "X-XSS-Protection is obsolete (browsers removed the XSS auditor); not imported")
		return
	case !ok:
		c.warn(l, "kclb adds only Strict-Transport-Security, X-Content-Type-Options, Referrer-Policy and X-Frame-Options; not imported")
		return
	case strings.Contains(value, "%["):
		c.warn(l, "log-format expressions in header values are not supported; not imported")
		return
	}
	if cond != "" && !(key == "hsts" && (cond == "if { ssl_fc }" || cond == "if { ssl_fc } ")) {
		c.warn(l, "condition %q dropped", cond)
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
	if len(a) >= 3 && (a[1] == "set-header" || a[1] == "add-header" || a[1] == "del-header") &&
		strings.HasPrefix(strings.ToLower(a[2]), "x-forwarded-") {
		c.warn(l, "kclb sets X-Forwarded-For/-Proto/-Host/-Port itself (backend.proxy_headers) and replaces them for clients outside backend.trusted_proxies; not imported")
		return
	}
	c.warn(l, msgNotMapped)
}

func (c *hapConv) intArg(l Line, i int) (int, bool) {
	if i >= len(l.Args) {
		c.warn(l, "missing value; not imported")
		return 0, false
	}
	n, err := strconv.Atoi(l.Args[i])
	if err != nil || n < 0 {
		c.warn(l, "%q is not a number; not imported", l.Args[i])
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

// pathsWarning says that kclb, unlike the imported configuration,
// filters paths.
func (c *hapConv) pathsWarning() {
	p := c.prefix
	c.warnings = append(c.warnings, Warning{File: c.file, Msg: "every path was proxied; kclb serves only " + p + "/realms/, " + p + "/resources/ and " + p + "/.well-known/ publicly and " + p + "/admin/ only to paths.admin_networks (default 127.0.0.0/8 and ::1): add your administrators' networks there"})
}
