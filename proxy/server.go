package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

// ServerOptions configures a public listener's Server. Zero fields take
// the defaults named.
type ServerOptions struct {
	// Handler serves requests. Required.
	Handler http.Handler
	// TLS, if non-nil, makes the listener HTTPS. Its NextProtos are kept;
	// if empty, they are set from HTTP2.
	TLS *tls.Config
	// HTTP2 enables HTTP/2 (ALPN h2) on a TLS listener.
	HTTP2 bool
	// StdlibHTTP1 serves HTTP/1.1 with net/http's server instead of
	// kclb's own (the default, which runs one goroutine per connection
	// and reuses every per-request structure). It is a fallback.
	StdlibHTTP1 bool
	// StdlibHTTP2 serves HTTP/2 with net/http's server instead of kclb's
	// own (the default, over x/net/http2's Framer and hpack: a reader and
	// a writer goroutine per connection and the Handler's per stream,
	// frames of concurrent streams coalesced into one write). It is a
	// fallback. With StdlibHTTP1, net/http serves HTTP/2 too.
	StdlibHTTP2 bool
	// HeaderTimeout bounds reading request headers (and the TLS
	// handshake). Default 10 s.
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
	// ErrorLog receives the servers' own errors (TLS handshake failures,
	// refused heads) at debug level. Nil discards them.
	ErrorLog *slog.Logger
	// Conns, if non-nil, counts the server's connections, including
	// requests refused before the handler runs. It may be shared by
	// several servers.
	Conns *ConnStats
}

// Server serves one public listener: HTTP/1.1 with kclb's own server
// (or net/http's with StdlibHTTP1), HTTP/2 over TLS with kclb's own (or
// net/http's with StdlibHTTP2).
// Serve and ServeTLS may be called for several listeners; Shutdown and
// Close end them all.
type Server struct {
	o       ServerOptions
	std     *http.Server // the HTTP/1 fallback, or HTTP/2 behind h2
	own     bool         // kclb's HTTP/1.1 server accepts the connections
	tlsConf *tls.Config
	baseCtx context.Context
	stop    context.CancelFunc

	h2     *handoffListener // HTTP/2 connections for std; nil unless StdlibHTTP2
	h2once sync.Once

	h2streams sync.Pool // *h2stream of kclb's HTTP/2 server

	closing atomic.Bool
	// noKeepAlive makes every response close its connection (a planned
	// VRRP handover, SetKeepAlives).
	noKeepAlive atomic.Bool
	// serving counts the Serve loops running; handshakes the TLS
	// connections whose protocol is not decided yet (an HTTP/2 one must
	// still reach std after Shutdown began).
	serving    sync.WaitGroup
	handshakes atomic.Int64
	// restacks counts idle connections moved to a new goroutine
	// (h1conn.restackAfter), for the tests.
	restacks atomic.Int64
	// heldSends counts the responses written by the wait for the next
	// request (h1conn.sendHeld), added when each connection closes, for
	// the tests.
	heldSends atomic.Int64

	mu        sync.Mutex // guards listeners, conns and h2conns
	listeners map[net.Listener]struct{}
	conns     map[*h1conn]struct{}
	h2conns   map[*h2conn]struct{} // kclb's HTTP/2 server's connections

	readBufs, writeBufs sync.Pool
}

// NewServer returns the Server for one public listener.
func NewServer(o ServerOptions) *Server {
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
	if o.ErrorLog == nil {
		o.ErrorLog = discardLogger()
	}
	s := &Server{
		o:         o,
		own:       !o.StdlibHTTP1,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*h1conn]struct{}),
		h2conns:   make(map[*h2conn]struct{}),
	}
	s.baseCtx, s.stop = context.WithCancel(context.Background())
	s.readBufs.New = func() any { b := make([]byte, h1ReadBuf); return &b }
	s.writeBufs.New = func() any { return bufio.NewWriterSize(nil, h1WriteBuf) }
	if o.TLS != nil {
		s.tlsConf = o.TLS
		if len(o.TLS.NextProtos) == 0 {
			s.tlsConf = o.TLS.Clone()
			s.tlsConf.NextProtos = []string{"http/1.1"}
			if o.HTTP2 {
				s.tlsConf.NextProtos = []string{"h2", "http/1.1"}
			}
		}
	}
	if !s.own || (o.TLS != nil && o.HTTP2 && o.StdlibHTTP2) {
		s.std = newStdServer(o)
	}
	if s.own && s.std != nil {
		s.h2 = newHandoffListener()
	}
	return s
}

// newStdServer returns the net/http server for o.
func newStdServer(o ServerOptions) *http.Server {
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
		ErrorLog: slog.NewLogLogger(o.ErrorLog.Handler(), slog.LevelDebug),
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
	return srv
}

// Serve accepts connections on ln (TLS ones when ServerOptions.TLS is
// set) until Shutdown or Close, then returns http.ErrServerClosed.
func (s *Server) Serve(ln net.Listener) error {
	if !s.own {
		if s.o.TLS != nil {
			return s.std.ServeTLS(ln, "", "")
		}
		return s.std.Serve(ln)
	}
	if !s.track(ln, true) {
		return http.ErrServerClosed
	}
	defer s.track(ln, false)
	defer s.serving.Done()
	if s.h2 != nil {
		s.h2once.Do(func() {
			// Owned by s: it ends when Shutdown or Close closes s.h2.
			go s.std.Serve(s.h2)
		})
	}
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return http.ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: back off, as
			// net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.o.ErrorLog.Debug("accept failed", "err", err, "retry", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if s.o.TLS != nil {
			s.handshakes.Add(1) // until serve decides the protocol
		}
		c := s.newConn(nc)
		go c.serve() // owned by s: Close closes nc, Shutdown waits for it
	}
}

// HTTP1 names the server that speaks HTTP/1.1 on the listener: "kclb"
// or "net/http".
func (s *Server) HTTP1() string {
	if s.own {
		return "kclb"
	}
	return "net/http"
}

// HTTP2 names the server that speaks HTTP/2 on the listener: "kclb",
// "net/http", or "off" (no TLS, or HTTP/2 off).
func (s *Server) HTTP2() string {
	switch {
	case s.o.TLS == nil || !s.o.HTTP2:
		return "off"
	case s.own && !s.o.StdlibHTTP2:
		return "kclb"
	}
	return "net/http"
}

// ServeTLS is Serve; the certificates come from ServerOptions.TLS, so
// certFile and keyFile must be empty.
func (s *Server) ServeTLS(ln net.Listener, certFile, keyFile string) error {
	if certFile != "" || keyFile != "" {
		return errors.New("proxy: ServeTLS takes its certificates from ServerOptions.TLS")
	}
	if s.o.TLS == nil {
		return errors.New("proxy: ServeTLS without ServerOptions.TLS")
	}
	return s.Serve(ln)
}

func (s *Server) track(ln net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closing.Load() {
			return false
		}
		s.listeners[ln] = struct{}{}
		s.serving.Add(1)
	} else {
		delete(s.listeners, ln)
	}
	return true
}

// closeListeners stops accepting; it is the first step of Shutdown and
// Close.
func (s *Server) closeListeners() {
	s.mu.Lock()
	s.closing.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	if !s.own {
		return s.std.Close()
	}
	s.closeListeners()
	s.mu.Lock()
	for c := range s.conns {
		c.nc.Close()
	}
	for c := range s.h2conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	s.stop()
	if s.h2 != nil {
		s.h2.Close()
	}
	if s.std != nil {
		s.std.Close()
	}
	return nil
}

// Shutdown stops accepting, closes idle connections and waits for the
// others to finish the request they serve (their responses say
// Connection: close), until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.own {
		return s.std.Shutdown(ctx)
	}
	s.closeListeners()
	s.serving.Wait()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var h2err chan error
	for {
		if h2err == nil && s.std != nil && s.handshakes.Load() == 0 {
			// Every HTTP/2 connection accepted has reached std: it
			// may stop accepting now (it closes s.h2).
			h2err = make(chan error, 1)
			go func() { h2err <- s.std.Shutdown(ctx) }() // ends with ctx at the latest
		}
		if s.closeIdle() && (s.std == nil || h2err != nil) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	if h2err != nil {
		return <-h2err
	}
	return nil
}

// closeIdle closes the connections waiting for a request (new ones after
// 5 s, like net/http) and reports whether none is left.
func (s *Server) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		st := c.state.Load()
		if st == stateIdle && c.state.CompareAndSwap(stateIdle, stateClosed) ||
			st == stateNew && time.Since(c.start) > 5*time.Second && c.state.CompareAndSwap(stateNew, stateClosed) {
			c.nc.Close()
		}
	}
	for c := range s.h2conns {
		c.drain() // GOAWAY; closed once its streams are done
	}
	return len(s.conns) == 0 && len(s.h2conns) == 0
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

// SyscallConn exposes the underlying connection's raw file descriptor,
// when it has one (kclb's HTTP/1.1 server waits on it while idle).
func (c *limitConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.New("proxy: connection has no file descriptor")
}

// CloseWrite half-closes the connection when the underlying one can.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return errors.New("proxy: connection cannot half-close")
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	if c.done.CompareAndSwap(false, true) {
		<-c.sem
	}
	return err
}
