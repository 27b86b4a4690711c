package proxy

import (
	"context"
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestH2GracefulShutdown pins RFC 9113 6.8's two-step GOAWAY: a server
// shutting down (a binary upgrade, a handover's drain) first sends a
// GOAWAY with the highest stream id and a PING, so a stream the client
// opened before it read that GOAWAY is still served; the final GOAWAY,
// naming that stream, follows the PING's ack, and the connection ends
// once the stream is answered. With one GOAWAY naming the last stream
// seen, a request already on the wire was dropped (curl: "Error in the
// HTTP2 framing layer" during TestBinaryUpgradeKeepsVIP).
func TestH2GracefulShutdown(t *testing.T) {
	for _, how := range []string{"shutdown", "keep-alive off"} {
		t.Run(how, func(t *testing.T) {
			conn, s, done := h2pipe(t, h2echo)
			c := newH2Client(t, conn)
			get := c.block(":method", "GET", ":scheme", "https", ":authority", "example.com", ":path", "/late")
			shut := make(chan error, 1)
			if how == "shutdown" {
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					shut <- s.Shutdown(ctx)
				}()
			} else {
				s.SetKeepAlives(false)
				shut <- nil
			}
			var ping [8]byte
			for got := 0; got != 3; {
				f, err := c.fr.ReadFrame()
				if err != nil {
					t.Fatalf("before the first GOAWAY and PING: %v", err)
				}
				switch f := f.(type) {
				case *http2.SettingsFrame:
					if !f.IsAck() {
						c.send(func(fr *http2.Framer) { fr.WriteSettingsAck() })
					}
				case *http2.GoAwayFrame:
					if f.LastStreamID != 1<<31-1 || f.ErrCode != http2.ErrCodeNo {
						t.Fatalf("first GOAWAY: last stream %d, code %v; want %d, NO_ERROR", f.LastStreamID, f.ErrCode, uint32(1<<31-1))
					}
					got |= 1
				case *http2.PingFrame:
					if f.IsAck() {
						t.Fatal("PING ack from the server: the client sent no PING")
					}
					ping = f.Data
					got |= 2
				}
			}
			// The client's request crossed the GOAWAY on the wire: it
			// was sent before the client read it, then the PING's ack.
			c.send(func(fr *http2.Framer) {
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: get, EndStream: true, EndHeaders: true})
				fr.WritePing(true, ping)
			})
			var last uint32 = 1<<31 - 1
			answered := false
			for {
				f, err := c.fr.ReadFrame()
				if err != nil {
					break // the server closed the connection
				}
				switch f := f.(type) {
				case *http2.GoAwayFrame:
					last = f.LastStreamID
				case *http2.MetaHeadersFrame:
					if f.StreamID == 1 && f.PseudoValue("status") == "200" {
						answered = true
					}
				case *http2.RSTStreamFrame:
					t.Errorf("stream %d reset: %v", f.StreamID, f.ErrCode)
				}
			}
			if !answered {
				t.Error("the stream opened before the client read the GOAWAY was not answered")
			}
			if last != 1 {
				t.Errorf("final GOAWAY names stream %d, want 1", last)
			}
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("the connection did not end after its last stream")
			}
			if err := <-shut; err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		})
	}
}

// TestH2DrainBeforePreface pins that a graceful shutdown reaching a
// connection whose client preface has not arrived yet (a binary
// hand-over accepting it a moment before) waits for the server's
// SETTINGS: the server's first frame is SETTINGS (RFC 9113 3.4) and the
// GOAWAY follows. Before, the GOAWAY went out first and Go's client
// failed the request with PROTOCOL_ERROR ("received GOAWAY before a
// SETTINGS frame", TestBinaryHandoverUnderLoad in CI).
func TestH2DrainBeforePreface(t *testing.T) {
	for _, how := range []string{"shutdown", "keep-alive off"} {
		t.Run(how, func(t *testing.T) {
			conn, s, done := h2pipe(t, h2echo)
			shut := make(chan error, 1)
			if how == "shutdown" {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				go func() { shut <- s.Shutdown(ctx) }()
			} else {
				s.SetKeepAlives(false)
				shut <- nil
			}
			// The drain has reached the connection before its preface.
			for !drainWanted(s) {
				runtime.Gosched()
			}
			c := newH2Client(t, conn)
			f, err := c.fr.ReadFrame()
			if err != nil {
				t.Fatalf("first frame: %v", err)
			}
			if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
				t.Fatalf("first frame from the server is %v, want SETTINGS", f.Header())
			}
			c.send(func(fr *http2.Framer) { fr.WriteSettingsAck() })
			sawGoAway := false
			for !sawGoAway {
				f, err := c.fr.ReadFrame()
				if err != nil {
					t.Fatalf("before the GOAWAY: %v", err)
				}
				switch f := f.(type) {
				case *http2.GoAwayFrame:
					sawGoAway = true
				case *http2.PingFrame:
					if !f.IsAck() {
						data := f.Data
						c.send(func(fr *http2.Framer) { fr.WritePing(true, data) })
					}
				}
			}
			// The client answers drain's PING; the final GOAWAY ends it.
			for {
				f, err := c.fr.ReadFrame()
				if err != nil {
					break
				}
				if p, ok := f.(*http2.PingFrame); ok && !p.IsAck() {
					data := p.Data
					c.send(func(fr *http2.Framer) { fr.WritePing(true, data) })
				}
			}
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("the connection did not end after the drain")
			}
			if err := <-shut; err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		})
	}
}

// drainWanted reports whether s's one HTTP/2 connection has been asked
// to drain before its client preface arrived.
func drainWanted(s *Server) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.h2conns {
		c.mu.Lock()
		want := c.drainWant
		c.mu.Unlock()
		return want
	}
	return false
}
