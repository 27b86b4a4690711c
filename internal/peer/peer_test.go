package peer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/admin"
	"github.com/kclb/kclb/internal/backend"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef-pair")

func testKey(t testing.TB, secret []byte) Key {
	t.Helper()
	k, err := DeriveKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// link is a transport that can be cut (a partition) and records the
// request bodies it carried.
type link struct {
	cut  atomic.Bool
	mu   sync.Mutex
	sent [][]byte
}

func (l *link) RoundTrip(r *http.Request) (*http.Response, error) {
	if l.cut.Load() {
		return nil, errors.New("partitioned")
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.sent = append(l.sent, b)
	l.mu.Unlock()
	r2 := r.Clone(r.Context())
	r2.Body = io.NopCloser(bytes.NewReader(b))
	return http.DefaultTransport.RoundTrip(r2)
}

func (l *link) last() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent[len(l.sent)-1]
}

// member is one instance of a test pair: a pool, its admin server with a
// state file, and the pair node serving on a loopback listener.
type member struct {
	name   string
	pool   *backend.Pool
	admin  *admin.Server
	node   *Node
	link   *link
	ln     net.Listener
	state  string
	stop   func()       // stops serving and closes ln
	logger *slog.Logger // the node's logger; nil for the default
}

func newPool(t *testing.T) *backend.Pool {
	t.Helper()
	var specs []backend.Spec
	for _, n := range []string{"kc1", "kc2", "kc3"} {
		specs = append(specs, backend.Spec{Name: n, Addr: "127.0.0.1:1"})
	}
	p, err := backend.NewPool(specs, backend.PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// start builds m's admin server from its state file (a restart when it
// ran before) and its node, serving on m.ln, talking to peerAddr.
func (m *member) start(t *testing.T, peerAddr string, key Key, print map[string]string) {
	t.Helper()
	m.pool = newPool(t)
	a, err := admin.New(admin.Options{Pool: m.pool, Name: m.name, State: admin.NewStateFile(m.state)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Restore(); err != nil {
		t.Fatal(err)
	}
	m.admin = a
	m.node, err = New(Options{Name: m.name, Peer: peerAddr, Key: key, Local: a, Transport: m.link,
		Fingerprint: func() map[string]string { return print }, Logger: m.logger})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.node.Serve(ctx, m.ln) }()
	var once sync.Once
	m.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(m.stop)
}

// listen gives m a fresh loopback listener (after a restart, on the
// same address).
func (m *member) listen(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	m.ln = ln
}

func newPair(t *testing.T, keyA, keyB Key, setA ...func(*member)) (*member, *member) {
	t.Helper()
	dir := t.TempDir()
	a := &member{name: "edge1", link: new(link), state: filepath.Join(dir, "a.json")}
	for _, f := range setA {
		f(a)
	}
	b := &member{name: "edge2", link: new(link), state: filepath.Join(dir, "b.json")}
	a.listen(t, "127.0.0.1:0")
	b.listen(t, "127.0.0.1:0")
	print := map[string]string{"servers": "s1", "vrrp": "v1"}
	a.start(t, b.ln.Addr().String(), keyA, print)
	b.start(t, a.ln.Addr().String(), keyB, print)
	return a, b
}

// set changes a server's admin state on m as the API would, and tells
// the peer; it returns the peer's error.
func (m *member) set(t *testing.T, name string, st backend.AdminState) error {
	t.Helper()
	if _, err := m.admin.SetAdmin(name, st); err != nil {
		t.Fatal(err)
	}
	res := m.node.Replicate(context.Background())
	if res.Applied {
		return nil
	}
	return errors.New(res.Error)
}

func (m *member) adminOf(t *testing.T, name string) string {
	t.Helper()
	return m.pool.Lookup(name).Admin().String()
}

func TestDrainOnOneAppliesToBoth(t *testing.T) {
	k := testKey(t, testSecret)
	a, b := newPair(t, k, k)
	if err := b.set(t, "kc2", backend.AdminDrain); err != nil {
		t.Fatal(err)
	}
	if got := a.adminOf(t, "kc2"); got != "drain" {
		t.Fatalf("kc2 on edge1 = %s after drain on edge2; want drain", got)
	}
	// edge1's state file holds it: a restart keeps it.
	st, err := admin.NewStateFile(a.state).Load()
	if err != nil {
		t.Fatal(err)
	}
	if st.Servers["kc2"] != "drain" || st.Stamps["kc2"].Node != "edge2" {
		t.Fatalf("edge1's state file = %+v; want kc2 drained by edge2", st)
	}
	ps := a.node.Status()
	if ps.PeerName != "edge2" || ps.PeerView["kc2"] != "drain" || len(ps.Drift) != 0 {
		t.Fatalf("edge1's pair status = %+v", ps)
	}
	if err := a.set(t, "kc2", backend.AdminReady); err != nil {
		t.Fatal(err)
	}
	if got := b.adminOf(t, "kc2"); got != "ready" {
		t.Fatalf("kc2 on edge2 = %s after ready on edge1; want ready", got)
	}
}

func TestWrongKeyIsRefusedAndCounted(t *testing.T) {
	a, b := newPair(t, testKey(t, testSecret), testKey(t, []byte(strings.Repeat("x", 40))))
	err := a.set(t, "kc1", backend.AdminMaint)
	if err == nil || !strings.Contains(err.Error(), "secret_file") {
		t.Fatalf("replicate with the wrong key: %v; want an error naming secret_file", err)
	}
	if got := b.adminOf(t, "kc1"); got != "ready" {
		t.Fatalf("kc1 on edge2 = %s after a message under the wrong key; want ready", got)
	}
	if got := a.adminOf(t, "kc1"); got != "maint" {
		t.Fatalf("kc1 on edge1 = %s; the local change must apply anyway", got)
	}
	if d := b.node.Dropped()[DropBadMAC]; d != 1 {
		t.Fatalf("edge2 dropped %d bad_mac; want 1", d)
	}
}

func TestReplayedMessageIsDropped(t *testing.T) {
	k := testKey(t, testSecret)
	a, b := newPair(t, k, k)
	if err := a.set(t, "kc1", backend.AdminDrain); err != nil {
		t.Fatal(err)
	}
	old := a.link.last() // "kc1 drained", as an attacker on the path saw it
	if err := a.set(t, "kc1", backend.AdminReady); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+b.ln.Addr().String()+"/v1/pair", "application/octet-stream", bytes.NewReader(old))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("replayed message answered %s; want 400", resp.Status)
	}
	if got := b.adminOf(t, "kc1"); got != "ready" {
		t.Fatalf("kc1 on edge2 = %s after the replay; want ready", got)
	}
	if d := b.node.Dropped()[DropReplay]; d != 1 {
		t.Fatalf("edge2 dropped %d replays; want 1", d)
	}
}

func TestStaleTimestampIsDropped(t *testing.T) {
	k := testKey(t, testSecret)
	_, b := newPair(t, k, k)
	body := []byte(`{"stamps":{"kc3":{"admin":"maint","version":99999999999999,"node":"edge1"}}}`)
	msg, err := Seal(k, &Message{Kind: KindSync, Sender: "edge1", Seq: 1 << 62, Time: time.Now().Add(-time.Hour), Payload: body})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+b.ln.Addr().String()+"/v1/pair", "application/octet-stream", bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := b.adminOf(t, "kc3"); resp.StatusCode != http.StatusBadRequest || got != "ready" {
		t.Fatalf("hour-old message: %s, kc3 %s; want 400 and ready", resp.Status, got)
	}
	if d := b.node.Dropped()[DropStale]; d != 1 {
		t.Fatalf("edge2 dropped %d stale; want 1", d)
	}
}

func TestReflectedMessageIsDropped(t *testing.T) {
	k := testKey(t, testSecret)
	_, b := newPair(t, k, k)
	msg, err := Seal(k, &Message{Kind: KindSync, Sender: "edge2", Seq: 1 << 62, Time: time.Now(), Payload: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+b.ln.Addr().String()+"/v1/pair", "application/octet-stream", bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if d := b.node.Dropped()[DropReflected]; d != 1 || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("message under edge2's own name: %s, %d reflected drops; want 400 and 1", resp.Status, d)
	}
}

func TestStaleVersionLoses(t *testing.T) {
	k := testKey(t, testSecret)
	a, b := newPair(t, k, k)
	a.link.cut.Store(true)
	b.link.cut.Store(true)
	a.set(t, "kc1", backend.AdminDrain) // older
	b.set(t, "kc1", backend.AdminMaint) // newer: the last writer
	a.link.cut.Store(false)
	b.link.cut.Store(false)
	// edge1's stale drain reaches edge2 first; edge2 keeps maint and
	// edge1 takes it from the reply.
	if err := a.node.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ga, gb := a.adminOf(t, "kc1"), b.adminOf(t, "kc1"); ga != "maint" || gb != "maint" {
		t.Fatalf("kc1 after the sync: edge1 %s, edge2 %s; want maint on both (edge2 wrote last)", ga, gb)
	}
}

func TestPartitionBothWorkThenConverge(t *testing.T) {
	k := testKey(t, testSecret)
	a, b := newPair(t, k, k)
	a.link.cut.Store(true)
	b.link.cut.Store(true)
	if err := a.set(t, "kc1", backend.AdminDrain); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("drain during a partition: %v; want unreachable", err)
	}
	if err := b.set(t, "kc2", backend.AdminMaint); err == nil {
		t.Fatal("maint during a partition reached the peer")
	}
	if a.adminOf(t, "kc1") != "drain" || b.adminOf(t, "kc2") != "maint" {
		t.Fatal("local changes during a partition did not apply locally")
	}
	if a.node.Status().Reachable || b.node.Status().Reachable {
		t.Fatal("status says reachable during a partition")
	}
	a.link.cut.Store(false)
	b.link.cut.Store(false)
	// The periodic sync of either side heals it; run one of edge2's.
	if err := b.node.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*member{a, b} {
		if m.adminOf(t, "kc1") != "drain" || m.adminOf(t, "kc2") != "maint" || m.adminOf(t, "kc3") != "ready" {
			t.Fatalf("%s after the partition healed: kc1 %s kc2 %s kc3 %s; want drain maint ready", m.name,
				m.adminOf(t, "kc1"), m.adminOf(t, "kc2"), m.adminOf(t, "kc3"))
		}
	}
}

func TestRestartedInstanceCatchesUp(t *testing.T) {
	k := testKey(t, testSecret)
	a, b := newPair(t, k, k)
	if err := a.set(t, "kc1", backend.AdminDrain); err != nil {
		t.Fatal(err)
	}
	// edge1 stops; meanwhile kc1 comes back and kc3 is drained on edge2.
	addr := a.ln.Addr().String()
	a.stop()
	b.set(t, "kc1", backend.AdminReady)
	b.set(t, "kc3", backend.AdminDrain)
	a.listen(t, addr)
	a.start(t, b.ln.Addr().String(), k, map[string]string{"servers": "s1", "vrrp": "v1"})
	if a.adminOf(t, "kc1") != "drain" {
		t.Fatal("the restarted edge1 did not restore its state file first")
	}
	if err := a.node.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a.adminOf(t, "kc1") != "ready" || a.adminOf(t, "kc3") != "drain" {
		t.Fatalf("restarted edge1: kc1 %s kc3 %s; want ready drain", a.adminOf(t, "kc1"), a.adminOf(t, "kc3"))
	}
}

func TestDriftIsReported(t *testing.T) {
	k := testKey(t, testSecret)
	dir := t.TempDir()
	a := &member{name: "edge1", link: new(link), state: filepath.Join(dir, "a.json")}
	b := &member{name: "edge2", link: new(link), state: filepath.Join(dir, "b.json")}
	a.listen(t, "127.0.0.1:0")
	b.listen(t, "127.0.0.1:0")
	a.start(t, b.ln.Addr().String(), k, map[string]string{"servers": "s1", "vrrp": "v1", "paths": "p1"})
	b.start(t, a.ln.Addr().String(), k, map[string]string{"servers": "s1", "vrrp": "v2"})
	if err := a.node.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*member{a, b} {
		if got := strings.Join(m.node.Status().Drift, ","); got != "paths,vrrp" {
			t.Errorf("%s drift = %q; want paths,vrrp", m.name, got)
		}
	}
}

func TestDriftParts(t *testing.T) {
	tests := []struct {
		name string
		a, b map[string]string
		want string
	}{
		{"equal", map[string]string{"x": "1"}, map[string]string{"x": "1"}, ""},
		{"both nil", nil, nil, ""},
		{"differs", map[string]string{"x": "1", "y": "1"}, map[string]string{"x": "2", "y": "1"}, "x"},
		{"one side only", map[string]string{"x": "1"}, map[string]string{"y": "1"}, "x,y"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := strings.Join(Drift(tt.a, tt.b), ","); got != tt.want {
				t.Fatalf("Drift = %q; want %q", got, tt.want)
			}
		})
	}
}

func TestDeriveKeyRefusesShortSecrets(t *testing.T) {
	if _, err := DeriveKey([]byte("short")); err == nil {
		t.Fatal("a 5-byte secret was accepted")
	}
}

// FuzzMessage feeds arbitrary bytes to Open and UnmarshalBinary: no
// panic, and whatever decodes re-encodes to the same bytes.
func FuzzMessage(f *testing.F) {
	k := testKey(f, testSecret)
	for _, m := range []*Message{
		{Kind: KindSync, Sender: "edge1", Seq: 1, Time: time.Unix(0, 1700000000000000000), Payload: []byte(`{"stamps":{}}`)},
		{Kind: KindReply, Sender: "e", Seq: 7, ReplyTo: 6, Time: time.Unix(0, 0), Payload: nil},
	} {
		b, err := Seal(k, m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)-macSize])
	}
	f.Add([]byte("KCP\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := Open(k, b); err == nil {
			again, err := Seal(k, m)
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("sealed message does not round-trip: %v", err)
			}
			decodePayload(m.Payload)
		}
		var m Message
		if m.UnmarshalBinary(b) != nil {
			return
		}
		again, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded message does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("round trip changed the bytes:\n%x\n%x", b, again)
		}
	})
}

// TestReachabilityIsLoggedOnChange: a peer that stops answering is one
// warning, not one per sync; its return is one line too.
func TestReachabilityIsLoggedOnChange(t *testing.T) {
	k := testKey(t, testSecret)
	var logs lockedBuffer
	a, _ := newPair(t, k, k, func(m *member) { m.logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	ctx := context.Background()
	a.link.cut.Store(true)
	for range 3 {
		a.node.Sync(ctx)
	}
	a.link.cut.Store(false)
	a.node.Sync(ctx)
	a.node.Sync(ctx)
	if w, i := strings.Count(logs.String(), "peer not reached"), strings.Count(logs.String(), "peer reached"); w != 1 || i != 1 {
		t.Fatalf("%d unreachable and %d reached lines; want 1 and 1:\n%s", w, i, logs.String())
	}
}

// lockedBuffer is a bytes.Buffer that a node's goroutines may write while
// the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
