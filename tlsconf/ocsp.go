package tlsconf

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ocsp"
)

// OCSP stapling (RFC 6066 section 8, RFC 6960): a certificate whose leaf
// names an OCSP responder (Authority Information Access) and whose file
// holds its issuer gets a stapleSlot; the Stapler fetches responses in
// the background and handshakes serve the last good one. A handshake
// never waits for a responder.

// maxOCSPResponse bounds a responder's answer (a few KiB in practice).
const maxOCSPResponse = 1 << 20

// ocspSkew is how far in the future a response's thisUpdate may lie
// (the responder's clock ahead of ours).
const ocspSkew = 5 * time.Minute

// stapleSlot is the OCSP state of one loaded certificate.
type stapleSlot struct {
	base   *tls.Certificate // as loaded, without a staple; immutable
	issuer *x509.Certificate
	url    string // first AIA OCSP responder; "" when none
	file   string // Pair.OCSPFile: the staple comes from there only

	cur atomic.Pointer[staple] // nil: nothing is stapled

	// Touched by the Stapler's goroutine only.
	retryAt time.Time
	fails   int
	stale   bool // a stale warning was logged for the current state
}

// staple is one verified response and the certificate that carries it.
type staple struct {
	cert *tls.Certificate // a copy of base with OCSPStaple set
	resp *ocsp.Response
}

// newSlot returns the slot of c, loaded from p, or nil when c cannot be
// stapled: neither a responder nor an OCSPFile, or no issuer in the
// chain (an OCSPFile is then an error). An OCSPFile that does not hold a response signed for c is an
// error; one that has expired is loaded but not served (the Stapler
// warns about it).
func newSlot(c *tls.Certificate, p Pair, now time.Time) (*stapleSlot, error) {
	if len(c.Leaf.OCSPServer) == 0 && p.OCSPFile == "" {
		return nil, nil
	}
	// The issuer follows the leaf; a self-signed leaf is its own.
	issuer := c.Leaf
	if len(c.Certificate) > 1 {
		var err error
		if issuer, err = x509.ParseCertificate(c.Certificate[1]); err != nil {
			return nil, fmt.Errorf("tlsconf: %s: parse issuer: %w", p.CertFile, err)
		}
	} else if c.Leaf.CheckSignatureFrom(c.Leaf) != nil {
		if p.OCSPFile != "" {
			return nil, fmt.Errorf("tlsconf: %s: ocsp_file needs the issuer certificate after the leaf in %s", p.OCSPFile, p.CertFile)
		}
		return nil, nil
	}
	s := &stapleSlot{base: c, issuer: issuer, file: p.OCSPFile}
	if len(c.Leaf.OCSPServer) > 0 {
		s.url = c.Leaf.OCSPServer[0]
	}
	if p.OCSPFile == "" {
		return s, nil
	}
	der, err := os.ReadFile(p.OCSPFile)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: read OCSP response: %w", err)
	}
	resp, err := s.verify(der, time.Time{})
	if err != nil {
		return nil, fmt.Errorf("tlsconf: %s: %w", p.OCSPFile, err)
	}
	if resp.NextUpdate.IsZero() || now.Before(resp.NextUpdate) {
		s.set(der, resp)
	}
	return s, nil
}

// verify parses der as a response for the slot's leaf, signed by its
// issuer or a responder the issuer delegated to, with status good. A
// non-zero now also rejects a response not yet or no longer valid. A
// response that parsed is returned with any error, so that the caller
// can tell a revoked certificate from a failed fetch.
func (s *stapleSlot) verify(der []byte, now time.Time) (*ocsp.Response, error) {
	resp, err := ocsp.ParseResponseForCert(der, s.base.Leaf, s.issuer)
	if err != nil {
		return nil, fmt.Errorf("OCSP response: %w", err)
	}
	switch resp.Status {
	case ocsp.Good:
	case ocsp.Revoked:
		return resp, fmt.Errorf("OCSP response: certificate revoked at %s", resp.RevokedAt.UTC().Format(time.RFC3339))
	default:
		return resp, errors.New("OCSP response: certificate status unknown to the responder")
	}
	if !now.IsZero() {
		if resp.ThisUpdate.After(now.Add(ocspSkew)) {
			return resp, fmt.Errorf("OCSP response: thisUpdate %s is in the future", resp.ThisUpdate.UTC().Format(time.RFC3339))
		}
		if !resp.NextUpdate.IsZero() && !now.Before(resp.NextUpdate) {
			return resp, fmt.Errorf("OCSP response: expired at %s (nextUpdate)", resp.NextUpdate.UTC().Format(time.RFC3339))
		}
	}
	return resp, nil
}

// set staples der (verified as resp) for new handshakes.
func (s *stapleSlot) set(der []byte, resp *ocsp.Response) {
	c := *s.base
	c.OCSPStaple = der
	s.cur.Store(&staple{cert: &c, resp: resp})
}

// refreshAt is when a response is refreshed: half way from thisUpdate to
// nextUpdate, or an hour after thisUpdate when it has no nextUpdate.
func refreshAt(r *ocsp.Response) time.Time {
	if r.NextUpdate.IsZero() {
		return r.ThisUpdate.Add(time.Hour)
	}
	return r.ThisUpdate.Add(r.NextUpdate.Sub(r.ThisUpdate) / 2)
}

// carryStaples gives the slots of snap the staples of old for the same
// leaf, so a reload of unchanged files keeps serving them.
func carryStaples(old, snap *snapshot) {
	if old == nil {
		return
	}
	for _, s := range snap.slots {
		if s == nil || s.file != "" {
			continue
		}
		for _, o := range old.slots {
			if o == nil || !bytes.Equal(o.base.Leaf.Raw, s.base.Leaf.Raw) {
				continue
			}
			if st := o.cur.Load(); st != nil {
				s.set(st.cert.OCSPStaple, st.resp)
			}
			break
		}
	}
}

// StaplerOptions tunes a Stapler. The zero value is valid.
type StaplerOptions struct {
	// Client sends OCSP requests. If nil, a client with a 10 s timeout.
	Client *http.Client
	// Logger receives fetch failures and stale warnings. If nil, they
	// are discarded.
	Logger *slog.Logger
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
}

// Stapler keeps the OCSP staples of the current Store fresh: it fetches
// a response from each certificate's responder when it has none or half
// its validity has passed, keeps the last good response when a fetch
// fails (retrying after 5 s, doubling up to 10 min), stops serving a
// response past its nextUpdate, and logs a warning when that happens.
// Certificates with an OCSPFile are not fetched; their staple is only
// watched. Fetching is off when the Store's Options.OCSPStapling is
// false. Create it with NewStapler; run it with Run.
type Stapler struct {
	stores func() *Store
	o      StaplerOptions
	kick   chan struct{}
}

// NewStapler returns a Stapler for whatever Store stores returns at each
// round (nil: none).
func NewStapler(stores func() *Store, o StaplerOptions) *Stapler {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Stapler{stores: stores, o: o, kick: make(chan struct{}, 1)}
}

// Kick makes Run look at the Store again now (after a reload). It never
// blocks.
func (st *Stapler) Kick() {
	select {
	case st.kick <- struct{}{}:
	default:
	}
}

// Run refreshes staples until ctx ends; it returns nil then.
func (st *Stapler) Run(ctx context.Context) error {
	for {
		wait := st.round(ctx)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-st.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// Retry backoff of a failed fetch: soon after the first failure (a
// responder not yet reachable when kclb starts leaves handshakes without
// a staple for seconds, not minutes), doubling to 10 min.
const (
	ocspRetryMin = 5 * time.Second
	ocspRetryMax = 10 * time.Minute
)

// round does what is due for every slot of the current Store and returns
// how long until something is due again.
func (st *Stapler) round(ctx context.Context) time.Duration {
	wait := time.Hour
	s := st.stores()
	if s == nil {
		return wait
	}
	fetch := s.opts.OCSPStapling
	for _, sl := range s.cur.Load().slots {
		if sl == nil {
			continue
		}
		now := st.o.Now()
		cur := sl.cur.Load()
		if sl.file == "" && fetch && sl.url != "" && !now.Before(sl.retryAt) && (cur == nil || !now.Before(refreshAt(cur.resp))) {
			if err := st.fetch(ctx, sl, now); err != nil {
				sl.fails++
				sl.retryAt = now.Add(min(ocspRetryMin<<min(sl.fails-1, 8), ocspRetryMax))
				args := []any{"cert", s.pairFile(sl), "responder", sl.url, "err", err, "retry_in", sl.retryAt.Sub(now).String()}
				if cur != nil {
					args = append(args, "staple_next_update", cur.resp.NextUpdate.UTC().Format(time.RFC3339))
				}
				st.o.Logger.Warn("OCSP fetch failed; keeping the last good staple", args...)
			} else {
				sl.fails, sl.retryAt, sl.stale = 0, time.Time{}, false
				cur = sl.cur.Load()
				st.o.Logger.Info("OCSP staple updated", "cert", s.pairFile(sl), "responder", sl.url,
					"this_update", cur.resp.ThisUpdate.UTC().Format(time.RFC3339), "next_update", cur.resp.NextUpdate.UTC().Format(time.RFC3339))
			}
		}
		if cur != nil && !cur.resp.NextUpdate.IsZero() && !now.Before(cur.resp.NextUpdate) {
			// Past nextUpdate a client must not trust it: serve none.
			sl.cur.CompareAndSwap(cur, nil)
			cur = nil
		}
		if cur == nil && !sl.stale && (sl.file != "" || sl.fails > 0) {
			sl.stale = true
			st.o.Logger.Warn("OCSP staple missing or stale: handshakes carry none", "cert", s.pairFile(sl), "ocsp_file", sl.file, "responder", sl.url)
		}
		switch {
		case cur != nil && !cur.resp.NextUpdate.IsZero() && sl.file != "":
			wait = min(wait, cur.resp.NextUpdate.Sub(now))
		case cur != nil && sl.file == "" && fetch:
			wait = min(wait, max(refreshAt(cur.resp).Sub(now), sl.retryAt.Sub(now)))
			if !cur.resp.NextUpdate.IsZero() {
				wait = min(wait, cur.resp.NextUpdate.Sub(now))
			}
		case cur == nil && sl.file == "" && fetch && sl.url != "":
			wait = min(wait, sl.retryAt.Sub(now))
		}
	}
	return max(wait, time.Second)
}

// fetch asks the slot's responder (RFC 6960 appendix A.1, POST) and
// staples a good, current answer.
func (st *Stapler) fetch(ctx context.Context, sl *stapleSlot, now time.Time) error {
	req, err := ocsp.CreateRequest(sl.base.Leaf, sl.issuer, nil)
	if err != nil {
		return fmt.Errorf("create request: %w", err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, sl.url, bytes.NewReader(req))
	if err != nil {
		return fmt.Errorf("responder URL: %w", err)
	}
	hr.Header.Set("Content-Type", "application/ocsp-request")
	hr.Header.Set("Accept", "application/ocsp-response")
	res, err := st.o.Client.Do(hr)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("responder answered %s", res.Status)
	}
	der, err := io.ReadAll(io.LimitReader(res.Body, maxOCSPResponse+1))
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if len(der) > maxOCSPResponse {
		return fmt.Errorf("response larger than %d bytes", maxOCSPResponse)
	}
	resp, err := sl.verify(der, now)
	if err != nil {
		if resp != nil && resp.Status != ocsp.Good {
			// A revoked or unknown status is the truth, not a
			// failure to keep the last staple through.
			sl.cur.Store(nil)
		}
		return err
	}
	sl.set(der, resp)
	return nil
}

// pairFile is the certificate file a slot was loaded from.
func (s *Store) pairFile(sl *stapleSlot) string {
	snap := s.cur.Load()
	for i, o := range snap.slots {
		if o == sl {
			return snap.infos[i].CertFile
		}
	}
	return ""
}
