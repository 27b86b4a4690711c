package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkUpstreamPost measures one POST through the upstream client to
// a keep-alive backend that reads the body: a login-form-sized body
// (written on the calling goroutine) and bodies above BufferSize, whose
// response head is read concurrently while the body is sent (issue 18,
// item 2).
func BenchmarkUpstreamPost(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}))
	b.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	for _, size := range []int{512, 64 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("body=%d", size), func(b *testing.B) {
			u := newUpstream(upstreamOptions{})
			b.Cleanup(u.CloseIdleConnections)
			payload := make([]byte, size)
			body := bytes.NewReader(payload)
			req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/realms/test/login-actions/authenticate", body)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				body.Reset(payload)
				req.Body = io.NopCloser(body)
				resp, err := u.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
