package reliability

import (
	"io"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/kclb/kclb/internal/backend"
)

// cpuTime returns the CPU time (user plus system) the test process has
// used: proxy, attacker and backends together, since all run in it.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// checkLegit sends a request over a separate HTTP/2 connection and
// returns its latency; it fails the test if the request fails.
func checkLegit(t *testing.T, l *lb) time.Duration {
	t.Helper()
	start := time.Now()
	c := l.client(t, true)
	defer c.CloseIdleConnections()
	resp, err := c.Get(l.surl("/echo?legit=1"))
	if err != nil {
		t.Fatalf("legitimate client: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("legitimate client: %s %d", resp.Proto, resp.StatusCode)
	}
	return time.Since(start)
}

// drainConn reads frames until the connection ends or d passes and
// reports whether it ended, and the GOAWAY code if one came.
func (c *h2raw) drainConn(d time.Duration) (ended, goaway bool, code http2.ErrCode) {
	c.conn.SetReadDeadline(time.Now().Add(d))
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return !isTimeout(err), goaway, code
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			goaway, code = true, ga.ErrCode
		}
	}
}

func isTimeout(err error) bool {
	type timeout interface{ Timeout() bool }
	te, ok := err.(timeout)
	return ok && te.Timeout()
}

// TestH2RapidReset opens streams and cancels each at once (the
// CVE-2023-44487 pattern). net/http bounds the handlers running per
// connection, so the backend sees at most MaxConcurrentStreams requests
// at a time, and other clients are unaffected.
func TestH2RapidReset(t *testing.T) {
	streams := 20000
	if testing.Short() {
		streams = 2000
	}
	rec := startRecorder(t)
	l := startLB(t, lbOptions{backends: []backend.Spec{{Addr: rec.addr}}})
	c := dialH2(t, l, 0)
	cpu0, start := cpuTime(), time.Now()
	sent := 0
	block := c.block(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/echo?sleep=50ms")
	c.conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
	// The server may close the connection at any point of the flood (a
	// client that does not read its resets is closed): a failed write of
	// either frame ends the loop, it does not fail the test.
	for ; sent < streams && time.Since(start) < 15*time.Second; sent++ {
		id := c.next
		c.next += 2
		if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true}); err != nil {
			break
		}
		if err := c.fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			break
		}
	}
	ended, goaway, code := c.drainConn(2 * time.Second)
	c.conn.Close()
	// The flood's requests outlive its connection (a reset stream keeps
	// its forwarded request): the peak is taken once they are done, so
	// the legitimate request, on a connection of its own, is not counted
	// in it.
	l.idle(t)
	peak := rec.peak.Load()
	reached := rec.n.Load()
	legit := checkLegit(t, l)
	cpu := cpuTime() - cpu0
	t.Logf("rapid reset: %d streams sent in %v; connection ended=%v goaway=%v (%v); backend got %d requests, peak %d concurrent; CPU %v; legit latency %v; stats %+v",
		sent, time.Since(start).Round(time.Millisecond), ended, goaway, code, reached, peak, cpu.Round(time.Millisecond), legit.Round(time.Millisecond), l.h.Stats())
	if p := peak; p > 100 {
		t.Errorf("backend saw %d concurrent requests, more than MaxConcurrentStreams (100)", p)
	}
}

// TestH2TooManyStreams opens more streams than the advertised limit
// without waiting: the excess is refused, and the backend never sees
// more than the limit at once.
func TestH2TooManyStreams(t *testing.T) {
	const streams = 300
	rec := startRecorder(t)
	l := startLB(t, lbOptions{backends: []backend.Spec{{Addr: rec.addr}}})
	c := dialH2(t, l, 0)
	// Let the server's SETTINGS (MaxConcurrentStreams 100) take effect.
	c.wait(0, 200*time.Millisecond)
	ids := make([]uint32, 0, streams)
	for range streams {
		ids = append(ids, c.get("/echo?sleep=300ms"))
	}
	ok, refused := 0, 0
	for _, id := range ids {
		switch res := c.wait(id, 10*time.Second); {
		case res.status == 200:
			ok++
		case res.reset:
			refused++
		case res.closed || res.goaway:
			t.Fatalf("connection lost after %d answers: %+v", ok+refused, res)
		}
	}
	legit := checkLegit(t, l)
	t.Logf("too many streams: %d sent, %d answered, %d refused; backend peak %d concurrent; legit latency %v",
		streams, ok, refused, rec.peak.Load(), legit.Round(time.Millisecond))
	if p := rec.peak.Load(); p > 100 {
		t.Errorf("backend saw %d concurrent requests, limit 100", p)
	}
	if refused == 0 {
		t.Errorf("no stream refused beyond the limit")
	}
}

// TestH2ControlFrameFloods sends SETTINGS and PING frames without ever
// reading the acknowledgements: net/http bounds the queued control
// frames and closes the connection; other clients are unaffected.
func TestH2ControlFrameFloods(t *testing.T) {
	// Not reduced with -short: fewer PINGs fit in the socket buffers and
	// would not show the limit.
	const frames = 200000
	tests := []struct {
		name  string
		write func(c *h2raw, i int) error
	}{
		{"settings", func(c *h2raw, i int) error {
			return c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(65535 + i%2)})
		}},
		{"ping", func(c *h2raw, i int) error { return c.fr.WritePing(false, [8]byte{byte(i)}) }},
		{"window update", func(c *h2raw, i int) error { return c.fr.WriteWindowUpdate(0, 1) }},
		{"empty data on closed stream", func(c *h2raw, i int) error { return c.fr.WriteData(1, false, nil) }},
	}
	rec := startRecorder(t)
	l := startLB(t, lbOptions{backends: []backend.Spec{{Addr: rec.addr}}})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dialH2(t, l, 4096)
			cpu0, start := cpuTime(), time.Now()
			c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			sent := 0
			var werr error
			for ; sent < frames; sent++ {
				if werr = tc.write(c, sent); werr != nil {
					break
				}
			}
			ended, goaway, code := c.drainConn(time.Second)
			cpu := cpuTime() - cpu0
			legit := checkLegit(t, l)
			t.Logf("%s flood: %d frames in %v (write error %v); connection ended=%v goaway=%v (%v); CPU %v; legit latency %v",
				tc.name, sent, time.Since(start).Round(time.Millisecond), werr, ended, goaway, code, cpu.Round(time.Millisecond), legit.Round(time.Millisecond))
			// Whether the PING acks back up far enough for net/http to
			// close the connection (10 000 queued control frames) depends
			// on how fast each side runs: it does in a plain run, it may
			// not under the race detector. The assertion that holds either
			// way is that other clients keep being served (checkLegit).
		})
	}
}

// TestH2OversizedHeaders sends header blocks beyond MaxHeaderBytes: one
// HEADERS frame followed by endless CONTINUATION frames (the
// CVE-2023-45288 pattern) and a single large block. The connection or
// stream is refused before the handler runs.
func TestH2OversizedHeaders(t *testing.T) {
	rec := startRecorder(t)
	l := startLB(t, lbOptions{backends: []backend.Spec{{Addr: rec.addr}}})
	t.Run("continuation flood", func(t *testing.T) {
		c := dialH2(t, l, 0)
		cpu0 := cpuTime()
		c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		first := c.block(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/echo?big=1")
		if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first, EndStream: true}); err != nil {
			t.Fatal(err)
		}
		sent := 0
		for i := 0; i < 10000; i++ { // up to 160 MiB
			frag := c.block("x-pad-"+strconv.Itoa(i), string(make([]byte, 16000)))
			if err := c.fr.WriteContinuation(1, false, frag); err != nil {
				break
			}
			sent += len(frag)
		}
		ended, goaway, code := c.drainConn(5 * time.Second)
		t.Logf("continuation flood: %d KiB sent before the server stopped reading; ended=%v goaway=%v (%v); CPU %v",
			sent>>10, ended, goaway, code, (cpuTime() - cpu0).Round(time.Millisecond))
		if !ended {
			t.Errorf("connection survived a %d KiB header block", sent>>10)
		}
	})
	t.Run("large block", func(t *testing.T) {
		c := dialH2(t, l, 0)
		fields := []string{":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/echo?big=2"}
		for i := range 8 {
			fields = append(fields, "x-big-"+strconv.Itoa(i), string(make([]byte, 15000)))
		}
		block := c.block(fields...)
		// Split into frames of at most 16 KiB.
		first := true
		for len(block) > 0 {
			n := min(len(block), 16000)
			frag := block[:n]
			block = block[n:]
			if first {
				c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: frag, EndStream: true, EndHeaders: len(block) == 0})
				first = false
			} else {
				c.fr.WriteContinuation(1, len(block) == 0, frag)
			}
		}
		res := c.wait(1, 5*time.Second)
		t.Logf("large block (120 KB): %+v", res)
		if res.status != 431 && !res.reset && !res.closed {
			t.Errorf("got %+v, want 431, a reset or the connection closed", res)
		}
	})
	if rec.saw("big=") {
		t.Errorf("an oversized request reached the backend")
	}
	checkLegit(t, l)
}
