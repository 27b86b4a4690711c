package vrrp

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeNet is an in-memory layer-2 segment: every message written by one fakeConn is
// delivered to all others with TTL 255.
type fakeNet struct {
	mu    sync.Mutex // guards conns and sent
	conns []*fakeConn
	sent  []fakeMsg // everything written, for assertions
}

type fakeMsg struct {
	b []byte
	h ipInfo
}

type fakeConn struct {
	net    *fakeNet
	local  netip.Addr
	in     chan fakeMsg
	gate   chan struct{} // if non-nil, ReadFrom waits for a value on it before each read
	fail   chan error    // if non-nil, ReadFrom returns the first error sent on it
	closed chan struct{}
	once   sync.Once
}

func (n *fakeNet) newConn(local netip.Addr) *fakeConn {
	c := &fakeConn{net: n, local: local, in: make(chan fakeMsg, 1024), closed: make(chan struct{})}
	n.mu.Lock()
	n.conns = append(n.conns, c)
	n.mu.Unlock()
	return c
}

func (n *fakeNet) sentBy(src netip.Addr) []Packet {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []Packet
	for _, m := range n.sent {
		if m.h.Src != src {
			continue
		}
		var p Packet
		if err := p.UnmarshalBinary(m.b); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func (c *fakeConn) ReadFrom(b []byte) (int, ipInfo, error) {
	if c.gate != nil {
		select {
		case <-c.gate:
		case <-c.closed:
			return 0, ipInfo{}, errors.New("closed")
		}
	}
	select {
	case m := <-c.in:
		return copy(b, m.b), m.h, nil
	case err := <-c.fail:
		return 0, ipInfo{}, err
	case <-c.closed:
		return 0, ipInfo{}, errors.New("closed")
	}
}

func (c *fakeConn) WriteTo(b []byte, dst netip.Addr) error {
	m := fakeMsg{b: slices.Clone(b), h: ipInfo{Src: c.local, Dst: dst, TTL: 255}}
	c.net.mu.Lock()
	defer c.net.mu.Unlock()
	c.net.sent = append(c.net.sent, m)
	for _, o := range c.net.conns {
		if o == c || (!dst.IsMulticast() && dst != o.local) {
			continue
		}
		select {
		case <-o.closed:
		case o.in <- m:
		default: // queue full: lost, like a real network
		}
	}
	return nil
}

func (c *fakeConn) Pending() bool { return len(c.in) > 0 }

func (c *fakeConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// fakeVIPs records the VIP state of one node.
type fakeVIPs struct {
	mu    sync.Mutex // guards the fields below
	has   bool
	garps int
}

func (v *fakeVIPs) Add([]netip.Prefix) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.has = true
	return nil
}

func (v *fakeVIPs) Remove([]netip.Prefix) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.has = false
	return nil
}

func (v *fakeVIPs) GARP(vips []netip.Prefix, n int) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.garps += n * len(vips)
	return nil
}

func (v *fakeVIPs) Close() error { return nil }

func (v *fakeVIPs) hasVIP() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.has
}

var testVIP = netip.MustParsePrefix("203.0.113.100/24")

// node is one Instance on a fakeNet, running until the test ends or stop is called.
type node struct {
	inst *Instance
	conn *fakeConn
	vips *fakeVIPs
	stop context.CancelFunc
	done chan error
	once sync.Once
}

func startNode(t *testing.T, n *fakeNet, local netip.Addr, opts Options, tweak func(*Instance, *fakeConn)) *node {
	t.Helper()
	if opts.Interface == "" {
		opts.Interface = "fake0"
	}
	if opts.VRID == 0 {
		opts.VRID = 51
	}
	if opts.VIPs == nil {
		opts.VIPs = []netip.Prefix{testVIP}
	}
	inst, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	nd := &node{inst: inst, conn: n.newConn(local), vips: &fakeVIPs{}, done: make(chan error, 1)}
	inst.open = func(*Options) (*platform, error) {
		return &platform{conn: nd.conn, vips: nd.vips, local: local}, nil
	}
	if tweak != nil {
		tweak(inst, nd.conn)
	}
	ctx, cancel := context.WithCancel(context.Background())
	nd.stop = cancel
	go func() { nd.done <- inst.Run(ctx) }()
	t.Cleanup(func() { nd.shutdown(t) })
	return nd
}

func (nd *node) shutdown(t *testing.T) {
	t.Helper()
	nd.once.Do(func() {
		nd.stop()
		select {
		case err := <-nd.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	})
}

// waitFor polls cond every millisecond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestInstancePairFailover(t *testing.T) {
	n := &fakeNet{}
	obs := &recordingObserver{}
	a := startNode(t, n, addrA, Options{Priority: 150, AdvertInterval: 20 * time.Millisecond, Preempt: true, TrackWeight: 100, Observer: obs}, nil)
	b := startNode(t, n, addrB, Options{Priority: 100, AdvertInterval: 20 * time.Millisecond, Preempt: true}, nil)

	waitFor(t, "A master with the VIP, B backup", func() bool {
		return a.inst.Status().State == StateMaster && a.vips.hasVIP() && b.inst.Status().State == StateBackup && b.inst.Status().Master == addrA
	})
	if b.vips.hasVIP() {
		t.Fatal("backup holds the VIP")
	}

	// Tracking: A drops to 50 < 100, B preempts.
	a.inst.SetHealthy(false)
	waitFor(t, "B master after A unhealthy", func() bool {
		return b.inst.Status().State == StateMaster && b.vips.hasVIP() && a.inst.Status().State == StateBackup && !a.vips.hasVIP()
	})
	if a.inst.Status().AdvertsAsMaster == 0 {
		t.Fatal("A did not count B's preempting advert as received while master")
	}
	if got := a.inst.Status().Priority; got != 50 {
		t.Fatalf("A effective priority %d, want 50", got)
	}
	a.inst.SetHealthy(true)
	waitFor(t, "A preempts back", func() bool { return a.inst.Status().State == StateMaster && b.inst.Status().State == StateBackup })

	// Graceful stop of A: priority 0 advert, VIP removed, B takes over.
	a.shutdown(t)
	if a.vips.hasVIP() {
		t.Fatal("A still holds the VIP after Run returned")
	}
	sent := n.sentBy(addrA)
	if last := sent[len(sent)-1]; last.Priority != 0 {
		t.Fatalf("last advert of A has priority %d, want 0", last.Priority)
	}
	waitFor(t, "B master after A stopped", func() bool { return b.inst.Status().State == StateMaster && b.vips.hasVIP() })
	if st := a.inst.Status(); st.State != StateInit {
		t.Fatalf("A state after stop %v", st.State)
	}
	want := []string{"INIT->BACKUP", "BACKUP->MASTER", "MASTER->BACKUP", "BACKUP->MASTER", "MASTER->INIT"}
	if got := obs.get(); !slices.Equal(got, want) {
		t.Fatalf("observer saw %v, want %v", got, want)
	}
}

// TestPriorityZeroWakesTimer checks that a priority-0 advert, which shortens the
// Master_Down_Timer to Skew_Time, is acted on at once rather than at the old deadline.
func TestPriorityZeroWakesTimer(t *testing.T) {
	n := &fakeNet{}
	master := n.newConn(addrC)
	b := startNode(t, n, addrB, Options{Priority: 254, AdvertInterval: time.Second}, nil) // MDI 3.008 s, Skew 7.8 ms
	waitFor(t, "backup", func() bool { return b.inst.Status().State == StateBackup })
	send := func(prio uint8) {
		p := Packet{Version: 3, VRID: 51, Priority: prio, Interval: time.Second, Src: addrC, Dst: MulticastGroup(),
			Addrs: []netip.Addr{testVIP.Addr()}}
		buf, err := p.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if err := master.WriteTo(buf, MulticastGroup()); err != nil {
			t.Fatal(err)
		}
	}
	send(255)
	waitFor(t, "master learned", func() bool { return b.inst.Status().Master == addrC })
	t0 := time.Now()
	send(0)
	waitFor(t, "takeover", func() bool { return b.inst.Status().State == StateMaster })
	if d := time.Since(t0); d > 1500*time.Millisecond { // far below Master_Down_Interval (3 s)
		t.Fatalf("takeover after priority 0 took %v: the timer slept until the old deadline", d)
	}
}

type recordingObserver struct {
	mu   sync.Mutex // guards seen
	seen []string
}

func (o *recordingObserver) OnTransition(_ string, from, to State) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seen = append(o.seen, from.String()+"->"+to.String())
}

func (o *recordingObserver) get() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.seen)
}

func TestInstanceDropsInvalidPackets(t *testing.T) {
	peer := addrC
	valid := func(f func(p *Packet)) []byte {
		p := Packet{Version: 3, VRID: 51, Priority: 200, Interval: time.Second, Src: peer, Dst: MulticastGroup(),
			Addrs: []netip.Addr{testVIP.Addr()}}
		if f != nil {
			f(&p)
		}
		b, err := p.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	v2 := func(f func(p *Packet)) []byte {
		return valid(func(p *Packet) {
			p.Version, p.AuthType = 2, AuthSimple
			copy(p.AuthData[:], "secret")
			if f != nil {
				f(p)
			}
		})
	}
	mcast := ipInfo{Src: peer, Dst: MulticastGroup(), TTL: 255}
	tests := []struct {
		name   string
		opts   Options
		b      []byte
		h      ipInfo
		reason DropReason
	}{
		{"TTL 64", Options{}, valid(nil), ipInfo{Src: peer, Dst: MulticastGroup(), TTL: 64}, DropTTL},
		{"TTL 254", Options{}, valid(nil), ipInfo{Src: peer, Dst: MulticastGroup(), TTL: 254}, DropTTL},
		{"own packet", Options{}, valid(nil), ipInfo{Src: addrB, Dst: MulticastGroup(), TTL: 255}, DropOwn},
		{"unknown unicast peer", Options{UnicastPeers: []netip.Addr{addrA}}, valid(nil), mcast, DropUnknownPeer},
		{"truncated", Options{}, valid(nil)[:9], mcast, DropTruncated},
		{"empty", Options{}, nil, mcast, DropTruncated},
		{"bad type", Options{}, func() []byte { b := valid(nil); b[0] = 0x32; return b }(), mcast, DropMalformed},
		{"v2 at a v3 instance", Options{}, v2(nil), mcast, DropVersion},
		{"bad checksum", Options{}, func() []byte { b := valid(nil); b[7] ^= 0xff; return b }(), mcast, DropChecksum},
		{"checksum for another source", Options{}, valid(nil), ipInfo{Src: addrA, Dst: MulticastGroup(), TTL: 255}, DropChecksum},
		{"wrong VRID", Options{}, valid(func(p *Packet) { p.VRID = 52 }), mcast, DropVRID},
		{"v2 wrong password", Options{Version: 2, AuthPass: "other"}, v2(nil), mcast, DropAuth},
		{"v2 missing password", Options{Version: 2, AuthPass: "secret"}, v2(func(p *Packet) { p.AuthType = AuthNone; p.AuthData = [8]byte{} }), mcast, DropAuth},
		{"v2 password where none is configured", Options{Version: 2}, v2(nil), mcast, DropAuth},
		{"v2 interval mismatch", Options{Version: 2, AuthPass: "secret"}, v2(func(p *Packet) { p.Interval = 2 * time.Second }), mcast, DropInterval},
		{"owner discards adverts", Options{Priority: 255}, valid(nil), mcast, DropOwner},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := &fakeNet{}
			tt.opts.AdvertInterval = time.Second
			nd := startNode(t, n, addrB, tt.opts, nil)
			waitFor(t, "started", func() bool { return nd.inst.Status().State != StateInit })
			before := nd.inst.Status()
			for range 3 {
				nd.conn.in <- fakeMsg{b: tt.b, h: tt.h}
			}
			waitFor(t, "drop counted", func() bool { return nd.inst.Status().Drops[tt.reason] == 3 })
			st := nd.inst.Status()
			if st.State != before.State || st.Master != before.Master || st.AdvertsReceived != 0 || st.Transitions != before.Transitions {
				t.Fatalf("dropped packet changed the instance: before %+v after %+v", before, st)
			}
			for r, c := range st.Drops {
				if r != tt.reason && c != 0 {
					t.Fatalf("counted as %v too", r)
				}
			}
		})
	}
	t.Run("address list mismatch is accepted and counted", func(t *testing.T) {
		nd := startNode(t, &fakeNet{}, addrB, Options{AdvertInterval: time.Second}, nil)
		waitFor(t, "started", func() bool { return nd.inst.Status().State == StateBackup })
		nd.conn.in <- fakeMsg{b: valid(func(p *Packet) { p.Addrs = []netip.Addr{addrC} }), h: mcast}
		waitFor(t, "advert accepted", func() bool {
			st := nd.inst.Status()
			return st.AdvertsReceived == 1 && st.Master == peer && st.AddrMismatches == 1
		})
	})
	t.Run("valid packet is accepted", func(t *testing.T) {
		nd := startNode(t, &fakeNet{}, addrB, Options{AdvertInterval: time.Second}, nil)
		waitFor(t, "started", func() bool { return nd.inst.Status().State == StateBackup })
		nd.conn.in <- fakeMsg{b: valid(nil), h: mcast}
		waitFor(t, "advert accepted", func() bool { st := nd.inst.Status(); return st.AdvertsReceived == 1 && st.Master == peer })
		if st := nd.inst.Status(); st.AddrMismatches != 0 || st.AdvertsAsMaster != 0 {
			t.Fatalf("counters %+v", st)
		}
	})
	t.Run("v2 valid packet with password is accepted", func(t *testing.T) {
		nd := startNode(t, &fakeNet{}, addrB, Options{Version: 2, AuthPass: "secret"}, nil)
		waitFor(t, "started", func() bool { return nd.inst.Status().State == StateBackup })
		nd.conn.in <- fakeMsg{b: v2(nil), h: mcast}
		waitFor(t, "advert accepted", func() bool { st := nd.inst.Status(); return st.AdvertsReceived == 1 && st.Master == peer })
	})
}

// TestQueuedAdvertDefersTakeover simulates a receive goroutine that was paused (a GC pause
// or CPU starvation) while the Master's advert sat in the socket: when Master_Down_Timer
// expires, the instance must process the queued advert instead of taking over.
func TestQueuedAdvertDefersTakeover(t *testing.T) {
	n := &fakeNet{}
	master := n.newConn(addrC)
	gate := make(chan struct{})
	b := startNode(t, n, addrB, Options{AdvertInterval: 100 * time.Millisecond}, func(i *Instance, c *fakeConn) {
		c.gate = gate
		i.pendingGrace = time.Minute
	})
	p := Packet{Version: 3, VRID: 51, Priority: 200, Interval: 100 * time.Millisecond, Src: addrC, Dst: MulticastGroup(),
		Addrs: []netip.Addr{testVIP.Addr()}}
	buf, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := master.WriteTo(buf, MulticastGroup()); err != nil { // queued, but the receiver is paused
		t.Fatal(err)
	}
	waitFor(t, "Master_Down expiry deferred", func() bool { return b.inst.deferrals.Load() > 0 })
	gate <- struct{}{} // the receiver runs again
	waitFor(t, "queued advert processed", func() bool { return b.inst.Status().AdvertsReceived == 1 })
	st := b.inst.Status()
	if st.State != StateBackup || st.TransitionsTo[StateMaster] != 0 || st.Master != addrC {
		t.Fatalf("false takeover: %+v", st)
	}
	close(gate)
}

// TestStormDoesNotStarveAdverts floods a Master with packets while it sends adverts every
// 20 ms: packets for another VRID (dropped before the state machine) and valid adverts of
// lower priority (which take the state machine's lock).
func TestStormDoesNotStarveAdverts(t *testing.T) {
	tests := []struct {
		name    string
		vrid    uint8
		counter func(Status) uint64
	}{
		{"other VRID", 52, func(s Status) uint64 { return s.Drops[DropVRID] }},
		{"valid lower priority", 51, func(s Status) uint64 { return s.AdvertsReceived }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := &fakeNet{}
			a := startNode(t, n, addrA, Options{Priority: 200, AdvertInterval: 20 * time.Millisecond, Preempt: true}, nil)
			waitFor(t, "master", func() bool { return a.inst.Status().State == StateMaster })
			junk := Packet{Version: 3, VRID: tt.vrid, Priority: 100, Interval: 20 * time.Millisecond, Src: addrC, Dst: MulticastGroup(),
				Addrs: []netip.Addr{testVIP.Addr()}}
			b, err := junk.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				m := fakeMsg{b: b, h: ipInfo{Src: addrC, Dst: MulticastGroup(), TTL: 255}}
				for {
					select {
					case a.conn.in <- m:
					case <-stop:
						return
					}
				}
			}()
			waitFor(t, "storm under way", func() bool { return tt.counter(a.inst.Status()) > 1000 })
			sent0, t0 := a.inst.Status().AdvertsSent, time.Now()
			waitFor(t, "storm of 1 s", func() bool { return time.Since(t0) > time.Second })
			st := a.inst.Status()
			sent, elapsed := st.AdvertsSent-sent0, time.Since(t0)
			close(stop)
			wg.Wait()
			expected := uint64(elapsed / (20 * time.Millisecond))
			t.Logf("storm: %d adverts in %v (expected %d), %d storm packets handled", sent, elapsed, expected, tt.counter(st))
			if sent < expected/3 {
				t.Fatalf("adverts starved: %d sent, expected about %d", sent, expected)
			}
			if st.State != StateMaster || st.Transitions != 2 {
				t.Fatalf("storm changed the state: %v after %d transitions", st.State, st.Transitions)
			}
		})
	}
}

type recordingHook struct {
	mu    sync.Mutex // guards calls
	calls []string
}

func (h *recordingHook) Acquire(_ context.Context, vip netip.Prefix) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, "acquire "+vip.String())
	return nil
}

func (h *recordingHook) Release(_ context.Context, vip netip.Prefix) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, "release "+vip.String())
	return errors.New("cloud API down")
}

func TestNotifyHookAndGARP(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "notify.log")
	script := filepath.Join(dir, "notify.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$*\" >> "+out+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	hook := &recordingHook{}
	a := startNode(t, &fakeNet{}, addrA, Options{Name: "VI_KC", Priority: 255, AdvertInterval: 20 * time.Millisecond,
		NotifyMaster: script + " master-arg", NotifyFault: script, Hook: hook, GARPDelay: 50 * time.Millisecond}, nil)
	waitFor(t, "two GARP bursts", func() bool {
		a.vips.mu.Lock()
		defer a.vips.mu.Unlock()
		return a.vips.garps == 10
	})
	a.shutdown(t)
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := "master-arg INSTANCE VI_KC MASTER 255\n"; string(got) != want {
		t.Fatalf("notify output %q, want %q", got, want)
	}
	hook.mu.Lock()
	defer hook.mu.Unlock()
	if want := []string{"acquire 203.0.113.100/24", "release 203.0.113.100/24"}; !slices.Equal(hook.calls, want) {
		t.Fatalf("hook calls %v, want %v", hook.calls, want)
	}
	if e := a.inst.Status().Errors; e != 1 {
		t.Fatalf("Errors = %d, want 1 (the failed release)", e)
	}
	if a.vips.hasVIP() {
		t.Fatal("VIP kept after a failed hook release")
	}
}

func TestNewValidation(t *testing.T) {
	vips := []netip.Prefix{testVIP}
	tests := []struct {
		name string
		opts Options
		want string // substring of the error naming the field
	}{
		{"no interface", Options{VRID: 1, VIPs: vips}, "Interface"},
		{"no VRID", Options{Interface: "eth0", VIPs: vips}, "VRID"},
		{"no VIPs", Options{Interface: "eth0", VRID: 1}, "VIPs"},
		{"IPv4 then IPv6 VIP", Options{Interface: "eth0", VRID: 1, VIPs: append(vips, testVIP6)}, "VIPs"},
		{"IPv6 then IPv4 VIP", Options{Interface: "eth0", VRID: 1, VIPs: []netip.Prefix{testVIP6, testVIP}}, "VIPs"},
		{"IPv4-mapped after IPv6", Options{Interface: "eth0", VRID: 1, VIPs: []netip.Prefix{testVIP6, netip.MustParsePrefix("::ffff:203.0.113.1/128")}}, "VIPs"},
		{"IPv6 version 2", Options{Interface: "eth0", VRID: 1, VIPs: []netip.Prefix{testVIP6}, Version: 2}, "Version"},
		{"IPv6 with IPv4 peer", Options{Interface: "eth0", VRID: 1, VIPs: []netip.Prefix{testVIP6}, UnicastPeers: []netip.Addr{addrA}}, "UnicastPeers"},
		{"IPv6 with IPv4 source", Options{Interface: "eth0", VRID: 1, VIPs: []netip.Prefix{testVIP6}, SourceAddr: addrA}, "SourceAddr"},
		{"IPv6 global source", Options{Interface: "eth0", VRID: 1, VIPs: []netip.Prefix{testVIP6}, SourceAddr: netip.MustParseAddr("2001:db8::11")}, "link-local"},
		{"v3 interval 5ms", Options{Interface: "eth0", VRID: 1, VIPs: vips, AdvertInterval: 5 * time.Millisecond}, "AdvertInterval"},
		{"v2 interval 100ms", Options{Interface: "eth0", VRID: 1, VIPs: vips, Version: 2, AdvertInterval: 100 * time.Millisecond}, "AdvertInterval"},
		{"v3 password", Options{Interface: "eth0", VRID: 1, VIPs: vips, AuthPass: "x"}, "AuthPass"},
		{"version 1", Options{Interface: "eth0", VRID: 1, VIPs: vips, Version: 1}, "Version"},
		{"IPv6 peer", Options{Interface: "eth0", VRID: 1, VIPs: vips, UnicastPeers: []netip.Addr{netip.MustParseAddr("::1")}}, "UnicastPeers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error about %s", err, tt.want)
			}
		})
	}
	i, err := New(Options{Interface: "eth0", VRID: 7, VIPs: vips})
	if err != nil {
		t.Fatal(err)
	}
	st := i.Status()
	if st.Name != "VI_7" || st.ConfiguredPriority != 100 || st.State != StateInit || len(st.Drops) != int(numDropReasons) {
		t.Fatalf("defaults: %+v", st)
	}
	if i.opts.GARPRepeat != 5 || i.opts.GARPDelay != 5*time.Second || i.opts.AdvertInterval != time.Second || i.opts.Version != 3 {
		t.Fatalf("defaults: %+v", i.opts)
	}
}

func TestRunErrors(t *testing.T) {
	errRead := errors.New("socket gone")
	t.Run("receive error ends Run", func(t *testing.T) {
		n := &fakeNet{}
		inst, err := New(Options{Interface: "fake0", VRID: 51, Priority: 255, VIPs: []netip.Prefix{testVIP}})
		if err != nil {
			t.Fatal(err)
		}
		c, vips := n.newConn(addrA), &fakeVIPs{}
		c.fail = make(chan error, 1)
		inst.open = func(*Options) (*platform, error) { return &platform{conn: c, vips: vips, local: addrA}, nil }
		done := make(chan error, 1)
		go func() { done <- inst.Run(context.Background()) }()
		waitFor(t, "master", vips.hasVIP)
		c.fail <- errRead
		select {
		case err := <-done:
			if !errors.Is(err, errRead) {
				t.Fatalf("Run = %v, want %v", err, errRead)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return")
		}
		if vips.hasVIP() {
			t.Fatal("VIP kept after Run failed")
		}
		if err := inst.Run(context.Background()); err == nil {
			t.Fatal("second Run succeeded")
		}
	})
	t.Run("open error", func(t *testing.T) {
		inst, err := New(Options{Interface: "fake0", VRID: 51, VIPs: []netip.Prefix{testVIP}})
		if err != nil {
			t.Fatal(err)
		}
		inst.open = func(*Options) (*platform, error) { return nil, errRead }
		if err := inst.Run(context.Background()); !errors.Is(err, errRead) {
			t.Fatalf("Run = %v, want %v", err, errRead)
		}
	})
}

func TestLinkDownFaults(t *testing.T) {
	var up atomic.Bool
	up.Store(true)
	obs := &recordingObserver{}
	a := startNode(t, &fakeNet{}, addrA, Options{Priority: 200, AdvertInterval: 20 * time.Millisecond, Observer: obs}, func(i *Instance, c *fakeConn) {
		open := i.open
		i.open = func(o *Options) (*platform, error) {
			p, err := open(o)
			if err == nil {
				p.linkUp = func() (bool, error) { return up.Load(), nil }
			}
			return p, err
		}
	})
	waitFor(t, "master", func() bool { return a.inst.Status().State == StateMaster && a.vips.hasVIP() })
	up.Store(false)
	waitFor(t, "fault without VIP", func() bool { return a.inst.Status().State == StateFault && !a.vips.hasVIP() })
	up.Store(true)
	waitFor(t, "master again", func() bool { return a.inst.Status().State == StateMaster && a.vips.hasVIP() })
	a.shutdown(t)
	want := []string{"INIT->BACKUP", "BACKUP->MASTER", "MASTER->FAULT", "FAULT->BACKUP", "BACKUP->MASTER", "MASTER->INIT"}
	if got := obs.get(); !slices.Equal(got, want) {
		t.Fatalf("observer saw %v, want %v", got, want)
	}
}
