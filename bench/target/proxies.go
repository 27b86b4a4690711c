package target

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kclb/kclb/bench/procstat"
	"github.com/kclb/kclb/internal/kclbconf"
)

// Security headers every proxy adds (the seed configuration's, as in
// docs/performance.md).
var securityHeaders = [][2]string{
	{"Strict-Transport-Security", "max-age=31536000; includeSubDomains"},
	{"X-Frame-Options", "SAMEORIGIN"},
	{"X-Content-Type-Options", "nosniff"},
	{"Referrer-Policy", "no-referrer"},
}

// Direct is "no proxy": clients talk to the first backend. Its process is
// the backend's own, given by the caller.
type Direct struct {
	// Group measures the first backend's process.
	Group procstat.Group
	addr  string
}

var _ Target = (*Direct)(nil)

// Name implements Target.
func (d *Direct) Name() string { return "direct" }

// Start implements Target.
func (d *Direct) Start(_ context.Context, env Env) error {
	d.addr = env.Backends[0].Traffic
	return nil
}

// HTTPAddr implements Target.
func (d *Direct) HTTPAddr() string { return d.addr }

// HTTPSAddr implements Target: the stand-ins have no TLS.
func (d *Direct) HTTPSAddr() string { return "" }

// Proc implements Target.
func (d *Direct) Proc() procstat.Group { return d.Group }

// Stop implements Target.
func (d *Direct) Stop() error { return nil }

// proxyBase holds what the process-based proxies share.
type proxyBase struct {
	name       string
	http, tls  string // listen host:port
	proc       *Proc
	children   bool
	configFile string
	logFile    string
}

func (p *proxyBase) Name() string      { return p.name }
func (p *proxyBase) HTTPAddr() string  { return p.http }
func (p *proxyBase) HTTPSAddr() string { return p.tls }
func (p *proxyBase) Proc() procstat.Group {
	if p.proc == nil {
		return procstat.Group{}
	}
	return procstat.Group{Root: p.proc.Pid(), WithChildren: p.children}
}

func (p *proxyBase) Stop() error {
	err := p.proc.Stop()
	p.proc = nil
	return err
}

func (p *proxyBase) launch(ctx context.Context, env Env, bin string, args []string, config string) error {
	p.configFile = filepath.Join(env.Dir, p.name+".conf")
	p.logFile = filepath.Join(env.Dir, p.name+".log")
	if err := os.WriteFile(p.configFile, []byte(config), 0o644); err != nil {
		return fmt.Errorf("target %s: %w", p.name, err)
	}
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "CONFIG", p.configFile)
	}
	proc, err := StartProc(bin, args, p.logFile)
	if err != nil {
		return err
	}
	p.proc = proc
	if err := WaitHTTP(ctx, proc, p.http, env.ReadyPath, p.logFile); err != nil {
		p.Stop()
		return fmt.Errorf("target %s: %w", p.name, err)
	}
	if err := WaitTCP(ctx, p.tls); err != nil || proc.Exited() {
		p.Stop()
		return fmt.Errorf("target %s: TLS listener %s not up or process gone (%v); log: %s", p.name, p.tls, err, tail(p.logFile))
	}
	return nil
}

// ForwardedFields are the request fields kclb adds to every request it
// forwards with proxy_headers = "xforwarded" (the bench's): each peer's
// configuration adds them too, so the backends get the same work from
// every target (TestProxiesServeThroughConfig).
var ForwardedFields = []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port", "X-Request-Id"}

// HAProxy runs Debian's haproxy in the foreground with a configuration like
// docs/performance.md's: 2 threads, roundrobin, cookie insert, httpchk on
// the management port, the security headers, and the request fields kclb
// adds (ForwardedFields).
type HAProxy struct {
	proxyBase
	// Bin is the haproxy binary; default "haproxy".
	Bin string
}

var _ Target = (*HAProxy)(nil)

// NewHAProxy listens on httpAddr and tlsAddr.
func NewHAProxy(httpAddr, tlsAddr string) *HAProxy {
	return &HAProxy{proxyBase: proxyBase{name: "haproxy", http: httpAddr, tls: tlsAddr}, Bin: "haproxy"}
}

// Config renders the configuration for env.
func (h *HAProxy) Config(env Env) string {
	var b strings.Builder
	maxconn := max(env.MaxConn, 1000)
	// no strict-limits: with maxconn near the hard open-file limit HAProxy
	// asks for more descriptors than it may have (2 per connection plus
	// reserve); it then warns and runs, which is what the idle scenario
	// (client connections only) needs.
	fmt.Fprintf(&b, `global
    maxconn %d
    no strict-limits
    nbthread 2
    ssl-default-bind-options ssl-min-ver TLSv1.2
    tune.ssl.default-dh-param 2048

defaults
    mode http
    maxconn %d
    timeout connect 5s
    timeout client  30s
    timeout server  30s
    timeout http-keep-alive 30s
    option forwardfor
    option redispatch
    retries 3

frontend fe
    bind %s
    bind %s ssl crt %s alpn h2,http/1.1
    http-request set-header X-Forwarded-Proto https if { ssl_fc }
    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }
    http-request set-header X-Forwarded-Host %%[req.hdr(host),field(1,:)]
    http-request set-header X-Forwarded-Port %%[dst_port]
    unique-id-format %%[uuid()]
    unique-id-header X-Request-Id
`, maxconn, maxconn, h.http, h.tls, env.Cert.Combined)
	for _, hd := range securityHeaders {
		fmt.Fprintf(&b, "    http-response set-header %s %q\n", hd[0], hd[1])
	}
	b.WriteString(`    default_backend kc

backend kc
    balance roundrobin
    cookie KC_ROUTE insert indirect nocache
    option httpchk GET /health/ready
    http-check expect status 200
`)
	for _, s := range env.Backends {
		_, mport, _ := strings.Cut(s.Mgmt, ":")
		fmt.Fprintf(&b, "    server %s %s check port %s inter 2s cookie %s\n", s.Name, s.Traffic, mport, s.Name)
	}
	return b.String()
}

// Start implements Target.
func (h *HAProxy) Start(ctx context.Context, env Env) error {
	return h.launch(ctx, env, h.Bin, []string{"-db", "-f", "CONFIG"}, h.Config(env))
}

// Nginx runs nginx (master + one worker per core) with a configuration like
// docs/performance.md's: upstream keepalive 64, the security headers, the
// request fields kclb adds (ForwardedFields).
// nginx open source has no active health checks and no cookie insert.
type Nginx struct {
	proxyBase
	// Bin is the nginx binary; default "nginx".
	Bin string
}

var _ Target = (*Nginx)(nil)

// NewNginx listens on httpAddr and tlsAddr.
func NewNginx(httpAddr, tlsAddr string) *Nginx {
	return &Nginx{proxyBase: proxyBase{name: "nginx", http: httpAddr, tls: tlsAddr, children: true}, Bin: "nginx"}
}

// Config renders the configuration for env.
func (n *Nginx) Config(env Env) string {
	var b strings.Builder
	d := env.Dir
	fmt.Fprintf(&b, `worker_processes auto;
worker_rlimit_nofile %d;
pid %s/nginx.pid;
error_log %s/nginx-error.log warn;
events { worker_connections %d; }
http {
    access_log off;
    client_body_temp_path %s/nginx-tmp;
    proxy_temp_path %s/nginx-tmp;
    fastcgi_temp_path %s/nginx-tmp;
    uwsgi_temp_path %s/nginx-tmp;
    scgi_temp_path %s/nginx-tmp;
    upstream kc {
`, 2*max(env.MaxConn, 1000)+100, d, d, max(env.MaxConn, 1000)+100, d, d, d, d, d)
	for _, s := range env.Backends {
		fmt.Fprintf(&b, "        server %s;\n", s.Traffic)
	}
	fmt.Fprintf(&b, `        keepalive 64;
    }
    server {
        listen %s;
        listen %s ssl http2;
        ssl_certificate     %s;
        ssl_certificate_key %s;
        ssl_protocols TLSv1.2 TLSv1.3;
        keepalive_requests 1000000;
        proxy_buffer_size 64k;
        proxy_buffers 8 64k;
        location / {
            proxy_pass http://kc;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Port $server_port;
            proxy_set_header X-Request-Id $request_id;
`, n.http, n.tls, env.Cert.CertFile, env.Cert.KeyFile)
	for _, hd := range securityHeaders {
		fmt.Fprintf(&b, "            add_header %s %q always;\n", hd[0], hd[1])
	}
	b.WriteString("        }\n    }\n}\n")
	return b.String()
}

// Start implements Target.
func (n *Nginx) Start(ctx context.Context, env Env) error {
	if err := os.MkdirAll(filepath.Join(env.Dir, "nginx-tmp"), 0o755); err != nil {
		return fmt.Errorf("target nginx: %w", err)
	}
	return n.launch(ctx, env, n.Bin, []string{"-e", filepath.Join(env.Dir, "nginx-error.log"), "-g", "daemon off;", "-c", "CONFIG"}, n.Config(env))
}

// Kclb runs `kclb run -c FILE` with a configuration rendered from the same
// topology: round robin, affinity cookie, health checks on the management
// port every 2 s without slow start, the security headers, access log off.
type Kclb struct {
	proxyBase
	// Bin is the kclb binary. Required.
	Bin string
}

var _ Target = (*Kclb)(nil)

// NewKclb listens on httpAddr and tlsAddr.
func NewKclb(bin, httpAddr, tlsAddr string) *Kclb {
	return &Kclb{proxyBase: proxyBase{name: "kclb", http: httpAddr, tls: tlsAddr}, Bin: bin}
}

// Config renders the configuration for env.
func (k *Kclb) Config(env Env) string {
	var f kclbconf.File
	f.Global("bench", "maxconn", max(env.MaxConn, 1000)+1000, "log_level", "warn", "shutdown_grace", time.Second).
		Listener("http", k.http, "tls", false, "http2", false).
		Listener("https", k.tls, "tls", true, "http2", true).
		Certificate(env.Cert.CertFile, env.Cert.KeyFile).
		Section("backend", "balance", "round_robin", "proxy_headers", "xforwarded", "default_maxconn", 0)
	for _, s := range env.Backends {
		f.Server(s.Name, s.Traffic, s.Mgmt, "route", s.Route)
	}
	f.Section("headers", "hsts", "max-age=31536000; includeSubDomains", "content_type_options", "nosniff",
		"referrer_policy", "no-referrer", "frame_options", "SAMEORIGIN").
		Section("affinity", "enabled", true, "cookie", "KC_ROUTE", "secret", "kclb-bench-affinity-secret-0123456789").
		Section("health", "enabled", true, "interval", 2*time.Second, "timeout", time.Second, "rise", 1, "fall", 3, "slowstart", "0s").
		Section("admin", "socket", "")
	return f.String()
}

// Start implements Target.
func (k *Kclb) Start(ctx context.Context, env Env) error {
	return k.launch(ctx, env, k.Bin, []string{"run", "-c", "CONFIG"}, k.Config(env))
}
