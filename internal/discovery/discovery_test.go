package discovery

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/miekg/dns"

	"github.com/kclb/kclb/internal/backend"
)

// testDNS is an authoritative DNS server on loopback answering A and
// AAAA queries for one name from a mutable address list.
type testDNS struct {
	mu       sync.Mutex // guards addrs and servfail
	addrs    []netip.Addr
	servfail bool

	addr string
}

func newTestDNS(t *testing.T) *testDNS {
	t.Helper()
	td := &testDNS{}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	td.addr = pc.LocalAddr().String()
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(td.serve), NotifyStartedFunc: func() { close(started) }}
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("dns server: %v", err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		<-done
	})
	// The first lookup of the process creates the net package's shared
	// resolver state; made inside a synctest bubble, it would belong to
	// that bubble and the next bubble's lookups would crash. Make it here.
	td.resolver().LookupNetIP(context.Background(), "ip4", "kc.test.")
	return td
}

func (td *testDNS) set(addrs ...string) {
	td.mu.Lock()
	defer td.mu.Unlock()
	td.addrs = td.addrs[:0]
	for _, a := range addrs {
		td.addrs = append(td.addrs, netip.MustParseAddr(a))
	}
}

func (td *testDNS) setServfail(v bool) {
	td.mu.Lock()
	td.servfail = v
	td.mu.Unlock()
}

func (td *testDNS) serve(w dns.ResponseWriter, r *dns.Msg) {
	td.mu.Lock()
	defer td.mu.Unlock()
	m := new(dns.Msg)
	if td.servfail {
		m.SetRcode(r, dns.RcodeServerFailure)
		w.WriteMsg(m)
		return
	}
	m.SetReply(r)
	m.Authoritative = true
	for _, q := range r.Question {
		if q.Name != "kc.test." {
			m.Rcode = dns.RcodeNameError
			continue
		}
		for _, a := range td.addrs {
			hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 0}
			switch {
			case q.Qtype == dns.TypeA && a.Is4():
				hdr.Rrtype = dns.TypeA
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: a.AsSlice()})
			case q.Qtype == dns.TypeAAAA && a.Is6():
				hdr.Rrtype = dns.TypeAAAA
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
			}
		}
	}
	w.WriteMsg(m)
}

// resolver returns a pure-Go resolver that sends every query to td.
func (td *testDNS) resolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", td.addr)
		},
	}
}

// The tests below run in a synctest bubble: the DNS's timers run on the
// bubble's clock, and synctest.Wait returns once its goroutine has applied
// a lookup and waits for the next one. The DNS server is started outside
// the bubble (its goroutines wait on a socket, never durably).

func TestDiscovery(t *testing.T) {
	td := newTestDNS(t)
	td.set("127.0.0.2", "127.0.0.3", "::1")
	synctest.Test(t, func(t *testing.T) { testDiscovery(t, td) })
}

func testDiscovery(t *testing.T, td *testDNS) {
	pool, err := backend.NewPool([]backend.Spec{{Name: "static", Addr: "127.0.0.9:8080"}}, backend.PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(pool, Options{
		Name:      "kc.test.",
		Port:      8080,
		MgmtPort:  9000,
		Template:  backend.Spec{Weight: 50, MaxConn: 10},
		Interval:  10 * time.Second,
		Grace:     30 * time.Second,
		DrainPoll: time.Second,
		Resolver:  td.resolver(),
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	advance := func(dt time.Duration) {
		t.Helper()
		time.Sleep(dt)
		synctest.Wait()
	}
	names := func() map[string]bool {
		m := map[string]bool{}
		for _, s := range pool.Servers() {
			m[s.Name()] = true
		}
		return m
	}
	synctest.Wait()
	// Initial lookup adds three servers, Starting until checks pass.
	for _, name := range []string{"static", "kc.test-127.0.0.2", "kc.test-127.0.0.3", "kc.test-::1"} {
		if !names()[name] {
			t.Fatalf("after first lookup servers %v, missing %s", names(), name)
		}
	}
	s2 := pool.Lookup("kc.test-127.0.0.2")
	if sp := s2.Spec(); sp.Addr != "127.0.0.2:8080" || sp.Mgmt != "127.0.0.2:9000" || sp.Weight != 50 || sp.MaxConn != 10 {
		t.Fatalf("spec %+v", sp)
	}
	if v6 := pool.Lookup("kc.test-::1").Spec(); v6.Addr != "[::1]:8080" {
		t.Fatalf("v6 addr %q", v6.Addr)
	}
	if s2.Health() != backend.HealthStarting {
		t.Fatalf("discovered server health %v, want starting", s2.Health())
	}

	// 127.0.0.3 vanishes with a request in flight: drained, kept until idle.
	s3 := pool.Lookup("kc.test-127.0.0.3")
	if err := s3.Acquire(ctx, 0, time.Second); err != nil {
		t.Fatal(err)
	}
	td.set("127.0.0.2", "::1")
	advance(10 * time.Second)
	if !names()["kc.test-127.0.0.3"] || s3.Admin() != backend.AdminDrain {
		t.Fatalf("vanished busy server: present=%v admin=%v, want present and draining", names()["kc.test-127.0.0.3"], s3.Admin())
	}
	advance(time.Second)
	if !names()["kc.test-127.0.0.3"] {
		t.Fatal("busy draining server removed before idle or grace")
	}
	s3.Release()
	advance(time.Second)
	if names()["kc.test-127.0.0.3"] {
		t.Fatal("idle drained server not removed")
	}

	// ::1 vanishes and returns before it is idle: drain undone.
	v6 := pool.Lookup("kc.test-::1")
	if err := v6.Acquire(ctx, 0, time.Second); err != nil {
		t.Fatal(err)
	}
	td.set("127.0.0.2")
	advance(8 * time.Second) // next lookup is due 10s after the last
	advance(time.Second)
	if v6.Admin() != backend.AdminDrain {
		t.Fatalf("vanished ::1 admin %v, want drain", v6.Admin())
	}
	td.set("127.0.0.2", "::1")
	advance(9 * time.Second)
	if v6.Admin() != backend.AdminReady || pool.Lookup("kc.test-::1") != v6 {
		t.Fatalf("returned address: admin %v, server replaced=%v", v6.Admin(), pool.Lookup("kc.test-::1") != v6)
	}

	// A failing lookup changes nothing.
	td.setServfail(true)
	advance(10 * time.Second)
	if !names()["kc.test-127.0.0.2"] || !names()["kc.test-::1"] || v6.Admin() != backend.AdminReady {
		t.Fatalf("servfail changed membership: %v", names())
	}
	td.setServfail(false)

	// Grace: a busy vanished server is removed once the grace period ends.
	td.set("127.0.0.2")
	advance(10 * time.Second)
	if v6.Admin() != backend.AdminDrain {
		t.Fatalf("admin %v, want drain", v6.Admin())
	}
	for range 29 {
		advance(time.Second)
	}
	if !names()["kc.test-::1"] {
		t.Fatal("busy server removed before its grace ended")
	}
	advance(time.Second)
	if names()["kc.test-::1"] {
		t.Fatal("busy server not removed after grace")
	}
	if !names()["static"] {
		t.Fatal("discovery touched a static server")
	}
	v6.Release()
}

func TestDiscoveryAdoptsAndRespectsOperator(t *testing.T) {
	td := newTestDNS(t)
	td.set("127.0.0.5")
	synctest.Test(t, func(t *testing.T) { testDiscoveryAdopts(t, td) })
}

func testDiscoveryAdopts(t *testing.T, td *testDNS) {
	pool, err := backend.NewPool([]backend.Spec{
		{Name: "kc.test-127.0.0.4", Addr: "127.0.0.4:8080"},
		{Name: "kc.test-127.0.0.5", Addr: "127.0.0.5:8080"},
	}, backend.PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The operator put .4 in maintenance: discovery must not make it drain.
	if err := pool.SetAdmin("kc.test-127.0.0.4", backend.AdminMaint); err != nil {
		t.Fatal(err)
	}
	s4 := pool.Lookup("kc.test-127.0.0.4")
	if err := s4.Acquire(context.Background(), 0, time.Second); err != nil {
		t.Fatal(err)
	}
	defer s4.Release()
	d, err := New(pool, Options{Name: "kc.test", Port: 8080, Resolver: td.resolver(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	synctest.Wait()
	if s4.Admin() != backend.AdminMaint {
		t.Fatalf("operator's maint overwritten with %v", s4.Admin())
	}
	if s5 := pool.Lookup("kc.test-127.0.0.5"); s5.Health() != backend.HealthUp {
		t.Fatalf("adopted server health %v (no mgmt port: stays up)", s5.Health())
	}
	time.Sleep(60 * time.Second) // grace (default 60s) ends
	synctest.Wait()
	if pool.Lookup("kc.test-127.0.0.4") != nil {
		t.Fatal("adopted vanished server not removed after grace")
	}
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{name: "no name", opts: Options{Port: 1}},
		{name: "no port", opts: Options{Name: "a"}},
		{name: "bad network", opts: Options{Name: "a", Port: 1, Network: "tcp"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(nil, tc.opts); err == nil {
				t.Fatal("no error")
			}
		})
	}
}
