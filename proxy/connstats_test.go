package proxy

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestConnStats(t *testing.T) {
	var cs ConnStats
	srv := NewServer(ServerOptions{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }),
		Conns:   &cs,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

	tests := []struct {
		name string
		req  string
		want string // response prefix
	}{
		{"served", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "HTTP/1.1 204 "},
		{"conflicting content-length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nAB", "HTTP/1.1 400 "},
		{"unknown transfer-encoding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", "HTTP/1.1 501 "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, closed := rawExchange(t, addr, tc.req)
			if !strings.HasPrefix(resp, tc.want) || !closed {
				t.Fatalf("got %q closed=%v, want prefix %q and close", resp, closed, tc.want)
			}
		})
	}
	c, err := net.Dial("tcp", addr) // connects and leaves: unused
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	want := ConnCounts{Accepted: 4, Open: 0, Rejected: 2, Unused: 1}
	deadline := time.Now().Add(5 * time.Second)
	for cs.Counts() != want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := cs.Counts(); got != want {
		t.Errorf("Counts() = %+v, want %+v", got, want)
	}
}
