package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/kcsim"
	"github.com/kclb/kclb/internal/kcsim/kcsimtest"
)

// TestDetectionLatency measures, for kclb and for HAProxy with the seed's
// `inter 2s fall 3 rise 2`, how long after a fault the proxy takes the
// node out, and how many client requests fail meanwhile, under a steady
// load. It is a measurement, not an assertion: set KCLB_DETECTION=1 (and
// KCLB_DETECTION_OUT=file.md for the table).
func TestDetectionLatency(t *testing.T) {
	if os.Getenv("KCLB_DETECTION") == "" {
		t.Skip("measurement: set KCLB_DETECTION=1")
	}
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("needs haproxy (apt-get install haproxy)")
	}
	var rows []string
	for _, fault := range []string{"crash", "db-down"} {
		for _, proxy := range []string{"kclb", "haproxy"} {
			d, fails, total := measureDetection(t, proxy, haproxy, fault)
			rows = append(rows, fmt.Sprintf("| %s | %s | %s | %d of %d |", proxy, fault, d, fails, total))
		}
	}
	table := "| proxy | fault | node out after | failed client requests |\n|---|---|---|---|\n" + strings.Join(rows, "\n") + "\n"
	t.Log("\n" + table)
	if out := os.Getenv("KCLB_DETECTION_OUT"); out != "" {
		os.WriteFile(out, []byte(table), 0o644)
	}
}

// measureDetection runs one proxy in front of a fresh 3-node cluster,
// injects fault on node 2 under load and returns the time until the proxy
// logged the node down and the failed/total client requests.
func measureDetection(t *testing.T, proxy, haproxyBin, fault string) (time.Duration, int64, int64) {
	cluster := kcsimtest.StartCluster(t, 3, kcsim.Options{})
	dir := t.TempDir()
	addr := freeAddr(t)
	var downLine string
	var lines <-chan string
	switch proxy {
	case "kclb":
		var b strings.Builder
		fmt.Fprintf(&b, "[global]\nstate_file = \"\"\naccess_log = false\n[admin]\nsocket = \"\"\n[[listener]]\nname = \"http\"\nbind = %q\n", addr)
		b.WriteString("[affinity]\nenabled = false\n[backend]\nbalance = \"round_robin\"\n[health]\ninterval = \"2s\"\ntimeout = \"1s\"\nfall = 3\nrise = 2\nslowstart = \"0s\"\n")
		for i, n := range cluster.Nodes() {
			fmt.Fprintf(&b, "[[backend.server]]\nname = \"kc%d\"\naddress = %q\nmanagement = %q\n", i+1, n.Traffic, n.Mgmt)
		}
		cfg := filepath.Join(dir, "kclb.toml")
		os.WriteFile(cfg, []byte(b.String()), 0o600)
		p := startKclb(t, cfg, 1)
		lines = p.watch("server=kc2")
		downLine = "to="
	case "haproxy":
		var b strings.Builder
		fmt.Fprintf(&b, "global\n    log stdout format raw local0\ndefaults\n    mode http\n    log global\n    timeout connect 5s\n    timeout client 50s\n    timeout server 50s\n    retries 3\n    option redispatch\nfrontend fe\n    bind %s\n    default_backend kc\nbackend kc\n    balance roundrobin\n    option httpchk GET /health/ready\n    http-check expect status 200\n", addr)
		for i, n := range cluster.Nodes() {
			fmt.Fprintf(&b, "    server kc%d %s check port %d inter 2s fall 3 rise 2\n", i+1, n.Traffic, n.Mgmt.Port())
		}
		cfg := filepath.Join(dir, "haproxy.cfg")
		os.WriteFile(cfg, []byte(b.String()), 0o600)
		cmd := exec.Command(haproxyBin, "-db", "-f", cfg)
		out, _ := cmd.StdoutPipe()
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		ch := make(chan string, 64)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if strings.Contains(sc.Text(), "kc/kc2") {
					ch <- sc.Text()
				}
			}
		}()
		lines = ch
		downLine = "is DOWN"
	}
	// Wait until the proxy answers.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/realms/test/hello")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer: %v", proxy, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}

	ctx, cancel := context.WithCancel(context.Background())
	var fails, total atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			c := &http.Client{Timeout: 10 * time.Second}
			for ctx.Err() == nil {
				resp, err := c.Get("http://" + addr + "/realms/test/hello")
				total.Add(1)
				if err != nil {
					fails.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					fails.Add(1)
				}
			}
		})
	}
	time.Sleep(time.Second) // steady load before the fault
	start := time.Now()
	switch fault {
	case "crash":
		cluster.Stop(1)
	case "db-down":
		cluster.At(1).Node.SetDatabaseDown(true)
	}
	var took time.Duration
	timeout := time.After(20 * time.Second)
wait:
	for {
		select {
		case l := <-lines:
			if strings.Contains(l, downLine) {
				took = time.Since(start).Round(time.Millisecond)
				break wait
			}
		case <-timeout:
			took = -1
			break wait
		}
	}
	time.Sleep(time.Second) // keep the load on after the detection
	cancel()
	wg.Wait()
	return took, fails.Load(), total.Load()
}
