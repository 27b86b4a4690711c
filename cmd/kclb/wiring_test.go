package main

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"encoding"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/kclb/kclb/affinity"
	"github.com/kclb/kclb/health"
	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/balancer"
	"github.com/kclb/kclb/internal/config"
	"github.com/kclb/kclb/internal/configmap"
	"github.com/kclb/kclb/internal/daemon"
	"github.com/kclb/kclb/internal/discovery"
	"github.com/kclb/kclb/proxy"
	"github.com/kclb/kclb/tlsconf"
	"github.com/kclb/kclb/vrrp"
	"golang.org/x/crypto/ocsp"
)

// consumedElsewhere names the configuration keys that do not reach the
// runtime through the daemon.Spec configmap.Spec builds, where they are
// consumed instead, and the test that pins them there. Keep it small: a
// key belongs here only when its consumer cannot take a pure option
// value. Every other key must change what configmap.Spec returns.
var consumedElsewhere = map[string]string{
	"rate_limit.key": "config validation only: \"client\" (the client address) is the one key there is; TestParseInvalid",
}

// builtOnce are the parts of the Spec the process builds at start only
// (the pool, the logger, the connection semaphore, the admin interface,
// the pair channel):
// a reload cannot apply a change to them, so restartOnlyChanges must
// name it.
var builtOnce = []string{"Spec.Pool.", "Spec.Log.", "Spec.ConnSlots", "Spec.Admin.", "Spec.Name", "Spec.Pair"}

// buildOptions is configmap.Spec without what decides nothing the
// runtime does (where the Spec came from, the restart-only renderings,
// the listeners' reload identities, the pair fingerprint that digests
// other settings), so every difference it shows is one
// the runtime is built with.
func buildOptions(c *config.Config) daemon.Spec {
	s := *configmap.Spec(c)
	s.Source, s.RestartOnly, s.PairFingerprint = daemon.Source{}, nil, nil
	for i := range s.Listeners {
		s.Listeners[i].Ident = nil
	}
	return s
}

// restartOnlyChanges is configmap.RestartOnlyChanges.
var restartOnlyChanges = configmap.RestartOnlyChanges

// wiringBase writes the files a full configuration needs into dir and
// returns a configuration that switches every feature on, so that every
// key, including those only read when another is set (DNS discovery, the
// token probe, VRRP version 2 authentication), is consumed.
func wiringBase(t *testing.T, dir string) (base string, files map[string]string) {
	t.Helper()
	cert, key, _ := testCert(t, dir)
	other := filepath.Join(dir, "other")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	cert2, key2, _ := testCert(t, other)
	pem, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	pem2, err := os.ReadFile(cert2)
	if err != nil {
		t.Fatal(err)
	}
	files = map[string]string{"cert": cert, "key": key, "cert2": cert2, "key2": key2}
	for name, content := range map[string]string{
		"ca": string(pem), "ca2": string(pem2),
		"probe": "probe-secret", "probe2": "probe-secret-2", "token2": "admin-token-2-0123456789abcdef0123456789",
		"affinity": "affinity-secret-from-file-0123456789", "token": "admin-token-0123456789abcdef0123456789",
		"pair": "pair-secret-0123456789abcdef0123456789", "pair2": "pair-secret-2-0123456789abcdef0123456789",
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		files[name] = p
	}
	files["ocsp"] = selfSignedOCSP(t, cert, key, filepath.Join(dir, "cert.ocsp"))
	base = fmt.Sprintf(`
[global]
name = "edge1"
maxconn = 1000
log_format = "text"
log_level = "info"
access_log = true
access_log_query = false
shutdown_grace = "10s"
state_file = %[6]q

[timeouts]
connect = "5s"

[limits]

[[listener]]
name = "https"
bind = "127.0.0.1:8443"
tls = true
http2 = true
proxy_protocol = true
proxy_protocol_from = ["10.3.0.0/16"]
client_auth = "optional"
client_ca = %[3]q

[[listener]]
name = "http"
bind = "127.0.0.1:8080"
redirect_https = true

[[tls.certificate]]
cert = %[1]q
key = %[2]q

[[tls.certificate]]
cert = %[8]q
key = %[9]q

[backend]
trusted_proxies = ["10.1.0.0/16"]
dns_name = "keycloak.example.org"

[[backend.server]]
name = "keycloak1"
address = "127.0.0.1:18081"
management = "127.0.0.1:19001"
route = "kc1"

[paths]
allow_js = false

[[rate_limit]]
name = "login"
paths = ["/realms/*/login-actions/authenticate"]
methods = ["POST"]
rate = "10/m"
burst = 5
exempt = ["10.2.0.0/16"]

[affinity]
secret = "0123456789abcdef0123"

[health]
scheme = "https"
ca_file = %[3]q
realm = "test"
well_known = false
cluster_check = "eject"
lb_check = false
token_client_id = "kclb-probe"
token_secret_file = %[4]q
token_interval = "30s"

[admin]
socket = %[7]q
tcp = "127.0.0.1:9999"
token_file = %[5]q

[[vrrp.instance]]
name = "vi1"
interface = "lo"
vrid = 51
version = 2
auth_pass = "pass1"
vips = ["203.0.113.100/32"]
unicast_peers = ["203.0.113.11"]
notify_master = "/bin/true"

[pair]
peer = "10.0.0.2:9101"
listen = "10.0.0.1:9101"
secret_file = %[10]q
interval = "2s"
`, cert, key, files["ca"], files["probe"], files["token"],
		filepath.Join(dir, "state.json"), filepath.Join(dir, "admin.sock"), cert2, key2, files["pair"])
	return base, files
}

// selfSignedOCSP writes a good OCSP response for the self-signed
// certificate in certFile, signed by its own key, to out.
func selfSignedOCSP(t *testing.T, certFile, keyFile, out string) string {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	der, err := ocsp.CreateResponse(pair.Leaf, pair.Leaf, ocsp.Response{Status: ocsp.Good, SerialNumber: pair.Leaf.SerialNumber,
		ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour)}, pair.PrivateKey.(crypto.Signer))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, der, 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

// wiringOverrides change a key where the generic mutation (flip, +1,
// append) would give an invalid file, and make only the companion change
// validity requires.
func wiringOverrides(files map[string]string) map[string]func(c *config.Config) {
	return map[string]func(c *config.Config){
		"listener.bind": func(c *config.Config) { c.Listeners[0].Bind = "127.0.0.1:9443" },
		"listener.tls": func(c *config.Config) {
			c.Listeners[0].TLS, c.Listeners[0].HTTP2 = false, false
			c.Listeners[0].ClientAuth, c.Listeners[0].ClientCA = config.ClientAuthOff, ""
		},
		"listener.http2":     func(c *config.Config) { c.Listeners[0].HTTP2 = false },
		"admin.socket_group": func(c *config.Config) { c.Admin.SocketGroup = "0" },
		"admin.tcp":          func(c *config.Config) { c.Admin.TCP = "127.0.0.1:9998" },
		"admin.token_file":   func(c *config.Config) { c.Admin.TokenFile = files["token2"] },
		"admin.hosts":        func(c *config.Config) { c.Admin.Hosts = []string{"kclb.example.org"} },
		"listener.proxy_protocol": func(c *config.Config) {
			c.Listeners[0].ProxyProtocol, c.Listeners[0].ProxyProtocolFrom = false, nil
		},
		"listener.client_ca":      func(c *config.Config) { c.Listeners[0].ClientCA = files["ca2"] },
		"listener.redirect_https": func(c *config.Config) { c.Listeners[1].RedirectHTTPS = false },
		"listener.redirect_port":  func(c *config.Config) { c.Listeners[1].RedirectPort = 443 },
		// A second [[tls.certificate]] holds the other pair, so swapping
		// one file of the first pair keeps every file a valid pair.
		"tls.certificate.cert": func(c *config.Config) {
			c.TLS.Certificates[0].Cert, c.TLS.Certificates[1].Cert = c.TLS.Certificates[1].Cert, c.TLS.Certificates[0].Cert
			c.TLS.Certificates[0].Key, c.TLS.Certificates[1].Key = c.TLS.Certificates[1].Key, c.TLS.Certificates[0].Key
		},
		"tls.certificate.key": func(c *config.Config) {
			c.TLS.Certificates[0].Cert, c.TLS.Certificates[1].Cert = c.TLS.Certificates[1].Cert, c.TLS.Certificates[0].Cert
			c.TLS.Certificates[0].Key, c.TLS.Certificates[1].Key = c.TLS.Certificates[1].Key, c.TLS.Certificates[0].Key
		},
		"tls.certificate.ocsp_file": func(c *config.Config) { c.TLS.Certificates[0].OCSPFile = files["ocsp"] },
		"backend.server.address":    func(c *config.Config) { c.Backend.Servers[0].Address = "127.0.0.1:18082" },
		"backend.server.management": func(c *config.Config) {
			c.Backend.Servers[0].Management = "127.0.0.1:19002"
		},
		"paths.blocked_status": func(c *config.Config) { c.Paths.BlockedStatus = 403 },
		"rate_limit.rate":      func(c *config.Config) { c.RateLimits[0].Rate.Count = 20 },
		"rate_limit.methods":   func(c *config.Config) { c.RateLimits[0].Methods = append(c.RateLimits[0].Methods, "PUT") },
		"affinity.secret_file": func(c *config.Config) {
			c.Affinity.Secret, c.Affinity.SecretFile = "", files["affinity"]
		},
		"health.scheme": func(c *config.Config) {
			c.Health.Scheme, c.Health.CAFile = config.SchemeHTTP, ""
		},
		"health.ca_file":           func(c *config.Config) { c.Health.CAFile = files["ca2"] },
		"health.cluster_check":     func(c *config.Config) { c.Health.ClusterCheck = "report" },
		"health.token_secret_file": func(c *config.Config) { c.Health.TokenSecretFile = files["probe2"] },
		"vrrp.instance.source_address": func(c *config.Config) {
			c.VRRP.Instances[0].SourceAddress = netip.MustParseAddr("203.0.113.10")
		},
		"pair.peer":        func(c *config.Config) { c.Pair.Peer = "10.0.0.3:9101" },
		"pair.listen":      func(c *config.Config) { c.Pair.Listen = "10.0.0.1:9102" },
		"pair.secret_file": func(c *config.Config) { c.Pair.SecretFile = files["pair2"] },
		"vrrp.instance.version": func(c *config.Config) {
			c.VRRP.Instances[0].Version, c.VRRP.Instances[0].AuthPass = 3, ""
		},
	}
}

// TestEveryKeyReachesTheRuntime pins issue 18, item 4: every key of the
// configuration structs, found by reflection over their TOML tags, either
// changes what buildOptions builds when it changes, or is listed in
// consumedElsewhere. A new key without either fails here.
func TestEveryKeyReachesTheRuntime(t *testing.T) {
	dir := t.TempDir()
	baseText, files := wiringBase(t, dir)
	overrides := wiringOverrides(files)
	load := func(t *testing.T, text string) *config.Config {
		t.Helper()
		c, err := configmap.Parse([]byte(text), dir)
		if err != nil {
			t.Fatalf("configuration does not parse: %v\n%s", err, text)
		}
		return c
	}
	base := load(t, baseText)
	baseOpts := buildOptions(base)
	constructAll(t, baseOpts)

	keys := configKeys(reflect.TypeFor[config.Config](), "")
	for k := range consumedElsewhere {
		if !slices.Contains(keys, k) {
			t.Errorf("consumedElsewhere names %q, which is not a configuration key", k)
		}
	}
	for k := range overrides {
		if !slices.Contains(keys, k) {
			t.Errorf("override for %q, which is not a configuration key", k)
		}
	}
	for _, key := range keys {
		t.Run(key, func(t *testing.T) {
			if why, ok := consumedElsewhere[key]; ok {
				if why == "" {
					t.Fatal("consumedElsewhere entry without a reason")
				}
				t.Logf("consumed elsewhere: %s", why)
				return
			}
			c := load(t, baseText)
			if set, ok := overrides[key]; ok {
				set(c)
			} else if err := mutate(configField(c, key)); err != nil {
				t.Fatalf("%v: add an entry to wiringOverrides", err)
			}
			var buf bytes.Buffer
			if err := toml.NewEncoder(&buf).Encode(c); err != nil {
				t.Fatal(err)
			}
			changed := load(t, buf.String())
			if reflect.DeepEqual(changed, base) {
				t.Fatalf("the mutation did not change the configuration")
			}
			constructAll(t, buildOptions(changed))
			diff := firstDiff(reflect.ValueOf(baseOpts), reflect.ValueOf(buildOptions(changed)), "Spec")
			if diff == "" {
				t.Fatalf("changing %s from %v to %v changes nothing the runtime is built with: wire it in options.go, or list it in consumedElsewhere with a reason",
					key, configField(base, key).Interface(), configField(changed, key).Interface())
			}
			t.Logf("%s reaches %s", key, diff)
			for _, once := range builtOnce {
				if strings.HasPrefix(diff, once) && len(restartOnlyChanges(base, changed)) == 0 {
					t.Errorf("%s reaches %s, which the process builds once, but a reload changing it would not warn: add it to restartOnlyChanges", key, diff)
				}
			}
		})
	}
}

// constructAll builds every runtime object that takes no socket from ro,
// so a configuration that kclb check accepts can never be refused by a
// runtime package's own validation when kclb run starts.
func constructAll(t *testing.T, ro daemon.Spec) {
	t.Helper()
	if _, err := tlsconf.NewStore(ro.TLSPairs, ro.TLS); err != nil {
		t.Fatalf("tlsconf.NewStore: %v", err)
	}
	pool, err := backend.NewPool(ro.Servers, ro.Pool)
	if err != nil {
		t.Fatalf("backend.NewPool: %v", err)
	}
	sel, err := balancer.New(ro.Balancer)
	if err != nil {
		t.Fatalf("balancer.New: %v", err)
	}
	var router proxy.Router = proxy.BalancerRouter{Selector: sel}
	if ro.Affinity != nil {
		a, err := affinity.New(*ro.Affinity, sel)
		if err != nil {
			t.Fatalf("affinity.New: %v", err)
		}
		router = affinity.Router{A: a}
	}
	ho := ro.Handler
	ho.Pool, ho.Router = pool, router
	h, err := proxy.New(ho)
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	h.Close()
	if _, err := health.New(pool.Servers, pool, ro.Checks.Health); err != nil {
		t.Fatalf("health.New: %v", err)
	}
	if d := ro.Checks.Discovery; d != nil {
		if _, err := discovery.New(pool, *d); err != nil {
			t.Fatalf("discovery.New: %v", err)
		}
	}
	for _, o := range ro.VRRP {
		if _, err := vrrp.New(o); err != nil {
			t.Fatalf("vrrp.New: %v", err)
		}
	}
}

// configKeys lists the dotted TOML keys of every leaf field of t, with
// list entries ([[listener]], [[backend.server]], ...) under the list's
// name.
func configKeys(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("toml"), ",")[0]
		if tag == "-" || !f.IsExported() {
			continue
		}
		if tag == "" {
			panic("config field " + t.Name() + "." + f.Name + " has no toml tag")
		}
		key := prefix + tag
		ft := f.Type
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct && !isLeaf(ft.Elem()) {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && !isLeaf(ft) {
			out = append(out, configKeys(ft, key+".")...)
			continue
		}
		out = append(out, key)
	}
	return out
}

// isLeaf reports whether t is written as one TOML value (Duration,
// netip.Prefix, ...).
func isLeaf(t reflect.Type) bool {
	return reflect.PointerTo(t).Implements(reflect.TypeFor[encoding.TextUnmarshaler]())
}

// configField returns the settable field of c named by key; list keys
// address the first entry.
func configField(c *config.Config, key string) reflect.Value {
	v := reflect.ValueOf(c).Elem()
	for part := range strings.SplitSeq(key, ".") {
		if v.Kind() == reflect.Slice {
			v = v.Index(0)
		}
		found := false
		for i := range v.NumField() {
			if strings.Split(v.Type().Field(i).Tag.Get("toml"), ",")[0] == part {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			panic("no config key " + key)
		}
	}
	return v
}

// mutate changes v to another valid value of its type.
func mutate(v reflect.Value) error {
	switch p := v.Addr().Interface().(type) {
	case *config.Duration:
		p.Duration += time.Second
		return nil
	case *[]netip.Prefix:
		*p = append(*p, netip.MustParsePrefix("192.0.2.0/24"))
		return nil
	case *[]netip.Addr:
		*p = append(*p, netip.MustParseAddr("192.0.2.1"))
		return nil
	case *[]string:
		next := "/extra/"
		if len(*p) > 0 {
			next = (*p)[0] + "x"
		}
		*p = append(*p, next)
		return nil
	}
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int:
		v.SetInt(v.Int() + 1)
	case reflect.Float64:
		v.SetFloat(v.Float() + 0.25)
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Uint8, reflect.Uint32:
		// Enums and modes: the next value if it has a spelling, else the
		// previous one.
		old := v.Uint()
		v.SetUint(old + 1)
		if m, ok := v.Interface().(encoding.TextMarshaler); ok {
			if _, err := m.MarshalText(); err != nil {
				v.SetUint(old - 1)
			}
		}
	default:
		return fmt.Errorf("no mutation for %s", v.Type())
	}
	return nil
}

// firstDiff returns the path of the first difference between a and b, or
// "" if they are equal. Functions and loggers compare by being set or not
// (pure conversions leave hooks to the instance); everything else
// compares deeply, unexported fields included.
func firstDiff(a, b reflect.Value, path string) string {
	if a.Type() != b.Type() {
		return path + " (type)"
	}
	switch a.Kind() {
	case reflect.Func, reflect.Chan:
		if a.IsNil() != b.IsNil() {
			return path
		}
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			if a.IsNil() != b.IsNil() {
				return path
			}
			return ""
		}
		if a.Type() == reflect.TypeFor[*slog.Logger]() {
			return ""
		}
		return firstDiff(a.Elem(), b.Elem(), path)
	case reflect.Interface:
		if a.IsNil() || b.IsNil() {
			if a.IsNil() != b.IsNil() {
				return path
			}
			return ""
		}
		return firstDiff(a.Elem(), b.Elem(), path)
	case reflect.Struct:
		for i := range a.NumField() {
			if d := firstDiff(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name); d != "" {
				return d
			}
		}
	case reflect.Slice, reflect.Array:
		if a.Len() != b.Len() {
			return path + " (length)"
		}
		for i := range a.Len() {
			if d := firstDiff(a.Index(i), b.Index(i), fmt.Sprintf("%s[%d]", path, i)); d != "" {
				return d
			}
		}
	case reflect.Map:
		if a.Len() != b.Len() {
			return path + " (length)"
		}
		for _, k := range a.MapKeys() {
			bv := b.MapIndex(k)
			if !bv.IsValid() {
				return fmt.Sprintf("%s[%v]", path, k)
			}
			if d := firstDiff(a.MapIndex(k), bv, fmt.Sprintf("%s[%v]", path, k)); d != "" {
				return d
			}
		}
	case reflect.Bool:
		if a.Bool() != b.Bool() {
			return path
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if a.Int() != b.Int() {
			return path
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if a.Uint() != b.Uint() {
			return path
		}
	case reflect.Float32, reflect.Float64:
		if a.Float() != b.Float() {
			return path
		}
	case reflect.String:
		if a.String() != b.String() {
			return path
		}
	case reflect.UnsafePointer:
		if a.Pointer() != b.Pointer() {
			return path
		}
	default:
		panic("firstDiff: unhandled kind " + a.Kind().String() + " at " + path)
	}
	return ""
}

// TestZeroMeansWhatTheDocsSay pins issue 18, item 4 where a key's zero
// value means "none" in the configuration and "default" in the runtime
// package: each is converted to the package's spelling of "none".
func TestZeroMeansWhatTheDocsSay(t *testing.T) {
	dir := t.TempDir()
	base, _ := wiringBase(t, dir)
	for _, tc := range []struct {
		name, key, value string // value replaces the key in its table
		ok               func(ro daemon.Spec, c *config.Config) bool
	}{
		{"no queue", "queue_size", "0", func(ro daemon.Spec, _ *config.Config) bool { return ro.Handler.QueueSize < 0 }},
		{"no retries", "retries", "0", func(ro daemon.Spec, _ *config.Config) bool { return ro.Handler.Retries < 0 }},
		{"no slow start", "slowstart", `"0s"`, func(ro daemon.Spec, _ *config.Config) bool { return ro.Checks.Slowstart == 0 }},
		{"no passive ejection", "passive_fails", "0", func(ro daemon.Spec, _ *config.Config) bool { return ro.Pool.PassiveFails < 0 }},
		{"session cookie", "max_age", `"0s"`, func(ro daemon.Spec, _ *config.Config) bool { return ro.Affinity.Session }},
		{"no gratuitous ARP", "garp_repeat", "0", func(ro daemon.Spec, _ *config.Config) bool { return ro.VRRP[0].GARPRepeat < 0 }},
		{"no second ARP burst", "garp_delay", `"0s"`, func(ro daemon.Spec, _ *config.Config) bool { return ro.VRRP[0].GARPDelay < 0 }},
		{"no tracking", "track_weight", "0", func(ro daemon.Spec, _ *config.Config) bool { return ro.VRRP[0].TrackWeight == 0 }},
		{"unlimited servers", "default_maxconn", "0", func(ro daemon.Spec, _ *config.Config) bool { return ro.Servers[0].MaxConn == 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Every key above is absent from the base; add it to its table.
			table := map[string]string{"queue_size": "[limits]", "retries": "[limits]", "slowstart": "[health]",
				"passive_fails": "[health]", "max_age": "[affinity]", "garp_repeat": "[[vrrp.instance]]",
				"garp_delay": "[[vrrp.instance]]", "track_weight": "[[vrrp.instance]]", "default_maxconn": "[backend]"}[tc.key]
			if !strings.Contains(base, table+"\n") || strings.Contains(base, "\n"+tc.key+" =") {
				t.Fatalf("base configuration: want %s without %s", table, tc.key)
			}
			text := strings.Replace(base, table+"\n", table+"\n"+tc.key+" = "+tc.value+"\n", 1)
			c, err := configmap.Parse([]byte(text), dir)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.ok(buildOptions(c), c) {
				t.Fatalf("%s = %s does not mean what configuration.md says", tc.key, tc.value)
			}
		})
	}
}

// TestTrafficProbesSpeakHTTP pins that the traffic-port probes use plain
// HTTP like the proxy, whatever health.scheme says about the management
// port (the health package would otherwise use the management scheme).
func TestTrafficProbesSpeakHTTP(t *testing.T) {
	dir := t.TempDir()
	base, _ := wiringBase(t, dir) // scheme = "https"
	c, err := configmap.Parse([]byte(base), dir)
	if err != nil {
		t.Fatal(err)
	}
	if h := buildOptions(c).Checks.Health; h.Scheme != "https" || h.TrafficScheme != "http" {
		t.Fatalf("Scheme %q TrafficScheme %q, want https and http", h.Scheme, h.TrafficScheme)
	}
}
