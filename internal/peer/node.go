// Package peer is the channel between the two kclb instances of an edge
// pair: it keeps their admin states (drain, ready, maint) the same and
// tells when the parts of their configurations that must match do not.
//
// Each instance serves POST /v1/pair on pair.listen and sends to the
// other's. Every message is authenticated with HMAC-SHA256 under a key
// derived by HKDF-SHA256 from the shared pair.secret_file (message.go);
// the contents are not secret (server names, admin states, hashes) and
// travel in the clear, but nothing unauthenticated is ever acted on.
// Replays are refused: a request carries a sequence number that must grow
// strictly per sender (it starts from the wall clock, so it keeps growing
// across restarts) and a timestamp within Options.Window of the receiver's
// clock; a reply must name the sequence number of the request it answers.
// Refused messages are counted by reason and logged at most once per
// reason every 30 s.
//
// The protocol is a full-state exchange: a sync request carries the
// sender's versioned admin states (admin.Stamp), the receiver merges them
// (the newer stamp of each server wins) and replies with its own, which
// the sender merges in turn. One round trip makes both equal; a node
// syncs at start (so a restarted instance catches up), every
// Options.Interval (so a partition heals by itself), and right after an
// admin change (Replicate). Each instance's state file stays its source of
// truth: merging writes it, and a node that cannot reach its peer keeps
// working on its own.
package peer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kclb/kclb/internal/admin"
)

// Local is this instance's admin state; *admin.Server implements it.
type Local interface {
	// Stamps returns the versioned admin state of every known server.
	Stamps() map[string]admin.Stamp
	// View returns the admin state of every server in the pool.
	View() map[string]string
	// Merge applies the stamps newer than the local ones.
	Merge(map[string]admin.Stamp) ([]string, error)
}

var _ Local = (*admin.Server)(nil)

// Options configures a Node. Zero fields take the defaults named.
type Options struct {
	// Name is this instance's [global] name, the sender of its messages.
	// Required; it must differ from the peer's.
	Name string
	// Peer is the other instance's pair.listen address, host:port. Required.
	Peer string
	// Key authenticates messages (DeriveKey). Required.
	Key Key
	// Local is the admin state to share. Required.
	Local Local
	// Fingerprint returns, per part, a hash of what must match across the
	// pair. Nil publishes none (no drift is ever reported).
	Fingerprint func() map[string]string
	// Interval is the time between syncs. Default 2 s.
	Interval time.Duration
	// Timeout bounds one exchange. Default 2 s.
	Timeout time.Duration
	// Window is how far a message's timestamp may be from this clock.
	// Default 30 s.
	Window time.Duration
	// Transport sends the requests. Nil means a plain HTTP transport.
	Transport http.RoundTripper
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Logger receives merges, drift and drops. Nil discards them.
	Logger *slog.Logger
}

// Drop reasons, for counters and metrics.
const (
	DropMalformed = "malformed" // not a message, or a payload that is not JSON
	DropBadMAC    = "bad_mac"   // wrong key or tampered
	DropReplay    = "replay"    // sequence number not above the last seen, or a reply to another request
	DropStale     = "stale"     // timestamp outside the window
	DropReflected = "reflected" // sent under this instance's own name
)

// DropReasons lists every drop reason.
var DropReasons = []string{DropMalformed, DropBadMAC, DropReplay, DropStale, DropReflected}

// logEvery bounds how often one drop reason is logged.
const logEvery = 30 * time.Second

// Node is one end of the pair channel. Create it with New; it is safe for
// concurrent use.
type Node struct {
	opts   Options
	client *http.Client
	url    string

	drops [5]atomic.Uint64 // by index in DropReasons

	sendMu sync.Mutex // serialises requests, so their Seq arrive in order
	seq    uint64     // last Seq sent; guarded by sendMu

	mu sync.Mutex // guards the fields below
	// lastSeq is the highest request Seq accepted per sender.
	lastSeq     map[string]uint64
	peerName    string
	peerView    map[string]string
	peerPrint   map[string]string
	drift       []string
	reachable   bool
	synced      bool // a sync has completed (either way)
	lastContact time.Time
	lastErr     string
	logged      [5]time.Time // when each drop reason was last logged
	unlogged    [5]uint64    // drops of each reason since
}

// New returns a Node; it starts nothing.
func New(o Options) (*Node, error) {
	switch {
	case o.Name == "" || len(o.Name) > MaxSender:
		return nil, fmt.Errorf("peer: Name of %d bytes; want 1..%d", len(o.Name), MaxSender)
	case o.Peer == "":
		return nil, errors.New("peer: Peer is required")
	case len(o.Key) == 0:
		return nil, errors.New("peer: Key is required")
	case o.Local == nil:
		return nil, errors.New("peer: Local is required")
	}
	if _, _, err := net.SplitHostPort(o.Peer); err != nil {
		return nil, fmt.Errorf("peer: Peer %q: %w", o.Peer, err)
	}
	if o.Interval <= 0 {
		o.Interval = 2 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Window <= 0 {
		o.Window = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	tr := o.Transport
	if tr == nil {
		tr = &http.Transport{Proxy: nil, MaxIdleConns: 2, IdleConnTimeout: time.Minute}
	}
	return &Node{opts: o, client: &http.Client{Transport: tr, Timeout: o.Timeout},
		url: "http://" + o.Peer + "/v1/pair", lastSeq: map[string]uint64{}}, nil
}

// Run syncs with the peer at once and then every Interval until ctx ends.
// A failed sync is recorded in the status and retried at the next tick.
func (n *Node) Run(ctx context.Context) error {
	t := time.NewTicker(n.opts.Interval)
	defer t.Stop()
	for {
		n.Sync(ctx) // the error is in the status; the next tick retries
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Serve answers the peer's messages on ln until ctx ends, then closes ln.
func (n *Node) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           n.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(n.opts.Logger.Handler(), slog.LevelDebug),
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			srv.Close()
		case <-done:
		}
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("peer: serve %s: %w", ln.Addr(), err)
	}
	return nil
}

// Handler returns the HTTP handler of POST /v1/pair.
func (n *Node) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/pair", n.handle)
	return mux
}

// handle answers one sync request.
func (n *Node) handle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxPayload+headerSize+MaxSender+28+macSize+1))
	if err != nil {
		http.Error(w, "read error", http.StatusBadRequest)
		return
	}
	m, p, reason := n.accept(body, 0, r.RemoteAddr)
	if reason != "" {
		code := http.StatusBadRequest
		if reason == DropBadMAC {
			code = http.StatusUnauthorized
		}
		http.Error(w, "message refused: "+reason, code)
		return
	}
	n.absorb(m.Sender, p)
	out, err := n.seal(KindReply, m.Seq)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		n.opts.Logger.Error("pair: seal reply", "err", err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(out)
}

// accept authenticates and checks b: a request when replyTo is 0, else
// the reply to the request replyTo. It returns the drop reason, after
// counting it, when b is refused.
func (n *Node) accept(b []byte, replyTo uint64, from string) (*Message, Payload, string) {
	m, err := Open(n.opts.Key, b)
	reason := ""
	switch {
	case errors.Is(err, ErrBadMAC):
		reason = DropBadMAC
	case err != nil:
		reason = DropMalformed
	case m.Sender == n.opts.Name:
		reason = DropReflected
	case (replyTo == 0) != (m.Kind == KindSync), replyTo != 0 && m.ReplyTo != replyTo:
		reason = DropReplay
	case m.Time.Sub(n.opts.Now()).Abs() > n.opts.Window:
		reason = DropStale
	}
	var p Payload
	if reason == "" {
		if p, err = decodePayload(m.Payload); err != nil {
			reason = DropMalformed
		}
	}
	if reason == "" && replyTo == 0 {
		n.mu.Lock()
		if m.Seq <= n.lastSeq[m.Sender] {
			reason = DropReplay
		} else {
			if len(n.lastSeq) >= 16 { // a pair has one peer; bound the map anyway
				clear(n.lastSeq)
			}
			n.lastSeq[m.Sender] = m.Seq
		}
		n.mu.Unlock()
	}
	if reason != "" {
		n.drop(reason, from, err)
		return nil, Payload{}, reason
	}
	return m, p, ""
}

// drop counts a refused message and logs it, at most once per reason
// every logEvery.
func (n *Node) drop(reason, from string, err error) {
	i := slices.Index(DropReasons, reason)
	n.drops[i].Add(1)
	now := n.opts.Now()
	n.mu.Lock()
	n.unlogged[i]++
	if now.Sub(n.logged[i]) < logEvery {
		n.mu.Unlock()
		return
	}
	count := n.unlogged[i]
	n.logged[i], n.unlogged[i] = now, 0
	n.mu.Unlock()
	attrs := []any{"reason", reason, "from", from, "dropped_since_last_log", count}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	if reason == DropStale {
		attrs = append(attrs, "hint", "the instances' clocks differ by more than the 30 s window: check NTP")
	}
	if reason == DropReflected {
		attrs = append(attrs, "hint", "both instances have the same global.name, or pair.peer points at this instance")
	}
	n.opts.Logger.Warn("pair: message dropped", attrs...)
}

// seal builds a message of this instance's current state.
func (n *Node) seal(kind Kind, replyTo uint64) ([]byte, error) {
	p := Payload{Stamps: n.opts.Local.Stamps(), View: n.opts.Local.View()}
	if n.opts.Fingerprint != nil {
		p.Fingerprint = n.opts.Fingerprint()
	}
	body, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("peer: encode payload: %w", err)
	}
	m := &Message{Kind: kind, Sender: n.opts.Name, Time: n.opts.Now(), ReplyTo: replyTo, Payload: body}
	if kind == KindSync {
		m.Seq = max(n.seq+1, uint64(m.Time.UnixNano()))
		n.seq = m.Seq
	}
	return Seal(n.opts.Key, m)
}

// absorb merges the peer's state and records its view and fingerprint.
func (n *Node) absorb(sender string, p Payload) {
	if _, err := n.opts.Local.Merge(p.Stamps); err != nil {
		n.opts.Logger.Error("pair: admin state from the peer applied but not persisted", "err", err)
	}
	var local map[string]string
	if n.opts.Fingerprint != nil {
		local = n.opts.Fingerprint()
	}
	drift := Drift(local, p.Fingerprint)
	n.mu.Lock()
	before := n.drift
	n.peerName, n.peerView, n.peerPrint, n.drift = sender, p.View, p.Fingerprint, drift
	n.lastContact = n.opts.Now()
	n.mu.Unlock()
	switch {
	case len(drift) > 0 && !slices.Equal(before, drift):
		n.opts.Logger.Warn("pair: configuration differs from the peer's", "peer", sender, "parts", drift)
	case len(drift) == 0 && len(before) > 0:
		n.opts.Logger.Info("pair: configuration matches the peer's again", "peer", sender)
	}
}

// Drift returns the parts whose hashes differ between two fingerprints
// (a part only one side has differs), sorted. Two nil fingerprints match.
func Drift(a, b map[string]string) []string {
	var out []string
	for k, v := range a {
		if b[k] != v {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// Sync exchanges state with the peer once: it sends this instance's,
// merges the reply, and records the outcome in the status.
//
// The first failure after a success (or at start) is logged as a warning,
// the first success after failures as information; repeated failures are
// not logged again (the status and kclb_pair_peer_up show them).
func (n *Node) Sync(ctx context.Context) error {
	err := n.exchange(ctx)
	n.mu.Lock()
	was, first := n.reachable, !n.synced
	n.reachable, n.synced = err == nil, true
	n.lastErr = ""
	if err != nil {
		n.lastErr = err.Error()
	}
	n.mu.Unlock()
	switch {
	case err != nil && (was || first):
		n.opts.Logger.Warn("pair: peer not reached; admin changes apply on this instance only until it is", "peer", n.opts.Peer, "err", err)
	case err == nil && !was:
		n.opts.Logger.Info("pair: peer reached", "peer", n.opts.Peer)
	}
	return err
}

// exchange sends one sync request and merges the reply.
func (n *Node) exchange(ctx context.Context) error {
	n.sendMu.Lock()
	defer n.sendMu.Unlock()
	out, err := n.seal(KindSync, 0)
	if err != nil {
		return err
	}
	seq := n.seq
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(out))
	if err != nil {
		return fmt.Errorf("peer %s: %w", n.opts.Peer, err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := n.client.Do(req)
	if err != nil {
		return fmt.Errorf("peer %s unreachable: %w", n.opts.Peer, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPayload+headerSize+MaxSender+28+macSize+1))
	if err != nil {
		return fmt.Errorf("peer %s: read reply: %w", n.opts.Peer, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		return fmt.Errorf("peer %s refused this instance's message: pair.secret_file differs between the instances", n.opts.Peer)
	default:
		return fmt.Errorf("peer %s refused this instance's message: %s: %s", n.opts.Peer, resp.Status, bytes.TrimSpace(body))
	}
	m, p, reason := n.accept(body, seq, n.opts.Peer)
	if reason != "" {
		return fmt.Errorf("peer %s: reply refused (%s)", n.opts.Peer, reason)
	}
	n.absorb(m.Sender, p)
	return nil
}

// Replicate syncs at once after a local admin change (admin.Options.Replicate).
func (n *Node) Replicate(ctx context.Context) admin.PeerResult {
	res := admin.PeerResult{Peer: n.opts.Peer}
	if err := n.Sync(ctx); err != nil {
		res.Error = err.Error()
	} else {
		res.Applied = true
	}
	return res
}

// Status returns the channel's view (admin.Options.Pair).
func (n *Node) Status() *admin.PairStatus {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := &admin.PairStatus{Peer: n.opts.Peer, PeerName: n.peerName, Reachable: n.reachable,
		LastContact: n.lastContact, Error: n.lastErr, PeerView: n.peerView, Drift: n.drift}
	for i, r := range DropReasons {
		if c := n.drops[i].Load(); c > 0 {
			if st.Dropped == nil {
				st.Dropped = map[string]uint64{}
			}
			st.Dropped[r] = c
		}
	}
	return st
}

// Dropped returns the refused messages by reason (every reason present).
func (n *Node) Dropped() map[string]uint64 {
	out := make(map[string]uint64, len(DropReasons))
	for i, r := range DropReasons {
		out[r] = n.drops[i].Load()
	}
	return out
}
