package main

import (
	"net/http"
	"testing"
)

// TestNoAdminSurfaceOnPublicListeners: the admin API, metrics, stats page
// and profiles answer only on the admin listener, never on the public
// ones, even when the admin socket is enabled.
func TestNoAdminSurfaceOnPublicListeners(t *testing.T) {
	a := newAdminEnv(t, adminOptions{})
	c := a.client(true)
	for _, path := range []string{"/v1/status", "/v1/servers/keycloak1", "/stats", "/metrics", "/debug/pprof/", "/health/ready", "/kcsim/stats"} {
		for _, method := range []string{"GET", "POST"} {
			req, _ := http.NewRequest(method, a.url(path), nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s %s on the public listener: %d, want 404", method, path, resp.StatusCode)
			}
		}
	}
	// Nothing changed: every server is still ready.
	for _, s := range a.status(t).Servers {
		if s.Admin != "ready" {
			t.Fatalf("server %s is %s after requests on the public listener", s.Name, s.Admin)
		}
	}
}
