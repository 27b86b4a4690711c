package proxy

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Switch is an http.Handler that forwards to a handler swapped atomically
// (on reload); requests in flight keep the handler they started with. The
// zero value answers 503 until Store is called.
type Switch struct{ h atomic.Pointer[http.Handler] }

// Store makes h the handler for new requests.
func (s *Switch) Store(h http.Handler) { s.h.Store(&h) }

// ServeHTTP implements http.Handler.
func (s *Switch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p := s.h.Load(); p != nil {
		(*p).ServeHTTP(w, r)
		return
	}
	writeError(w, http.StatusServiceUnavailable)
}

// ServerOptions configures a public listener's http.Server. Zero fields
// take the defaults named.
type ServerOptions struct {
	// Handler serves requests. Required.
	Handler http.Handler
	// TLS, if non-nil, makes the listener HTTPS.
	TLS *tls.Config
	// HTTP2 enables HTTP/2 (ALPN h2) on a TLS listener.
	HTTP2 bool
	// HeaderTimeout bounds reading request headers. Default 10 s.
	HeaderTimeout time.Duration
	// ClientTimeout bounds reading a whole request. Default 50 s.
	ClientTimeout time.Duration
	// WriteTimeout bounds writing a response. Default 100 s (client plus
	// server timeout, so a slow backend is not cut by it).
	WriteTimeout time.Duration
	// KeepAlive closes idle client connections. Default 60 s.
	KeepAlive time.Duration
	// MaxHeaderBytes bounds request headers. Default 64 KiB.
	MaxHeaderBytes int
	// MaxConcurrentStreams bounds HTTP/2 streams per connection.
	// Default 250.
	MaxConcurrentStreams int
	// ErrorLog receives net/http's own errors (TLS handshake failures).
	// Nil discards them.
	ErrorLog *slog.Logger
	// Conns, if non-nil, counts the server's connections, including
	// requests net/http refuses before the handler runs. It may be
	// shared by several servers.
	Conns *ConnStats
}

// NewServer returns an http.Server for one public listener. Serve it with
// Serve (plain) or ServeTLS(ln, "", "") when TLS is set.
func NewServer(o ServerOptions) *http.Server {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.HeaderTimeout, 10*time.Second)
	def(&o.ClientTimeout, 50*time.Second)
	def(&o.WriteTimeout, 100*time.Second)
	def(&o.KeepAlive, 60*time.Second)
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = 64 << 10
	}
	if o.MaxConcurrentStreams <= 0 {
		o.MaxConcurrentStreams = 250
	}
	srv := &http.Server{
		Handler:           o.Handler,
		TLSConfig:         o.TLS,
		ReadHeaderTimeout: o.HeaderTimeout,
		ReadTimeout:       o.ClientTimeout,
		WriteTimeout:      o.WriteTimeout,
		IdleTimeout:       o.KeepAlive,
		MaxHeaderBytes:    o.MaxHeaderBytes,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:      o.MaxConcurrentStreams,
			MaxReceiveBufferPerStream: 1 << 20,
		},
	}
	if o.Conns != nil {
		srv.Handler = o.Conns.wrap(o.Handler)
		srv.ConnContext = o.Conns.connContext
		srv.ConnState = o.Conns.connState
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	if o.TLS != nil && o.HTTP2 {
		srv.Protocols.SetHTTP2(true)
	}
	if o.ErrorLog != nil {
		srv.ErrorLog = slog.NewLogLogger(o.ErrorLog.Handler(), slog.LevelDebug)
	} else {
		srv.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelDebug)
	}
	return srv
}

// RedirectHandler answers every request with a 308 to the same URL over
// HTTPS on port (443 is left out of the Location).
func RedirectHandler(port int) http.Handler {
	suffix := ""
	if port != 443 && port != 0 {
		suffix = ":" + strconv.Itoa(port)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
			if strings.Contains(host, ":") {
				host = "[" + host + "]"
			}
		}
		if host == "" || strings.ContainsAny(host, "/\\@?#") {
			writeError(w, http.StatusBadRequest)
			return
		}
		target := "https://" + host + suffix + r.URL.RequestURI()
		w.Header().Set("Location", target)
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusPermanentRedirect)
	})
}

// LimitListener bounds the connections accepted across every listener
// sharing sem (kclb's global maxconn): Accept waits while all slots are
// taken, leaving further clients in the kernel's backlog.
func LimitListener(ln net.Listener, sem chan struct{}) net.Listener {
	return &limitListener{Listener: ln, sem: sem}
}

type limitListener struct {
	net.Listener
	sem chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	l.sem <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, sem: l.sem}, nil
}

type limitConn struct {
	net.Conn
	sem  chan struct{}
	done atomic.Bool
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	if c.done.CompareAndSwap(false, true) {
		<-c.sem
	}
	return err
}
