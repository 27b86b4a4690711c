package proxyproto

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures a Listener.
type Options struct {
	// From are the networks allowed to connect (the PROXY senders);
	// connections from elsewhere are closed at once and counted. Empty
	// allows nobody.
	From []netip.Prefix
	// Timeout bounds reading the header. Default 10 s.
	Timeout time.Duration
	// Counters, if non-nil, counts what the listener refused. It may be
	// shared by several listeners.
	Counters *Counters
}

// Counters counts the connections PROXY listeners refused. The zero
// value is ready; all fields are totals since start.
type Counters struct {
	// Untrusted: connections from outside Options.From, closed unread.
	Untrusted atomic.Uint64
	// BadHeader: connections whose header was missing, malformed or
	// late; closed.
	BadHeader atomic.Uint64
}

// Listener accepts connections that begin with a PROXY header (v1 or
// v2) from the allowed sources. Its connections report the header's
// source address as RemoteAddr.
type Listener struct {
	net.Listener
	from     []netip.Prefix
	timeout  time.Duration
	counters *Counters
}

// NewListener wraps ln.
func NewListener(ln net.Listener, o Options) *Listener {
	l := &Listener{Listener: ln, from: o.From, timeout: o.Timeout, counters: o.Counters}
	if l.timeout <= 0 {
		l.timeout = 10 * time.Second
	}
	if l.counters == nil {
		l.counters = new(Counters)
	}
	return l
}

// Accept returns the next connection from an allowed source; those from
// other sources are closed and counted without a byte read. The header
// is not read here but in the connection's first Read or RemoteAddr.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.allowed(c.RemoteAddr()) {
			return &Conn{Conn: c, l: l}, nil
		}
		l.counters.Untrusted.Add(1)
		c.Close()
	}
}

func (l *Listener) allowed(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip := ta.AddrPort().Addr().Unmap()
	for _, p := range l.from {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Conn is a connection accepted by a Listener. Its first Read,
// RemoteAddr or Header call reads the PROXY header (under the
// listener's timeout); a connection whose header fails is closed and
// every Read returns the error.
type Conn struct {
	net.Conn
	l *Listener

	once   sync.Once
	hdr    Header
	err    error
	remote net.Addr
	rest   []byte // bytes read past the header, served first

	mu       sync.Mutex // guards deadline
	deadline time.Time  // the read deadline the user set
}

// Header returns the connection's PROXY header, reading it first if
// needed.
func (c *Conn) Header() (Header, error) {
	c.once.Do(c.readHeader)
	return c.hdr, c.err
}

func (c *Conn) readHeader() {
	c.mu.Lock()
	user := c.deadline
	c.mu.Unlock()
	dl := time.Now().Add(c.l.timeout)
	if !user.IsZero() && user.Before(dl) {
		dl = user
	}
	c.Conn.SetReadDeadline(dl)
	buf := make([]byte, 0, 256)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := c.Conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		h, hn, perr := Parse(buf)
		if perr == nil {
			c.hdr = h
			if len(buf) > hn {
				c.rest = buf[hn:]
			}
			break
		}
		if perr != ErrIncomplete {
			c.fail(perr)
			return
		}
		if len(buf) >= MaxV2 {
			c.fail(errors.New("proxyproto: header too long"))
			return
		}
		if err != nil {
			c.fail(fmt.Errorf("proxyproto: reading the header: %w", err))
			return
		}
	}
	c.mu.Lock()
	c.Conn.SetReadDeadline(c.deadline)
	c.mu.Unlock()
	c.remote = c.Conn.RemoteAddr()
	if c.hdr.Command == Proxy && c.hdr.Source.IsValid() {
		c.remote = net.TCPAddrFromAddrPort(c.hdr.Source)
	}
}

func (c *Conn) fail(err error) {
	c.err = err
	c.remote = c.Conn.RemoteAddr()
	c.l.counters.BadHeader.Add(1)
	c.Conn.Close()
}

// Read reads from the connection after its PROXY header.
func (c *Conn) Read(p []byte) (int, error) {
	c.once.Do(c.readHeader)
	if c.err != nil {
		return 0, c.err
	}
	if len(c.rest) > 0 {
		n := copy(p, c.rest)
		c.rest = c.rest[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// RemoteAddr returns the client address the PROXY header names, or the
// peer's own address for LOCAL and UNKNOWN headers and failed ones.
func (c *Conn) RemoteAddr() net.Addr {
	c.once.Do(c.readHeader)
	return c.remote
}

// SetDeadline implements net.Conn.
func (c *Conn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return c.Conn.SetDeadline(t)
}

// SetReadDeadline implements net.Conn.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return c.Conn.SetReadDeadline(t)
}

// CloseWrite half-closes the connection when the underlying one can.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("proxyproto: connection cannot half-close")
}
