package reliability

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2raw is a hand-driven HTTP/2 client connection: it sends whatever
// frames a test builds, valid or not, and reads the server's answers.
type h2raw struct {
	t    testing.TB
	conn *tls.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	next uint32 // next client stream id
	// done holds answers read while waiting for another stream.
	done   map[uint32]h2result
	goaway bool
	code   http2.ErrCode
}

// dialH2 opens a TLS connection negotiating h2 and exchanges the
// preface and SETTINGS. rcvbuf, if not zero, shrinks the socket's
// receive buffer so that what the server writes backs up quickly.
func dialH2(t testing.TB, l *lb, rcvbuf int) *h2raw {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf) })
		}
	}
	conn, err := tls.DialWithDialer(d, "tcp", l.tlsAddr,
		&tls.Config{RootCAs: l.roots, ServerName: "localhost", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		conn.Close()
		t.Fatalf("negotiated %q, want h2", p)
	}
	c := &h2raw{t: t, conn: conn, next: 1, done: map[uint32]h2result{}}
	c.fr = http2.NewFramer(conn, conn)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = 1 << 20
	c.enc = hpack.NewEncoder(&c.hbuf)
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return c
}

// block hpack-encodes fields (name, value pairs) without validating them.
func (c *h2raw) block(fields ...string) []byte {
	c.hbuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		c.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return append([]byte(nil), c.hbuf.Bytes()...)
}

// get sends a GET for path with extra header fields on a new stream and
// returns the stream id.
func (c *h2raw) get(path string, extra ...string) uint32 {
	fields := append([]string{":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", path}, extra...)
	return c.send(c.block(fields...), true)
}

// send writes one HEADERS frame with the encoded block on a new stream.
func (c *h2raw) send(block []byte, endStream bool) uint32 {
	id := c.next
	c.next += 2
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: endStream, EndHeaders: true}); err != nil {
		c.t.Fatalf("write headers: %v", err)
	}
	return id
}

// h2result is the server's answer on one stream.
type h2result struct {
	status int                 // :status of the response HEADERS, 0 if none
	fields []hpack.HeaderField // the response HEADERS' fields
	rst    http2.ErrCode       // RST_STREAM code, if reset
	reset  bool
	goaway bool          // the connection got a GOAWAY
	code   http2.ErrCode // GOAWAY code
	closed bool          // the connection ended
}

// wait reads frames until stream id is answered (response headers or a
// reset), the connection ends, or d passes. It acknowledges SETTINGS and
// PING on the way and keeps answers for other streams.
func (c *h2raw) wait(id uint32, d time.Duration) h2result {
	if res, ok := c.done[id]; ok {
		delete(c.done, id)
		return res
	}
	c.conn.SetReadDeadline(time.Now().Add(d))
	defer c.conn.SetReadDeadline(time.Time{})
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			res := h2result{goaway: c.goaway, code: c.code}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				res.closed = true
			}
			return res
		}
		var res h2result
		var sid uint32
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.fr.WriteSettingsAck()
			}
			continue
		case *http2.PingFrame:
			if !f.IsAck() {
				c.fr.WritePing(true, f.Data)
			}
			continue
		case *http2.GoAwayFrame:
			c.goaway, c.code = true, f.ErrCode
			continue
		case *http2.RSTStreamFrame:
			sid, res.reset, res.rst = f.StreamID, true, f.ErrCode
		case *http2.MetaHeadersFrame:
			sid = f.StreamID
			res.status, _ = strconv.Atoi(f.PseudoValue("status"))
			res.fields = f.Fields
		default:
			continue
		}
		res.goaway, res.code = c.goaway, c.code
		if sid == id {
			return res
		}
		if _, seen := c.done[sid]; !seen {
			c.done[sid] = res
		}
	}
}
