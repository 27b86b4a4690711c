package tlsconf

import (
	"bytes"
	"crypto/tls"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// pairServers starts one echo server per secret, all serving the same
// certificate with ShareSessionTickets under that secret and the clock
// *now.
func pairServers(t *testing.T, now *atomic.Int64, secrets ...[]byte) []string {
	t.Helper()
	p := genPair(t, t.TempDir(), SelfSigned{Hosts: []string{"sso.test"}})
	clock := func() time.Time { return time.Unix(now.Load(), 0) }
	var addrs []string
	for _, secret := range secrets {
		cfg := newStore(t, []Pair{p}, Options{}).TLSConfig()
		if err := ShareSessionTickets(cfg, secret, clock); err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, startEchoServer(t, cfg))
	}
	return addrs
}

// resumes connects to addr with cfg, exchanges a message (which delivers
// a TLS 1.3 ticket) and reports whether the handshake resumed a session.
func resumes(t *testing.T, addr string, cfg *tls.Config) bool {
	t.Helper()
	c, err := dialTLS(t, addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo(t, c, "ping")
	return c.ConnectionState().DidResume
}

// TestShareSessionTickets: a session begun on one server of a pair is
// resumed on the other when both derive their ticket keys from the same
// secret (a client that follows the VIP), not with another secret, and
// not after the ticket's periods have passed.
func TestShareSessionTickets(t *testing.T) {
	secret := []byte(strings.Repeat("s", 32))
	other := []byte(strings.Repeat("o", 32))
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			var now atomic.Int64
			now.Store(time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC).Unix())
			addrs := pairServers(t, &now, secret, secret, other)
			a, b, c := addrs[0], addrs[1], addrs[2]
			cfg := clientConfig("sso.test")
			cfg.MinVersion, cfg.MaxVersion = version, version
			cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			if resumes(t, a, cfg) {
				t.Fatal("the first handshake resumed")
			}
			if !resumes(t, b, cfg) {
				t.Error("the other instance with the same secret did not resume A's session")
			}
			if resumes(t, c, cfg) {
				t.Error("an instance with another secret resumed the session")
			}
			// The next period still opens the ticket; the one after does not.
			cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			resumes(t, a, cfg)
			now.Add(int64(TicketPeriod / time.Second))
			if !resumes(t, b, cfg) {
				t.Error("a ticket of the previous period was not resumed")
			}
			cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			resumes(t, a, cfg)
			now.Add(2 * int64(TicketPeriod/time.Second))
			if resumes(t, b, cfg) {
				t.Error("a ticket two periods old was resumed")
			}
		})
	}
}

func TestShareSessionTicketsShortSecret(t *testing.T) {
	if err := ShareSessionTickets(&tls.Config{}, []byte("short"), nil); err == nil {
		t.Fatal("a 5-byte secret was accepted")
	}
}

// FuzzTicketOpen: any identity a client sends is opened without a panic
// and, unless it is one of ours, ignored.
func FuzzTicketOpen(f *testing.F) {
	sealer := &ticketSealer{secret: bytes.Repeat([]byte{7}, 32), now: time.Now}
	cur := period(time.Now())
	for _, p := range []uint64{cur, cur - 1, cur + 1, 0} {
		var head [ticketHeadLen]byte
		head[0], head[7] = byte(p>>56), byte(p)
		f.Add(append(head[:], "sealed state"...))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, identity []byte) {
		ss, err := sealer.unwrap(identity, tls.ConnectionState{})
		if err != nil || ss != nil {
			t.Fatalf("identity %x: got %v, %v; want it ignored", identity, ss, err)
		}
	})
}
