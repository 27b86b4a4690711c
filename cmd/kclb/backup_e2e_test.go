package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/admin"
)

// TestBackupServerThroughBinary pins issue 14, item 5 through the real
// binary: a [[backend.server]] with backup = true gets no request while
// a Keycloak node is up, takes every new request once both nodes are
// down (their database check fails; panic mode stays off), is shown as
// a backup in `kclb status`, and is left again when a node recovers.
func TestBackupServerThroughBinary(t *testing.T) {
	eb := startEdgeBackend(t)
	// The spare's management port: every health endpoint says UP.
	mgmt := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"UP","checks":[]}`)
	}))
	defer mgmt.Close()
	a := newAdminEnv(t, adminOptions{nodes: 2, extra: fmt.Sprintf("\n[[backend.server]]\nname = \"spare\"\naddress = %q\nmanagement = %q\nbackup = true\n",
		eb.addr, strings.TrimPrefix(mgmt.URL, "http://"))})
	nodes := a.cluster.Nodes()
	waitStatus := func(what string, ok func(st admin.Status) bool) admin.Status {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			st := a.status(t)
			if ok(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: status never said so: %+v", what, st.Servers)
			}
			time.Sleep(50 * time.Millisecond) // polling the status API: health has no event stream
		}
	}
	avail := func(st admin.Status) string {
		var out []string
		for _, s := range st.Servers {
			if s.Available {
				out = append(out, s.Name)
			}
		}
		return strings.Join(out, ",")
	}
	get := func(n int) int {
		t.Helper()
		before := eb.count()
		for range n {
			resp, err := a.client(false).Get(a.url("/realms/test/account"))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return eb.count() - before
	}

	st := waitStatus("both nodes up", func(st admin.Status) bool { return avail(st) == "keycloak1,keycloak2" })
	if s := serverByName(t, st, "spare"); !s.Backup || s.Available {
		t.Fatalf("spare: backup %v available %v, want a backup that takes no clients", s.Backup, s.Available)
	}
	if got := get(6); got != 0 {
		t.Fatalf("the backup served %d of 6 requests while the nodes were up", got)
	}
	for _, n := range nodes {
		n.Node.SetDatabaseDown(true)
	}
	st = waitStatus("both nodes down, backup in use", func(st admin.Status) bool { return avail(st) == "spare" })
	if st.Panic {
		t.Fatal("panic mode although the backup server is up")
	}
	if got := get(6); got != 6 {
		t.Fatalf("the backup served %d of 6 requests with both nodes down", got)
	}
	if out := mustCLI(t, "status", "-s", a.socket); !strings.Contains(out, "spare (backup)") {
		t.Fatalf("kclb status does not mark the backup:\n%s", out)
	}
	nodes[0].Node.SetDatabaseDown(false)
	waitStatus("node 1 back", func(st admin.Status) bool { return avail(st) == "keycloak1" })
	if got := get(6); got != 0 {
		t.Fatalf("the backup served %d of 6 requests after node 1 recovered", got)
	}
}
