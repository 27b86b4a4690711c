package vrrp

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the instance's goroutines.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestResignationLogRateLimited pins issue 17, item 6d: 300 priority-0 adverts from a
// stranger used to give 300 INFO lines; now the first is logged, the rest are counted.
func TestResignationLogRateLimited(t *testing.T) {
	n := &fakeNet{}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	b := startNode(t, n, addrB, Options{Priority: 100, AdvertInterval: time.Second, Preempt: true, Logger: log}, nil)
	waitFor(t, "B backup", func() bool { return b.inst.Status().State == StateBackup })
	stranger := n.newConn(addrC)
	p := Packet{Version: 3, VRID: 51, Priority: 0, Interval: time.Second,
		Addrs: []netip.Addr{testVIP.Addr()}, Src: addrC, Dst: MulticastGroup()}
	msg, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	const spoofed = 300
	for range spoofed {
		for len(b.conn.in) > 512 { // the fake network drops when the queue is full
			time.Sleep(time.Millisecond)
		}
		if err := stranger.WriteTo(msg, MulticastGroup()); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "300 resignations counted", func() bool { return b.inst.Status().Resignations == spoofed })
	if got := strings.Count(logs.String(), "received priority 0 advert"); got != 1 {
		t.Fatalf("%d log lines for %d priority-0 adverts, want 1:\n%s", got, spoofed, logs.String())
	}
}

// TestLogLimit checks the limiter itself with explicit times.
func TestLogLimit(t *testing.T) {
	var l logLimit
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		at   time.Duration
		ok   bool
		held uint64
	}{
		{0, true, 0},
		{time.Second, false, 0},
		{9 * time.Second, false, 0},
		{10 * time.Second, true, 2},
		{11 * time.Second, false, 0},
		{25 * time.Second, true, 1},
	}
	for _, s := range steps {
		ok, held := l.allow(t0.Add(s.at), 10*time.Second)
		if ok != s.ok || held != s.held {
			t.Fatalf("at %v: allow = %v, %d; want %v, %d", s.at, ok, held, s.ok, s.held)
		}
	}
}
