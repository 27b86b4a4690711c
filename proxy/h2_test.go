package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/balancer"
	"github.com/kclb/kclb/internal/pathpolicy"
)

// h2echo answers every request with its method, path, a header, the
// body length and a trailer, so that the tests see what the server
// built from the frames.
var h2echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	w.Header().Set("X-Got", r.Method+" "+r.URL.RequestURI()+" "+r.Host+" "+r.Header.Get("Cookie")+" "+strconv.FormatInt(n, 10)+" "+r.Trailer.Get("X-T"))
	if r.URL.Query().Get("big") != "" {
		w.Write(bytes.Repeat([]byte("b"), 100<<10))
		return
	}
	io.WriteString(w, "ok")
})

// h2pipe serves one in-memory HTTP/2 connection with kclb's server and
// returns the client's end and a channel closed when the server is done.
func h2pipe(t testing.TB, h http.Handler) (net.Conn, *Server, <-chan struct{}) {
	s := NewServer(ServerOptions{Handler: h, HTTP2: true, MaxConcurrentStreams: 10, WriteTimeout: 2 * time.Second, KeepAlive: 2 * time.Second})
	cli, srv := net.Pipe()
	c := newH2Conn(s, srv, nil, "192.0.2.1:1234", nil, time.Now())
	s.trackH2(c, true)
	done := make(chan struct{})
	go func() { c.serve(); close(done) }()
	return cli, s, done
}

// h2client is a minimal client over h2pipe.
type h2client struct {
	t    testing.TB
	conn net.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	wmu  sync.Mutex // serializes the client's writes
}

// send writes frames without blocking the reader (net.Pipe has no
// buffer); the frames of one call stay together.
func (c *h2client) send(fn func(fr *http2.Framer)) {
	go func() {
		c.wmu.Lock()
		defer c.wmu.Unlock()
		fn(c.fr)
	}()
}

func newH2Client(t testing.TB, conn net.Conn) *h2client {
	c := &h2client{t: t, conn: conn}
	c.fr = http2.NewFramer(conn, conn)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.enc = hpack.NewEncoder(&c.hbuf)
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, http2.ClientPreface)
	c.fr.WriteSettings()
	return c
}

func (c *h2client) block(fields ...string) []byte {
	c.hbuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		c.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return append([]byte(nil), c.hbuf.Bytes()...)
}

// response reads frames until stream id ends and returns its status,
// the X-Got header and the body; reset is the RST_STREAM code, if any.
type h2res struct {
	status, got string
	body        []byte
	reset       bool
	code        http2.ErrCode
	fields      map[string]string
	counts      map[string]int // fields of each name
}

func (c *h2client) read(id uint32) h2res {
	c.t.Helper()
	var res h2res
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.t.Fatalf("stream %d: %v", id, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.send(func(fr *http2.Framer) { fr.WriteSettingsAck() })
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID != id {
				continue
			}
			if s := f.PseudoValue("status"); s != "" {
				res.status = s
			}
			if res.fields == nil {
				res.fields, res.counts = map[string]string{}, map[string]int{}
			}
			for _, hf := range f.RegularFields() {
				if hf.Name == "x-got" {
					res.got = hf.Value
				}
				res.fields[hf.Name] = hf.Value
				res.counts[hf.Name]++
			}
			if f.StreamEnded() {
				return res
			}
		case *http2.DataFrame:
			if f.StreamID != id {
				continue
			}
			res.body = append(res.body, f.Data()...)
			if f.StreamEnded() {
				return res
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				res.reset, res.code = true, f.ErrCode
				return res
			}
		case *http2.GoAwayFrame:
			c.t.Fatalf("stream %d: GOAWAY %v", id, f.ErrCode)
		}
	}
}

func TestH2Requests(t *testing.T) {
	conn, _, done := h2pipe(t, h2echo)
	c := newH2Client(t, conn)
	base := []string{":method", "GET", ":scheme", "https", ":authority", "example.com", ":path", "/a?b=c"}

	c.send(func(fr *http2.Framer) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.block(base...), EndStream: true, EndHeaders: true})
	})
	if res := c.read(1); res.status != "200" || res.got != "GET /a?b=c example.com  0 " || string(res.body) != "ok" {
		t.Errorf("GET: %+v", res)
	}

	// A POST with a body in two frames, cookie crumbs and a trailer.
	post := c.block(":method", "POST", ":scheme", "https", ":authority", "example.com", ":path", "/p",
		"cookie", "a=1", "cookie", "b=2", "trailer", "X-T", "content-length", "5")
	tr := c.block("x-t", "tv")
	c.send(func(fr *http2.Framer) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: post, EndHeaders: true})
		fr.WriteData(3, false, []byte("abc"))
		fr.WriteData(3, false, []byte("de"))
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: tr, EndStream: true, EndHeaders: true})
	})
	if res := c.read(3); res.status != "200" || res.got != "POST /p example.com a=1; b=2 5 tv" {
		t.Errorf("POST: %+v", res)
	}

	// A body longer than its content-length resets the stream.
	bad := c.block(":method", "POST", ":scheme", "https", ":authority", "example.com", ":path", "/p", "content-length", "2")
	c.send(func(fr *http2.Framer) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: bad, EndHeaders: true})
		fr.WriteData(5, true, []byte("abc"))
	})
	if res := c.read(5); !res.reset || res.code != http2.ErrCodeProtocol {
		t.Errorf("over-long body: %+v", res)
	}

	// Connection-specific fields reset the stream; the connection goes on.
	conn2 := c.block(append(base, "connection", "close")...)
	c.send(func(fr *http2.Framer) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 7, BlockFragment: conn2, EndStream: true, EndHeaders: true})
	})
	if res := c.read(7); !res.reset || res.code != http2.ErrCodeProtocol {
		t.Errorf("connection field: %+v", res)
	}

	// A response larger than the client's 64 KiB window waits for
	// WINDOW_UPDATEs.
	big := c.block(":method", "GET", ":scheme", "https", ":authority", "example.com", ":path", "/big?big=1")
	c.send(func(fr *http2.Framer) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 9, BlockFragment: big, EndStream: true, EndHeaders: true})
	})
	var body []byte
	for ended := false; !ended; {
		f, err := c.fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := f.(*http2.DataFrame); ok && d.StreamID == 9 {
			body = append(body, d.Data()...)
			ended = d.StreamEnded()
			n := uint32(len(d.Data()))
			if n > 0 {
				c.send(func(fr *http2.Framer) { fr.WriteWindowUpdate(0, n); fr.WriteWindowUpdate(9, n) })
			}
		}
	}
	if len(body) != 100<<10 {
		t.Errorf("big body: %d bytes, want %d", len(body), 100<<10)
	}

	// Expect: 100-continue gets a 100 when the Handler reads the body,
	// before the client sends it.
	exp := c.block(":method", "POST", ":scheme", "https", ":authority", "example.com", ":path", "/e", "expect", "100-continue", "content-length", "2")
	c.send(func(fr *http2.Framer) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 11, BlockFragment: exp, EndHeaders: true})
	})
	for got100 := false; !got100; {
		f, err := c.fr.ReadFrame()
		if err != nil {
			t.Fatalf("waiting for 100 Continue: %v", err)
		}
		if mh, ok := f.(*http2.MetaHeadersFrame); ok && mh.StreamID == 11 {
			if s := mh.PseudoValue("status"); s != "100" || mh.StreamEnded() {
				t.Fatalf("expect: got status %q (ended %v) before the body was sent", s, mh.StreamEnded())
			}
			got100 = true
		}
	}
	c.send(func(fr *http2.Framer) { fr.WriteData(11, true, []byte("hi")) })
	if res := c.read(11); res.status != "200" || res.got != "POST /e example.com  2 " {
		t.Errorf("expect: %+v", res)
	}

	conn.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("connection did not end after the client closed")
	}
}

// FuzzH2Frames feeds arbitrary bytes after the client preface to kclb's
// HTTP/2 server: it must neither panic nor hang, whatever the frames.
func FuzzH2Frames(f *testing.F) {
	var seed bytes.Buffer
	fr := http2.NewFramer(&seed, nil)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, kv := range [][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", "a"}, {":path", "/x?y"}, {"cookie", "a=b"}, {"content-length", "3"}} {
		enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10})
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
	fr.WriteData(1, true, []byte("abc"))
	fr.WritePing(false, [8]byte{1})
	fr.WriteWindowUpdate(0, 100)
	f.Add(seed.Bytes())
	seed.Reset()
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: false})
	fr.WriteContinuation(1, true, nil)
	fr.WriteRSTStream(1, http2.ErrCodeCancel)
	fr.WriteData(1, false, nil)
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	f.Add(seed.Bytes())
	f.Add([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0})

	f.Fuzz(func(t *testing.T, data []byte) {
		conn, s, done := h2pipe(t, h2echo)
		go io.Copy(io.Discard, conn)
		conn.SetWriteDeadline(time.Now().Add(time.Second))
		io.WriteString(conn, http2.ClientPreface)
		conn.Write(data)
		conn.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("server did not end the connection")
		}
		s.Close()
	})
}

// TestH2ResponseHeadArena proxies responses whose header strings share
// the stream's scratch (the backend head arena): what the header
// compression table keeps of them must not change when the next
// response overwrites the arena.
func TestH2ResponseHeadArena(t *testing.T) {
	n := 0
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n++
		w.Header().Set("X-Seq", fmt.Sprintf("%05d", n))
		w.Header().Set("X-Kind", []string{"aaaa", "bbbb", "cccc"}[n%3])
		w.Header().Set("Set-Cookie", fmt.Sprintf("AUTH_SESSION_ID=%05d.node; Path=/", n))
		io.WriteString(w, "ok")
	}))
	t.Cleanup(be.Close)
	pool, err := backend.NewPool([]backend.Spec{{Name: "kc1", Addr: be.Listener.Addr().String()}}, backend.PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Options{Pool: pool, Router: BalancerRouter{Selector: &balancer.RoundRobin{}}, Policy: pathpolicy.New(pathpolicy.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	conn, _, _ := h2pipe(t, h)
	defer conn.Close()
	c := newH2Client(t, conn)
	for i := 1; i <= 40; i++ {
		id := uint32(2*i - 1)
		blk := c.block(":method", "GET", ":scheme", "https", ":authority", "sso.example.com", ":path", "/realms/test/x")
		c.send(func(fr *http2.Framer) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndStream: true, EndHeaders: true})
		})
		res := c.read(id)
		want := fmt.Sprintf("%05d", i)
		if res.status != "200" || res.fields["x-seq"] != want || res.fields["x-kind"] != []string{"aaaa", "bbbb", "cccc"}[i%3] ||
			res.fields["set-cookie"] != "AUTH_SESSION_ID="+want+".node; Path=/" {
			t.Fatalf("response %d: %+v", i, res)
		}
	}
}

// TestH2ListedHead sends backend heads through kclb's HTTP/2 server as
// listed heads (the Handler's Router names the fields it edits): the
// backend's Content-Length and Date go out once, not again as the
// server's own; without them the server adds its own; hop-by-hop
// fields drop; security headers are added unless the backend set them.
func TestH2ListedHead(t *testing.T) {
	heads := []string{
		"Date: Thu, 03 Dec 2026 12:00:00 GMT\r\nContent-Length: 2\r\nX-A: 1\r\n",
		"Content-Length: 2\r\nX-Frame-Options: DENY\r\n",
		"Connection: X-Secret\r\nX-Secret: 1\r\nContent-Length: 2\r\n",
	}
	addr, _ := headsBackend(t, heads, "ok")
	conn, _, _ := h2pipe(t, oneBackend(t, addr, 1, NewSecurityHeaders("", "", "", "SAMEORIGIN")))
	defer conn.Close()
	c := newH2Client(t, conn)
	for i := range 2 * len(heads) {
		id := uint32(2*i + 1)
		blk := c.block(":method", "GET", ":scheme", "https", ":authority", "sso.example.com", ":path", "/realms/test/x")
		c.send(func(fr *http2.Framer) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndStream: true, EndHeaders: true})
		})
		res := c.read(id)
		if res.status != "200" || string(res.body) != "ok" || res.counts["content-length"] != 1 || res.counts["date"] != 1 ||
			res.counts["x-frame-options"] != 1 || res.counts["x-secret"] != 0 || res.counts["connection"] != 0 {
			t.Fatalf("head %d: %+v", i%len(heads), res)
		}
		switch i % len(heads) {
		case 0:
			if res.fields["date"] != "Thu, 03 Dec 2026 12:00:00 GMT" || res.fields["x-a"] != "1" {
				t.Fatalf("head 0: the backend's fields were not kept: %+v", res.fields)
			}
		case 1:
			if res.fields["x-frame-options"] != "DENY" {
				t.Fatalf("head 1: X-Frame-Options %q, want the backend's", res.fields["x-frame-options"])
			}
		}
	}
}

// TestH2PingDuringSlowDownload sends a PING while a large response
// fills the output queue (the client reads nothing meanwhile): the
// queue of a Handler's data is not a control-frame flood, so the
// connection lives and the whole body arrives.
func TestH2PingDuringSlowDownload(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("d"), 32<<10)
		for range 32 { // 1 MiB
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	conn, s, _ := h2pipe(t, h)
	defer conn.Close()
	c := newH2Client(t, conn)
	blk := c.block(":method", "GET", ":scheme", "https", ":authority", "a", ":path", "/big")
	c.send(func(fr *http2.Framer) {
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30})
		fr.WriteWindowUpdate(0, 1<<30)
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk, EndStream: true, EndHeaders: true})
	})
	// Wait until the Handler has filled the queue (nothing is read),
	// then ping.
	for deadline := time.Now().Add(5 * time.Second); ; {
		if queued(s) > h2MaxOut {
			break
		}
		if time.Now().After(deadline) {
			s.mu.Lock()
			for c := range s.h2conns {
				c.mu.Lock()
				for _, st := range c.streams {
					t.Logf("stream %d: send window %d, err %v", st.id, st.sendWindow, st.err)
				}
				t.Logf("conn: running %d, send window %d, init %d, closed %v, werr %v", c.running, c.sendConn, c.initWindow, c.closed, c.werr)
				c.mu.Unlock()
			}
			s.mu.Unlock()
			t.Fatalf("the output queue never filled: %d bytes", queued(s))
		}
		runtime.Gosched()
	}
	c.send(func(fr *http2.Framer) { fr.WritePing(false, [8]byte{7}) })
	got, pinged := 0, false
	for got < 1<<20 || !pinged {
		f, err := c.fr.ReadFrame()
		if err != nil {
			t.Fatalf("after %d bytes (ping acked %v): %v", got, pinged, err)
		}
		switch f := f.(type) {
		case *http2.DataFrame:
			got += len(f.Data())
		case *http2.PingFrame:
			pinged = pinged || f.IsAck()
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY %v after %d bytes", f.ErrCode, got)
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.send(func(fr *http2.Framer) { fr.WriteSettingsAck() })
			}
		}
	}
}

// queued returns the bytes queued for the client on s's HTTP/2
// connections.
func queued(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.h2conns {
		c.mu.Lock()
		n += len(c.out)
		c.mu.Unlock()
	}
	return n
}

// TestH2SlotFreeOnEndStream: a stream stops counting against
// MaxConcurrentStreams once its END_STREAM is queued, as the client
// counts it (RFC 9113 5.1.2): a client at the limit that opens a new
// stream as soon as one ends is not refused, even while the ended
// streams' goroutines have not finished yet (h2AfterFinish holds them
// there). Handlers still running keep counting, as TestH2RapidReset and
// the reliability suite pin.
func TestH2SlotFreeOnEndStream(t *testing.T) {
	hold := make(chan struct{})
	held := make(chan struct{}, 16)
	wait := func() { held <- struct{}{}; <-hold }
	h2AfterFinish.Store(&wait)
	t.Cleanup(func() { h2AfterFinish.Store(nil) })
	released := false
	release := func() {
		if !released {
			released = true
			close(hold)
		}
	}
	defer release()
	conn, _, _ := h2pipe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer conn.Close()
	c := newH2Client(t, conn)
	const limit = 10 // h2pipe's MaxConcurrentStreams
	blk := c.block(":method", "GET", ":scheme", "https", ":authority", "a", ":path", "/x")
	for i := range limit {
		id := uint32(2*i + 1)
		c.send(func(fr *http2.Framer) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndStream: true, EndHeaders: true})
		})
		if res := c.read(id); res.status != "200" || string(res.body) != "ok" {
			t.Fatalf("stream %d: %+v", id, res)
		}
	}
	for range limit {
		<-held // every ended stream's goroutine waits before its slot accounting
	}
	id := uint32(2*limit + 1)
	c.send(func(fr *http2.Framer) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndStream: true, EndHeaders: true})
	})
	if res := c.read(id); res.reset || res.status != "200" {
		t.Errorf("a stream opened after %d ended ones: %+v (reset code %v)", limit, res, res.code)
	}
	release()
}
