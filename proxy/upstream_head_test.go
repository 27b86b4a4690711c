package proxy

import (
	"bufio"
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// stdlibHead returns what Request.Write sends for r.
func stdlibHead(t testing.TB, r *http.Request) (string, error) {
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	err := r.Write(bw)
	bw.Flush()
	return buf.String(), err
}

func ownHead(r *http.Request) (string, bool) {
	b, ok := appendHead(nil, r)
	return string(b), ok
}

// headRequest builds a bodyless request the way the proxy hands them to
// upstream: a URL with a path and query, the client's Host, headers.
func headRequest(method, host, path, query string, h http.Header) *http.Request {
	return &http.Request{
		Method: method,
		URL:    &url.URL{Scheme: "http", Host: "127.0.0.1:8080", Path: path, RawQuery: query},
		Host:   host,
		Header: h,
		Body:   http.NoBody,
	}
}

func TestWriteHeadMatchesRequestWrite(t *testing.T) {
	tests := []struct {
		name     string
		req      *http.Request
		fallback bool
	}{
		{name: "plain GET", req: headRequest("GET", "sso.example.com", "/realms/test/hello", "", http.Header{
			"Accept": {"*/*"}, "User-Agent": {"curl/8"}, "X-Forwarded-For": {"192.0.2.1"}, "Cookie": {"a=b", "c=d"},
		})},
		{name: "query and escaped path", req: headRequest("GET", "sso.example.com:8443", "/realms/a b/ü", "x=1&y=%20", http.Header{"Accept": {"text/html"}})},
		{name: "no User-Agent gets Go's", req: headRequest("HEAD", "h", "/", "", http.Header{})},
		{name: "empty User-Agent sends none", req: headRequest("GET", "h", "/", "", http.Header{"User-Agent": {""}})},
		{name: "nil header", req: headRequest("GET", "h", "/", "", nil)},
		{name: "empty method is GET", req: headRequest("", "h", "/", "", nil)},
		{name: "POST without body sends Content-Length 0", req: headRequest("POST", "h", "/token", "", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})},
		{name: "PUT", req: headRequest("PUT", "h", "/", "", nil)},
		{name: "PATCH", req: headRequest("PATCH", "h", "/", "", nil)},
		{name: "DELETE sends no length", req: headRequest("DELETE", "h", "/", "", nil)},
		{name: "OPTIONS", req: headRequest("OPTIONS", "h", "/", "", nil)},
		{name: "values with CR LF and spaces", req: headRequest("GET", "h", "/", "", http.Header{
			"X-A": {" padded\t"}, "X-B": {"line\r\nbreak"}, "User-Agent": {" ua\nx "},
		})},
		{name: "excluded and invalid names", req: headRequest("GET", "h", "/", "", http.Header{
			"Content-Length": {"5"}, "Transfer-Encoding": {"chunked"}, "Trailer": {"X"}, "Host": {"evil"}, "Bad Name": {"x"}, "x-lower": {"y"},
		})},
		{name: "empty path", req: headRequest("GET", "h", "", "", nil)},
		{name: "force query", req: &http.Request{Method: "GET", URL: &url.URL{Host: "h", Path: "/p", ForceQuery: true}, Header: http.Header{}}},
		{name: "host from URL", req: headRequest("GET", "", "/", "", nil)},
		{name: "IPv6 host", req: headRequest("GET", "[2001:db8::1]:443", "/", "", nil)},
		{name: "many headers", req: headRequest("GET", "h", "/", "", manyHeaders(40))},
		{name: "body is left to Request.Write", req: mustRequest("POST", "http://h/", "a=b"), fallback: true},
		{name: "Close is left to Request.Write", req: &http.Request{Method: "GET", URL: &url.URL{Host: "h", Path: "/"}, Close: true}, fallback: true},
		{name: "IPv6 zone is left to Request.Write", req: headRequest("GET", "[fe80::1%25eth0]:80", "/", "", nil), fallback: true},
		{name: "non-ASCII host is left to Request.Write", req: headRequest("GET", "bücher.example", "/", "", nil), fallback: true},
		{name: "invalid host is left to Request.Write", req: headRequest("GET", "a b", "/", "", nil), fallback: true},
		{name: "control byte in query is left to Request.Write", req: headRequest("GET", "h", "/", "a=\x01", nil), fallback: true},
		{name: "opaque URL is left to Request.Write", req: &http.Request{Method: "GET", URL: &url.URL{Opaque: "//h/x"}, Host: "h"}, fallback: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ownHead(tt.req)
			if ok == tt.fallback {
				t.Fatalf("appendHead handled it = %v, want %v", ok, !tt.fallback)
			}
			if !ok {
				if got != "" {
					t.Fatalf("appendHead wrote %q before refusing", got)
				}
				return
			}
			want, err := stdlibHead(t, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("appendHead wrote\n%q\nRequest.Write writes\n%q", got, want)
			}
		})
	}
}

func manyHeaders(n int) http.Header {
	h := http.Header{}
	for i := range n {
		h.Set("X-H"+strings.Repeat("a", i%7)+string(rune('A'+i%26))+string(rune('a'+i/26)), "v")
	}
	return h
}

func mustRequest(method, u, body string) *http.Request {
	r, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		panic(err)
	}
	return r
}

// FuzzAppendHead checks that whenever appendHead handles a request it
// writes exactly what Request.Write writes.
func FuzzAppendHead(f *testing.F) {
	f.Add("GET", "sso.example.com", "/realms/test/hello", "a=1", "Accept", "*/*", "curl/8")
	f.Add("POST", "h:80", "/p", "", "Content-Type", "text/plain", "")
	f.Add("", "[::1]:80", "", "x", "X-Bad\r\nName", " v\r\n", "\n")
	f.Add("DELETE", "h", "/a%2Fb", "", "Cookie", "k=v; k2=v2", "ua")
	f.Fuzz(func(t *testing.T, method, host, path, query, key, value, ua string) {
		h := http.Header{key: {value, value + "2"}}
		if ua != "" {
			h["User-Agent"] = []string{ua}
		}
		r := headRequest(method, host, path, query, h)
		got, ok := ownHead(r)
		if !ok {
			if got != "" {
				t.Fatalf("appendHead wrote %q before refusing", got)
			}
			return
		}
		want, err := stdlibHead(t, r)
		if err != nil {
			t.Fatalf("appendHead accepted a request Request.Write refuses: %v", err)
		}
		if got != want {
			t.Fatalf("appendHead wrote\n%q\nRequest.Write writes\n%q", got, want)
		}
	})
}
