package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestHTTP2ServerSwitch runs the real binary with a TLS listener that
// sets stdlib_http2 = true next to the default one: the key reaches the
// runtime (issue 16: kclb's own HTTP/2 server is the default and
// net/http's remains as a fallback), both serve requests through to the
// stand-ins, and they tell themselves apart on the wire: net/http's
// SETTINGS carry SETTINGS_MAX_FRAME_SIZE, kclb's keep the default.
func TestHTTP2ServerSwitch(t *testing.T) {
	stdAddr := freeAddr(t)
	e := newEnv(t, envOptions{noProc: true, extra: fmt.Sprintf("\n[[listener]]\nname = \"std2\"\nbind = %q\ntls = true\nstdlib_http2 = true\n", stdAddr)})
	p := startKclb(t, e.cfgPath, 3)
	logs := p.Logs()
	for _, tc := range []struct {
		name, addr, server string
		maxFrame           bool
	}{
		{"default", e.httpsAddr, "kclb", false},
		{"stdlib_http2", stdAddr, "net/http", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			found := false
			for _, l := range logs {
				found = found || strings.Contains(l, "msg=listening") && strings.Contains(l, "addr="+tc.addr) && strings.Contains(l, "http2="+tc.server)
			}
			if !found {
				t.Errorf("no listening line for %s with http2=%s:\n%s", tc.addr, tc.server, strings.Join(logs, "\n"))
			}
			conn, err := tls.Dial("tcp", tc.addr, &tls.Config{RootCAs: e.roots, ServerName: "localhost", NextProtos: []string{"h2"}})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(conn, http2.ClientPreface)
			fr := http2.NewFramer(conn, conn)
			fr.WriteSettings()
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			sf, ok := f.(*http2.SettingsFrame)
			if !ok {
				t.Fatalf("first frame %v, want SETTINGS", f)
			}
			_, has := sf.Value(http2.SettingMaxFrameSize)
			if has != tc.maxFrame {
				t.Errorf("SETTINGS_MAX_FRAME_SIZE sent: %v, want %v (served by %s?)", has, tc.maxFrame, tc.server)
			}
			addr := tc.addr
			tr := &http.Transport{
				TLSClientConfig:   &tls.Config{RootCAs: e.roots},
				ForceAttemptHTTP2: true,
				DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, network, addr)
				},
			}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for i := range 5 {
				resp, err := c.Get("https://localhost/realms/test/hello?n=" + fmt.Sprint(i))
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || resp.ProtoMajor != 2 || !strings.Contains(string(b), `"realm":"test"`) {
					t.Fatalf("request %d: %s %d %q", i, resp.Proto, resp.StatusCode, b)
				}
				if resp.Header.Get("Strict-Transport-Security") == "" {
					t.Errorf("request %d: no security headers: %v", i, resp.Header)
				}
			}
		})
	}
}
