package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// TestUpstreamFastHeadReuse pins the reuse rule of the in-place response
// path (issue 16: the response head parsed once, no per-request
// allocations): a connection's Response and header map are reused only
// after the body was closed, so concurrent exchanges never see each
// other's header, and every response kind leaves the connection
// reusable.
func TestUpstreamFastHeadReuse(t *testing.T) {
	addr, conns := rawBackend(t, func(n int, c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			id := req.URL.Query().Get("id")
			var resp string
			switch req.URL.Path {
			case "/empty":
				resp = "HTTP/1.1 204 No Content\r\nX-Id: " + id + "\r\n\r\n"
			case "/zero":
				resp = "HTTP/1.1 200 OK\r\nX-Id: " + id + "\r\nContent-Length: 0\r\n\r\n"
			case "/cookies":
				resp = "HTTP/1.1 200 OK\r\nSet-Cookie: a=" + id + "\r\nSet-Cookie: b=" + id + "\r\nx-id: " + id + "\r\nContent-Length: " + fmt.Sprint(len(id)) + "\r\n\r\n" + id
			case "/chunked": // not the fast path: net/http's reader
				resp = "HTTP/1.1 200 OK\r\nX-Id: " + id + "\r\nTransfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(id), id)
			default:
				resp = "HTTP/1.1 200 OK\r\nX-Id: " + id + "\r\nContent-Length: " + fmt.Sprint(len(id)) + "\r\n\r\n" + id
			}
			if req.Method == http.MethodHead {
				resp = resp[:strings.Index(resp, "\r\n\r\n")+4]
			}
			if _, err := io.WriteString(c, resp); err != nil {
				return
			}
		}
	})
	u := newTestUpstream(t, upstreamOptions{MaxIdlePerServer: 4})
	paths := []string{"/plain", "/empty", "/zero", "/cookies", "/chunked"}
	const workers, each = 4, 100
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("w%di%d", w, i)
				path := paths[i%len(paths)]
				method := http.MethodGet
				if i%7 == 0 {
					method = http.MethodHead
				}
				req, _ := http.NewRequest(method, "http://"+addr+path+"?id="+id, nil)
				resp, err := u.RoundTrip(req)
				if err != nil {
					t.Error(err)
					return
				}
				got := resp.Header.Get("X-Id")
				body, err := io.ReadAll(resp.Body)
				// The header is read again after the body: it must still
				// be this exchange's until Close.
				again := resp.Header.Get("X-Id")
				// The values are this exchange's until Close only: the
				// connection's next exchange reuses their slots.
				cookies := slices.Clone(resp.Header["Set-Cookie"])
				resp.Body.Close()
				if err != nil || got != id || again != id {
					t.Errorf("%s %s: X-Id %q then %q, err %v", method, path, got, again, err)
					return
				}
				if path == "/cookies" && (len(cookies) != 2 || cookies[1] != "b="+id) {
					t.Errorf("%s: Set-Cookie %q", path, cookies)
				}
				want := id
				if method == http.MethodHead || path == "/empty" || path == "/zero" {
					want = ""
				}
				if string(body) != want {
					t.Errorf("%s %s: body %q, want %q", method, path, body, want)
				}
			}
		})
	}
	wg.Wait()
	// Every exchange ended cleanly, so connections were reused: far
	// fewer than one per request.
	if n := conns.Load(); n > 3*workers {
		t.Errorf("%d backend connections for %d requests: connections not reused", n, workers*each)
	}
}

// FuzzFastHead feeds the same response bytes to fastHead and to
// net/http's ReadResponse (for a GET and a HEAD): whatever fastHead
// takes, ReadResponse must take too, with the same status, length,
// close decision, header fields and body. What fastHead declines goes
// to ReadResponse anyway, so only its acceptances are compared.
func FuzzFastHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
		"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 302 Found\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nPragma: no-cache\r\nCache-Control: max-age=5\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
		"HTTP/1.1 200 OK\r\nx-lower: v\r\nContent-Length:  3 \r\n\r\nabc",
		// Repeated names: more Set-Cookie fields than their slots, and
		// other names repeated around them.
		"HTTP/1.1 200 OK\r\nX-A: 1\r\n" + strings.Repeat("Set-Cookie: c=1\r\nSet-Cookie: d=2\r\n", 5) +
			"X-A: 2\r\nVary: a\r\nSet-Cookie: e=3\r\nVary: b\r\nX-A: 3\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	u := newUpstream(upstreamOptions{})
	scoped := newUpstream(upstreamOptions{scope: []string{"Set-Cookie", "Cache-Control"}})
	f.Fuzz(func(t *testing.T, raw []byte, head bool) {
		method := http.MethodGet
		if head {
			method = http.MethodHead
		}
		req, _ := http.NewRequest(method, "http://kc1/x", nil)
		c := &upConn{u: u}
		br := bufio.NewReaderSize(bytes.NewReader(raw), 4096)
		var arena []byte
		got, ok := u.fastHead(c, br, req, &arena)
		if !ok {
			return
		}
		// The body as upFastBody reads it: what remains, from br.
		remain := got.Body.(*upFastBody).remain
		gotBody, _ := io.ReadAll(io.LimitReader(br, remain))
		gotShort := int64(len(gotBody)) < remain
		want, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), req)
		if err != nil {
			t.Fatalf("fastHead took %q, ReadResponse refuses it: %v", raw, err)
		}
		wantBody, wantErr := io.ReadAll(want.Body)
		if c := want.StatusCode; c < 200 || c == http.StatusNoContent || c == http.StatusNotModified {
			// No body either way: fastHead reports a length of 0 where
			// ReadResponse may echo a Content-Length field (which the
			// header passes on in both).
			want.ContentLength = got.ContentLength
		}
		if got.StatusCode != want.StatusCode || got.Status != want.Status || got.ProtoMinor != want.ProtoMinor ||
			got.ContentLength != want.ContentLength || got.Close != want.Close {
			t.Fatalf("%q: fastHead %d %q 1.%d length %d close %v; ReadResponse %d %q 1.%d length %d close %v", raw,
				got.StatusCode, got.Status, got.ProtoMinor, got.ContentLength, got.Close,
				want.StatusCode, want.Status, want.ProtoMinor, want.ContentLength, want.Close)
		}
		if !reflect.DeepEqual(map[string][]string(got.Header), map[string][]string(want.Header)) {
			t.Fatalf("%q: fastHead header %q, ReadResponse %q", raw, got.Header, want.Header)
		}
		if gotShort != (wantErr != nil) || !bytes.Equal(gotBody, wantBody) {
			t.Fatalf("%q: fastHead body %q (short %v), ReadResponse %q (%v)", raw, gotBody, gotShort, wantBody, wantErr)
		}
		checkListed(t, scoped, raw, req, want.Header)
	})
}

// checkListed parses raw again as a listed head, as for kclb's HTTP/1.1
// server with the affinity Router's scope: its map must hold only the
// scope's names, map and list together the fields of want, and what
// the head notes (seen, cl, date) must match them.
func checkListed(t *testing.T, u *upstream, raw []byte, req *http.Request, want http.Header) {
	t.Helper()
	c := &upConn{u: u, wantList: true}
	var arena []byte
	got, ok := u.fastHead(c, bufio.NewReaderSize(bytes.NewReader(raw), 4096), req, &arena)
	if !ok {
		t.Fatalf("%q: taken unlisted, declined listed", raw)
	}
	f := c.fast
	if f.listed != (got.StatusCode >= 200 && f.seen&seenHop == 0) {
		t.Fatalf("%q: listed %v with seen %b, status %d", raw, f.listed, f.seen, got.StatusCode)
	}
	if f.listed {
		for k := range got.Header {
			if !u.inScope(k) {
				t.Fatalf("%q: listed head has %s in its map", raw, k)
			}
		}
		for _, fl := range f.list {
			if u.inScope(fl.k) {
				t.Fatalf("%q: listed head has %s in its list", raw, fl.k)
			}
		}
		_, date := want["Date"]
		wantCL := int64(-1)
		if vv := want["Content-Length"]; len(vv) == 1 {
			wantCL, _ = strconv.ParseInt(strings.TrimSpace(vv[0]), 10, 64)
		}
		if f.date != date || f.cl != wantCL {
			t.Fatalf("%q: listed date %v cl %d, header has date %v cl %d", raw, f.date, f.cl, date, wantCL)
		}
	}
	for k := range want {
		if bit := seenBit(k); bit != 0 && f.seen&bit == 0 {
			t.Fatalf("%q: %s not noted in seen %b", raw, k, f.seen)
		}
	}
	f.toMap()
	if !reflect.DeepEqual(map[string][]string(got.Header), map[string][]string(want)) {
		t.Fatalf("%q: listed head's fields %q, ReadResponse %q", raw, got.Header, want)
	}
}

// BenchmarkFastHead parses a Keycloak-like response head (a dozen fields,
// two session cookies) with fastHead, as a backend connection does for
// every response.
func BenchmarkFastHead(b *testing.B) {
	raw := "HTTP/1.1 200 OK\r\nCache-Control: no-store, must-revalidate, max-age=0\r\nContent-Type: application/json\r\n" +
		"Referrer-Policy: no-referrer\r\nStrict-Transport-Security: max-age=31536000; includeSubDomains\r\n" +
		"X-Content-Type-Options: nosniff\r\nX-Frame-Options: SAMEORIGIN\r\nX-XSS-Protection: 1; mode=block\r\n" +
		"Set-Cookie: AUTH_SESSION_ID=abc123.keycloak2; Path=/realms/test/; HttpOnly\r\n" +
		"Set-Cookie: KC_RESTART=xyz; Path=/realms/test/; HttpOnly\r\nVary: Origin\r\nDate: Thu, 03 Dec 2026 12:05:37 GMT\r\n" +
		"Content-Length: 2\r\n\r\nok"
	for _, listed := range []bool{false, true} {
		b.Run(fmt.Sprintf("listed=%v", listed), func(b *testing.B) {
			parse := fastHeadOf(b, raw, listed)
			b.ReportAllocs()
			for b.Loop() {
				parse()
			}
		})
	}
}

// fastHeadOf returns a function that parses raw with fastHead on one
// backend connection's state, as its exchanges do one after another.
func fastHeadOf(tb testing.TB, raw string, listed bool) func() *http.Response {
	u := newUpstream(upstreamOptions{scope: []string{"Set-Cookie", "Cache-Control"}})
	req, _ := http.NewRequest(http.MethodGet, "http://kc1/x", nil)
	c := &upConn{u: u, wantList: listed}
	rd := strings.NewReader(raw)
	br := bufio.NewReaderSize(rd, 4096)
	var arena []byte
	return func() *http.Response {
		rd.Reset(raw)
		br.Reset(rd)
		resp, ok := u.fastHead(c, br, req, &arena)
		if !ok {
			tb.Fatal("fastHead declined the head")
		}
		return resp
	}
}

// TestFastHeadKeycloakNamesAllocateNothing parses a response head with
// the field names as Keycloak spells them (X-XSS-Protection,
// WWW-Authenticate, lower-case content fields): the names come out in
// net/http's canonical form, and parsing allocates nothing
// (http.CanonicalHeaderKey made a string of each name it changed).
func TestFastHeadKeycloakNamesAllocateNothing(t *testing.T) {
	raw := "HTTP/1.1 401 Unauthorized\r\ncontent-type: text/html;charset=utf-8\r\nX-XSS-Protection: 1; mode=block\r\n" +
		"WWW-Authenticate: Bearer realm=\"test\"\r\nx-robots-tag: none\r\nReferrer-Policy: no-referrer\r\n" +
		"X-Odd-NAME: 1\r\ncontent-length: 2\r\n\r\nok"
	parse := fastHeadOf(t, raw, false)
	resp := parse()
	want, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), resp.Request)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(map[string][]string(resp.Header), map[string][]string(want.Header)) {
		t.Fatalf("header %q, want %q", resp.Header, want.Header)
	}
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	// X-Odd-NAME is in no table: its one allocation is the only one.
	if n := testing.AllocsPerRun(100, func() { parse() }); n != 1 {
		t.Errorf("%v allocations per head, want 1 (X-Odd-NAME's name)", n)
	}
}

// TestResponseKey compares responseKey with http.CanonicalHeaderKey.
func TestResponseKey(t *testing.T) {
	for _, k := range []string{"content-type", "Content-Type", "CONTENT-TYPE", "x-xss-protection", "X-XSS-Protection",
		"www-authenticate", "x-a", "X", "x", "a-", "-a", "a--b", "Set-Cookie", strings.Repeat("a", 47), strings.Repeat("a", 60), "x_y-z"} {
		if got, want := responseKey(k), http.CanonicalHeaderKey(k); got != want {
			t.Errorf("responseKey(%q) = %q, want %q", k, got, want)
		}
	}
}
