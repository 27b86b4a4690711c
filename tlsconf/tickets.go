package tlsconf

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
)

// TicketPeriod is how long one session-ticket key encrypts new tickets
// (ShareSessionTickets). A ticket is accepted in the period it was made
// and the next one, so it lives between one and two periods; a period
// either side is also accepted for clocks that disagree.
const TicketPeriod = 12 * time.Hour

// minTicketSecret is the shortest secret ShareSessionTickets accepts (the
// pair channel's rule: `openssl rand -hex 32`).
const minTicketSecret = 32

// ShareSessionTickets makes cfg seal its session tickets (TLS 1.3 PSK
// identities and TLS 1.2 tickets, RFC 8446 section 4.6.1, RFC 5077) with
// keys derived from secret, so that every server given the same secret
// resumes the others' sessions: a client that moves with a VIP from one
// instance of a pair to the other resumes instead of running a full
// handshake. The key of each TicketPeriod is HKDF-SHA256 of secret and the
// period's number; tickets are AES-256-GCM. Both instances must agree on
// the time to within a period.
//
// The keys rotate, but they all follow from secret: whoever learns it can
// open any ticket sealed under it (and so the sessions' resumption
// secrets), as with a static ticket key file. now is the clock; nil means
// time.Now. cfg must not be in use yet; configurations cloned from it (as
// WithClientAuth does) share the keys.
func ShareSessionTickets(cfg *tls.Config, secret []byte, now func() time.Time) error {
	if len(secret) < minTicketSecret {
		return fmt.Errorf("tlsconf: session ticket secret of %d bytes, want at least %d", len(secret), minTicketSecret)
	}
	if now == nil {
		now = time.Now
	}
	t := &ticketSealer{secret: append([]byte(nil), secret...), now: now}
	cfg.WrapSession = t.wrap
	cfg.UnwrapSession = t.unwrap
	return nil
}

// ticketSealer seals and opens session tickets for ShareSessionTickets.
type ticketSealer struct {
	secret []byte
	now    func() time.Time

	mu   sync.Mutex // guards keys
	keys map[uint64]cipher.AEAD
}

// Ticket layout: the period number, the GCM nonce, then the sealed
// session state (the period number is also the additional data).
const (
	ticketPeriodLen = 8
	ticketHeadLen   = ticketPeriodLen + 12
)

var ticketSalt = []byte("kclb session tickets v1")

// period returns the number of the period t falls in.
func period(t time.Time) uint64 { return uint64(t.Unix()) / uint64(TicketPeriod/time.Second) }

// key returns the AEAD of period p, deriving it on first use; it keeps
// the keys of the periods around now only.
func (t *ticketSealer) key(p uint64) (cipher.AEAD, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if k, ok := t.keys[p]; ok {
		return k, nil
	}
	var info [ticketPeriodLen]byte
	binary.BigEndian.PutUint64(info[:], p)
	raw, err := hkdf.Key(sha256.New, t.secret, ticketSalt, string(info[:]), 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	k, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if len(t.keys) >= 4 {
		cur := period(t.now())
		for q := range t.keys {
			if q+1 < cur || q > cur+1 {
				delete(t.keys, q)
			}
		}
	}
	if t.keys == nil {
		t.keys = make(map[uint64]cipher.AEAD, 4)
	}
	t.keys[p] = k
	return k, nil
}

// wrap is the tls.Config.WrapSession hook.
func (t *ticketSealer) wrap(_ tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	state, err := ss.Bytes()
	if err != nil {
		return nil, err
	}
	p := period(t.now())
	k, err := t.key(p)
	if err != nil {
		return nil, err
	}
	out := make([]byte, ticketHeadLen, ticketHeadLen+len(state)+k.Overhead())
	binary.BigEndian.PutUint64(out, p)
	if _, err := rand.Read(out[ticketPeriodLen:ticketHeadLen]); err != nil {
		return nil, err
	}
	return k.Seal(out, out[ticketPeriodLen:ticketHeadLen], state, out[:ticketPeriodLen]), nil
}

// errTicket is the (ignored) reason a ticket is not resumed.
var errTicket = errors.New("tlsconf: ticket not usable")

// unwrap is the tls.Config.UnwrapSession hook: a ticket that is not
// ours, too old or damaged is ignored (a full handshake follows).
func (t *ticketSealer) unwrap(identity []byte, _ tls.ConnectionState) (*tls.SessionState, error) {
	ss, err := t.open(identity)
	if err != nil {
		return nil, nil
	}
	return ss, nil
}

func (t *ticketSealer) open(identity []byte) (*tls.SessionState, error) {
	if len(identity) < ticketHeadLen {
		return nil, errTicket
	}
	p := binary.BigEndian.Uint64(identity)
	cur := period(t.now())
	if p+1 < cur || p > cur+1 {
		return nil, errTicket
	}
	k, err := t.key(p)
	if err != nil {
		return nil, err
	}
	state, err := k.Open(nil, identity[ticketPeriodLen:ticketHeadLen], identity[ticketHeadLen:], identity[:ticketPeriodLen])
	if err != nil {
		return nil, errTicket
	}
	return tls.ParseSessionState(state)
}
