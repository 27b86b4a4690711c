package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
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
				cookies := resp.Header["Set-Cookie"]
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
