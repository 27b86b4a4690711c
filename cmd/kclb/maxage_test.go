package main

import (
	"net/http"
	"os/exec"
	"strings"
	"testing"
)

// TestAffinityMaxAge pins issue 18, item 6 (affinity.max_age): "0s" gives
// the documented session cookie (no Max-Age, no Expires) that still pins,
// the default gives Max-Age=21600, and a sub-second value is refused by
// `kclb check` with the key and line instead of passing the check and
// failing `kclb run`. On c0768d7 "0s" gave a 6 h cookie.
func TestAffinityMaxAge(t *testing.T) {
	for _, tc := range []struct {
		name, extra, want string
	}{
		{name: "default", want: "Max-Age=21600"},
		{name: "session", extra: "\n[affinity]\nmax_age = \"0s\"\n"},
		{name: "90m", extra: "\n[affinity]\nmax_age = \"90m\"\n", want: "Max-Age=5400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{extra: echoPaths + tc.extra})
			c := e.client(false)
			req, _ := http.NewRequest("GET", e.url("/echo"), nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			var raw string
			for _, v := range resp.Header.Values("Set-Cookie") {
				if strings.HasPrefix(v, "KC_ROUTE=") {
					raw = v
				}
			}
			if raw == "" {
				t.Fatalf("no KC_ROUTE cookie in %q", resp.Header.Values("Set-Cookie"))
			}
			if tc.want != "" && !strings.Contains(raw, "; "+tc.want+";") {
				t.Fatalf("Set-Cookie %q, want %s", raw, tc.want)
			}
			if tc.want == "" && (strings.Contains(raw, "Max-Age") || strings.Contains(raw, "Expires")) {
				t.Fatalf("Set-Cookie %q, want a session cookie (no Max-Age, no Expires)", raw)
			}
			ck, err := http.ParseSetCookie(raw)
			if err != nil {
				t.Fatal(err)
			}
			pinned := ""
			for range 10 {
				req, _ := http.NewRequest("GET", e.url("/echo"), nil)
				req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
				n := getEcho(t, c, req).Node
				if pinned == "" {
					pinned = n
				}
				if n != pinned {
					t.Fatalf("cookie pinned to %s, then a request went to %s", pinned, n)
				}
			}
		})
	}
	t.Run("sub-second refused by check", func(t *testing.T) {
		e := newEnv(t, envOptions{extra: "\n[affinity]\nmax_age = \"500ms\"\n", noProc: true})
		out, err := exec.Command(kclbBin, "check", "-c", e.cfgPath).CombinedOutput()
		if err == nil {
			t.Fatalf("kclb check accepted max_age = \"500ms\":\n%s", out)
		}
		if !strings.Contains(string(out), "kclb.toml:") || !strings.Contains(string(out), "affinity.max_age: 500ms is below 1s") {
			t.Fatalf("kclb check output %q, want the file, line and key", out)
		}
	})
}
