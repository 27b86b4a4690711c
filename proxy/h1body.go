package proxy

import (
	"errors"
	"io"
	"maps"
	"net/http"
)

// Errors of a request body on kclb's HTTP/1.1 server. The Handler answers
// any of them with 400 (408 for timeouts, which come from the connection).
var (
	errChunkLine     = errors.New("proxy: malformed chunk size line")
	errChunkLong     = errors.New("proxy: chunk size line too long")
	errChunkSize     = errors.New("proxy: chunk size too large")
	errChunkEnd      = errors.New("proxy: malformed chunked encoding")
	errChunkOverhead = errors.New("proxy: chunked encoding contains too much non-data")
	errTrailerLong   = errors.New("proxy: request trailer too long")
	errTrailerField  = errors.New("proxy: malformed request trailer")
)

// maxChunkLine bounds a chunk-size line (with extensions), as net/http.
const maxChunkLine = 4096

// maxTrailerBytes bounds a request's trailer section.
const maxTrailerBytes = 4096

// h1body is the body of one request on an h1conn: Content-Length or
// chunked framing (RFC 9112 6, 7.1) read from the connection's buffer,
// then from the connection itself. Trailer fields are read, checked for
// syntax and dropped: kclb forwards the body re-framed and no trailers.
// It is reused by every request on its connection; it must not be used
// after the response to its request was written.
type h1body struct {
	c       *h1conn
	req     *http.Request // whose Trailer receives the trailer fields
	chunked bool
	remain  int64 // Content-Length: bytes left; chunked: bytes left in the chunk
	inChunk bool  // chunked: the CRLF after the current chunk's data is due
	excess  int64 // chunked: overhead bytes beyond what the data justifies
	err     error // sticky: io.EOF at the end, or the first error
	// cont is set while a "100 Continue" is owed to the client: it is
	// sent before the first read from the connection.
	cont bool
	read bool // a byte of the body was consumed
}

func (b *h1body) reset(c *h1conn, r *http.Request) {
	*b = h1body{c: c, req: r}
	switch {
	case r.ContentLength > 0:
		b.remain = r.ContentLength
	case r.ContentLength < 0:
		b.chunked = true
	default:
		b.err = io.EOF
	}
}

// inBuffer reports whether the rest of a Content-Length body is already
// in the connection's read buffer, so reading it cannot wait on the
// client. The Handler then counts no body wait for it.
func (b *h1body) inBuffer() bool {
	return !b.chunked && !b.cont && b.err == nil && b.remain <= int64(b.c.w-b.c.r)
}

// done reports whether the body was read to its end.
func (b *h1body) done() bool { return b.err == io.EOF }

// Read implements io.Reader.
func (b *h1body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	if b.chunked {
		n, b.err = b.readChunked(p)
	} else {
		n, b.err = b.readLength(p)
	}
	if n > 0 {
		b.read = true
	}
	return n, b.err
}

// Close implements io.Closer; the connection decides what happens to
// unread bytes.
func (b *h1body) Close() error { return nil }

func (b *h1body) readLength(p []byte) (int, error) {
	if int64(len(p)) > b.remain {
		p = p[:b.remain]
	}
	n, err := b.c.readBody(p, b)
	b.remain -= int64(n)
	if b.remain == 0 {
		return n, io.EOF
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (b *h1body) readChunked(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		if b.remain == 0 {
			if b.inChunk {
				if total > 0 && b.c.buffered() < 2 {
					return total, nil // do not block with data in hand
				}
				if err := b.chunkEnd(); err != nil {
					return total, err
				}
				b.inChunk = false
			}
			if total > 0 && !b.c.lineBuffered() {
				return total, nil
			}
			size, err := b.chunkHeader()
			if err != nil {
				return total, err
			}
			if size == 0 {
				return total, b.trailer()
			}
			b.remain = int64(size)
			b.inChunk = true
		}
		q := p
		if int64(len(q)) > b.remain {
			q = q[:b.remain]
		}
		n, err := b.c.readBody(q, b)
		total += n
		p = p[n:]
		b.remain -= int64(n)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return total, err
		}
		if b.c.buffered() == 0 {
			return total, nil
		}
	}
	return total, nil
}

// chunkEnd consumes the CRLF after a chunk's data.
func (b *h1body) chunkEnd() error {
	two, err := b.c.peekN(2, b)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	if two[0] != '\r' || two[1] != '\n' {
		return errChunkEnd
	}
	b.c.discard(2)
	return nil
}

// chunkHeader reads a chunk-size line: hex digits, optional extensions
// (ignored), CRLF. Bare LF and stray CR are refused, as net/http does.
func (b *h1body) chunkHeader() (uint64, error) {
	line, err := b.c.readLine(maxChunkLine+2, b)
	if err != nil {
		if err == errLineLong {
			return 0, errChunkLong
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	b.excess += int64(len(line))
	n := len(line)
	if n < 2 || line[n-2] != '\r' {
		return 0, errChunkLine
	}
	line = line[:n-2]
	for _, c := range line {
		if c == '\r' {
			return 0, errChunkLine
		}
	}
	for len(line) > 0 && (line[len(line)-1] == ' ' || line[len(line)-1] == '\t') {
		line = line[:len(line)-1]
	}
	for i, c := range line {
		if c == ';' {
			line = line[:i]
			break
		}
	}
	if len(line) == 0 {
		return 0, errChunkLine
	}
	var size uint64
	for i, c := range line {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, errChunkLine
		}
		if i == 16 {
			return 0, errChunkSize
		}
		size = size<<4 | uint64(c)
	}
	if size >= 1<<62 {
		// No client sends exabytes; keeps remain a positive int64.
		return 0, errChunkSize
	}
	// Allow 16 bytes of overhead per chunk plus twice its data, like
	// net/http, so chunk extensions cannot be used to send unbounded
	// non-data.
	b.excess -= 16 + 2*int64(min(size, 1<<40))
	b.excess = max(b.excess, 0)
	if b.excess > 16<<10 {
		return 0, errChunkOverhead
	}
	return size, nil
}

// trailer reads the trailer section after the last chunk up to the blank
// line and merges its fields into the request's Trailer, as net/http
// does (the Handler decides which of them go on).
func (b *h1body) trailer() error {
	total := 0
	var fields http.Header
	for {
		line, err := b.c.readLine(maxTrailerBytes-total, b)
		if err != nil {
			if err == errLineLong {
				return errTrailerLong
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		total += len(line)
		s := line[:len(line)-1]
		if len(s) > 0 && s[len(s)-1] == '\r' {
			s = s[:len(s)-1]
		}
		if len(s) == 0 {
			if fields != nil {
				if b.req.Trailer == nil {
					b.req.Trailer = fields
				} else {
					maps.Copy(b.req.Trailer, fields)
				}
			}
			return io.EOF
		}
		colon := -1
		for i, c := range s {
			if c == ':' {
				colon = i
				break
			}
			if !isTchar(c) {
				return errTrailerField
			}
		}
		if colon <= 0 {
			return errTrailerField
		}
		for _, c := range s[colon+1:] {
			if !validValueByte(c) {
				return errTrailerField
			}
		}
		if fields == nil {
			fields = make(http.Header)
		}
		key := http.CanonicalHeaderKey(string(s[:colon]))
		fields[key] = append(fields[key], trimOWS(string(s[colon+1:])))
	}
}
