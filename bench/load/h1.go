package load

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Response is what the raw HTTP/1.1 client learns from a response.
type Response struct {
	// Status is the status code.
	Status int
	// Close is true when the server will close the connection after this
	// response (Connection: close, HTTP/1.0 without keep-alive, or a body
	// delimited by the end of the connection).
	Close bool
	// BodyLen is the number of body bytes consumed.
	BodyLen int64
}

// ErrMalformed is wrapped by every ParseResponse error about the bytes
// themselves (as opposed to I/O errors from the reader).
var ErrMalformed = errors.New("malformed HTTP/1.1 response")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// maxBody bounds a Content-Length or chunk size the parser accepts.
const maxBody = 1 << 40

// ParseResponse reads one response to a GET (status line, headers, body)
// from br and discards the body. Interim 1xx responses are skipped. It does
// not allocate in the common case. A header line longer than br's buffer is
// an error.
func ParseResponse(br *bufio.Reader) (Response, error) {
	for {
		r, err := parseOne(br)
		if err != nil {
			return r, err
		}
		if r.Status >= 200 || r.Status == 101 {
			return r, nil
		}
	}
}

func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, malformed("line longer than %d bytes", br.Size())
		}
		if errors.Is(err, io.EOF) && len(line) > 0 {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

var (
	hContentLength    = []byte("content-length")
	hTransferEncoding = []byte("transfer-encoding")
	hConnection       = []byte("connection")
	vChunked          = []byte("chunked")
	vClose            = []byte("close")
	vKeepAlive        = []byte("keep-alive")
)

func parseOne(br *bufio.Reader) (Response, error) {
	var r Response
	line, err := readLine(br)
	if err != nil {
		return r, err
	}
	// "HTTP/1.x SSS reason"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' ||
		(len(line) > 12 && line[12] != ' ') {
		return r, malformed("status line %.40q", line)
	}
	http10 := line[7] == '0'
	if !http10 && line[7] != '1' {
		return r, malformed("version %.12q", line)
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return r, malformed("status code %.12q", line)
		}
		r.Status = r.Status*10 + int(c-'0')
	}
	if r.Status < 100 {
		return r, malformed("status code %d", r.Status)
	}
	contentLength := int64(-1)
	chunked, keepAlive := false, false
	r.Close = http10
	for {
		line, err := readLine(br)
		if err != nil {
			return r, err
		}
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return r, malformed("header line %.40q", line)
		}
		name, val := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case bytes.EqualFold(name, hContentLength):
			n, ok := parseDecimal(val)
			if !ok || (contentLength >= 0 && n != contentLength) {
				return r, malformed("Content-Length %.40q", val)
			}
			contentLength = n
		case bytes.EqualFold(name, hTransferEncoding):
			// Only "chunked" (possibly last in a list) is understood.
			if len(val) >= len(vChunked) && bytes.EqualFold(val[len(val)-len(vChunked):], vChunked) {
				chunked = true
			} else if len(val) > 0 && !bytes.EqualFold(val, []byte("identity")) {
				return r, malformed("Transfer-Encoding %.40q", val)
			}
		case bytes.EqualFold(name, hConnection):
			if containsToken(val, vClose) {
				r.Close = true
			}
			if containsToken(val, vKeepAlive) {
				keepAlive = true
			}
		}
	}
	if http10 && keepAlive {
		r.Close = false
	}
	noBody := r.Status < 200 || r.Status == 204 || r.Status == 304
	switch {
	case noBody:
	case chunked:
		n, err := discardChunked(br)
		r.BodyLen = n
		if err != nil {
			return r, err
		}
	case contentLength >= 0:
		n, err := br.Discard(int(contentLength))
		r.BodyLen = int64(n)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return r, err
		}
	default:
		// Delimited by connection close.
		r.Close = true
		n, err := io.Copy(io.Discard, br)
		r.BodyLen = n
		if err != nil {
			return r, err
		}
	}
	return r, nil
}

func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 13 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, n <= maxBody
}

// containsToken reports whether the comma-separated list val holds tok.
func containsToken(val, tok []byte) bool {
	for len(val) > 0 {
		var part []byte
		if i := bytes.IndexByte(val, ','); i >= 0 {
			part, val = val[:i], val[i+1:]
		} else {
			part, val = val, nil
		}
		if bytes.EqualFold(bytes.TrimSpace(part), tok) {
			return true
		}
	}
	return false
}

func discardChunked(br *bufio.Reader) (int64, error) {
	var total int64
	for {
		line, err := readLine(br)
		if err != nil {
			return total, err
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 || len(line) > 10 {
			return total, malformed("chunk size %.20q", line)
		}
		var size int64
		for _, c := range line {
			var d byte
			switch {
			case c >= '0' && c <= '9':
				d = c - '0'
			case c >= 'a' && c <= 'f':
				d = c - 'a' + 10
			case c >= 'A' && c <= 'F':
				d = c - 'A' + 10
			default:
				return total, malformed("chunk size %.20q", line)
			}
			size = size<<4 | int64(d)
		}
		if size == 0 {
			// Trailers until an empty line.
			for {
				l, err := readLine(br)
				if err != nil {
					return total, err
				}
				if len(l) == 0 {
					return total, nil
				}
			}
		}
		n, err := br.Discard(int(size))
		total += int64(n)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return total, err
		}
		l, err := readLine(br)
		if err != nil {
			return total, err
		}
		if len(l) != 0 {
			return total, malformed("no CRLF after chunk")
		}
	}
}

// BuildRequest returns the bytes of a GET request for path to host, with
// "Connection: close" when closeConn is set.
func BuildRequest(host, path string, closeConn bool) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: kclb-bench\r\nAccept: */*\r\n", path, host)
	if closeConn {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// H1Options configure a raw HTTP/1.1 worker.
type H1Options struct {
	// Addr is the host:port to connect to.
	Addr string
	// Host is the Host header; default Addr.
	Host string
	// Path is the request path; default "/".
	Path string
	// TLS, if non-nil, wraps each connection in TLS with this config. Set
	// its ClientSessionCache to allow session resumption.
	TLS *tls.Config
	// NewConnPerRequest sends "Connection: close" and dials anew for every
	// request (handshake-rate scenarios).
	NewConnPerRequest bool
	// Timeout bounds each request including a dial; default 10s.
	Timeout time.Duration
	// CheckResumed, with TLS, counts full handshakes that should have been
	// resumed as ErrTLS when the session cache held a ticket.
	CheckResumed bool
}

// H1Worker is one raw HTTP/1.1 connection used sequentially. It is not safe
// for concurrent use. The zero value is not usable: use NewH1Worker.
type H1Worker struct {
	o      H1Options
	req    []byte
	conn   net.Conn
	br     *bufio.Reader
	dialer net.Dialer
	// Resumed counts TLS handshakes that resumed a session.
	Resumed int64
	// Handshakes counts TLS handshakes.
	Handshakes int64
}

// NewH1Worker returns a worker for o; it dials lazily on the first request.
func NewH1Worker(o H1Options) *H1Worker {
	if o.Host == "" {
		o.Host = o.Addr
	}
	if o.Path == "" {
		o.Path = "/"
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	return &H1Worker{
		o:   o,
		req: BuildRequest(o.Host, o.Path, o.NewConnPerRequest),
		br:  bufio.NewReaderSize(nil, 16<<10),
	}
}

func (w *H1Worker) dial(ctx context.Context, deadline time.Time) error {
	c, err := w.dialer.DialContext(ctx, "tcp", w.o.Addr)
	if err != nil {
		return kindErr(ErrDial, err)
	}
	if w.o.TLS != nil {
		tc := tls.Client(c, w.o.TLS)
		c.SetDeadline(deadline)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return kindErr(ErrTLS, err)
		}
		w.Handshakes++
		if tc.ConnectionState().DidResume {
			w.Resumed++
		}
		c = tc
	}
	w.conn = c
	w.br.Reset(c)
	return nil
}

// Do sends one request and reads its response. On any error the connection
// is dropped and the next Do dials again.
func (w *H1Worker) Do(ctx context.Context) error {
	deadline := time.Now().Add(w.o.Timeout)
	if w.conn == nil {
		if err := w.dial(ctx, deadline); err != nil {
			return err
		}
	}
	w.conn.SetDeadline(deadline)
	if _, err := w.conn.Write(w.req); err != nil {
		w.drop()
		return kindErr(ErrWrite, err)
	}
	r, err := ParseResponse(w.br)
	if err != nil {
		w.drop()
		if errors.Is(err, ErrMalformed) {
			return kindErr(ErrParse, err)
		}
		return kindErr(ErrRead, err)
	}
	if r.Close || w.o.NewConnPerRequest {
		w.drop()
	}
	if r.Status >= 400 {
		return &Error{Kind: ErrStatus, Err: fmt.Errorf("status %d", r.Status)}
	}
	return nil
}

func (w *H1Worker) drop() {
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

// Close closes the connection, if any.
func (w *H1Worker) Close() error {
	w.drop()
	return nil
}
