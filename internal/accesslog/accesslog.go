// Package accesslog writes kclb's access log: one line per request, as
// JSON or as logfmt-style text (the encodings of kclb's process log, so a
// journald reader or a SIEM parses both with one rule), with a fixed
// schema documented in docs/operations.md ("Access log fields").
//
// The proxy fills one Record per request and hands it to Logger.Log,
// which encodes it into a pooled buffer without allocating and writes it
// with a single Write call. A nil *Logger is the access log switched off:
// the proxy checks for nil and pays nothing else.
package accesslog

import (
	"crypto/tls"
	"io"
	"net/netip"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Route says how the proxy chose the server that answered a request. The
// zero value is RouteNone.
type Route uint8

const (
	// RouteNone: no server was chosen (refused, malformed, or no server
	// available).
	RouteNone Route = iota
	// RouteBalanced: the balancer chose a server for a client without a
	// usable pin.
	RouteBalanced
	// RouteKCRoute: the client's KC_ROUTE affinity cookie named the server.
	RouteKCRoute
	// RouteAuthSession: the route suffix of Keycloak's AUTH_SESSION_ID
	// cookie named the server.
	RouteAuthSession
	// RouteRedispatched: the request left the server it was pinned to or
	// first tried on (down, draining out, busy, or a failed attempt).
	RouteRedispatched
)

// String returns "", "balanced", "kc-route", "auth-session" or
// "redispatched", the values of the log's route field.
func (r Route) String() string {
	switch r {
	case RouteBalanced:
		return "balanced"
	case RouteKCRoute:
		return "kc-route"
	case RouteAuthSession:
		return "auth-session"
	case RouteRedispatched:
		return "redispatched"
	}
	return ""
}

// Record is one request as the access log describes it. The proxy fills
// it; Logger.Log only reads it. Zero fields are logged as empty strings or
// 0, except the durations documented as -1 when they did not happen.
type Record struct {
	// ID is the request id forwarded as X-Request-Id.
	ID string
	// Client is the TCP peer of the client connection.
	Client netip.AddrPort
	// TLS is the client connection's TLS state; nil for plain HTTP.
	TLS *tls.ConnectionState
	// Method, Host, Path and Query are the request's; Path never carries
	// the query, which is logged (as Query) only with Options.Query.
	Method, Host, Path, Query string
	// Proto is the request's protocol version ("HTTP/1.1", "HTTP/2.0").
	Proto string
	// Status is the status sent to the client; 0 when the client went
	// away first.
	Status int
	// BytesIn counts request body bytes read from the client; BytesOut
	// counts response body bytes written to it (headers excluded).
	BytesIn, BytesOut int64
	// Server names the server that answered, "" if none did.
	Server string
	// Route is how Server was chosen.
	Route Route
	// Retries counts the attempts after the first.
	Retries int
	// Queue is the time spent waiting for a connection slot on servers
	// at their maxconn, over every attempt.
	Queue time.Duration
	// Connect is the time spent opening backend connections, over every
	// attempt: 0 when pooled connections were reused, -1 when no
	// connection was attempted or the time is unknown (the net/http
	// transport fallback).
	Connect time.Duration
	// UpstreamHeader is the time from sending the request on the answering
	// server's connection to receiving its response head (connect time
	// excluded); -1 when no server answered.
	UpstreamHeader time.Duration
	// Total is the time from receiving the request to the end of the
	// response.
	Total time.Duration
}

// Reset clears r for another request, with Connect and UpstreamHeader
// at -1 (not happened).
func (r *Record) Reset() { *r = Record{Connect: -1, UpstreamHeader: -1} }

// Options configures a Logger.
type Options struct {
	// Out receives one line per record, each in one Write call. Nil
	// discards them.
	Out io.Writer
	// JSON writes JSON objects instead of key=value text.
	JSON bool
	// Query adds the request's query string (field "query"). False (the
	// default) leaves it out: OAuth codes and tokens travel in queries.
	Query bool
	// Now returns the time written in the "time" field. Nil means
	// time.Now.
	Now func() time.Time
}

func (o *Options) now() time.Time {
	if o.Now == nil {
		return time.Now()
	}
	return o.Now()
}

// Logger encodes records to Options.Out. Create it with New; it is safe
// for concurrent use. A nil *Logger logs nothing.
type Logger struct {
	opts Options
	bufs sync.Pool // *[]byte; no New func, so that loggers built from equal options are reflect.DeepEqual

	mu sync.Mutex // serialises writes to opts.Out, so lines never interleave
}

// New returns a Logger writing to o.Out.
func New(o Options) *Logger {
	if o.Out == nil {
		o.Out = io.Discard
	}
	return &Logger{opts: o}
}

// Options returns the options l was created with (for tests and the
// configuration wiring).
func (l *Logger) Options() Options { return l.opts }

// Log writes rec as one line. It does not retain rec. Write errors are
// dropped: the access log never fails a request.
func (l *Logger) Log(rec *Record) {
	if l == nil {
		return
	}
	bp, _ := l.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
		*bp = make([]byte, 0, 1024)
	}
	b := l.Append((*bp)[:0], rec)
	l.mu.Lock()
	l.opts.Out.Write(b)
	l.mu.Unlock()
	if cap(b) <= 64<<10 {
		*bp = b
		l.bufs.Put(bp)
	}
}

// cipherNames maps cipher suite ids to their names; immutable after
// package initialisation. tls.CipherSuiteName allocates on every call.
var cipherNames = func() map[uint16]string {
	m := map[uint16]string{}
	for _, list := range [][]*tls.CipherSuite{tls.CipherSuites(), tls.InsecureCipherSuites()} {
		for _, c := range list {
			m[c.ID] = c.Name
		}
	}
	return m
}()

// cipherName returns the name of cipher suite id, or its hex value.
func cipherName(id uint16) string {
	if n, ok := cipherNames[id]; ok {
		return n
	}
	return tls.CipherSuiteName(id)
}

// timeLayout is the "time" field's layout, the one of kclb's text log.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// Append appends rec's line, newline included, to b and returns it.
func (l *Logger) Append(b []byte, rec *Record) []byte {
	e := enc{b: b, json: l.opts.JSON}
	if e.json {
		e.b = append(e.b, '{')
	}
	e.key("time")
	e.quoteOpen()
	e.b = l.opts.now().AppendFormat(e.b, timeLayout)
	e.quoteClose()
	e.str("level", "INFO")
	e.str("msg", "request")
	e.str("log", "access")
	e.str("id", rec.ID)
	if rec.Client.IsValid() {
		e.key("client")
		e.quoteOpen()
		e.b = rec.Client.Addr().AppendTo(e.b)
		e.quoteClose()
	} else {
		e.str("client", "")
	}
	e.int("client_port", int64(rec.Client.Port()))
	var ver, cipher, sni string
	if rec.TLS != nil {
		ver = tls.VersionName(rec.TLS.Version)
		cipher = cipherName(rec.TLS.CipherSuite)
		sni = rec.TLS.ServerName
	}
	e.str("tls_version", ver)
	e.str("tls_cipher", cipher)
	e.str("sni", sni)
	e.str("method", rec.Method)
	e.str("host", rec.Host)
	e.str("path", rec.Path)
	if l.opts.Query {
		e.str("query", rec.Query)
	}
	e.str("proto", rec.Proto)
	e.int("status", int64(rec.Status))
	e.int("bytes_in", rec.BytesIn)
	e.int("bytes_out", rec.BytesOut)
	e.str("server", rec.Server)
	e.str("route", rec.Route.String())
	e.int("retries", int64(rec.Retries))
	e.ms("queue_ms", rec.Queue)
	e.ms("connect_ms", rec.Connect)
	e.ms("upstream_header_ms", rec.UpstreamHeader)
	e.ms("total_ms", rec.Total)
	if e.json {
		e.b = append(e.b, '}')
	}
	return append(e.b, '\n')
}

// enc appends fields in one of the two encodings.
type enc struct {
	b    []byte
	json bool
	n    int // fields written
}

func (e *enc) key(k string) {
	if e.n > 0 {
		if e.json {
			e.b = append(e.b, ',')
		} else {
			e.b = append(e.b, ' ')
		}
	}
	e.n++
	if e.json {
		e.b = append(e.b, '"')
		e.b = append(e.b, k...)
		e.b = append(e.b, '"', ':')
	} else {
		e.b = append(e.b, k...)
		e.b = append(e.b, '=')
	}
}

// quoteOpen and quoteClose bracket a value known to need no escaping
// (an address, a time): quoted in JSON, bare in text.
func (e *enc) quoteOpen() {
	if e.json {
		e.b = append(e.b, '"')
	}
}

func (e *enc) quoteClose() { e.quoteOpen() }

// str writes a string field.
func (e *enc) str(k, v string) {
	e.key(k)
	if e.json {
		e.b = appendJSONString(e.b, v)
		return
	}
	e.b = appendTextValue(e.b, v)
}

func (e *enc) int(k string, v int64) {
	e.key(k)
	e.b = strconv.AppendInt(e.b, v, 10)
}

// ms writes d in milliseconds with microsecond precision; -1 stays -1.
func (e *enc) ms(k string, d time.Duration) {
	e.key(k)
	if d < 0 {
		e.b = append(e.b, '-', '1')
		return
	}
	us := int64(d / time.Microsecond)
	e.b = strconv.AppendInt(e.b, us/1000, 10)
	frac := us % 1000
	e.b = append(e.b, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendTextValue appends s bare when it needs no quoting (printable
// ASCII without spaces, quotes or '='), else as a Go-quoted string, like
// log/slog's text handler; the empty string is "".
func appendTextValue(b []byte, s string) []byte {
	if s == "" {
		return append(b, '"', '"')
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '=' || c == '\\' {
			return strconv.AppendQuote(b, s)
		}
	}
	return append(b, s...)
}
