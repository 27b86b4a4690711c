package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
)

// BenchmarkH1WriteFields measures writing a proxied response's header
// fields (a Keycloak page's dozen, security headers and KC_ROUTE
// included) in name order into the connection's write buffer.
func BenchmarkH1WriteFields(b *testing.B) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	c := &h1conn{nc: server}
	c.bw = bufio.NewWriterSize(io.Discard, h1WriteBuf)
	w := &h1response{c: c, hdr: http.Header{
		"Content-Type":              {"text/html;charset=utf-8"},
		"Content-Length":            {"955"},
		"Cache-Control":             {"no-store, must-revalidate, max-age=0"},
		"Set-Cookie":                {"AUTH_SESSION_ID=abc123.keycloak1; Path=/realms/test/; HttpOnly", "KC_ROUTE=abc.123.def; Max-Age=43200; Path=/; HttpOnly"},
		"Referrer-Policy":           {"no-referrer"},
		"Strict-Transport-Security": {"max-age=31536000; includeSubDomains"},
		"X-Content-Type-Options":    {"nosniff"},
		"X-Frame-Options":           {"SAMEORIGIN"},
		"Content-Language":          {"en"},
		"X-Robots-Tag":              {"none"},
		"Date":                      {"Wed, 02 Dec 2026 15:00:00 GMT"},
		"Vary":                      {"Accept-Encoding"},
	}}
	b.ReportAllocs()
	for b.Loop() {
		w.writeFields()
		c.bw.Reset(io.Discard)
	}
}
