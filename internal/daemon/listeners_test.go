package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/proxyproto"
	"github.com/kclb/kclb/proxy"
)

// newTestSet returns a listener set answering every request with its
// listener's name, without certificates.
func newTestSet() *listenerSet {
	return &listenerSet{
		handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		tlsBase: func() *tls.Config { return nil },
		clientCAs: func(string) func() *x509.CertPool {
			return func() *x509.CertPool { return nil }
		},
		conns:      new(proxy.ConnStats),
		proxyConns: new(proxyproto.Counters),
		logger:     slog.New(slog.DiscardHandler),
	}
}

func plan(name, bind string) ListenerPlan {
	return ListenerPlan{Name: name, Bind: bind, Server: proxy.ServerOptions{HeaderTimeout: 5 * time.Second}}
}

// get fetches / from addr over a new connection.
func get(t *testing.T, addr string) (string, error) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestListenerSetLifecycle opens, serves, stops accepting on one and
// shuts down the rest; neither ending counts as a listener failure.
func TestListenerSetLifecycle(t *testing.T) {
	s := newTestSet()
	fronts, err := s.open(context.Background(), []ListenerPlan{plan("a", "127.0.0.1:0"), plan("b", "127.0.0.1:0")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.set(fronts)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	s.serve(&wg, fronts, func(f *frontend, err error) {
		mu.Lock()
		failed = append(failed, f.plan.Name+": "+err.Error())
		mu.Unlock()
	})
	for _, f := range fronts {
		if body, err := get(t, f.ln.Addr().String()); err != nil || body != "ok" {
			t.Fatalf("listener %s: %q %v", f.plan.Name, body, err)
		}
	}
	a := fronts[0].ln.Addr().String()
	fronts[0].stopAccepting()
	if _, err := get(t, a); err == nil {
		t.Fatal("a listener that stopped accepting still answers")
	}
	shutdown(fronts, time.Second)
	wg.Wait()
	if len(failed) != 0 {
		t.Fatalf("a purposeful stop counted as a failure: %v", failed)
	}
}

// TestListenerSetFailure: a listener closed behind the set's back is a
// failure, reported with the listener's name.
func TestListenerSetFailure(t *testing.T) {
	s := newTestSet()
	fronts, err := s.open(context.Background(), []ListenerPlan{plan("a", "127.0.0.1:0")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	got := make(chan error, 1)
	s.serve(&wg, fronts, func(_ *frontend, err error) { got <- err })
	fronts[0].ln.Close()
	wg.Wait()
	if err := <-got; !strings.Contains(err.Error(), `listener "a"`) {
		t.Fatalf("failure %v, want the listener named", err)
	}
}

// TestListenerSetOpenErrors: a taken address names the listener and the
// address, a TLS listener without certificates is refused, and nothing
// opened before the error stays open.
func TestListenerSetOpenErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	s := newTestSet()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freeAddr := free.Addr().String()
	free.Close()
	_, err = s.open(context.Background(), []ListenerPlan{plan("first", freeAddr), plan("https", busy.Addr().String())}, nil)
	if err == nil || !strings.HasPrefix(err.Error(), `listener "https": listen `+busy.Addr().String()+": ") {
		t.Fatalf("open on a taken address: %v", err)
	}
	if ln, err := net.Listen("tcp", freeAddr); err != nil {
		t.Fatalf("the listener opened before the error stayed open: %v", err)
	} else {
		ln.Close()
	}
	p := plan("tls", "127.0.0.1:0")
	p.TLS = true
	if _, err := s.open(context.Background(), []ListenerPlan{p}, nil); err == nil || !strings.Contains(err.Error(), "tls without certificates") {
		t.Fatalf("TLS without certificates: %v", err)
	}
}

// TestListenerSetTakesInherited: a socket handed over for a bind address
// is used instead of binding it again.
func TestListenerSetTakesInherited(t *testing.T) {
	inh, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bind := inh.Addr().String()
	s := newTestSet()
	asked := ""
	fronts, err := s.open(context.Background(), []ListenerPlan{plan("a", bind)}, func(b string) net.Listener {
		asked = b
		if b == bind {
			return inh
		}
		return nil
	})
	if err != nil {
		t.Fatalf("open on an inherited address: %v", err)
	}
	defer closeAll(fronts)
	if asked != bind || fronts[0].raw != inh {
		t.Fatalf("inherited socket not used (asked %q)", asked)
	}
}

// TestListenerSetDiff: unchanged listeners are kept, removed ones
// dropped, new ones opened early unless they take a dropped one's
// address, and Ident (when set) alone decides sameness.
func TestListenerSetDiff(t *testing.T) {
	front := func(p ListenerPlan) *frontend { return &frontend{plan: p} }
	keepPlan, dropPlan := plan("keep", "127.0.0.1:1"), plan("old", "127.0.0.1:2")
	s := newTestSet()
	s.set([]*frontend{front(keepPlan), front(dropPlan)})
	changed := plan("old", "127.0.0.1:2")
	changed.Server.HTTP2 = true
	added := plan("new", "127.0.0.1:3")
	d := s.diff([]ListenerPlan{keepPlan, changed, added})
	if len(d.keep) != 1 || d.keep[0].plan.Name != "keep" || len(d.drop) != 1 || d.drop[0].plan.Name != "old" {
		t.Fatalf("keep %v drop %v", d.keep, d.drop)
	}
	if len(d.early) != 1 || d.early[0].Name != "new" || len(d.late) != 1 || d.late[0].Bind != "127.0.0.1:2" {
		t.Fatalf("early %v late %v", d.early, d.late)
	}
	// With an Ident, settings outside it do not reopen the listener.
	withIdent := func(p ListenerPlan, id string) ListenerPlan { p.Ident = id; return p }
	s.set([]*frontend{front(withIdent(keepPlan, "k"))})
	other := withIdent(keepPlan, "k")
	other.Server.HeaderTimeout = time.Minute
	if d := s.diff([]ListenerPlan{other}); len(d.keep) != 1 || len(d.early)+len(d.late)+len(d.drop) != 0 {
		t.Fatalf("same Ident, other timeouts: %+v", d)
	}
	if d := s.diff([]ListenerPlan{withIdent(keepPlan, "k2")}); len(d.drop) != 1 || len(d.late) != 1 {
		t.Fatalf("other Ident on the same address: %+v", d)
	}
}
