package reliability

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/proxy"
)

// heapInuse returns the heap in use after a GC.
func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// legit sends GETs on a fresh HTTP/1.1 connection each every interval
// until stop is closed and returns how many were sent and how many
// failed, and the slowest one.
func legit(t testing.TB, l *lb, stop <-chan struct{}, interval time.Duration) (sent, failed int, worst time.Duration) {
	c := l.client(t, false)
	c.Transport.(*http.Transport).DisableKeepAlives = true
	for i := 0; i < 1000; i++ {
		select {
		case <-stop:
			return
		case <-time.After(interval):
		}
		start := time.Now()
		resp, err := c.Get(l.url("/echo?legit=" + strconv.Itoa(i)))
		sent++
		if err != nil {
			failed++
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			failed++
		}
		worst = max(worst, time.Since(start))
	}
	return
}

// TestSlowloris holds connections open by sending a request head one
// byte at a time. The header timeout closes each of them; the
// connections are counted as rejected, and other clients are served
// meanwhile.
func TestSlowloris(t *testing.T) {
	n := 300
	if testing.Short() {
		n = 50
	}
	rec := startRecorder(t)
	l := startLB(t, lbOptions{backends: []backend.Spec{{Addr: rec.addr}}})
	heap0 := heapInuse()
	before := l.conns.Counts()
	stop := make(chan struct{})
	var sent, failed int
	var worst time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		sent, failed, worst = legit(t, l, stop, 20*time.Millisecond)
	}()
	start := time.Now()
	var wg sync.WaitGroup
	closedBy := make(chan time.Duration, n)
	for i := range n {
		wg.Go(func() {
			c, err := net.Dial("tcp", l.addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			head := fmt.Sprintf("GET /echo?slow=%d HTTP/1.1\r\nHost: a\r\nX-Slow: %s", i, strings.Repeat("x", 100))
			for j := range len(head) {
				if _, err := c.Write([]byte{head[j]}); err != nil {
					closedBy <- time.Since(start)
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			io.Copy(io.Discard, c)
			closedBy <- time.Since(start)
		})
	}
	wg.Wait()
	close(stop)
	<-done
	close(closedBy)
	var last time.Duration
	for d := range closedBy {
		last = max(last, d)
	}
	l.idle(t)
	after := l.conns.Counts()
	heap1 := heapInuse()
	if got := after.Rejected - before.Rejected; got != uint64(n) {
		t.Errorf("ConnStats.Rejected +%d, want +%d", got, n)
	}
	if failed != 0 || sent == 0 {
		t.Errorf("legitimate clients: %d of %d failed", failed, sent)
	}
	if rec.saw("slow=") {
		t.Errorf("a slowloris request reached the backend")
	}
	t.Logf("slowloris: %d connections, last closed after %v; legit %d requests, %d failed, slowest %v; heap %d -> %d KiB",
		n, last.Round(time.Millisecond), sent, failed, worst.Round(time.Millisecond), heap0>>10, heap1>>10)
}

// TestSlowRequestBody sends request bodies slower than the client
// timeout allows: each gets a 408, is counted in Stats.BadRequests, and
// the backend is not blamed.
func TestSlowRequestBody(t *testing.T) {
	const n = 20
	rec := startRecorder(t)
	l := startLB(t, lbOptions{backends: []backend.Spec{{Addr: rec.addr}}})
	var wg sync.WaitGroup
	results := make(chan rawResult, n)
	for range n {
		wg.Go(func() {
			c, err := net.Dial("tcp", l.addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			readDone := make(chan rawResult, 1)
			go func() {
				b, err := io.ReadAll(c)
				// Unread body bytes make the close a reset.
				readDone <- rawResult{data: string(b), closed: err == nil || errors.Is(err, syscall.ECONNRESET)}
			}()
			for range 100 { // 10 s at most
				select {
				case r := <-readDone:
					results <- r
					return
				case <-time.After(100 * time.Millisecond):
					c.Write([]byte(strings.Repeat("b", 10)))
				}
			}
			t.Error("slow body never refused")
		})
	}
	stop := make(chan struct{})
	legitDone := make(chan [2]int, 1)
	go func() {
		s, f, _ := legit(t, l, stop, 50*time.Millisecond)
		legitDone <- [2]int{s, f}
	}()
	wg.Wait()
	close(stop)
	lg := <-legitDone
	close(results)
	for r := range results {
		// 408 at the body timeout, or 429 beyond the per-client cap on
		// requests waiting for their body (issue 12, item 6).
		if (r.status() != http.StatusRequestTimeout && r.status() != http.StatusTooManyRequests) || !r.closed {
			t.Errorf("slow body: status %d closed=%v, want 408 or 429 and close", r.status(), r.closed)
		}
	}
	l.idle(t)
	st := l.h.Stats()
	if st.BadRequests+st.BodyLimited != n || st.Timeouts != 0 || st.BadGateway != 0 {
		t.Errorf("stats %+v, want BadRequests + BodyLimited %d and no gateway errors", st, n)
	}
	if s := l.pool.Servers()[0]; s.Health() != backend.HealthUp || s.Counters().Errors != 0 {
		t.Errorf("server blamed for slow clients: %v, %d errors", s.Health(), s.Counters().Errors)
	}
	if lg[1] != 0 {
		t.Errorf("legitimate clients: %d of %d failed", lg[1], lg[0])
	}
	t.Logf("slow bodies: %d refused with 408, %d with 429; legit %d requests, %d failed", st.BadRequests, st.BodyLimited, lg[0], lg[1])
}

// TestSlowReader asks for a large response and never reads it: the
// write timeout ends each exchange, Stats.ClientAborts counts it, the
// backend connection and slot are released.
func TestSlowReader(t *testing.T) {
	const n = 20
	const size = 32 << 20
	bigBody := strings.Repeat("z", 64<<10)
	rb := startRawBackend(t, func(c *net.TCPConn, br *bufio.Reader) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n")
		for sent := 0; sent < size; sent += len(bigBody) {
			if _, err := io.WriteString(c, bigBody); err != nil {
				return
			}
		}
	})
	l := startLB(t, lbOptions{backends: []backend.Spec{{Addr: rb.addr}}, server: func(o *proxy.ServerOptions) {
		o.WriteTimeout = 2 * time.Second
	}})
	heap0 := heapInuse()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			c, err := net.Dial("tcp", l.addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.(*net.TCPConn).SetReadBuffer(4096)
			io.WriteString(c, "GET /raw HTTP/1.1\r\nHost: a\r\n\r\n")
			// Read nothing until the proxy gives up on us.
			waitFor(t, 10*time.Second, "the write timeout to abort the slow reader", func() bool {
				return l.h.Stats().ClientAborts >= 1
			})
		})
	}
	waitFor(t, 15*time.Second, "every slow reader to be aborted", func() bool { return l.h.Stats().ClientAborts == n })
	heapDuring := heapInuse()
	wg.Wait()
	l.idle(t)
	l.h.Close()
	waitFor(t, 5*time.Second, "backend connections to close", func() bool { return rb.open.Load() == 0 })
	st := l.h.Stats()
	if st.ClientAborts != n || st.Truncated != 0 {
		t.Errorf("stats %+v, want ClientAborts %d and nothing truncated", st, n)
	}
	if s := l.pool.Servers()[0]; s.Counters().Errors != 0 {
		t.Errorf("server blamed for slow readers: %d errors", s.Counters().Errors)
	}
	t.Logf("slow readers: %d aborted by the write timeout; heap %d KiB before, %d KiB with all stuck", n, heap0>>10, heapDuring>>10)
}

// TestIdleConnectionsBeyondMaxconn opens far more idle connections than
// the global maxconn. The listener accepts maxconn of them at a time,
// the header timeout closes each (ConnStats.Unused), and a legitimate
// client queued behind them is still served.
func TestIdleConnectionsBeyondMaxconn(t *testing.T) {
	n, maxconn := 1000, 200
	if testing.Short() {
		n = 300
	}
	n = raiseNoFile(t, n)
	rec := startRecorder(t)
	l := startLB(t, lbOptions{backends: []backend.Spec{{Addr: rec.addr}}, maxconn: maxconn,
		server: func(o *proxy.ServerOptions) { o.HeaderTimeout = 500 * time.Millisecond }})
	heap0 := heapInuse()
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	start := time.Now()
	for range n {
		c, err := net.Dial("tcp", l.addr)
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	if got := len(l.sem); got > maxconn {
		t.Fatalf("%d connections hold slots, maxconn %d", got, maxconn)
	}
	heapFull := heapInuse()
	// A legitimate client queued behind all of them.
	resp, err := l.client(t, false).Get(l.url("/echo?legit=1"))
	if err != nil {
		t.Fatalf("legitimate client: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	legitWait := time.Since(start)
	if resp.StatusCode != 200 {
		t.Errorf("legitimate client: status %d", resp.StatusCode)
	}
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("idle connection: read %v, want EOF (closed by the header timeout)", err)
		}
	}
	l.client(t, false).Transport.(*http.Transport).CloseIdleConnections()
	waitFor(t, 5*time.Second, "every idle connection to be counted", func() bool { return l.conns.Counts().Unused >= uint64(n) })
	cs := l.conns.Counts()
	t.Logf("idle: %d connections, maxconn %d: legit served after %v; counts %+v; heap %d KiB before, %d KiB with all open",
		n, maxconn, legitWait.Round(time.Millisecond), cs, heap0>>10, heapFull>>10)
	if cs.Unused < uint64(n) || cs.Rejected != 0 {
		t.Errorf("counts %+v, want Unused >= %d", cs, n)
	}
}

// raiseNoFile makes room for n client connections plus their server
// sides: it raises RLIMIT_NOFILE's soft limit up to the hard one if
// needed, and returns n or, when the hard limit is too low, the number of
// connections that fit.
func raiseNoFile(t *testing.T, n int) int {
	t.Helper()
	need := uint64(2*n + 512)
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatalf("getrlimit: %v", err)
	}
	if rl.Cur < need && rl.Cur < rl.Max {
		old := rl.Cur
		rl.Cur = min(need, rl.Max)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			t.Fatalf("setrlimit: %v", err)
		}
		t.Cleanup(func() {
			rl.Cur = old
			syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
		})
	}
	if rl.Cur < need {
		fit := int(rl.Cur-512) / 2
		t.Logf("RLIMIT_NOFILE %d: %d idle connections instead of %d", rl.Cur, fit, n)
		return fit
	}
	return n
}
