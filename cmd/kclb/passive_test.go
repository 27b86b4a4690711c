package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/admin"
	"github.com/kclb/kclb/internal/kcsim"
	"github.com/kclb/kclb/internal/kcsim/kcsimtest"
)

// Passive detection through the real binary (issue 18, item 2, "Nine
// uploads take the whole cluster down"): a node's own answers, slow
// endpoints and clients that give up must never take it out of rotation;
// a node that refuses connections still leaves at once, and passive
// detection never holds out more than its share of the cluster.

// earlyBackend is a Keycloak traffic port stand-in with a request body
// limit: a POST larger than 1 MiB gets 413 at once and the connection is
// closed with the body unread (the kernel then resets it), as servers do
// when a body exceeds their limit. GET .../slow answers only after the
// proxy gave up (it waits for the connection to close); everything else
// reads the body and answers 200 with the node's name.
type earlyBackend struct {
	addr string
	// sinkDone receives one value whenever a request's body ended before
	// its declared length (the client went away mid-upload).
	sinkDone chan struct{}
}

func startEarlyBackend(t *testing.T, name string) *earlyBackend {
	t.Helper()
	b := &earlyBackend{sinkDone: make(chan struct{}, 64)}
	b.addr = serveRawConns(t, func(c net.Conn) { b.serve(c, name) })
	return b
}

func (b *earlyBackend) serve(c net.Conn, name string) {
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		switch {
		case req.ContentLength > 1<<20:
			io.WriteString(c, "HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: text/plain\r\nContent-Length: 15\r\nConnection: close\r\n\r\nbody too large\n")
			return // closed with the body unread: a reset follows
		case strings.HasSuffix(req.URL.Path, "/slow"):
			io.Copy(io.Discard, br) // until the proxy gives up and closes
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate")
			return
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			b.sinkDone <- struct{}{}
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len(name), name)
	}
}

// passiveEnv is a kclb with an admin socket in front of three servers
// whose traffic addresses are given and whose management ports are kcsim
// nodes that report UP, so that only passive detection can take them
// out during a test (the checks run every 30 s).
type passiveEnv struct {
	addr   string // kclb's plain HTTP listener
	socket string
	proc   *kclbProc
}

func startPassiveEnv(t *testing.T, traffic []string, extra string) *passiveEnv {
	t.Helper()
	cluster := kcsimtest.StartCluster(t, len(traffic), kcsim.Options{})
	dir := t.TempDir()
	e := &passiveEnv{addr: freeAddr(t), socket: filepath.Join(dir, "admin.sock")}
	var b strings.Builder
	fmt.Fprintf(&b, `
[global]
state_file = ""
access_log = false
log_level = "debug"

[admin]
socket = %q

[[listener]]
name = "http"
bind = %q

[affinity]
enabled = false

[backend]
balance = "round_robin"

[health]
interval = "30s"
timeout = "2s"
slowstart = "0s"
%s
`, e.socket, e.addr, extra)
	for i, n := range cluster.Nodes() {
		fmt.Fprintf(&b, "\n[[backend.server]]\nname = \"kc%d\"\naddress = %q\nmanagement = %q\n", i+1, traffic[i], n.Mgmt.String())
	}
	cfg := filepath.Join(dir, "kclb.toml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	e.proc = startKclb(t, cfg, 1)
	return e
}

// status reads the status over the admin socket with the CLI.
func (e *passiveEnv) status(t *testing.T) admin.Status {
	t.Helper()
	var st admin.Status
	out := mustCLI(t, "status", "-s", e.socket, "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st
}

// healths returns "name=health" for every server, in pool order.
func healths(st admin.Status) string {
	var parts []string
	for _, s := range st.Servers {
		parts = append(parts, s.Name+"="+s.Health)
	}
	return strings.Join(parts, " ")
}

// requireAllUp fails unless every server is up and the next three GETs
// are answered 200 by three different nodes.
func (e *passiveEnv) requireAllUp(t *testing.T, what string) {
	t.Helper()
	st := e.status(t)
	if h := healths(st); h != "kc1=up kc2=up kc3=up" {
		t.Errorf("after %s: servers %s, want all up", what, h)
		for _, s := range st.Servers {
			t.Logf("%s: %s (%s)", s.Name, s.Health, s.Reason)
		}
	}
	nodes := map[string]bool{}
	for i := range 3 {
		resp, err := http.Get("http://" + e.addr + "/realms/test/hello")
		if err != nil {
			t.Fatalf("after %s: GET %d: %v", what, i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("after %s: GET %d: status %d, want 200", what, i, resp.StatusCode)
		}
		nodes[string(body)] = true
	}
	if len(nodes) != 3 {
		t.Errorf("after %s: GETs answered by %v, want three nodes", what, nodes)
	}
}

// upload sends a POST with a body of size bytes to kclb over a raw
// connection while reading the response concurrently, as a client that
// watches for an early answer does, and returns the status (0 if none).
func upload(t *testing.T, addr, path string, size int) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	var wg sync.WaitGroup
	defer wg.Wait()
	defer c.Close() // ends the writer if the answer came first
	wg.Go(func() {
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", path, size)
		chunk := make([]byte, 64<<10)
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := c.Write(chunk[:min(len(chunk), size-sent)]); err != nil {
				return
			}
		}
	})
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Logf("upload %s: no response: %v", path, err)
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// abortUpload declares a 1 MiB body (within the limit), sends 256 KiB of it and goes away:
// closing the connection, or only its sending side (halfClose), in which
// case kclb's answer is read and returned.
func abortUpload(t *testing.T, addr string, halfClose bool) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "POST /realms/test/sink HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n", 1<<20)
	if _, err := c.Write(make([]byte, 256<<10)); err != nil {
		t.Fatal(err)
	}
	if !halfClose {
		return 0
	}
	c.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("half-closed upload: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestEarlyAnswersSlowEndpointsAndAbortsDoNotEject pins issue 18, item 2:
// nine 4 MiB POSTs to three nodes that answer 413 early and close used to
// give nine 502s and eject every node (dead, not even used in panic
// mode); slow endpoints (504) ejected nodes the same way.
func TestEarlyAnswersSlowEndpointsAndAbortsDoNotEject(t *testing.T) {
	start := func(t *testing.T) (*passiveEnv, []*earlyBackend) {
		var traffic []string
		var backends []*earlyBackend
		for i := range 3 {
			b := startEarlyBackend(t, fmt.Sprintf("kc%d", i+1))
			backends = append(backends, b)
			traffic = append(traffic, b.addr)
		}
		return startPassiveEnv(t, traffic, "[timeouts]\nserver = \"300ms\"\n"), backends
	}

	t.Run("nine 4 MiB uploads answered 413 early", func(t *testing.T) {
		e, _ := start(t)
		codes := map[int]int{}
		for range 9 {
			codes[upload(t, e.addr, "/realms/test/upload", 4<<20)]++
		}
		if codes[413] != 9 {
			t.Errorf("statuses %v, want 9 x 413", codes)
		}
		t.Logf("nine uploads: statuses %v", codes)
		e.requireAllUp(t, "nine early 413s")
	})

	t.Run("slow endpoint times out without ejecting", func(t *testing.T) {
		e, _ := start(t)
		codes := map[int]int{}
		for range 9 {
			resp, err := http.Get("http://" + e.addr + "/realms/test/slow")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes[resp.StatusCode]++
		}
		if codes[504] != 9 {
			t.Errorf("statuses %v, want 9 x 504", codes)
		}
		e.requireAllUp(t, "nine response timeouts")
	})

	t.Run("clients that go away mid-upload do not count", func(t *testing.T) {
		e, backends := start(t)
		for range 9 {
			abortUpload(t, e.addr, false)
		}
		// The backends see every cut-off body end (kclb closed its side).
		for i := range 9 {
			select {
			case <-backends[0].sinkDone:
			case <-backends[1].sinkDone:
			case <-backends[2].sinkDone:
			case <-time.After(10 * time.Second):
				t.Fatalf("only %d of 9 cut-off uploads reached a backend's end", i)
			}
		}
		codes := map[int]int{}
		for range 9 {
			codes[abortUpload(t, e.addr, true)]++
		}
		if codes[400] != 9 {
			t.Errorf("half-closed uploads: statuses %v, want 9 x 400", codes)
		}
		e.requireAllUp(t, "18 aborted uploads")
	})
}

// TestRefusingNodeEjectedAndCapHolds pins issue 18, item 2: a node that
// refuses connections still leaves rotation after passive_fails
// consecutive failures, as down (panic mode may use it), not dead; when
// every node refuses, passive detection holds out only its share (one of
// three by default) and never the last available server.
func TestRefusingNodeEjectedAndCapHolds(t *testing.T) {
	t.Run("one refusing node", func(t *testing.T) {
		good1, good2 := startEarlyBackend(t, "kc1"), startEarlyBackend(t, "kc2")
		e := startPassiveEnv(t, []string{good1.addr, good2.addr, freeAddr(t)}, "")
		for i := range 30 {
			resp, err := http.Get("http://" + e.addr + "/realms/test/hello")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("GET %d: status %d, want 200 (retried on a good node)", i, resp.StatusCode)
			}
		}
		st := e.status(t)
		if h := healths(st); h != "kc1=up kc2=up kc3=down" {
			t.Fatalf("servers %s, want kc3 down", h)
		}
		if r := st.Servers[2].Reason; !strings.Contains(r, "passive") {
			t.Errorf("kc3 reason %q, want a passive ejection", r)
		}
		t.Logf("kc3 %s after %d refused connects (%s); 30 of 30 GETs answered 200, %d retries",
			st.Servers[2].Health, st.Servers[2].Errors, st.Servers[2].Reason, st.Proxy.Retries)
	})

	t.Run("every node refusing", func(t *testing.T) {
		e := startPassiveEnv(t, []string{freeAddr(t), freeAddr(t), freeAddr(t)}, "")
		for i := range 30 {
			resp, err := http.Get("http://" + e.addr + "/realms/test/hello")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway {
				t.Fatalf("GET %d: status %d, want 502", i, resp.StatusCode)
			}
		}
		st := e.status(t)
		down, up := 0, 0
		for _, s := range st.Servers {
			switch s.Health {
			case "down":
				down++
			case "up":
				up++
			}
		}
		if down != 1 || up != 2 {
			t.Fatalf("servers %s, want one down and two up (passive_max_ejection_percent 34)", healths(st))
		}
		t.Logf("servers %s; proxy %+v", healths(st), *st.Proxy)
	})

	t.Run("every node refusing, passive_max_ejection_percent = 100", func(t *testing.T) {
		e := startPassiveEnv(t, []string{freeAddr(t), freeAddr(t), freeAddr(t)}, "passive_max_ejection_percent = 100\n")
		for range 30 {
			resp, err := http.Get("http://" + e.addr + "/realms/test/hello")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		// All but the last available server.
		if h := healths(e.status(t)); strings.Count(h, "=down") != 2 || strings.Count(h, "=up") != 1 {
			t.Fatalf("servers %s, want two down and one up", h)
		}
	})
}
