package proxy

import (
	"net/http"
	"time"

	"github.com/kclb/kclb/internal/optcheck"
)

// Defaults New applies to zero Options fields (and the backend client
// to its own); the Options field docs name them.
const (
	DefaultBlockedStatus          = http.StatusNotFound
	DefaultRetries                = 3
	DefaultConnectTimeout         = 5 * time.Second
	DefaultServerTimeout          = 50 * time.Second
	DefaultQueueTimeout           = 5 * time.Second
	DefaultBodyBufferBytes        = 64 << 10
	DefaultBodyTimeout            = 10 * time.Second
	DefaultBodyWaitsPerClient     = 16
	DefaultClientTimeout          = 50 * time.Second
	DefaultQueueSize              = 1024
	DefaultIdleTimeout            = 90 * time.Second
	DefaultMaxIdlePerServer       = 512
	DefaultMaxResponseHeaderBytes = 1 << 20
)

// Bounds of the Options Validate checks.
const (
	// MinResponseHeaderBytes is the smallest MaxResponseHeaderBytes:
	// Keycloak's login responses carry cookies beyond 4 KiB.
	MinResponseHeaderBytes = 64 << 10
	// MaxBufferBytes bounds MaxResponseHeaderBytes and BodyBufferBytes.
	MaxBufferBytes = 64 << 20
	// MaxRetries bounds Retries.
	MaxRetries = 100
	// MinRequestHeaderBytes is the smallest ServerOptions.MaxHeaderBytes.
	MinRequestHeaderBytes = 4096
	// MaxStreams bounds ServerOptions.MaxConcurrentStreams (HTTP/2's
	// SETTINGS value is 31 bits).
	MaxStreams = 1<<31 - 1
)

// FieldError is one problem with one Options field (the convention of
// internal/optcheck); Validate returns them joined.
type FieldError = optcheck.FieldError

// Validate checks the rules New applies to o's values and returns nil or
// the *FieldErrors joined. Zero fields stand for their defaults; a
// negative Retries (none), BodyBufferBytes (stream every body),
// BodyWaitsPerClient (no bound) or QueueSize (no queue) is valid.
func (o Options) Validate() error {
	var p optcheck.Problems
	add := p.Add
	if s := o.BlockedStatus; s != 0 && s != http.StatusForbidden && s != http.StatusNotFound {
		add("BlockedStatus", "%d is not 403 or 404", s)
	}
	if o.Retries > MaxRetries {
		add("Retries", "%d is out of range 0..%d", o.Retries, MaxRetries)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"ConnectTimeout", o.ConnectTimeout}, {"ServerTimeout", o.ServerTimeout}, {"QueueTimeout", o.QueueTimeout},
		{"BodyTimeout", o.BodyTimeout}, {"ClientTimeout", o.ClientTimeout}, {"IdleTimeout", o.IdleTimeout},
	} {
		if d.v < 0 {
			add(d.name, "must be greater than 0, got %s", d.v)
		}
	}
	if n := o.MaxResponseHeaderBytes; n != 0 && (n < MinResponseHeaderBytes || n > MaxBufferBytes) {
		add("MaxResponseHeaderBytes", "%d is out of range %d..%d", n, MinResponseHeaderBytes, MaxBufferBytes)
	}
	if o.BodyBufferBytes > MaxBufferBytes {
		add("BodyBufferBytes", "%d is out of range 0..%d", o.BodyBufferBytes, MaxBufferBytes)
	}
	if o.MaxIdlePerServer < 0 {
		add("MaxIdlePerServer", "%d is less than 0", o.MaxIdlePerServer)
	}
	return p.Err()
}

// Validate checks the values of a listener's options and returns nil or
// the *FieldErrors joined. Zero fields stand for their defaults.
func (o ServerOptions) Validate() error {
	var p optcheck.Problems
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"HeaderTimeout", o.HeaderTimeout}, {"ClientTimeout", o.ClientTimeout}, {"WriteTimeout", o.WriteTimeout}, {"KeepAlive", o.KeepAlive},
	} {
		if d.v < 0 {
			p.Add(d.name, "must be greater than 0, got %s", d.v)
		}
	}
	if n := o.MaxHeaderBytes; n != 0 && (n < MinRequestHeaderBytes || n > MaxBufferBytes) {
		p.Add("MaxHeaderBytes", "%d is out of range %d..%d", n, MinRequestHeaderBytes, MaxBufferBytes)
	}
	if n := o.MaxConcurrentStreams; n < 0 || n > MaxStreams {
		p.Add("MaxConcurrentStreams", "%d is out of range 1..%d", n, MaxStreams)
	}
	return p.Err()
}

// setDefault sets *v to def when it is zero or negative: the options
// whose doc says a zero (or negative) value takes the default.
func setDefault[T ~int | ~int64](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
