// Package load is kclb's HTTP load generator. It drives workers in a closed
// loop (N workers, each sends its next request when the previous one
// answered) or an open loop (requests scheduled at a fixed rate; latency is
// measured from the intended send time, so a stalled server cannot hide its
// stall by slowing the client down: no coordinated omission).
//
// Workers: a raw-socket HTTP/1.1 client (prebuilt request, minimal response
// parser; keep-alive or a new connection per request, TLS with or without
// session resumption), an HTTP/2 client (x/net/http2, M streams per
// connection) and a Keycloak mix (static resources, OIDC discovery, the
// login flow with a cookie jar, token refresh) on net/http.
package load

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
)

// ErrKind classifies a failed request.
type ErrKind uint8

// Error kinds. The zero value is ErrOther.
const (
	ErrOther    ErrKind = iota // anything not listed below
	ErrDial                    // TCP connect failed
	ErrTLS                     // TLS handshake failed
	ErrWrite                   // writing the request failed
	ErrRead                    // reading the response failed (reset, EOF)
	ErrTimeout                 // a deadline expired
	ErrParse                   // the response was not valid HTTP
	ErrStatus                  // status was not 2xx or 3xx
	ErrAffinity                // a login flow changed node midway
	NumErrKinds                // number of kinds; not a kind
)

var errKindNames = [NumErrKinds]string{"other", "dial", "tls", "write", "read", "timeout", "parse", "status", "affinity"}

// String returns the kind's lower-case name.
func (k ErrKind) String() string {
	if k < NumErrKinds {
		return errKindNames[k]
	}
	return fmt.Sprintf("ErrKind(%d)", uint8(k))
}

// Error is a request failure of a known kind.
type Error struct {
	Kind ErrKind
	Err  error
}

// Error implements error.
func (e *Error) Error() string { return e.Kind.String() + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// kindErr wraps err as kind unless err already carries a kind or is a timeout.
func kindErr(kind ErrKind, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	if isTimeout(err) {
		kind = ErrTimeout
	}
	return &Error{Kind: kind, Err: err}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// Classify returns the kind of err: the Kind of an *Error in its chain,
// otherwise a guess from well-known causes.
func Classify(err error) ErrKind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	var rh tls.RecordHeaderError
	var ae tls.AlertError
	switch {
	case isTimeout(err):
		return ErrTimeout
	case errors.As(err, &rh), errors.As(err, &ae):
		return ErrTLS
	case errors.Is(err, syscall.ECONNREFUSED):
		return ErrDial
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return ErrRead
	}
	return ErrOther
}
