package reliability

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kclb/kclb/health"
	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/kcsim"
	"github.com/kclb/kclb/internal/kcsim/kcsimtest"
)

// serveMgmt serves h as a fake management port on loopback until the
// test ends.
func serveMgmt(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestHealthAbuse points the health checker at management ports that
// hang, stream an endless body, flap on every check or answer 200 with a
// DOWN body, while client traffic flows. The abusive servers leave the
// pool, the flapping one is held by rise/fall, every client request is
// answered by a good server, and nothing leaks (goleak in TestMain).
func TestHealthAbuse(t *testing.T) {
	cluster := kcsimtest.StartCluster(t, 5, kcsim.Options{})
	var endlessBytes atomic.Int64
	var flaps atomic.Int64
	// Hanging checks in progress. Not a WaitGroup: a check may reach the
	// server after the test started waiting (Add from zero racing Wait,
	// which -race reports); the count is polled to zero instead.
	var hanging atomic.Int64
	hang := serveMgmt(t, func(w http.ResponseWriter, r *http.Request) {
		hanging.Add(1)
		defer hanging.Add(-1)
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	})
	endless := serveMgmt(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		chunk := []byte(`{"status":"UP","checks":[` + strings.Repeat(" ", 32<<10))
		for range 1 << 15 { // 1 GiB at most
			n, err := w.Write(chunk)
			endlessBytes.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	flap := serveMgmt(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		// Readiness flips on every check; liveness stays UP.
		if r.URL.Path == "/health/ready" && flaps.Add(1)%2 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"status":"DOWN","checks":[]}`)
			return
		}
		io.WriteString(w, `{"status":"UP","checks":[]}`)
	})
	liar := serveMgmt(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"DOWN","checks":[{"name":"Keycloak database connections async health check","status":"DOWN"}]}`)
	})
	mgmt := []string{cluster.At(0).Mgmt.String(), hang, endless, flap, liar}
	specs := kcsimSpecs(cluster)
	for i := range specs {
		specs[i].Mgmt = mgmt[i]
	}
	l := startLB(t, lbOptions{backends: specs})
	heap0 := heapInuse()
	checker, err := health.New(l.pool.Servers, l.pool, health.Options{
		Interval: 100 * time.Millisecond, Timeout: 500 * time.Millisecond,
		Rise: 2, Fall: 3, Jitter: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- checker.Run(ctx) }()
	defer func() {
		cancel()
		<-runDone
	}()
	bad := []string{"kc2", "kc3", "kc5"}
	waitFor(t, 10*time.Second, "the abusive servers to leave the pool", func() bool {
		for _, name := range bad {
			if l.pool.Lookup(name).Health() == backend.HealthUp {
				return false
			}
		}
		return true
	})
	// Traffic while the checker keeps probing the abusers.
	c := l.client(t, false)
	nodes := map[string]int{}
	const requests = 300
	for range requests {
		req, _ := http.NewRequest("GET", l.url("/echo"), nil)
		nodes[echoVia(t, c, req).Node]++
	}
	for node, n := range nodes {
		if node != "keycloak1" && node != "keycloak4" {
			t.Errorf("%d requests went to %s, whose health endpoint is abusive", n, node)
		}
	}
	if kc4 := l.pool.Lookup("kc4"); kc4.Health() != backend.HealthUp {
		t.Errorf("flapping kc4 is %v; alternating results must not reach fall=3", kc4.Health())
	}
	heap1 := heapInuse()
	cancel()
	if err := <-runDone; err != nil && err != context.Canceled {
		t.Errorf("checker: %v", err)
	}
	runDone <- nil
	// Every hanging check was abandoned by the checker.
	waitFor(t, 5*time.Second, "the hanging checks to be abandoned", func() bool { return hanging.Load() == 0 })
	for _, name := range bad {
		s := l.pool.Lookup(name)
		t.Logf("%s: %v, %s", name, s.Health(), s.Detail().Reason)
	}
	// The endless server's count includes what sat in socket buffers when
	// the checker hung up after MaxBodyBytes; the proxy's heap is what
	// must stay bounded.
	t.Logf("health abuse: %d requests, by node %v; endless body server wrote %d MiB into sockets; %d flapping readiness answers; heap %d -> %d KiB",
		requests, nodes, endlessBytes.Load()>>20, flaps.Load(), heap0>>10, heap1>>10)
	if heap1 > heap0+32<<20 {
		t.Errorf("heap grew from %d to %d KiB", heap0>>10, heap1>>10)
	}
}
