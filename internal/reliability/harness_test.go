package reliability

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kclb/kclb/affinity"
	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/balancer"
	"github.com/kclb/kclb/internal/pathpolicy"
	"github.com/kclb/kclb/proxy"
	"github.com/kclb/kclb/tlsconf"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testSecret = []byte("reliability-secret-0123456789")

// adminNet is the admin network of every test proxy: loopback is outside
// it, so /admin/ from the tests is always refused.
var adminNet = netip.MustParsePrefix("10.0.0.0/8")

// publicPaths are Keycloak's public prefixes plus kcsim's test hooks and
// the paths the raw backends serve.
var publicPaths = []string{"/realms/", "/resources/", "/.well-known/", "/echo", "/bigheader", "/stream", "/raw"}

// affRouter adapts *affinity.Affinity to proxy.Router exactly like
// cmd/kclb does.
type affRouter struct{ a *affinity.Affinity }

func (r affRouter) Route(req *http.Request, servers []*backend.Server, tried *balancer.Tried) (*backend.Server, bool) {
	d := r.a.Pick(req, servers, tried)
	return d.Server, d.SetCookie
}

func (r affRouter) StripRequest(h http.Header) { r.a.StripRequest(h) }

func (r affRouter) Respond(h http.Header, s *backend.Server, setCookie, secure bool) {
	r.a.Respond(h, affinity.Decision{Server: s, SetCookie: setCookie}, secure)
}

var _ proxy.Router = affRouter{}

// lbOptions tunes startLB. Zero fields take short test defaults.
type lbOptions struct {
	backends []backend.Spec // Name defaults to kc1..kcN
	trusted  []netip.Prefix
	maxconn  int                        // global connection limit; 0 none
	pool     backend.PoolOptions        // passed to NewPool
	proxy    func(*proxy.Options)       // last word on handler options
	server   func(*proxy.ServerOptions) // last word on server options
}

// lb is an in-process kclb: one handler behind a plain HTTP/1 listener
// and an HTTPS listener with HTTP/2, sharing ConnStats and the maxconn
// semaphore.
type lb struct {
	pool    *backend.Pool
	aff     *affinity.Affinity
	h       *proxy.Handler
	conns   *proxy.ConnStats
	sem     chan struct{}
	addr    string // plain HTTP/1.1
	tlsAddr string // HTTPS, h2 and http/1.1
	roots   *x509.CertPool
	store   *tlsconf.Store
	certDir string
	// certFile and keyFile are the store's files: overwrite them and
	// call store.Reload to rotate the certificate.
	certFile, keyFile string
}

// startLB builds and serves an lb; everything is closed by t.Cleanup.
func startLB(t testing.TB, o lbOptions) *lb {
	t.Helper()
	specs := append([]backend.Spec(nil), o.backends...)
	for i := range specs {
		if specs[i].Name == "" {
			specs[i].Name = fmt.Sprintf("kc%d", i+1)
		}
	}
	pool, err := backend.NewPool(specs, o.pool)
	if err != nil {
		t.Fatal(err)
	}
	aff, err := affinity.New(affinity.Options{Secret: testSecret, AuthSessionRoute: true, Learn: true}, &balancer.RoundRobin{})
	if err != nil {
		t.Fatal(err)
	}
	po := proxy.Options{
		Pool:           pool,
		Router:         affRouter{aff},
		Policy:         pathpolicy.New(pathpolicy.Options{Public: publicPaths, AdminNetworks: []netip.Prefix{adminNet}}),
		TrustedProxies: o.trusted,
		Security:       proxy.NewSecurityHeaders("max-age=31536000", "nosniff", "no-referrer", "SAMEORIGIN"),
		ConnectTimeout: time.Second,
		ServerTimeout:  2 * time.Second,
		QueueTimeout:   time.Second,
		IdleTimeout:    5 * time.Second,
		ClientTimeout:  2 * time.Second, // the servers' ClientTimeout below
	}
	if o.proxy != nil {
		o.proxy(&po)
	}
	h, err := proxy.New(po)
	if err != nil {
		t.Fatal(err)
	}
	l := &lb{pool: pool, aff: aff, h: h, conns: new(proxy.ConnStats), certDir: t.TempDir()}
	if o.maxconn > 0 {
		l.sem = make(chan struct{}, o.maxconn)
	}
	certFile, keyFile, err := tlsconf.GenerateSelfSigned(l.certDir, []string{"localhost", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	l.certFile, l.keyFile = certFile, keyFile
	l.store, err = tlsconf.NewStore([]tlsconf.Pair{{CertFile: certFile, KeyFile: keyFile}}, tlsconf.Options{HTTP2: true})
	if err != nil {
		t.Fatal(err)
	}
	l.roots = x509.NewCertPool()
	pemBytes, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	l.roots.AppendCertsFromPEM(pemBytes)

	so := proxy.ServerOptions{
		Handler:              h,
		HeaderTimeout:        time.Second,
		ClientTimeout:        2 * time.Second,
		WriteTimeout:         4 * time.Second,
		KeepAlive:            5 * time.Second,
		MaxHeaderBytes:       64 << 10,
		MaxConcurrentStreams: 100,
		Conns:                l.conns,
	}
	// TestH2SuiteOnStdlibServer runs the HTTP/2 tests again on net/http's
	// HTTP/2 server, the listener.stdlib_http2 fallback.
	so.StdlibHTTP2 = os.Getenv(stdlibH2Env) == "1"
	if o.server != nil {
		o.server(&so)
	}
	var servers []*proxy.Server
	serve := func(tlsOn bool) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if l.sem != nil {
			ln = proxy.LimitListener(ln, l.sem)
		}
		s := so
		if tlsOn {
			tc := l.store.TLSConfig().Clone()
			tc.NextProtos = []string{"h2", "http/1.1"}
			s.TLS, s.HTTP2 = tc, true
		}
		srv := proxy.NewServer(s)
		servers = append(servers, srv)
		go func() {
			if tlsOn {
				srv.ServeTLS(ln, "", "")
			} else {
				srv.Serve(ln)
			}
		}()
		return ln.Addr().String()
	}
	l.addr = serve(false)
	l.tlsAddr = serve(true)
	t.Cleanup(func() {
		for _, s := range servers {
			s.Close()
		}
		h.Close()
	})
	return l
}

// url returns an http:// URL of path on the plain listener.
func (l *lb) url(path string) string { return "http://" + l.addr + path }

// surl returns an https:// URL of path on the TLS listener.
func (l *lb) surl(path string) string {
	_, port, _ := net.SplitHostPort(l.tlsAddr)
	return "https://localhost:" + port + path
}

// client returns an HTTP client for the lb: HTTP/2 over TLS when h2,
// HTTP/1.1 otherwise (plain for http:// URLs).
func (l *lb) client(t testing.TB, h2 bool) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: l.roots, ServerName: "localhost"},
		ForceAttemptHTTP2: h2,
		DialContext:       (&net.Dialer{}).DialContext,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// waitFor polls cond every 10 ms until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// idle waits until the lb has no client connection open and no request
// in flight to any server: nothing leaked.
func (l *lb) idle(t testing.TB) {
	t.Helper()
	waitFor(t, time.Duration(idleWait), "client connections and in-flight requests to drain", func() bool {
		if l.conns.Counts().Open != 0 {
			return false
		}
		for _, s := range l.pool.Servers() {
			if c := s.Counters(); c.InFlight != 0 || c.Queued != 0 {
				return false
			}
		}
		return true
	})
}

// rawResult is what came back on a raw client connection.
type rawResult struct {
	data   string
	closed bool // the server closed the connection (EOF)
}

// status returns the status code of the first response, or 0.
func (r rawResult) status() int {
	var minor, code int
	if _, err := fmt.Sscanf(r.data, "HTTP/1.%d %d", &minor, &code); err != nil {
		return 0
	}
	return code
}

// rawHTTP writes req on a new plain connection to addr and reads until
// the server closes it or wait passes.
func rawHTTP(t testing.TB, addr, req string, wait time.Duration) rawResult {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	b, err := io.ReadAll(c)
	return rawResult{data: string(b), closed: err == nil}
}

// recorder is a loopback HTTP/1.1 backend that records every request
// URI it receives and answers 200 "ok", after ?sleep=<duration> if
// given (at most 10 s).
type recorder struct {
	addr           string
	mu             sync.Mutex // guards uris
	uris           []string
	n              atomic.Int64
	inflight, peak atomic.Int64 // concurrent requests now and at most
}

func startRecorder(t testing.TB) *recorder {
	t.Helper()
	rec := &recorder{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		rec.inflight.Add(1)
		defer rec.inflight.Add(-1)
		for {
			cur, peak := rec.inflight.Load(), rec.peak.Load()
			if cur <= peak || rec.peak.CompareAndSwap(peak, cur) {
				break
			}
		}
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil && d > 0 {
			select {
			case <-time.After(min(d, 10*time.Second)):
			case <-r.Context().Done():
			}
		}
		rec.mu.Lock()
		rec.uris = append(rec.uris, r.RequestURI)
		rec.mu.Unlock()
		rec.n.Add(1)
		w.Header().Set("Content-Length", "3")
		io.WriteString(w, "ok\n")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return rec
}

// saw reports whether any recorded URI contains s.
func (rec *recorder) saw(s string) bool {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, u := range rec.uris {
		if strings.Contains(u, s) {
			return true
		}
	}
	return false
}

// readHead reads an HTTP/1 request head from br.
func readHead(br *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		line, err := br.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			return b.String(), err
		}
		if line == "\r\n" || line == "\n" {
			return b.String(), nil
		}
	}
}
