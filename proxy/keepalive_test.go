package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestSetKeepAlives: with keep-alive off an idle connection is closed at
// once and a response on an open one says Connection: close and ends it;
// back on, connections are kept (issue 17, item 3: a handover's drain).
func TestSetKeepAlives(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(ServerOptions{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })})
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	get := func(c net.Conn, br *bufio.Reader) *http.Response {
		t.Helper()
		if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	idle, idleR := dial()
	if resp := get(idle, idleR); resp.Close {
		t.Fatal("keep-alive on: response closes the connection")
	}
	busy, busyR := dial()
	s.SetKeepAlives(false)
	resp := get(busy, busyR)
	if !resp.Close {
		t.Fatal("keep-alive off: the response keeps the connection")
	}
	busy.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := busyR.ReadByte(); err == nil {
		t.Fatalf("keep-alive off: connection open after its response: read %q", b)
	}
	// The idle connection is left alone (its client may be sending) until CloseIdle.
	if resp := get(idle, idleR); !resp.Close {
		t.Fatal("keep-alive off: the idle connection's next response keeps it")
	}
	idle2, idle2R := dial()
	s.SetKeepAlives(true)
	get(idle2, idle2R)
	s.SetKeepAlives(false)
	deadline := time.Now().Add(5 * time.Second)
	for s.CloseIdle() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open", s.OpenConns())
		}
		time.Sleep(time.Millisecond) // polling the count: there is no close signal
	}
	idle2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := idle2R.ReadByte(); err == nil {
		t.Fatal("CloseIdle left an idle connection open")
	}
	s.SetKeepAlives(true)
	c, r := dial()
	if resp := get(c, r); resp.Close {
		t.Fatal("keep-alive back on: response closes the connection")
	}
}
