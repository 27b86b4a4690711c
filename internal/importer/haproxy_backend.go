package importer

import (
	"net"
	"strconv"
	"strings"
	"time"
)

// backendState collects a backend's directives; they are mapped together
// because health settings depend on all servers.
type backendState struct {
	lines []Line
}

// srvOpts are the options of a server or default-server line that kclb
// maps. Zero means unset.
type srvOpts struct {
	check     bool
	checkSSL  bool
	noVerify  bool
	port      int
	addr      string
	maxconn   int
	weight    int // -1: unset
	inter     time.Duration
	rise      int
	fall      int
	slowstart time.Duration
	// from is the directive each mapped option came from, by option name.
	from map[string]string
}

// serverArgOptions are server options that take an argument.
var serverArgOptions = map[string]bool{
	"addr": true, "port": true, "inter": true, "fastinter": true, "downinter": true,
	"rise": true, "fall": true, "slowstart": true, "maxconn": true, "minconn": true,
	"maxqueue": true, "weight": true, "cookie": true, "check-sni": true, "sni": true,
	"verify": true, "ca-file": true, "crl-file": true, "crt": true, "id": true,
	"observe": true, "on-error": true, "on-marked-down": true, "on-marked-up": true,
	"error-limit": true, "redir": true, "resolvers": true, "resolve-prefer": true,
	"resolve-net": true, "init-addr": true, "source": true, "usesrc": true,
	"namespace": true, "proto": true, "alpn": true, "check-alpn": true, "check-proto": true,
	"agent-port": true, "agent-inter": true, "agent-addr": true, "agent-send": true,
	"pool-max-conn": true, "pool-purge-delay": true, "pool-low-conn": true,
	"max-reuse": true, "tcp-ut": true, "socks4": true, "ciphers": true,
	"ciphersuites": true, "curves": true, "sigalgs": true, "ws": true, "track": true,
	"log-proto": true, "hash-key": true, "guid": true, "shard": true, "init-state": true,
	"proxy-v2-options": true, "set-proxy-v2-tlv-fmt": true, "ssl-min-ver": true,
	"ssl-max-ver": true, "npn": true, "health-check-interval": true,
}

// serverOpts parses server options into o and returns the options kclb
// cannot map.
func (c *hapConv) serverOpts(l Line, args []string, o *srvOpts) (bad []string) {
	if o.from == nil {
		o.from = make(map[string]string)
	}
	from := c.from(l)
	for i := 0; i < len(args); i++ {
		k, v := args[i], ""
		if serverArgOptions[k] {
			if i+1 >= len(args) {
				bad = append(bad, k)
				continue
			}
			i++
			v = args[i]
		}
		num := func() int {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				bad = append(bad, k+" "+v)
				return 0
			}
			return n
		}
		dur := func() time.Duration {
			d, err := parseHAProxyTime(v)
			if err != nil {
				bad = append(bad, k+" "+v)
			}
			return d
		}
		switch k {
		case "check":
			o.check = true
		case "no-check":
			o.check = false
		case "check-ssl":
			o.checkSSL = true
		case "verify":
			o.noVerify = v == "none"
		case "port":
			o.port = num()
		case "addr":
			o.addr = v
		case "maxconn":
			o.maxconn = num()
		case "weight":
			o.weight = num()
		case "inter":
			o.inter = dur()
		case "rise":
			o.rise = num()
		case "fall":
			o.fall = num()
		case "slowstart":
			o.slowstart = dur()
		case "cookie", "enabled", "no-backup":
			// cookie values are not needed: kclb signs its own cookie
			// naming the server.
		default:
			bad = append(bad, k)
			continue
		}
		o.from[k] = from
	}
	return bad
}

// backend maps the chosen backend's servers, balancing, cookie and checks.
func (c *hapConv) backend(s Section, b *backendState) {
	var (
		defs    = srvOpts{weight: -1}
		servers []Line
		httpchk *Line
		path    string
		cookie  bool
	)
	for _, l := range b.lines {
		a := l.Args
		switch a[0] {
		case "balance":
			c.balance(l)
		case "cookie":
			cookie = c.cookie(l)
		case "option":
			if a[1] != "httpchk" {
				c.warn(l, "kclb checks Keycloak's readiness over HTTP (health.path); not imported")
				continue
			}
			lc := l
			httpchk = &lc
			switch len(a) {
			case 2:
				path = "/"
			case 3:
				path = a[2]
			default:
				path = a[3]
				if a[2] != "GET" && a[2] != "HEAD" {
					c.info(l, "kclb checks with GET")
				}
			}
		case "http-check":
			c.httpCheck(l, &path, &defs)
		case "default-server":
			if bad := c.serverOpts(l, a[1:], &defs); len(bad) > 0 {
				c.fail(l, "option(s) %s not supported; not imported", strings.Join(bad, ", "))
			}
			if defs.maxconn > 0 {
				c.out.backend.set("default_maxconn", tomlInt(defs.maxconn), "from "+c.from(l))
			}
		case "server":
			servers = append(servers, l)
		case "hash-type", "fullconn":
			c.info(l, "kclb balances with least_request or round_robin; affinity keeps each login on one node")
		default:
			c.fail(l, msgNotMapped)
		}
	}

	type srv struct {
		l    Line
		t    *table
		o    srvOpts
		port string
	}
	var (
		list        []srv
		anyWeight   bool
		first       = map[string]string{} // health option -> first directive
		firstVal    srvOpts
		noCheckPort []string
		trafficPort string
	)
	for _, l := range servers {
		a := l.Args
		if len(a) < 3 {
			c.fail(l, "missing name or address; not imported")
			continue
		}
		o := defs
		o.from = make(map[string]string)
		for k, v := range defs.from {
			o.from[k] = v
		}
		bad := c.serverOpts(l, a[3:], &o)
		addr, port, err := haproxyServerAddr(a[2])
		if err != nil {
			c.fail(l, "%v; server not imported", err)
			continue
		}
		if port == "" {
			port = "8080"
			addr = net.JoinHostPort(addr, port)
			c.warn(l, "no port: HAProxy used the client's destination port; kclb uses %s (Keycloak's default HTTP port)", addr)
		}
		var unsupported []string
		skip, backup := false, false
		for _, k := range bad {
			switch k {
			case "backup":
				backup = true
			case "disabled":
				c.fail(l, "kclb has no disabled servers in its configuration: left out (add it, then `kclb maint %s` keeps it idle; the state persists in global.state_file)", a[1])
				skip = true
			case "ssl":
				c.fail(l, "kclb talks plain HTTP to Keycloak's traffic port; terminate TLS at kclb only")
			case "send-proxy", "send-proxy-v2":
				c.fail(l, "kclb sends X-Forwarded-* headers, not the PROXY protocol (match Keycloak's proxy-headers)")
			default:
				unsupported = append(unsupported, k)
			}
		}
		if len(unsupported) > 0 {
			c.fail(l, "server option(s) %s not supported; not imported", strings.Join(unsupported, ", "))
		}
		if skip {
			continue
		}
		name := sanitizeName(a[1])
		if name != a[1] {
			c.info(l, "server name %q contains characters kclb does not allow; renamed %q", a[1], name)
		}
		t := newTable("backend.server", true)
		t.note("from %s", c.from(l))
		t.set("name", tomlString(name), "")
		t.set("address", tomlString(addr), "")
		if backup {
			t.set("backup", "true", "HAProxy's backup: traffic only while no other server is up and ready")
		}
		if o.check {
			host := ""
			if o.addr != "" {
				host = o.addr
			}
			switch {
			case o.port != 0:
				t.set("management", tomlString(net.JoinHostPort(host, strconv.Itoa(o.port))), "health checks: from "+o.from["port"])
			case o.addr != "":
				t.set("management", tomlString(net.JoinHostPort(host, "9000")), "health checks: addr from "+o.from["addr"]+", Keycloak's management port 9000")
			default:
				t.set("management", tomlString(":9000"), "health checks on Keycloak's management port (HAProxy checked the traffic port "+port+")")
				noCheckPort = append(noCheckPort, name)
				trafficPort = port
			}
			for _, k := range []string{"inter", "rise", "fall", "slowstart"} {
				if f, ok := o.from[k]; ok {
					if _, seen := first[k]; !seen {
						first[k] = f
						switch k {
						case "inter":
							firstVal.inter = o.inter
						case "rise":
							firstVal.rise = o.rise
						case "fall":
							firstVal.fall = o.fall
						case "slowstart":
							firstVal.slowstart = o.slowstart
						}
					} else if (k == "inter" && o.inter != firstVal.inter) || (k == "rise" && o.rise != firstVal.rise) ||
						(k == "fall" && o.fall != firstVal.fall) || (k == "slowstart" && o.slowstart != firstVal.slowstart) {
						c.warn(l, "kclb has one health.%s for all servers; using the value from %s", healthKey(k), first[k])
					}
				}
			}
			if o.checkSSL {
				c.out.health.set("scheme", tomlString("https"), "from "+o.from["check-ssl"])
				if o.noVerify {
					c.out.health.set("insecure_skip_verify", tomlBool(true), "from "+o.from["verify"]+" (better: health.ca_file)")
				}
			}
		}
		if o.weight == 0 && o.from["weight"] != "" {
			c.fail(l, "weight 0 stops new traffic in HAProxy; kclb needs 1..1000 (use `kclb drain` instead); using 1")
			o.weight = 1
		}
		if o.weight > 1000 {
			o.weight = 1000
		}
		if o.weight > 0 {
			anyWeight = true
		}
		if o.maxconn > 0 {
			cm := ""
			if f := o.from["maxconn"]; f != "" && f != c.from(l) {
				cm = "from " + f
			}
			t.set("maxconn", tomlInt(o.maxconn), cm)
		}
		list = append(list, srv{l: l, t: t, o: o, port: port})
		c.out.servers = append(c.out.servers, t)
	}
	if anyWeight {
		// HAProxy's default weight is 1 and kclb's is 100: write every
		// server's weight so the ratios stay.
		for _, s := range list {
			w, cm := s.o.weight, ""
			if w <= 0 {
				w, cm = 1, "HAProxy's default weight 1 (other servers have a weight)"
			}
			s.t.set("weight", tomlInt(w), cm)
		}
	}

	c.health(s, httpchk, path, list != nil && anyCheck(list, func(i int) bool { return list[i].o.check }), first, firstVal, noCheckPort, trafficPort)
	if !cookie {
		c.out.affinity.set("enabled", tomlBool(false), c.file+" had no cookie persistence; true (kclb's default) keeps each login flow on one Keycloak node and needs secret_file")
	}
}

func anyCheck[T any](list []T, f func(int) bool) bool {
	for i := range list {
		if f(i) {
			return true
		}
	}
	return false
}

func healthKey(opt string) string {
	if opt == "inter" {
		return "interval"
	}
	return opt
}

// health writes [health] from the backend's check settings.
func (c *hapConv) health(s Section, httpchk *Line, path string, checked bool, first map[string]string, v srvOpts, noPort []string, trafficPort string) {
	h := c.out.health
	if !checked {
		h.set("enabled", tomlBool(false), c.file+" checked no server; kclb recommends true (readiness on Keycloak's management port 9000)")
		c.warnSection(s, "no server has 'check', so health checks are off as in HAProxy; enable them (health.enabled) once Keycloak's management port 9000 serves /health/ready (health-enabled=true)")
		return
	}
	if httpchk == nil {
		h.set("enabled", tomlBool(true), "servers have 'check'")
		c.warnSection(s, "HAProxy only checked that the port accepts connections; kclb checks Keycloak's readiness (health.path %q on the management port 9000)", "/health/ready")
	} else {
		cm := "from " + c.from(*httpchk)
		if len(noPort) > 0 {
			cm += " (now on the management port 9000)"
			c.warn(*httpchk, "the checks went to the traffic port %s; Keycloak 25 and later serve /health/* only on the management port 9000 (with health-enabled=true), which kclb checks (server.management = \":9000\")", trafficPort)
		}
		h.set("enabled", tomlBool(true), "servers have 'check'")
		if strings.HasPrefix(path, "/auth/") {
			c.relativePath(*httpchk, "/auth")
		}
		if rest := strings.TrimPrefix(path, c.prefix); !strings.HasPrefix(rest, "/health/") {
			ready := c.prefix + "/health/ready"
			c.warn(*httpchk, "HAProxy checked %s on the traffic port, which only shows that the node answers; kclb checks Keycloak's readiness endpoint %s on the management port 9000 (health-enabled=true)", path, ready)
			path = ready
			cm = "readiness endpoint instead of " + c.file + ":" + strconv.Itoa(httpchk.Num) + "'s page"
		}
		h.set("path", tomlString(path), cm)
		if c.prefix != "" {
			h.set("live_path", tomlString(c.prefix+"/health/live"), "the management interface inherits http-relative-path "+c.prefix)
			h.set("started_path", tomlString(c.prefix+"/health/started"), "the management interface inherits http-relative-path "+c.prefix)
		}
	}
	if f, ok := first["inter"]; ok {
		h.set("interval", tomlDur(v.inter), "from "+f)
	} else {
		h.set("interval", tomlDur(2*time.Second), "HAProxy's default inter")
	}
	interval := 2 * time.Second
	if v.inter > 0 {
		interval = v.inter
	}
	if to, ok := h.vals["timeout"]; ok {
		if d, err := time.ParseDuration(strings.Trim(to.val, `"`)); err == nil && d > interval {
			h.set("timeout", tomlDur(interval), "timeout check capped at the interval")
		}
	} else if interval < 2*time.Second {
		h.set("timeout", tomlDur(interval), "at most health.interval")
	}
	if f, ok := first["rise"]; ok {
		h.set("rise", tomlInt(v.rise), "from "+f)
	} else {
		h.set("rise", tomlInt(2), "HAProxy's default rise")
	}
	if f, ok := first["fall"]; ok {
		h.set("fall", tomlInt(v.fall), "from "+f)
	} else {
		h.set("fall", tomlInt(3), "HAProxy's default fall")
	}
	if f, ok := first["slowstart"]; ok {
		h.set("slowstart", tomlDur(v.slowstart), "from "+f)
	} else {
		h.set("slowstart", tomlDur(0), c.file+" had no slowstart; kclb's default \"60s\" ramps a restarted Keycloak up while its JVM warms")
	}
}

func (c *hapConv) httpCheck(l Line, path *string, defs *srvOpts) {
	a := l.Args
	switch {
	case len(a) >= 3 && a[1] == "expect":
		if strings.Join(a[2:], " ") != "status 200" {
			c.fail(l, "kclb counts a server as ready when health.path answers 200; not imported")
		}
	case len(a) >= 2 && a[1] == "send":
		for i := 2; i+1 < len(a); i += 2 {
			if a[i] == "uri" {
				*path = a[i+1]
			}
		}
	case len(a) >= 4 && a[1] == "connect" && a[2] == "port":
		if n, err := strconv.Atoi(a[3]); err == nil {
			defs.port = n
			if defs.from == nil {
				defs.from = make(map[string]string)
			}
			defs.from["port"] = c.from(l)
		}
	default:
		c.fail(l, msgNotMapped)
	}
}

func (c *hapConv) balance(l Line) {
	if len(l.Args) < 2 {
		c.fail(l, "missing algorithm")
		return
	}
	switch alg := l.Args[1]; {
	case alg == "roundrobin" || alg == "static-rr":
		c.out.backend.set("balance", tomlString("round_robin"), "from "+c.from(l))
	case alg == "leastconn" || alg == "random" || strings.HasPrefix(alg, "random("):
		c.out.backend.set("balance", tomlString("least_request"), "from "+c.from(l))
	default:
		c.warn(l, "kclb balances with least_request or round_robin (affinity keeps sessions on one node); using least_request")
	}
}

// cookie maps "cookie NAME insert ..." onto [affinity] and reports
// whether affinity was configured.
func (c *hapConv) cookie(l Line) bool {
	a := l.Args
	if len(a) < 2 {
		c.fail(l, "missing cookie name")
		return false
	}
	af := c.out.affinity
	af.set("enabled", tomlBool(true), "from "+c.from(l))
	name := a[1]
	af.set("cookie", tomlString(name), "from "+c.from(l))
	if isKeycloakCookie(name) {
		c.warn(l, "cookie %q would clobber one of Keycloak's cookies; using KC_ROUTE", name)
		af.set("cookie", tomlString("KC_ROUTE"), "not "+name+": that name belongs to Keycloak")
	}
	var dropped []string
	for i := 2; i < len(a); i++ {
		switch a[i] {
		case "insert", "indirect", "nocache", "httponly", "secure", "preserve", "postonly":
		case "rewrite", "prefix":
			c.warn(l, "kclb inserts its own cookie; %s mode is not supported", a[i])
		case "maxlife":
			if i+1 < len(a) {
				i++
				if d, err := parseHAProxyTime(a[i]); err == nil {
					af.set("max_age", tomlDur(d), "from "+c.from(l))
				}
			}
		case "maxidle", "domain", "attr":
			i++
			dropped = append(dropped, a[i-1])
		default:
			dropped = append(dropped, a[i])
		}
	}
	if len(dropped) > 0 {
		c.fail(l, "cookie option(s) %s not supported; not imported", strings.Join(dropped, ", "))
	}
	af.set("secret_file", tomlString("/etc/kclb/affinity.key"), "HMAC key, the same file on every edge node: head -c 32 /dev/urandom | base64 > /etc/kclb/affinity.key")
	c.warn(l, "kclb signs the affinity cookie (HttpOnly, and Secure with SameSite=None on HTTPS) and needs a secret shared by all edge nodes: create /etc/kclb/affinity.key (affinity.secret_file); the per-server cookie values are not needed")
	return true
}

// haproxyServerAddr splits a server address into host:port and the port,
// which is "" when the address has none.
func haproxyServerAddr(s string) (string, string, error) {
	for _, p := range []string{"ipv4@", "ipv6@"} {
		s = strings.TrimPrefix(s, p)
	}
	if strings.HasPrefix(s, "/") || strings.Contains(s, "@") {
		return "", "", errString("address " + strconv.Quote(s) + " is not a TCP address")
	}
	if h, p, err := net.SplitHostPort(s); err == nil {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", "", errString("address " + strconv.Quote(s) + ": port " + strconv.Quote(p) + " is not a single port")
		}
		return net.JoinHostPort(h, p), p, nil
	}
	if strings.Count(s, ":") == 1 { // "host:" or similar
		return "", "", errString("address " + strconv.Quote(s) + " is not host:port")
	}
	if ip := net.ParseIP(s); ip != nil || !strings.Contains(s, ":") {
		return s, "", nil
	}
	// HAProxy also accepts an unbracketed IPv6 address followed by :port.
	i := strings.LastIndexByte(s, ':')
	if net.ParseIP(s[:i]) == nil {
		return "", "", errString("address " + strconv.Quote(s) + " is not host:port")
	}
	if n, err := strconv.Atoi(s[i+1:]); err != nil || n < 1 || n > 65535 {
		return "", "", errString("address " + strconv.Quote(s) + " is not host:port")
	}
	return net.JoinHostPort(s[:i], s[i+1:]), s[i+1:], nil
}

type errString string

func (e errString) Error() string { return string(e) }

// sanitizeName replaces characters a kclb server name may not contain.
func sanitizeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '-'
		}
	}
	if len(b) == 0 {
		return "server"
	}
	return string(b)
}

// keycloakCookies are the cookies Keycloak sets itself besides the
// AUTH_SESSION_ID family; the affinity cookie must not reuse their names.
var keycloakCookies = []string{
	"KC_RESTART", "KC_AUTH_SESSION_HASH", "KC_STATE_CHECKER",
	"KEYCLOAK_IDENTITY", "KEYCLOAK_IDENTITY_LEGACY",
	"KEYCLOAK_SESSION", "KEYCLOAK_SESSION_LEGACY",
	"KEYCLOAK_REMEMBER_ME", "KEYCLOAK_LOCALE",
}

func isKeycloakCookie(name string) bool {
	if strings.HasPrefix(strings.ToUpper(name), "AUTH_SESSION_ID") {
		return true
	}
	for _, k := range keycloakCookies {
		if strings.EqualFold(name, k) {
			return true
		}
	}
	return false
}

// relativePath records that Keycloak serves everything under prefix (its
// legacy http-relative-path=/auth), which kclb's public paths must carry.
func (c *hapConv) relativePath(l Line, prefix string) {
	if c.prefix != "" {
		return
	}
	c.prefix = prefix
	var public []string
	for _, p := range []string{"/realms/", "/resources/", "/.well-known/"} {
		public = append(public, prefix+p)
	}
	c.out.paths.set("public", tomlStrings(public), "Keycloak's public paths under "+prefix+", as in "+c.from(l))
	c.info(l, "the %s prefix means Keycloak runs with http-relative-path=%s (the management interface inherits it); paths.public and the health paths carry it", prefix, prefix)
}
