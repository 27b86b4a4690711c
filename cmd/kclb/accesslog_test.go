package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// docAccessFields reads the field names of the access log from the table
// in docs/operations.md ("Access log fields"), in order.
func docAccessFields(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n## Access log fields\n")
	if !ok {
		t.Fatal("docs/operations.md has no \"Access log fields\" section")
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	var out []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllStringSubmatch(sec, -1) {
		out = append(out, m[1])
	}
	if len(out) < 20 {
		t.Fatalf("only %d fields in the documented table", len(out))
	}
	return out
}

// jsonFields decodes one JSON log line into its keys, in order, and values.
func jsonFields(t *testing.T, line string) ([]string, map[string]any) {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(line))
	d.UseNumber()
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %s", line)
	}
	var keys []string
	vals := map[string]any{}
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			t.Fatalf("%v in %s", err, line)
		}
		k := tok.(string)
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatalf("%v in %s", err, line)
		}
		keys = append(keys, k)
		vals[k] = v
	}
	return keys, vals
}

// textFields splits one key=value log line (values Go-quoted when
// needed) into its keys, in order, and values; numbers become
// json.Number so both encodings compare alike.
func textFields(t *testing.T, line string) ([]string, map[string]any) {
	t.Helper()
	var keys []string
	vals := map[string]any{}
	for rest := line; rest != ""; {
		k, after, ok := strings.Cut(rest, "=")
		if !ok {
			t.Fatalf("no '=' after %q in %s", rest, line)
		}
		var v string
		if strings.HasPrefix(after, `"`) {
			q, err := strconv.QuotedPrefix(after)
			if err != nil {
				t.Fatalf("bad quoting at %q: %v", after, err)
			}
			v, _ = strconv.Unquote(q)
			after = after[len(q):]
			vals[k] = v
		} else {
			v, after, _ = strings.Cut(after, " ")
			if _, err := strconv.ParseFloat(v, 64); err == nil {
				vals[k] = json.Number(v)
			} else {
				vals[k] = v
			}
		}
		keys = append(keys, k)
		rest = strings.TrimPrefix(after, " ")
	}
	return keys, vals
}

// TestAccessLogSchema pins the access log through the real binary, from
// the configuration to the line on standard error, in both encodings:
// exactly the fields docs/operations.md lists, in its order, with client
// address and port, TLS details, host, path without query (unless
// access_log_query), status, bytes, server, route decision, retries and
// timings (issue 15, item 3).
func TestAccessLogSchema(t *testing.T) {
	documented := docAccessFields(t)
	for _, tc := range []struct {
		name   string
		format string
		query  bool
	}{
		{"json", "json", false},
		{"text with query", "text", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{nodes: 2, extra: echoPaths, noProc: true})
			cfg, _ := os.ReadFile(e.cfgPath)
			global := fmt.Sprintf("access_log = true\naccess_log_query = %v\nlog_format = %q", tc.query, tc.format)
			cfg = bytes.Replace(cfg, []byte("access_log = false"), []byte(global), 1)
			os.WriteFile(e.cfgPath, cfg, 0o600)
			e.proc = startKclb(t, e.cfgPath, 2)
			lines := e.proc.watch("access")
			parse := textFields
			if tc.format == "json" {
				parse = jsonFields
			}
			want := slices.DeleteFunc(slices.Clone(documented), func(k string) bool { return k == "query" && !tc.query })

			// One HTTP/1.1 client over TLS whose local port is known.
			var local string
			tr := &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: e.roots},
				TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{},
				DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
					var d net.Dialer
					c, err := d.DialContext(ctx, network, e.httpsAddr)
					if err == nil {
						local = c.LocalAddr().String()
					}
					return c, err
				},
			}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
			send := func(method, path, id string, body string, cookies []*http.Cookie) (*http.Response, []byte, map[string]any) {
				t.Helper()
				req, _ := http.NewRequest(method, e.url(path), strings.NewReader(body))
				req.Header.Set("X-Request-Id", id)
				for _, c := range cookies {
					req.AddCookie(c)
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				for {
					l := waitLog(t, lines, "access log line of "+id, 10*time.Second)
					if !strings.Contains(l, id) && !strings.Contains(l, "id="+id) {
						continue
					}
					keys, vals := parse(t, l)
					if !slices.Equal(keys, want) {
						t.Fatalf("fields\n%v\nwant (docs/operations.md)\n%v\nline: %s", keys, want, l)
					}
					if strings.Contains(l, "secret") && !tc.query {
						t.Fatalf("query logged without access_log_query: %s", l)
					}
					return resp, b, vals
				}
			}
			num := func(v any) float64 {
				f, err := v.(json.Number).Float64()
				if err != nil {
					t.Fatalf("%v is not a number", v)
				}
				return f
			}

			resp, body, v := send("GET", "/echo?code=secret", "schema-1", "", nil)
			_, port, _ := net.SplitHostPort(local)
			_, kport, _ := net.SplitHostPort(e.httpsAddr)
			for k, w := range map[string]any{
				"log": "access", "msg": "request", "level": "INFO", "id": "schema-1",
				"client": "127.0.0.1", "client_port": json.Number(port),
				"tls_version": "TLS 1.3", "sni": "localhost", "method": "GET", "host": "localhost:" + kport,
				"path": "/echo", "proto": "HTTP/1.1", "status": json.Number(strconv.Itoa(resp.StatusCode)),
				"bytes_in": json.Number("0"), "bytes_out": json.Number(strconv.Itoa(len(body))),
				"route": "balanced", "retries": json.Number("0"),
			} {
				if v[k] != w {
					t.Errorf("%s = %#v, want %#v", k, v[k], w)
				}
			}
			if tc.query && v["query"] != "code=secret" {
				t.Errorf("query = %#v", v["query"])
			}
			if c, _ := v["tls_cipher"].(string); !strings.HasPrefix(c, "TLS_") {
				t.Errorf("tls_cipher = %#v", v["tls_cipher"])
			}
			var echoed echo
			json.Unmarshal(body, &echoed)
			if v["server"] != echoed.Node || echoed.Node == "" {
				t.Errorf("server = %#v, answered by %q", v["server"], echoed.Node)
			}
			if num(v["connect_ms"]) < 0 || num(v["upstream_header_ms"]) < 0 || num(v["queue_ms"]) < 0 ||
				num(v["total_ms"]) < num(v["upstream_header_ms"]) {
				t.Errorf("timings: queue %v connect %v upstream %v total %v", v["queue_ms"], v["connect_ms"], v["upstream_header_ms"], v["total_ms"])
			}

			// The affinity cookie routes the next request: kc-route, same
			// server, with its body counted.
			_, body2, v2 := send("POST", "/echo", "schema-2", strings.Repeat("x", 1234), resp.Cookies())
			for k, w := range map[string]any{"route": "kc-route", "server": v["server"], "method": "POST",
				"bytes_in": json.Number("1234"), "bytes_out": json.Number(strconv.Itoa(len(body2)))} {
				if v2[k] != w {
					t.Errorf("second request: %s = %#v, want %#v", k, v2[k], w)
				}
			}

			// HTTP/2 goes through net/http's server: the same record.
			req, _ := http.NewRequest("GET", e.url("/echo"), nil)
			req.Header.Set("X-Request-Id", "schema-h2")
			if resp, err := e.client(true).Do(req); err != nil {
				t.Fatal(err)
			} else {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			for {
				l := waitLog(t, lines, "access log line of schema-h2", 10*time.Second)
				if !strings.Contains(l, "schema-h2") {
					continue
				}
				keys, vh := parse(t, l)
				if !slices.Equal(keys, want) || vh["proto"] != "HTTP/2.0" || vh["tls_version"] != "TLS 1.3" || vh["sni"] != "localhost" || vh["status"] != json.Number("200") {
					t.Errorf("HTTP/2 line: %s", l)
				}
				break
			}

			// A path the policy refuses: no server, no route, no connect.
			_, _, v3 := send("GET", "/metrics", "schema-3", "", nil)
			for k, w := range map[string]any{"status": json.Number("404"), "server": "", "route": "",
				"connect_ms": json.Number("-1"), "upstream_header_ms": json.Number("-1"), "id": "schema-3"} {
				if v3[k] != w {
					t.Errorf("refused request: %s = %#v, want %#v", k, v3[k], w)
				}
			}
		})
	}
}
