package config

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// validator collects problems found after decoding.
type validator struct {
	problems []Problem
	// noFiles skips every check that opens a file the configuration
	// names (certificates, keys, secret and token files): the
	// syntax-only check of `kclb check --syntax-only`.
	noFiles bool
}

func (v *validator) problem(path, format string, args ...any) {
	v.problems = append(v.problems, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func idx(list string, i int) string { return list + "[" + strconv.Itoa(i) + "]" }

// resolvePaths makes relative file paths absolute against baseDir.
func (c *Config) resolvePaths(baseDir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) && baseDir != "" {
			*p = filepath.Join(baseDir, *p)
		}
	}
	abs(&c.Global.StateFile)
	for i := range c.TLS.Certificates {
		abs(&c.TLS.Certificates[i].Cert)
		abs(&c.TLS.Certificates[i].Key)
		abs(&c.TLS.Certificates[i].OCSPFile)
	}
	for i := range c.Listeners {
		abs(&c.Listeners[i].ClientCA)
	}
	abs(&c.Affinity.SecretFile)
	abs(&c.Health.CAFile)
	abs(&c.Health.TokenSecretFile)
	abs(&c.Admin.Socket)
	abs(&c.Admin.TokenFile)
	abs(&c.Pair.SecretFile)
}

// resolve fills derived defaults. It is idempotent.
func (c *Config) resolve(v *validator) {
	if c.Global.Name == "" {
		if h, err := os.Hostname(); err == nil && h != "" {
			c.Global.Name = h
		} else {
			c.Global.Name = "kclb"
		}
	}
	tlsPort := 0
	for _, l := range c.Listeners {
		if l.TLS {
			if _, port, err := splitHostPort(l.Bind); err == nil {
				tlsPort = port
				break
			}
		}
	}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.RedirectHTTPS && l.RedirectPort == 0 {
			l.RedirectPort = tlsPort
		}
	}
	for i := range c.Backend.Servers {
		s := &c.Backend.Servers[i]
		if s.Management == "" {
			s.Management = ":9000"
		}
		mh, mp, err := net.SplitHostPort(s.Management)
		if err == nil && mh == "" {
			if ah, _, err := net.SplitHostPort(s.Address); err == nil && ah != "" {
				s.Management = net.JoinHostPort(ah, mp)
			}
		}
		if s.MaxConn == 0 {
			s.MaxConn = c.Backend.DefaultMaxConn
		}
	}
	c.resolveKey(v)
}

func (c *Config) resolveKey(v *validator) {
	a := &c.Affinity
	if !a.Enabled {
		return
	}
	switch {
	case a.Secret != "" && a.SecretFile != "":
		v.problem("affinity.secret_file", "set only one of affinity.secret and affinity.secret_file")
	case a.Secret != "":
		if len(a.Secret) < 16 {
			v.problem("affinity.secret", "is %d bytes; want at least 16", len(a.Secret))
			return
		}
		a.Key = []byte(a.Secret)
	case a.SecretFile != "" && v.noFiles:
		// Syntax only: the key is not read.
	case a.SecretFile != "":
		b, err := os.ReadFile(a.SecretFile)
		if err != nil {
			v.problem("affinity.secret_file", "%s", fileError(err))
			return
		}
		b = bytes.TrimSpace(b)
		if len(b) < 16 {
			v.problem("affinity.secret_file", "%q holds %d bytes; want at least 16", a.SecretFile, len(b))
			return
		}
		a.Key = b
	case len(a.Key) == 0:
		a.Key = []byte(rand.Text())
		c.Warnings = append(c.Warnings, "affinity.secret: neither secret nor secret_file is set; "+
			"using a random key, so affinity cookies break on restart and differ between edge nodes")
	}
}

// fileError describes why a file cannot be used, without Go's "open" prefix.
func fileError(err error) string {
	var pe *os.PathError
	if e, ok := err.(*os.PathError); ok {
		pe = e
	}
	if pe == nil {
		return err.Error()
	}
	switch {
	case os.IsNotExist(pe.Err):
		return fmt.Sprintf("%q does not exist", pe.Path)
	case os.IsPermission(pe.Err):
		return fmt.Sprintf("%q is not readable (permission denied)", pe.Path)
	default:
		return fmt.Sprintf("%q cannot be read: %v", pe.Path, pe.Err)
	}
}

// checkReadable reports a problem unless path names a readable regular
// file, and returns whether it does. With noFiles it checks nothing and
// returns false.
func (v *validator) checkReadable(key, path string) bool {
	if v.noFiles {
		return false
	}
	f, err := os.Open(path)
	if err != nil {
		v.problem(key, "%s", fileError(err))
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		v.problem(key, "%q cannot be read: %v", path, err)
		return false
	}
	if st.IsDir() {
		v.problem(key, "%q is a directory, not a file", path)
		return false
	}
	var b [1]byte
	if _, err := f.Read(b[:]); err != nil && st.Size() > 0 {
		v.problem(key, "%q cannot be read: %v", path, err)
		return false
	}
	return true
}

// checkNotBlank is checkReadable for a file holding a secret: kclb run
// refuses (or would always fail with) one holding only white space.
func (v *validator) checkNotBlank(key, path string) {
	if !v.checkReadable(key, path) {
		return
	}
	if b, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(b)) == 0 {
		v.problem(key, "%q is empty", path)
	}
}

// splitHostPort splits "host:port" and checks the port is 1..65535.
func splitHostPort(s string) (string, int, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if !strings.Contains(s, ":") || (strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]")) {
			return "", 0, fmt.Errorf("%q is missing a port", s)
		}
		if strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "[") {
			return "", 0, fmt.Errorf("%q is not host:port (put IPv6 addresses in brackets: \"[::1]:443\")", s)
		}
		return "", 0, fmt.Errorf("%q is not host:port", s)
	}
	if port == "" {
		return "", 0, fmt.Errorf("%q is missing a port", s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", 0, fmt.Errorf("%q: port %q is not a number in 1..65535", s, port)
	}
	return host, n, nil
}

// validHost reports whether h is an IP literal or a DNS host name.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// checkAddr checks a host:port where the host may be a name; emptyHost
// allows an empty host.
func (v *validator) checkAddr(key, s string, emptyHost bool) {
	if s == "" {
		v.problem(key, "is required")
		return
	}
	h, _, err := splitHostPort(s)
	if err != nil {
		v.problem(key, "%s", err)
		return
	}
	if h == "" && !emptyHost {
		v.problem(key, "%q is missing a host", s)
		return
	}
	if h != "" && !validHost(h) {
		v.problem(key, "%q: %q is not an IP address or host name", s, h)
	}
}

func (v *validator) positive(key string, d Duration) {
	if d.Duration <= 0 {
		v.problem(key, "must be greater than 0, got %s", d.Duration)
	}
}

func (v *validator) nonNegative(key string, d Duration) {
	if d.Duration < 0 {
		v.problem(key, "must not be negative, got %s", d.Duration)
	}
}

func (v *validator) intRange(key string, n, lo, hi int) {
	if n < lo || n > hi {
		v.problem(key, "%d is out of range %d..%d", n, lo, hi)
	}
}

func (v *validator) atLeast(key string, n, lo int) {
	if n < lo {
		v.problem(key, "%d is less than %d", n, lo)
	}
}

// checkHeaderValue rejects characters that cannot appear in a header value.
func (v *validator) checkHeaderValue(key, s string) {
	for _, r := range s {
		if r < ' ' && r != '\t' || r == 0x7f {
			v.problem(key, "contains a control character; header values cannot")
			return
		}
	}
}

// MinTokenBytes is the shortest admin bearer token accepted: 32 bytes
// (e.g. `openssl rand -hex 16`, or longer).
const MinTokenBytes = 32

// checkToken reports a token file whose token, white space trimmed, is
// shorter than MinTokenBytes. Unreadable files are checkReadable's.
func (v *validator) checkToken(key, path string) {
	if v.noFiles {
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	if n := len(bytes.TrimSpace(b)); n > 0 && n < MinTokenBytes { // empty: checkNotBlank
		v.problem(key, "the token in %q is %d bytes; use at least %d (e.g. `openssl rand -hex 32 > %s`)", path, n, MinTokenBytes, path)
	}
}

// isHostPort reports whether s is a DNS name (letters, digits, '-', '.',
// '_'), an IPv4 address or a bracketed IPv6 address, with an optional
// ":port" of 1 to 65535.
func isHostPort(s string) bool {
	host := s
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.HasSuffix(s, "]") {
		p, err := strconv.Atoi(s[i+1:])
		if err != nil || p < 1 || p > 65535 || s[i+1] == '+' || s[i+1] == '-' {
			return false
		}
		host = s[:i]
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		a, err := netip.ParseAddr(host[1 : len(host)-1])
		return err == nil && a.Is6() && a.Zone() == ""
	}
	if host == "" || len(host) > 253 {
		return false
	}
	for _, c := range []byte(host) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

// validate checks every rule and records problems in v.
func (c *Config) validate(v *validator) {
	g := c.Global
	if strings.ContainsFunc(g.Name, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		v.problem("global.name", "contains a control character")
	}
	v.atLeast("global.maxconn", g.MaxConn, 1)
	if g.PublicHost != "" && !isHostPort(g.PublicHost) {
		v.problem("global.public_host", "%q is not a host name or IP address with an optional :port", g.PublicHost)
	}
	v.nonNegative("global.shutdown_grace", g.ShutdownGrace)

	// [timeouts] and [limits] are proxy.Options.Validate's and
	// proxy.ServerOptions.Validate's.

	c.validateListeners(v)
	c.validateBackend(v)

	p := c.Paths
	for i, s := range p.Public {
		if !strings.HasPrefix(s, "/") {
			v.problem(idx("paths.public", i), "%q must start with \"/\"", s)
		}
	}

	h := c.Headers
	v.checkHeaderValue("headers.hsts", h.HSTS)
	v.checkHeaderValue("headers.content_type_options", h.ContentTypeOptions)
	v.checkHeaderValue("headers.referrer_policy", h.ReferrerPolicy)
	v.checkHeaderValue("headers.frame_options", h.FrameOptions)
	for i, s := range h.FrameExempt {
		if s == "" {
			v.problem(idx("headers.frame_exempt", i), "is empty (it would exempt every path)")
		}
	}

	// The affinity cookie's name and max_age are affinity.Options.Validate's.

	c.validateHealth(v)
	c.validateRateLimits(v)

	ad := c.Admin
	if ad.SocketMode > 0o777 {
		v.problem("admin.socket_mode", "%s is not a permission mode", ad.SocketMode)
	}
	if g := ad.SocketGroup; g != "" && ad.Socket != "" && !v.noFiles {
		// kclb run chowns the socket to it and refuses an unknown group.
		if _, err := strconv.Atoi(g); err != nil {
			if _, err := user.LookupGroup(g); err != nil {
				v.problem("admin.socket_group", "group %q does not exist on this host", g)
			}
		}
	}
	if ad.TCP != "" {
		v.checkAddr("admin.tcp", ad.TCP, true)
		if ad.TokenFile == "" {
			v.problem("admin.token_file", "is required when admin.tcp is set")
		}
	}
	if ad.TokenFile != "" {
		v.checkNotBlank("admin.token_file", ad.TokenFile)
		v.checkToken("admin.token_file", ad.TokenFile)
	}
	for i, h := range ad.Hosts {
		if !isHostPort(h) {
			v.problem(idx("admin.hosts", i), "%q is not a host name or IP address with an optional :port", h)
		}
	}

	c.validateVRRP(v)
	c.validatePair(v)
}

func (c *Config) validatePair(v *validator) {
	p := c.Pair
	v.positive("pair.interval", p.Interval)
	if p.Peer == "" {
		if p.Listen != "" {
			v.problem("pair.listen", "needs pair.peer (the other instance's pair.listen)")
		}
		if p.SecretFile != "" {
			v.problem("pair.secret_file", "needs pair.peer (the other instance's pair.listen)")
		}
		return
	}
	v.checkAddr("pair.peer", p.Peer, false)
	v.checkAddr("pair.listen", p.Listen, true)
	if p.Listen != "" && p.Listen == p.Peer {
		v.problem("pair.peer", "%q is this instance's own pair.listen; name the other instance's", p.Peer)
	}
	if p.SecretFile == "" {
		v.problem("pair.secret_file", "is required with pair.peer")
		return
	}
	v.checkNotBlank("pair.secret_file", p.SecretFile)
	if v.noFiles {
		return
	}
	if b, err := os.ReadFile(p.SecretFile); err == nil {
		if n := len(bytes.TrimSpace(b)); n > 0 && n < MinPairSecretBytes {
			v.problem("pair.secret_file", "the secret in %q is %d bytes; use at least %d (e.g. `openssl rand -hex 32 > %s`, copied to both instances)",
				p.SecretFile, n, MinPairSecretBytes, p.SecretFile)
		}
	}
}

func (c *Config) validateListeners(v *validator) {
	if len(c.Listeners) == 0 {
		v.problem("listener", "no listeners configured (add a [[listener]])")
	}
	type bound struct {
		host string
		port int
		i    int
	}
	var binds []bound
	names := make(map[string]int)
	anyTLS := false
	for i, l := range c.Listeners {
		key := idx("listener", i)
		if l.Name == "" {
			v.problem(key+".name", "is required")
		} else if j, dup := names[l.Name]; dup {
			v.problem(key+".name", "%q is already used by listener[%d]", l.Name, j)
		} else {
			names[l.Name] = i
		}
		if l.Bind == "" {
			v.problem(key+".bind", "is required")
		} else if h, port, err := splitHostPort(l.Bind); err != nil {
			v.problem(key+".bind", "%s", err)
		} else if a, perr := netip.ParseAddr(h); h != "" && perr != nil {
			v.problem(key+".bind", "%q: host %q is not an IP address (leave it empty to bind all addresses)", l.Bind, h)
		} else {
			b := bound{host: h, port: port, i: i}
			if h != "" {
				b.host = a.Unmap().String()
				if a.IsUnspecified() {
					b.host = ""
				}
			}
			for _, o := range binds {
				if o.port == b.port && (o.host == b.host || o.host == "" || b.host == "") {
					v.problem(key+".bind", "%q conflicts with listener[%d] (%q)", l.Bind, o.i, c.Listeners[o.i].Bind)
					break
				}
			}
			binds = append(binds, b)
		}
		if l.TLS {
			anyTLS = true
			if l.RedirectHTTPS {
				v.problem(key+".redirect_https", "only applies to plain listeners (this one has tls = true)")
			}
		} else if l.HTTP2 {
			v.problem(key+".http2", "requires tls = true (HTTP/2 is offered through TLS ALPN)")
		}
		switch {
		case l.ProxyProtocol && len(l.ProxyProtocolFrom) == 0:
			v.problem(key+".proxy_protocol_from", "is required when proxy_protocol is set (the networks of the PROXY senders; anyone else could claim any address)")
		case !l.ProxyProtocol && len(l.ProxyProtocolFrom) > 0:
			v.problem(key+".proxy_protocol_from", "only applies with proxy_protocol = true")
		}
		for j, p := range l.ProxyProtocolFrom {
			if p != p.Masked() {
				v.problem(idx(key+".proxy_protocol_from", j), "%q has host bits set (did you mean %q?)", p, p.Masked())
			}
		}
		switch {
		case l.ClientAuth != ClientAuthOff && !l.TLS:
			v.problem(key+".client_auth", "requires tls = true (client certificates are asked for in the TLS handshake)")
		case l.ClientAuth != ClientAuthOff && l.ClientCA == "":
			v.problem(key+".client_ca", "is required when client_auth is %q", l.ClientAuth)
		case l.ClientAuth == ClientAuthOff && l.ClientCA != "":
			v.problem(key+".client_ca", "has no effect while client_auth is \"off\" (set client_auth = \"optional\" or \"required\")")
		case l.ClientCA != "":
			v.checkReadable(key+".client_ca", l.ClientCA)
		}
		if l.RedirectHTTPS && l.RedirectPort == 0 && !l.TLS {
			v.problem(key+".redirect_port", "is required when redirect_https is set and no listener has tls = true")
		} else if l.RedirectPort != 0 {
			v.intRange(key+".redirect_port", l.RedirectPort, 1, 65535)
		}
	}
	if anyTLS && len(c.TLS.Certificates) == 0 {
		for i, l := range c.Listeners {
			if l.TLS {
				v.problem(idx("listener", i)+".tls", "needs at least one [[tls.certificate]]")
			}
		}
	}
	for i, cert := range c.TLS.Certificates {
		key := idx("tls.certificate", i)
		if cert.Cert == "" {
			v.problem(key+".cert", "is required")
		} else {
			v.checkReadable(key+".cert", cert.Cert)
		}
		if cert.Key == "" {
			v.problem(key+".key", "is required")
		} else {
			v.checkReadable(key+".key", cert.Key)
		}
		if cert.OCSPFile != "" {
			v.checkReadable(key+".ocsp_file", cert.OCSPFile)
		}
	}
}

func validServerName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// validRoute reports whether s can appear in a cookie value.
func validRoute(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == ',' || c == ';' || c == '\\' {
			return false
		}
	}
	return true
}

// checkName checks the name of entry i of list: required, made of
// [A-Za-z0-9._-], and not in names (the names of the entries before it,
// to which it is added).
func (v *validator) checkName(list string, i int, name string, names map[string]int) {
	key := idx(list, i) + ".name"
	switch {
	case name == "":
		v.problem(key, "is required")
	case !validServerName(name):
		v.problem(key, "%q may only contain letters, digits, '.', '_' and '-'", name)
	default:
		if j, dup := names[name]; dup {
			v.problem(key, "%q is already used by %s[%d]", name, list, j)
		} else {
			names[name] = i
		}
	}
}

func (c *Config) validateBackend(v *validator) {
	b := c.Backend
	for i, p := range b.TrustedProxies {
		if p != p.Masked() {
			v.problem(idx("backend.trusted_proxies", i), "%q has host bits set (did you mean %q?)", p, p.Masked())
		}
	}
	if b.DNSName != "" {
		if !validHost(b.DNSName) {
			v.problem("backend.dns_name", "%q is not a DNS name", b.DNSName)
		}
		v.intRange("backend.dns_port", b.DNSPort, 1, 65535)
		v.positive("backend.dns_interval", b.DNSInterval)
		v.intRange("backend.dns_management_port", b.DNSManagementPort, 1, 65535)
	} else if len(b.Servers) == 0 {
		v.problem("backend.server", "no servers configured (add a [[backend.server]] or set backend.dns_name)")
	}
	names := make(map[string]int)
	routes := make(map[string]int)
	for i, s := range b.Servers {
		key := idx("backend.server", i)
		v.checkName("backend.server", i, s.Name, names)
		v.checkAddr(key+".address", s.Address, false)
		v.checkAddr(key+".management", s.Management, true)
		if s.Route != "" {
			if !validRoute(s.Route) {
				v.problem(key+".route", "%q contains characters not allowed in a cookie", s.Route)
			} else if j, dup := routes[s.Route]; dup {
				v.problem(key+".route", "%q is already used by backend.server[%d]", s.Route, j)
			} else {
				routes[s.Route] = i
			}
		}
	}
	for i, p := range c.Paths.AdminNetworks {
		if p != p.Masked() {
			v.problem(idx("paths.admin_networks", i), "%q has host bits set (did you mean %q?)", p, p.Masked())
		}
	}
}

// validateHealth checks the [health] rules that are config's: the
// files, and the keys that only apply together. The checker's own rules
// (paths, durations, counts, realm, the token probe) are
// health.Options.Validate's, and the pool's share (panic threshold,
// passive ejection) backend.PoolOptions.Validate's.
func (c *Config) validateHealth(v *validator) {
	h := c.Health
	if h.CAFile != "" {
		if h.Scheme != SchemeHTTPS {
			v.problem("health.ca_file", "only applies with scheme = \"https\"")
		} else if v.checkReadable("health.ca_file", h.CAFile) {
			// kclb run refuses a bundle without a certificate; so does check.
			if b, err := os.ReadFile(h.CAFile); err == nil && !x509.NewCertPool().AppendCertsFromPEM(b) {
				v.problem("health.ca_file", "%q holds no PEM certificate", h.CAFile)
			}
		}
	}
	if h.InsecureSkipVerify && h.Scheme != SchemeHTTPS {
		v.problem("health.insecure_skip_verify", "only applies with scheme = \"https\"")
	}
	if h.Interval.Duration > 0 && h.Timeout.Duration > h.Interval.Duration {
		v.problem("health.timeout", "%s is longer than health.interval (%s)", h.Timeout.Duration, h.Interval.Duration)
	}
	switch h.ClusterCheck {
	case "off", "report", "eject":
	default:
		v.problem("health.cluster_check", "%q is not one of \"off\", \"report\", \"eject\"", h.ClusterCheck)
	}
	if h.TokenClientID != "" && h.TokenSecretFile != "" {
		v.checkNotBlank("health.token_secret_file", h.TokenSecretFile)
	}
}

// validateVRRP checks what [[vrrp.instance]] entries need as entries of
// the file: a name, not used twice. The instances' own rules (ranges,
// address families, one VRID per interface) are vrrp.Options.Validate's
// and vrrp.Check's, reported through LoadOptions.Check.
func (c *Config) validateVRRP(v *validator) {
	names := make(map[string]int)
	for i, in := range c.VRRP.Instances {
		key := idx("vrrp.instance", i)
		if in.Name == "" {
			v.problem(key+".name", "is required")
		} else if j, dup := names[in.Name]; dup {
			v.problem(key+".name", "%q is already used by vrrp.instance[%d]", in.Name, j)
		} else {
			names[in.Name] = i
		}
	}
}

func (c *Config) validateRateLimits(v *validator) {
	names := make(map[string]int)
	for i, r := range c.RateLimits {
		key := idx("rate_limit", i)
		v.checkName("rate_limit", i, r.Name, names)
		// paths, methods, burst and ipv6_prefix are ratelimit.Rule.Validate's.
		if r.Key != "client" {
			v.problem(key+".key", "%q is not a known key (only \"client\": the client address)", r.Key)
		}
		for j, p := range r.Exempt {
			if p != p.Masked() {
				v.problem(idx(key+".exempt", j), "%q has host bits set (did you mean %q?)", p, p.Masked())
			}
		}
	}
}
