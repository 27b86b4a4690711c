package accesslog

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

var fixedNow = func() time.Time { return time.Date(2026, 12, 2, 1, 2, 3, 456e6, time.UTC) }

func sample() *Record {
	return &Record{
		ID:             "0123abcd",
		Client:         netip.MustParseAddrPort("[2001:db8::7]:51234"),
		TLS:            &tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, ServerName: "sso.example.com"},
		Method:         "POST",
		Host:           "sso.example.com",
		Path:           "/realms/demo/protocol/openid-connect/token",
		Query:          "code=secret",
		Proto:          "HTTP/2.0",
		Status:         200,
		BytesIn:        120,
		BytesOut:       4096,
		Server:         "kc1",
		Route:          RouteKCRoute,
		Retries:        1,
		Queue:          1500 * time.Microsecond,
		Connect:        0,
		UpstreamHeader: 12345678 * time.Nanosecond,
		Total:          20 * time.Millisecond,
	}
}

// TestSchemaJSON pins the JSON field names, their order and types.
func TestSchemaJSON(t *testing.T) {
	var out bytes.Buffer
	New(Options{Out: &out, JSON: true, Now: fixedNow}).Log(sample())
	want := `{"time":"2026-12-02T01:02:03.456Z","level":"INFO","msg":"request","log":"access","id":"0123abcd",` +
		`"client":"2001:db8::7","client_port":51234,"tls_version":"TLS 1.3","tls_cipher":"TLS_AES_128_GCM_SHA256",` +
		`"sni":"sso.example.com","method":"POST","host":"sso.example.com","path":"/realms/demo/protocol/openid-connect/token",` +
		`"proto":"HTTP/2.0","status":200,"bytes_in":120,"bytes_out":4096,"server":"kc1","route":"kc-route","retries":1,` +
		`"queue_ms":1.500,"connect_ms":0.000,"upstream_header_ms":12.345,"total_ms":20.000}` + "\n"
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
}

// TestSchemaText pins the text encoding, and that log/slog's conventions
// hold: key=value, quoted only when needed.
func TestSchemaText(t *testing.T) {
	var out bytes.Buffer
	rec := sample()
	rec.TLS = nil
	rec.Server, rec.Route = "", RouteNone
	rec.Connect, rec.UpstreamHeader = -1, -1
	rec.Path = "/a b"
	New(Options{Out: &out, Now: fixedNow, Query: true}).Log(rec)
	want := `time=2026-12-02T01:02:03.456Z level=INFO msg=request log=access id=0123abcd client=2001:db8::7 client_port=51234 ` +
		`tls_version="" tls_cipher="" sni="" method=POST host=sso.example.com path="/a b" query="code=secret" ` +
		`proto=HTTP/2.0 status=200 bytes_in=120 bytes_out=4096 server="" route="" retries=1 queue_ms=1.500 connect_ms=-1 ` +
		`upstream_header_ms=-1 total_ms=20.000` + "\n"
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}

func TestQueryOffByDefault(t *testing.T) {
	var out bytes.Buffer
	New(Options{Out: &out, JSON: true}).Log(sample())
	if strings.Contains(out.String(), "secret") || strings.Contains(out.String(), `"query"`) {
		t.Fatalf("query logged without Options.Query: %s", out.String())
	}
}

func TestNilLogger(t *testing.T) {
	var l *Logger
	l.Log(sample()) // must not panic
}

func TestRouteStrings(t *testing.T) {
	for r, want := range map[Route]string{RouteNone: "", RouteBalanced: "balanced", RouteKCRoute: "kc-route",
		RouteAuthSession: "auth-session", RouteRedispatched: "redispatched"} {
		if r.String() != want {
			t.Errorf("%d: %q, want %q", r, r.String(), want)
		}
	}
}

// FuzzEncode checks that any strings give one valid JSON object per line
// and one text line that log/slog's quoting conventions can split.
func FuzzEncode(f *testing.F) {
	f.Add("/realms/x", "sso.example.com", "GET", "id")
	f.Add("/a\"b\\c\n\x00\xff\u2028", "h=1 2", "", "")
	f.Fuzz(func(t *testing.T, path, host, method, id string) {
		rec := sample()
		rec.Path, rec.Host, rec.Method, rec.ID = path, host, method, id
		lj := New(Options{JSON: true, Query: true})
		b := lj.Append(nil, rec)
		if bytes.Count(b, []byte("\n")) != 1 || b[len(b)-1] != '\n' {
			t.Fatalf("JSON not one line: %q", b)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("invalid JSON %q: %v", b, err)
		}
		if got := m["path"].(string); got != string([]rune(path)) {
			t.Fatalf("path %q came back %q", path, got)
		}
		lt := New(Options{})
		b = lt.Append(nil, rec)
		if bytes.Count(b, []byte("\n")) != 1 {
			t.Fatalf("text not one line: %q", b)
		}
	})
}

// BenchmarkLog measures one record's encoding and write (to io.Discard).
func BenchmarkLog(b *testing.B) {
	for _, js := range []bool{false, true} {
		name := "text"
		if js {
			name = "json"
		}
		b.Run(name, func(b *testing.B) {
			l := New(Options{Out: io.Discard, JSON: js})
			rec := sample()
			b.ReportAllocs()
			for b.Loop() {
				l.Log(rec)
			}
		})
	}
	// The previous access log: log/slog with eight attributes.
	b.Run("slog-text", func(b *testing.B) {
		l := slog.New(slog.NewTextHandler(io.Discard, nil)).With("log", "access")
		rec := sample()
		b.ReportAllocs()
		for b.Loop() {
			l.LogAttrs(b.Context(), slog.LevelInfo, "request", slog.String("id", rec.ID),
				slog.String("client", rec.Client.Addr().String()), slog.String("method", rec.Method),
				slog.String("path", rec.Path), slog.String("proto", rec.Proto), slog.Int("status", rec.Status),
				slog.String("server", rec.Server), slog.Duration("duration", rec.Total))
		}
	})
}

// TestConcurrentLinesIntact: records logged from many goroutines at once
// come out as whole lines (one Write each, serialised), never
// interleaved, even into a writer that is not safe for concurrent use.
func TestConcurrentLinesIntact(t *testing.T) {
	var out bytes.Buffer
	l := New(Options{Out: &out, JSON: true})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rec := sample()
			rec.Retries = g
			for range 200 {
				l.Log(rec)
			}
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 1600 {
		t.Fatalf("%d lines, want 1600", len(lines))
	}
	for _, ln := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(ln), &m); err != nil {
			t.Fatalf("broken line %q: %v", ln, err)
		}
	}
}
