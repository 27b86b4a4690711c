package reliability

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/admin"
	"github.com/kclb/kclb/internal/backend"
)

// TestAdminTCPAbuse pins issue 12, item 8 with raw requests to an admin
// TCP listener: reads need the token; a Host that is not the listener's
// address (a DNS-rebinding page) is refused even with the token; wrong
// tokens are limited per source address.
func TestAdminTCPAbuse(t *testing.T) {
	const token = "reliability-admin-token-0123456789abcdef"
	pool, err := backend.NewPool([]backend.Spec{{Name: "kc1", Addr: "127.0.0.1:1"}}, backend.PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := admin.New(admin.Options{Pool: pool, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, false) }()
	t.Cleanup(func() { cancel(); <-done })
	addr := ln.Addr().String()
	req := func(method, path, host, tok string) string {
		r := method + " " + path + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n"
		if tok != "" {
			r += "Authorization: Bearer " + tok + "\r\n"
		}
		if method == "POST" {
			r += "Content-Length: 0\r\n"
		}
		return r + "\r\n"
	}
	tests := []struct {
		name, method, path, host, token string
		status                          int
	}{
		{"status, no token", "GET", "/v1/status", addr, "", 401},
		{"metrics, no token", "GET", "/metrics", addr, "", 401},
		{"server, no token", "GET", "/v1/servers/kc1", addr, "", 401},
		{"status, token", "GET", "/v1/status", addr, token, 200},
		{"route table via a rebound name", "GET", "/v1/status", "attacker.example", token, 421},
		{"rebound name with the port", "GET", "/v1/servers/kc1", "attacker.example:" + addr[strings.LastIndexByte(addr, ':')+1:], token, 421},
		{"drain via a rebound name", "POST", "/v1/servers/kc1/drain", "attacker.example", token, 421},
		{"stats page HTML", "GET", "/stats", addr, "", 200},
	}
	for _, tc := range tests {
		if got := rawHTTP(t, addr, req(tc.method, tc.path, tc.host, tc.token), 5*time.Second).status(); got != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.status)
		}
	}
	// 3 failures so far; brute force: the 10th failure is the last 401.
	codes := map[int]int{}
	for range 20 {
		codes[rawHTTP(t, addr, req("GET", "/v1/status", addr, "guess"), 5*time.Second).status()]++
	}
	if codes[401] != 7 || codes[429] != 13 {
		t.Errorf("20 wrong tokens: %v, want 7 × 401 then 429", codes)
	}
	if got := rawHTTP(t, addr, req("GET", "/v1/status", addr, token), 5*time.Second).status(); got != 429 {
		t.Errorf("right token from the blocked address: %d, want 429", got)
	}
	if pool.Lookup("kc1").Admin() != backend.AdminReady {
		t.Errorf("kc1 changed state")
	}
	t.Logf("admin TCP: %d unauthorized, %d misdirected; brute force %v", s.Unauthorized(), s.Misdirected(), codes)
}
