package load

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// H2Options configure HTTP/2 workers.
type H2Options struct {
	// Addr is the host:port to connect to.
	Addr string
	// Host is the :authority; default Addr.
	Host string
	// Path is the request path; default "/".
	Path string
	// TLS is the client TLS config; NextProtos is forced to h2. Required.
	TLS *tls.Config
	// Conns is the number of connections; default 1.
	Conns int
	// Timeout bounds each request; default 10s.
	Timeout time.Duration
}

// h2conn is one HTTP/2 connection shared by several stream workers, redialled
// after it fails.
type h2conn struct {
	o  *H2Options
	tr *http2.Transport

	mu sync.Mutex // guards cc
	cc *http2.ClientConn
}

func (c *h2conn) get(ctx context.Context) (*http2.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cc != nil && c.cc.CanTakeNewRequest() {
		return c.cc, nil
	}
	if c.cc != nil {
		c.cc.Close()
		c.cc = nil
	}
	d := net.Dialer{Timeout: c.o.Timeout}
	raw, err := d.DialContext(ctx, "tcp", c.o.Addr)
	if err != nil {
		return nil, kindErr(ErrDial, err)
	}
	tc := tls.Client(raw, c.o.TLS)
	hctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, kindErr(ErrTLS, err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
		tc.Close()
		return nil, &Error{Kind: ErrTLS, Err: fmt.Errorf("ALPN negotiated %q, not h2", p)}
	}
	cc, err := c.tr.NewClientConn(tc)
	if err != nil {
		tc.Close()
		return nil, kindErr(ErrOther, err)
	}
	c.cc = cc
	return cc, nil
}

func (c *h2conn) invalidate(cc *http2.ClientConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cc == cc {
		cc.Close()
		c.cc = nil
	}
}

// H2Workers returns a NewWorker function for Config: worker i is a stream
// on connection i mod o.Conns, so Workers = Conns*M gives M concurrent
// streams per connection. The returned close function closes every
// connection; call it after Run.
func H2Workers(o H2Options) (newWorker func(i int) Worker, closeAll func()) {
	if o.Host == "" {
		o.Host = o.Addr
	}
	if o.Path == "" {
		o.Path = "/"
	}
	if o.Conns <= 0 {
		o.Conns = 1
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	tc := o.TLS.Clone()
	tc.NextProtos = []string{"h2"}
	o.TLS = tc
	tr := &http2.Transport{TLSClientConfig: tc, StrictMaxConcurrentStreams: true}
	conns := make([]*h2conn, o.Conns)
	for i := range conns {
		conns[i] = &h2conn{o: &o, tr: tr}
	}
	url := "https://" + o.Host + o.Path
	newWorker = func(i int) Worker { return &h2stream{c: conns[i%len(conns)], url: url, timeout: o.Timeout} }
	closeAll = func() {
		for _, c := range conns {
			c.mu.Lock()
			if c.cc != nil {
				c.cc.Close()
				c.cc = nil
			}
			c.mu.Unlock()
		}
	}
	return newWorker, closeAll
}

type h2stream struct {
	c       *h2conn
	url     string
	timeout time.Duration
}

func (s *h2stream) Do(ctx context.Context) error {
	cc, err := s.c.get(ctx)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, s.url, nil)
	if err != nil {
		return kindErr(ErrOther, err)
	}
	resp, err := cc.RoundTrip(req)
	if err != nil {
		if !errors.Is(err, http2.ErrNoCachedConn) {
			s.c.invalidate(cc)
		}
		return kindErr(ErrRead, err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return kindErr(ErrRead, err)
	}
	if resp.StatusCode >= 400 {
		return &Error{Kind: ErrStatus, Err: fmt.Errorf("status %d", resp.StatusCode)}
	}
	return nil
}

func (s *h2stream) Close() error { return nil }
