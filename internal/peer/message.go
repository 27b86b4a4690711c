package peer

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kclb/kclb/internal/admin"
)

// Kind is a message's type.
type Kind uint8

const (
	// KindSync carries the sender's state and asks for the receiver's.
	KindSync Kind = 1
	// KindReply answers a KindSync with the receiver's state.
	KindReply Kind = 2
)

// String returns "sync" or "reply".
func (k Kind) String() string {
	switch k {
	case KindSync:
		return "sync"
	case KindReply:
		return "reply"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Wire format limits.
const (
	// MaxSender is the longest sender name ([global] name) a message carries.
	MaxSender = 255
	// MaxPayload bounds the JSON payload: a few hundred servers fit.
	MaxPayload = 1 << 20
	// macSize is the HMAC-SHA256 tag length.
	macSize = sha256.Size
	// minSecret is the shortest shared secret DeriveKey accepts.
	minSecret = 32
)

// magic starts every message; its last byte is the format version.
var magic = [4]byte{'K', 'C', 'P', 1}

// headerSize is the fixed part before the sender name: magic, kind,
// sender length.
const headerSize = 4 + 1 + 1

// Message is one authenticated datagram of the pair protocol. On the wire:
//
//	magic "KCP\x01" | kind u8 | sender length u8 | sender |
//	seq u64 | unix nanos i64 | reply-to u64 | payload length u32 | payload |
//	HMAC-SHA256 over every byte before it
//
// integers big-endian. The payload is JSON (Payload). The MAC is checked
// before the payload is parsed.
type Message struct {
	Kind Kind
	// Sender is the sending instance's [global] name.
	Sender string
	// Seq increases strictly with every request a sender makes, across
	// restarts (it starts from the wall clock in nanoseconds).
	Seq uint64
	// Time is when the message was sealed.
	Time time.Time
	// ReplyTo is the Seq of the request a reply answers; 0 in requests.
	ReplyTo uint64
	// Payload is the JSON body.
	Payload []byte
}

// Payload is a message's body: the sender's state.
type Payload struct {
	// Stamps are the sender's versioned admin states (admin.Server.Stamps).
	Stamps map[string]admin.Stamp `json:"stamps"`
	// View is the admin state of every server in the sender's pool.
	View map[string]string `json:"view"`
	// Fingerprint hashes, per part, what must match across the pair.
	Fingerprint map[string]string `json:"fingerprint"`
}

// Errors returned by Open; each is a counted drop reason.
var (
	// ErrMalformed: the bytes are not a message.
	ErrMalformed = errors.New("peer: malformed message")
	// ErrBadMAC: the MAC does not match (a wrong key, or tampering).
	ErrBadMAC = errors.New("peer: message authentication failed (is pair.secret_file the same on both instances?)")
)

// Key is the HMAC key of the pair, derived from the shared secret.
type Key []byte

// DeriveKey derives the message key from the shared secret (the contents
// of pair.secret_file) with HKDF-SHA256. It refuses secrets shorter than
// 32 bytes.
func DeriveKey(secret []byte) (Key, error) {
	if len(secret) < minSecret {
		return nil, fmt.Errorf("peer: shared secret is %d bytes; want at least %d", len(secret), minSecret)
	}
	k, err := hkdf.Key(sha256.New, secret, []byte("kclb pair v1"), "kclb pair message mac", sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("peer: derive key: %w", err)
	}
	return k, nil
}

// MarshalBinary encodes m without its MAC (Seal adds it). It fails for a
// sender or payload beyond the limits.
func (m *Message) MarshalBinary() ([]byte, error) {
	if m.Sender == "" || len(m.Sender) > MaxSender {
		return nil, fmt.Errorf("peer: sender name of %d bytes; want 1..%d", len(m.Sender), MaxSender)
	}
	if len(m.Payload) > MaxPayload {
		return nil, fmt.Errorf("peer: payload of %d bytes exceeds %d", len(m.Payload), MaxPayload)
	}
	b := make([]byte, 0, headerSize+len(m.Sender)+28+len(m.Payload)+macSize)
	b = append(b, magic[:]...)
	b = append(b, byte(m.Kind), byte(len(m.Sender)))
	b = append(b, m.Sender...)
	b = binary.BigEndian.AppendUint64(b, m.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(m.Time.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, m.ReplyTo)
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Payload)))
	b = append(b, m.Payload...)
	return b, nil
}

// UnmarshalBinary decodes b, a message without its MAC. The payload
// aliases b.
func (m *Message) UnmarshalBinary(b []byte) error {
	if len(b) < headerSize || [4]byte(b[:4]) != magic {
		return fmt.Errorf("%w: bad magic or version", ErrMalformed)
	}
	kind, n := Kind(b[4]), int(b[5])
	if kind != KindSync && kind != KindReply {
		return fmt.Errorf("%w: unknown kind %d", ErrMalformed, kind)
	}
	b = b[headerSize:]
	if n == 0 || len(b) < n+28 {
		return fmt.Errorf("%w: truncated", ErrMalformed)
	}
	sender := string(b[:n])
	b = b[n:]
	seq := binary.BigEndian.Uint64(b)
	ts := int64(binary.BigEndian.Uint64(b[8:]))
	replyTo := binary.BigEndian.Uint64(b[16:])
	plen := binary.BigEndian.Uint32(b[24:])
	b = b[28:]
	if plen > MaxPayload || int(plen) != len(b) {
		return fmt.Errorf("%w: payload length %d, %d bytes follow", ErrMalformed, plen, len(b))
	}
	*m = Message{Kind: kind, Sender: sender, Seq: seq, Time: time.Unix(0, ts), ReplyTo: replyTo, Payload: b}
	return nil
}

// Seal encodes m and appends its MAC under key.
func Seal(key Key, m *Message) ([]byte, error) {
	b, err := m.MarshalBinary()
	if err != nil {
		return nil, err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(b)
	return mac.Sum(b), nil
}

// Open checks the MAC of b under key and decodes the message. It returns
// ErrBadMAC or ErrMalformed (wrapped) for bytes that are not a message
// sealed with key; the MAC is compared in constant time before anything
// but the length is looked at.
func Open(key Key, b []byte) (*Message, error) {
	if len(b) < headerSize+macSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	body, tag := b[:len(b)-macSize], b[len(b)-macSize:]
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	if !hmac.Equal(mac.Sum(nil), tag) {
		return nil, ErrBadMAC
	}
	var m Message
	if err := m.UnmarshalBinary(body); err != nil {
		return nil, err
	}
	return &m, nil
}

// decodePayload parses a message's JSON body.
func decodePayload(b []byte) (Payload, error) {
	var p Payload
	if err := json.Unmarshal(b, &p); err != nil {
		return Payload{}, fmt.Errorf("%w: payload: %w", ErrMalformed, err)
	}
	return p, nil
}
