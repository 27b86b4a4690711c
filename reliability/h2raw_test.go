package reliability

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
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
}

// dialH2 opens a TLS connection negotiating h2 and exchanges the
// preface and SETTINGS.
func dialH2(t testing.TB, l *lb) *h2raw {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", l.tlsAddr,
		&tls.Config{RootCAs: l.roots, ServerName: "localhost", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		conn.Close()
		t.Fatalf("negotiated %q, want h2", p)
	}
	c := &h2raw{t: t, conn: conn, next: 1}
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
	status int           // :status of the response HEADERS, 0 if none
	rst    http2.ErrCode // RST_STREAM code, if reset
	reset  bool
	goaway bool          // the connection got a GOAWAY
	code   http2.ErrCode // GOAWAY code
	closed bool          // the connection ended
}

// wait reads frames until stream id is answered (response headers or a
// reset), the connection ends, or d passes. It acknowledges SETTINGS and
// PING on the way.
func (c *h2raw) wait(id uint32, d time.Duration) h2result {
	c.conn.SetReadDeadline(time.Now().Add(d))
	defer c.conn.SetReadDeadline(time.Time{})
	var res h2result
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return res
			}
			res.closed = true
			return res
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				c.fr.WritePing(true, f.Data)
			}
		case *http2.GoAwayFrame:
			res.goaway, res.code = true, f.ErrCode
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				res.reset, res.rst = true, f.ErrCode
				return res
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == id {
				res.status, _ = strconv.Atoi(f.PseudoValue("status"))
				return res
			}
		}
	}
}
