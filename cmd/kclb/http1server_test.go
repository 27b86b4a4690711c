package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"
)

// TestHTTP1ServerSwitch runs the real binary with a listener that sets
// stdlib_http1 = true next to the default ones: the key reaches the
// runtime (issue 16: kclb's own HTTP/1.1 server is the default and
// net/http's remains as a fallback). The two servers answer a refused
// head differently on the wire: kclb's says how long its error body is,
// net/http's does not.
func TestHTTP1ServerSwitch(t *testing.T) {
	stdAddr := freeAddr(t)
	e := newEnv(t, envOptions{noProc: true, extra: fmt.Sprintf("\n[[listener]]\nname = \"std\"\nbind = %q\nstdlib_http1 = true\n", stdAddr)})
	p := startKclb(t, e.cfgPath, 3)
	logs := p.Logs()
	for _, tc := range []struct {
		name, addr, server string
		wantLength         bool
	}{
		{"default", e.httpAddr, "kclb", true},
		{"stdlib_http1", stdAddr, "net/http", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			found := false
			for _, l := range logs {
				found = found || strings.Contains(l, "msg=listening") && strings.Contains(l, "addr="+tc.addr) && strings.Contains(l, "http1="+tc.server)
			}
			if !found {
				t.Errorf("no listening line for %s with http1=%s:\n%s", tc.addr, tc.server, strings.Join(logs, "\n"))
			}
			c, err := net.Dial("tcp", tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, "GET /realms/test/ HTTP/1.1\r\n\r\n") // no Host: refused before any handler
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			b, _ := io.ReadAll(c)
			resp := string(b)
			if !strings.HasPrefix(resp, "HTTP/1.1 400 ") {
				t.Fatalf("response %q, want 400", resp)
			}
			if got := strings.Contains(resp, "\r\nContent-Length: "); got != tc.wantLength {
				t.Errorf("Content-Length in the refusal: %v, want %v (served by %s?): %q", got, tc.wantLength, tc.server, resp)
			}
		})
	}
}

// TestIdleKeepAliveThroughBinary: a keep-alive client connection idle for
// longer than the first part of the idle wait (250 ms, after which kclb
// moves the wait to a fresh goroutine and, over TLS, waits without its
// read buffer; issue 16) is served again on the same connection through
// the real binary: over HTTPS with the KC_ROUTE the first response
// issued still pinning the same node, and on the plain listener.
func TestIdleKeepAliveThroughBinary(t *testing.T) {
	e := newEnv(t, envOptions{})
	const idle = 600 * time.Millisecond // the idle period under test, not a synchronisation
	hc := e.client(false)
	reused := 0
	get := func(cookie string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", e.url("/realms/test/hello"), nil)
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) {
				if i.Reused {
					reused++
				}
			},
		}))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		return resp
	}
	first := get("")
	var route string
	for _, c := range first.Cookies() {
		if c.Name == "KC_ROUTE" {
			route = c.Name + "=" + c.Value
		}
	}
	if route == "" {
		t.Fatalf("no KC_ROUTE issued: %v", first.Header["Set-Cookie"])
	}
	for i := range 2 {
		time.Sleep(idle)
		if got := get(route); got.Header.Get("X-Node") != first.Header.Get("X-Node") {
			t.Errorf("after idle period %d: node %q, want %q (the KC_ROUTE's)", i+1, got.Header.Get("X-Node"), first.Header.Get("X-Node"))
		}
	}
	if reused != 2 {
		t.Errorf("%d of 2 requests after an idle period reused the connection", reused)
	}

	c, err := net.Dial("tcp", e.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := range 2 {
		if i > 0 {
			time.Sleep(idle)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET /realms/test/hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("plain request %d: %v", i+1, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusPermanentRedirect {
			t.Errorf("plain request %d: status %d, want the redirect to HTTPS", i+1, resp.StatusCode)
		}
	}
}
