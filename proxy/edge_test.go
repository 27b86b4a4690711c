package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzH2Translation is the HTTP/2 → HTTP/1.1 head translation: the
// pseudo-header values an HTTP/2 client chooses (:method, :path,
// :authority) are checked by the edge rules and, when accepted, written
// as the backend request head. Whatever the input, the head written must
// parse back as exactly one HTTP/1.1 request with the same method,
// target and Host, nothing left over (no injected request line, header
// or second request), and never the backend's address as Host (issue
// 12, items 1-3).
func FuzzH2Translation(f *testing.F) {
	f.Add("GET", "/realms/a?x=1", "localhost:443")
	f.Add("GET /admin/", "/realms/a", "localhost")
	f.Add("GET", "/realms/a?x=1 /admin/ HTTP/1.1", "localhost")
	f.Add("POST", "/realms/a", `x";for=6.6.6.6`)
	f.Add("GET", "/realms/a#frag", "evil.test<script>")
	f.Add("GET", "/", "")
	f.Add("OPTIONS", "*", "[::1]:8443")
	f.Add("M-SEARCH", "/%zz?%", "a%41b.example")
	f.Add("GET", "/a\r\nHost: x", "x\r\nX-A: b")
	const backendAddr = "10.9.9.9:8080"
	const public = "auth.example.test"
	f.Fuzz(func(t *testing.T, method, path, authority string) {
		if !validMethod(method) || !validTarget(path) {
			return
		}
		host := authority
		switch hostRule(2, 0, authority, public) {
		case hostReject:
			return
		case hostPublic:
			host = public
		}
		u, err := url.ParseRequestURI(path) // what net/http's HTTP/2 server does
		if err != nil {
			return
		}
		out := &http.Request{
			Method: method, Host: host, Header: http.Header{"User-Agent": nil},
			URL:   &url.URL{Scheme: "http", Host: backendAddr, Path: u.Path, RawPath: u.RawPath, RawQuery: u.RawQuery},
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		}
		var buf bytes.Buffer
		if b, ok := appendHead(nil, out); ok {
			buf.Write(b)
		} else {
			bw := bufio.NewWriter(&buf)
			if err := out.Write(bw); err != nil {
				return // Request.Write refused it: nothing is sent
			}
			bw.Flush()
		}
		wire := buf.String()
		br := bufio.NewReader(strings.NewReader(wire))
		got, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("head %q does not parse: %v", wire, err)
		}
		io.Copy(io.Discard, got.Body)
		if rest, _ := io.ReadAll(br); len(rest) != 0 {
			t.Fatalf("bytes after the request (%q): %q", wire, rest)
		}
		if got.Method != method {
			t.Fatalf("method %q became %q", method, got.Method)
		}
		if got.Host != host || got.Host == backendAddr {
			t.Fatalf("Host %q became %q", host, got.Host)
		}
		if want := out.URL.RequestURI(); got.RequestURI != want {
			t.Fatalf("target %q became %q", want, got.RequestURI)
		}
		if len(got.Header) != 0 && !(len(got.Header) == 1 && got.Header.Get("Content-Length") == "0") {
			t.Fatalf("headers appeared: %q in %q", got.Header, wire)
		}
	})
}

func TestValidAuthority(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"localhost", true}, {"localhost:443", true}, {"kc.example.", true}, {"127.0.0.1:8080", true},
		{"[::1]", true}, {"[2001:db8::1]:443", true}, {"a%41b", true}, {"x!$&'()*+,;=y", true},
		{"", false}, {":443", false}, {"a:", false}, {"a:65536", false}, {"a:123456", false},
		{"a b", false}, {`a"b`, false}, {"a<b", false}, {"a/b", false}, {"a@b", false},
		{"a%4", false}, {"a%zz", false}, {"[::1", false}, {"[::1]x", false}, {"[127.0.0.1]", false},
		{"[fe80::1%25eth0]", false}, {"a\\b", false}, {"\xc3\xa9", false}, {strings.Repeat("a", 300), false},
	}
	for _, tc := range tests {
		if got := validAuthority(tc.in); got != tc.ok {
			t.Errorf("validAuthority(%q) = %v, want %v", tc.in, got, tc.ok)
		}
	}
}

func TestHostRule(t *testing.T) {
	tests := []struct {
		name         string
		major, minor int
		host, public string
		want         hostAction
	}{
		{"HTTP/1.1 valid", 1, 1, "kc.example", "", hostKeep},
		{"HTTP/1.1 invalid", 1, 1, "kc<x", "pub", hostReject},
		{"HTTP/1.1 empty", 1, 1, "", "pub", hostReject},
		{"HTTP/1.0 empty, public", 1, 0, "", "pub", hostPublic},
		{"HTTP/1.0 empty, none", 1, 0, "", "", hostReject},
		{"HTTP/2 empty, public", 2, 0, "", "pub", hostPublic},
		{"HTTP/2 empty, none", 2, 0, "", "", hostReject},
	}
	for _, tc := range tests {
		if got := hostRule(tc.major, tc.minor, tc.host, tc.public); got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestClientCertHeader(t *testing.T) {
	for _, k := range []string{
		"SSL_CLIENT_CERT", "Ssl_client_cert", "ssl-client-cert", "SSL_CLIENT_CERT_CHAIN_3", "CERT_CHAIN_0",
		"Ssl-Client-Verify", "X-Client-Cert", "X-Ssl-Client-Cert", "X-Ssl-Cert", "Client-Cert", "Client-Cert-Chain",
		"X-Forwarded-Client-Cert", "X-Forwarded-Tls-Client-Cert-Info",
	} {
		if !clientCertHeader(k) || !untrustedHeader(k) {
			t.Errorf("%s is not stripped", k)
		}
	}
	for _, k := range []string{"Cookie", "Authorization", "Content-Type", "User-Agent", "Certificate", "Ssl"} {
		if clientCertHeader(k) {
			t.Errorf("%s is taken for a client-certificate header", k)
		}
	}
}

func TestValidMethodAndTarget(t *testing.T) {
	for m, ok := range map[string]bool{"GET": true, "M-SEARCH": true, "": false, "GET /": false, "GET\t": false, "G\x00": false, "GÉT": false} {
		if validMethod(m) != ok {
			t.Errorf("validMethod(%q) != %v", m, ok)
		}
	}
	for s, ok := range map[string]bool{"/a?b=c": true, "*": true, "http://h/p": true, "": false, "/a b": false, "/a#b": false, "/a\x7f": false, "/é": false, "/a\tb": false} {
		if validTarget(s) != ok {
			t.Errorf("validTarget(%q) != %v", s, ok)
		}
	}
}

func TestFramingRule(t *testing.T) {
	tests := []struct {
		major, minor int
		te           bool
		want         framingAction
	}{
		{1, 0, true, framingRejectClose}, {1, 0, false, framingOK},
		{1, 1, true, framingCloseAfter}, {1, 1, false, framingOK}, {2, 0, true, framingOK},
	}
	for _, tc := range tests {
		if got := framingRule(tc.major, tc.minor, tc.te); got != tc.want {
			t.Errorf("framingRule(%d.%d, te %v) = %d, want %d", tc.major, tc.minor, tc.te, got, tc.want)
		}
	}
	if !closeHTTP10(1, 0) || closeHTTP10(1, 1) || closeHTTP10(2, 0) {
		t.Errorf("closeHTTP10 wrong")
	}
}

func TestUpgradeRule(t *testing.T) {
	for v, refuse := range map[string]bool{"websocket": true, "WebSocket": true, "h2c": false, "H2C": false, " h2c , ": false, "h2c, websocket": true, "TLS/1.2": true, "": false} {
		if upgradeRule(v) != refuse {
			t.Errorf("upgradeRule(%q) != %v", v, refuse)
		}
	}
}

func TestTrailerAllowed(t *testing.T) {
	for _, k := range []string{"X-Forwarded-For", "Forwarded", "X-Real-Ip", "Ssl_client_cert", "Client-Cert", "Connection", "Transfer-Encoding",
		"Content-Length", "Host", "Authorization", "Cookie", "Set-Cookie", "Strict-Transport-Security", "Traceparent", "X-Request-Id", ""} {
		if trailerAllowed(k) {
			t.Errorf("trailer %q allowed", k)
		}
	}
	for _, k := range []string{"X-Checksum", "Grpc-Status", "Server-Timing", "Digest"} {
		if !trailerAllowed(k) {
			t.Errorf("trailer %q refused", k)
		}
	}
}
