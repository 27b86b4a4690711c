package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// nsDial returns a DialContext that opens its sockets in the client
// namespace and counts the connections it opened.
func (l *edgeLab) nsDial(dials *atomic.Int64) func(ctx context.Context, network, addr string) (net.Conn, error) {
	dial := l.DialContext("c")
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err == nil {
			dials.Add(1)
		}
		return c, err
	}
}

// TestHandoverKeepAliveClients pins issue 17, item 3: `kclb handover
// --wait` on the Master moves the VIP to the peer and `--back` returns
// it, while clients on keep-alive HTTPS connections through the VIP send
// requests all along: none fails and none is retried by the client.
func TestHandoverKeepAliveClients(t *testing.T) {
	l := newEdgeLab(t)
	l.startStandIns()
	cfgA := l.kclbConfig("a", 110, 8081)
	sockA := l.adminSocket("a")
	cfgB := l.kclbConfig("b", 100, 8082)
	sockB := l.adminSocket("b")
	l.start("a", "kclb-a", kclbBin, "run", "-c", cfgA)
	l.start("b", "kclb-b", kclbBin, "run", "-c", cfgB)
	if _, ok := until(10*time.Second, func() bool { return l.holdsVIP("a") && !l.holdsVIP("b") }); !ok {
		t.Fatalf("a did not become the only VIP holder: a=%v b=%v", l.holdsVIP("a"), l.holdsVIP("b"))
	}
	if _, ok := until(10*time.Second, func() bool { return l.clientGet() == nil }); !ok {
		t.Fatalf("HTTPS at the VIP: %v", l.clientGet())
	}

	pem, err := os.ReadFile(l.cert)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	var ok, failed, retried, dials atomic.Int64
	var firstErr atomic.Value
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	const clients = 4
	var h2 atomic.Int64
	for i := range clients {
		// Half the clients speak HTTP/2 (GOAWAY drains them), half HTTP/1.1.
		tr := &http.Transport{DialContext: l.nsDial(&dials), MaxIdleConnsPerHost: 1, ForceAttemptHTTP2: i%2 == 1,
			TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "sso.example.com"}}
		defer tr.CloseIdleConnections()
		hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		wg.Go(func() {
			for ctx.Err() == nil {
				conns := 0
				trace := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { conns++ }}
				req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet,
					"https://"+nsVIP+":8443/realms/test/.well-known/openid-configuration", nil)
				resp, err := hc.Do(req)
				if err == nil {
					if resp.ProtoMajor == 2 {
						h2.Add(1)
					}
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = &cmdError{Err: io.ErrUnexpectedEOF, Out: resp.Status}
					}
				}
				switch {
				case err != nil:
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				default:
					ok.Add(1)
				}
				if conns > 1 {
					retried.Add(1)
				}
				time.Sleep(10 * time.Millisecond) // think time between a client's requests
			}
		})
	}
	stopClients := func() {
		stop()
		wg.Wait()
	}
	defer stopClients()
	progress := func(what string) {
		t.Helper()
		n := ok.Load()
		if _, done := until(10*time.Second, func() bool { return ok.Load() >= n+100 }); !done {
			t.Fatalf("%s: clients made no progress (%d ok, %d failed: %v)", what, ok.Load(), failed.Load(), firstErr.Load())
		}
	}
	progress("through a")
	dialsBefore := dials.Load()

	t0 := time.Now()
	out, err := exec.Command(kclbBin, "handover", "--wait", "-s", sockA).CombinedOutput()
	if err != nil {
		t.Fatalf("kclb handover --wait: %v\n%s", err, out)
	}
	moved, okMoved := until(5*time.Second, func() bool { return l.holdsVIP("b") && !l.holdsVIP("a") })
	if !okMoved {
		t.Fatalf("after handover: a=%v b=%v\n%s", l.holdsVIP("a"), l.holdsVIP("b"), out)
	}
	t.Logf("handover: %s; VIP only on b %v after the command started", strings.TrimSpace(string(out)), moved.Sub(t0).Round(time.Millisecond))
	st, err := exec.Command(kclbBin, "status", "-s", sockA).CombinedOutput()
	if err != nil || !strings.Contains(string(st), "HANDED OVER") || !strings.Contains(string(st), "adverts sent ") || !strings.Contains(string(st), "timer lag max") {
		t.Fatalf("status of a after the handover: %v\n%s", err, st)
	}
	// issue 17, item 6d through the binary: the vrrp counters on /metrics.
	metricsOut, err := exec.Command("curl", "-sS", "--unix-socket", sockA, "http://kclb/metrics").CombinedOutput()
	if err != nil {
		t.Fatalf("metrics: %v\n%s", err, metricsOut)
	}
	for _, m := range []string{`kclb_vrrp_adverts_total{event="sent",instance="VI_1"}`, `kclb_vrrp_dropped_packets_total{instance="VI_1",reason="unknown_peer"} 0`,
		`kclb_vrrp_timer_lag_max_seconds{instance="VI_1"}`, `kclb_vrrp_tracked_health{health="ok",instance="VI_1"} `} {
		if !strings.Contains(string(metricsOut), m) {
			t.Errorf("/metrics has no %s", m)
		}
	}
	progress("through b")

	failedA := failed.Load()
	// Back without a reset: b hands over in turn (a, Backup at priority 1,
	// takes over after Skew_Time), then both restore their priorities.
	out, err = exec.Command(kclbBin, "handover", "--wait", "-s", sockB).CombinedOutput()
	if err != nil {
		t.Fatalf("kclb handover --wait on b: %v\n%s", err, out)
	}
	if _, ok := until(5*time.Second, func() bool { return l.holdsVIP("a") && !l.holdsVIP("b") }); !ok {
		t.Fatalf("after the handover on b: a=%v b=%v\n%s", l.holdsVIP("a"), l.holdsVIP("b"), out)
	}
	for _, sock := range []string{sockA, sockB} {
		if out, err := exec.Command(kclbBin, "handover", "--back", "-s", sock).CombinedOutput(); err != nil {
			t.Fatalf("kclb handover --back: %v\n%s", err, out)
		}
	}
	if _, ok := until(5*time.Second, func() bool {
		st, err := exec.Command(kclbBin, "status", "-s", sockA).CombinedOutput()
		return err == nil && strings.Contains(string(st), "master priority 110")
	}); !ok {
		t.Fatal("a did not return to priority 110 as Master")
	}
	if !l.holdsVIP("a") || l.holdsVIP("b") {
		t.Fatalf("the VIP moved when the priorities were restored: a=%v b=%v", l.holdsVIP("a"), l.holdsVIP("b"))
	}
	progress("through a again")
	stopClients()
	t.Logf("%d clients: %d requests ok (%d over HTTP/2), %d failed (%d during a -> b), %d retried by the client, %d connections (%d before the handover)",
		clients, ok.Load(), h2.Load(), failed.Load(), failedA, retried.Load(), dials.Load(), dialsBefore)
	if failed.Load() != 0 || retried.Load() != 0 {
		t.Fatalf("%d requests failed and %d were retried across the handover (first error: %v)", failed.Load(), retried.Load(), firstErr.Load())
	}
}
