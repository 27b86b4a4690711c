package main

import (
	"strings"
	"testing"
	"time"
)

// TestCountersSurviveReload pins issue 18, item 6 (counters): the handler
// counters behind kclb_proxy_events_total (and the status API) restarted
// from zero on every reload. Traffic that raises them, a reload, and no
// counter went down; after more traffic they go on from where they were.
func TestCountersSurviveReload(t *testing.T) {
	a := newAdminEnv(t, adminOptions{tcp: true, nodes: 1})
	base := "http://" + a.tcp
	c := a.client(false)
	noServer := func(n int) {
		t.Helper()
		mustCLI(t, "maint", "keycloak1", "-s", a.socket)
		for range n {
			resp, err := c.Get(a.url("/realms/test/.well-known/openid-configuration"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 503 {
				t.Fatalf("with the only server in maintenance: %s, want 503", resp.Status)
			}
		}
		mustCLI(t, "ready", "keycloak1", "-s", a.socket)
	}
	events := func() map[string]float64 {
		t.Helper()
		f := scrapeMetrics(t, base)
		out := map[string]float64{}
		for _, m := range f["kclb_proxy_events_total"].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "event" {
					out[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
		return out
	}
	noServer(3)
	before := events()
	if before["no_server"] != 3 {
		t.Fatalf("no_server = %v before the reload, want 3", before["no_server"])
	}

	reloaded := a.proc.watch("configuration reloaded")
	if out := mustCLI(t, "reload", "-s", a.socket); !strings.Contains(out, "reload") {
		t.Logf("kclb reload: %s", out)
	}
	waitLog(t, reloaded, "configuration reloaded", 10*time.Second)
	after := events()
	for name, v := range before {
		if after[name] < v {
			t.Errorf("kclb_proxy_events_total{event=%q} went down across the reload: %v -> %v", name, v, after[name])
		}
	}
	noServer(2)
	if got := events()["no_server"]; got != 5 {
		t.Errorf("no_server = %v after 2 more, want 5", got)
	}
}
