package main

import (
	"fmt"
	"io"
	"net"
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
