package health

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/kclb/kclb/internal/backend"
)

// failKind classifies why an HTTP probe got no usable answer.
type failKind uint8

const (
	failNone        failKind = iota
	failUnreachable          // connection refused, no route: the peer is not live
	failTimeout              // no answer within Options.Timeout
	failTooLarge             // body over the cap
	failOther                // any other transport error
)

// fetched is an HTTP exchange's result: a status and a body capped at the
// probe's limit, or a transport failure.
type fetched struct {
	status int
	body   []byte
	kind   failKind
	err    error
}

// answered reports whether the peer sent a complete response.
func (f fetched) answered() bool { return f.kind == failNone }

// describe renders a transport failure for a reason, e.g. "connection
// refused". It never includes request bodies or headers.
func (f fetched) describe(timeout time.Duration, limit int64) string {
	switch f.kind {
	case failUnreachable:
		if errors.Is(f.err, syscall.ECONNREFUSED) {
			return "connection refused"
		}
		return "unreachable: " + clip(rootCause(f.err))
	case failTimeout:
		return fmt.Sprintf("no answer within %s", timeout)
	case failTooLarge:
		return fmt.Sprintf("body larger than %d bytes", limit)
	case failOther:
		return clip(rootCause(f.err))
	}
	return fmt.Sprintf("HTTP %d", f.status)
}

// rootCause strips *url.Error's "Get \"http://...\":" prefix; the URL is
// already implied by the reason's probe name.
func rootCause(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

// newTransport builds the probes' HTTP client: no environment proxy, no
// keep-alive (every check exercises accept, like HAProxy's), no redirects.
func newClient(o Options) (*http.Client, error) {
	tlsCfg, err := o.tlsConfig()
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            (&net.Dialer{Timeout: o.Timeout}).DialContext,
		TLSClientConfig:        tlsCfg,
		TLSHandshakeTimeout:    o.Timeout,
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}, nil
}

// fetch performs one request bounded by timeout and reads at most limit
// bytes of the body; a longer body is failTooLarge.
func fetch(ctx context.Context, client *http.Client, method, target string, body url.Values, timeout time.Duration, limit int64) fetched {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(body.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return fetched{kind: failOther, err: fmt.Errorf("health: build request: %w", err)}
	}
	req.Header.Set("User-Agent", "kclb-health")
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := client.Do(req)
	if err != nil {
		return fetched{kind: classifyErr(ctx, err), err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return fetched{status: resp.StatusCode, kind: classifyErr(ctx, err), err: err}
	}
	if int64(len(b)) > limit {
		return fetched{status: resp.StatusCode, kind: failTooLarge}
	}
	return fetched{status: resp.StatusCode, body: b}
}

func classifyErr(ctx context.Context, err error) failKind {
	var ne net.Error
	switch {
	case ctx.Err() != nil, errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return failTimeout
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return failUnreachable
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return failUnreachable
	}
	return failOther
}

// probeResult is the outcome of one probe within a round.
type probeResult struct {
	ok     bool
	reason string
	// class is the health a failure points to (see verdict.class).
	class backend.Health
	// failingSince is Keycloak's "Failing since" of the failing check.
	failingSince string
}

func pass(reason string) probeResult { return probeResult{ok: true, reason: reason} }

func fail(class backend.Health, format string, args ...any) probeResult {
	return probeResult{class: class, reason: fmt.Sprintf(format, args...)}
}

// healthEndpoint fetches a SmallRye health endpoint and judges it: 200
// with an UP body passes; 503 with a DOWN body, a 200 with a DOWN body,
// invalid JSON, an oversized body or any other status fail. up reports
// whether the report said UP; answered whether the peer answered at all.
func (c *Checker) healthEndpoint(ctx context.Context, name, target string) (res probeResult, f fetched) {
	f = fetch(ctx, c.client, http.MethodGet, target, nil, c.opts.Timeout, c.opts.MaxBodyBytes)
	if !f.answered() {
		return fail(backend.HealthDown, "%s: %s", name, f.describe(c.opts.Timeout, c.opts.MaxBodyBytes)), f
	}
	if f.status != http.StatusOK && f.status != http.StatusServiceUnavailable {
		return fail(backend.HealthDown, "%s: unexpected HTTP %d", name, f.status), f
	}
	rep, err := ParseHealth(f.body)
	if err != nil {
		return fail(backend.HealthDown, "%s: HTTP %d with invalid body: %s", name, f.status, clip(strings.TrimPrefix(err.Error(), "health: parse body: "))), f
	}
	if !rep.Up() {
		_, since, _ := rep.Failing()
		r := fail(backend.HealthDown, "%s: %s", name, rep.Reason())
		r.failingSince = since
		return r, f
	}
	if f.status != http.StatusOK {
		return fail(backend.HealthDown, "%s: HTTP %d with an UP body", name, f.status), f
	}
	return pass(name + ": UP"), f
}

// readiness runs the readiness check and, when it fails, classifies the
// server: Starting when /health/started is DOWN, Down when /health/live is
// UP, Dead otherwise (including a refused connection).
func (c *Checker) readiness(ctx context.Context, s *backend.Server) probeResult {
	base := c.opts.Scheme + "://" + s.Mgmt()
	res, f := c.healthEndpoint(ctx, "ready", base+c.opts.Path)
	if res.ok {
		return res
	}
	if f.kind == failUnreachable {
		res.class = backend.HealthDead
		return res
	}
	started, sf := c.healthEndpoint(ctx, "started", base+c.opts.StartedPath)
	if !started.ok && sf.answered() && sf.status == http.StatusServiceUnavailable {
		if _, err := ParseHealth(sf.body); err == nil {
			res.class = backend.HealthStarting
			return res
		}
	}
	live, _ := c.healthEndpoint(ctx, "live", base+c.opts.LivePath)
	if live.ok {
		res.class = backend.HealthDown
	} else {
		res.class = backend.HealthDead
		res.reason += "; " + live.reason
	}
	return res
}

// trafficURL is the URL of path on s's traffic port.
func (c *Checker) trafficURL(s *backend.Server, path string) string {
	return c.opts.TrafficScheme + "://" + s.Addr() + path
}

// wellKnown fetches the realm's OpenID configuration on the traffic port:
// it must be a 200 with a JSON object naming an issuer.
func (c *Checker) wellKnown(ctx context.Context, s *backend.Server) probeResult {
	const name = "well-known"
	f := fetch(ctx, c.client, http.MethodGet, c.trafficURL(s, "/realms/"+c.opts.Realm+"/.well-known/openid-configuration"), nil, c.opts.Timeout, c.opts.MaxBodyBytes)
	if r, done := c.trafficFailure(name, f); done {
		return r
	}
	var doc struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(f.body, &doc); err != nil || doc.Issuer == "" {
		return fail(backend.HealthDown, "%s: HTTP 200 without an OpenID configuration", name)
	}
	return pass(name + ": OK")
}

// lbCheck fetches Keycloak's multi-site /lb-check on the traffic port: it
// must answer 200, and if its body is a health report, that report must be
// UP.
func (c *Checker) lbCheck(ctx context.Context, s *backend.Server) probeResult {
	const name = "lb-check"
	f := fetch(ctx, c.client, http.MethodGet, c.trafficURL(s, "/lb-check"), nil, c.opts.Timeout, c.opts.MaxBodyBytes)
	if r, done := c.trafficFailure(name, f); done {
		return r
	}
	if len(bytes.TrimSpace(f.body)) > 0 {
		if rep, err := ParseHealth(f.body); err == nil && !rep.Up() {
			return fail(backend.HealthDown, "%s: %s", name, rep.Reason())
		}
	}
	return pass(name + ": OK")
}

// trafficFailure judges the transport and status of a traffic-port probe:
// a refused connection means Dead, anything but 200 means Down.
func (c *Checker) trafficFailure(name string, f fetched) (probeResult, bool) {
	switch {
	case f.kind == failUnreachable:
		return fail(backend.HealthDead, "%s: %s", name, f.describe(c.opts.Timeout, c.opts.MaxBodyBytes)), true
	case !f.answered():
		return fail(backend.HealthDown, "%s: %s", name, f.describe(c.opts.Timeout, c.opts.MaxBodyBytes)), true
	case f.status != http.StatusOK:
		return fail(backend.HealthDown, "%s: HTTP %d", name, f.status), true
	}
	return probeResult{}, false
}

// tokenProbe requests a client-credentials token for the probe client.
// The secret travels in the form body (client_secret_post) and is scrubbed
// from every reason it could leak into.
func (c *Checker) tokenProbe(ctx context.Context, s *backend.Server) probeResult {
	const name = "token"
	tp := c.opts.TokenProbe
	raw, err := os.ReadFile(tp.SecretFile)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fail(backend.HealthDown, "%s: read secret file %s: %s", name, tp.SecretFile, err)
	}
	secret := strings.TrimSpace(string(raw))
	if secret == "" {
		return fail(backend.HealthDown, "%s: secret file %s is empty", name, tp.SecretFile)
	}
	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {tp.ClientID},
		"client_secret": {secret},
	}
	target := c.trafficURL(s, "/realms/"+c.opts.Realm+"/protocol/openid-connect/token")
	f := fetch(ctx, c.client, http.MethodPost, target, form, c.opts.Timeout, c.opts.MaxBodyBytes)
	res := c.judgeToken(name, f, secret)
	res.reason = redact(res.reason, secret)
	return res
}

// judgeToken judges a token response. Peer-supplied text is redacted
// before it is clipped, so a clipped secret cannot survive in part.
func (c *Checker) judgeToken(name string, f fetched, secret string) probeResult {
	if r, done := c.trafficFailure(name, f); done && f.answered() {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(f.body, &e) == nil && e.Error != "" {
			r.reason += " " + clip(redact(e.Error, secret))
		}
		return r
	} else if done {
		return r
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(f.body, &tok); err != nil || tok.AccessToken == "" {
		return fail(backend.HealthDown, "%s: HTTP 200 without an access token", name)
	}
	return pass(name + ": OK")
}

// redact removes every occurrence of secret (raw and form-encoded) from s.
func redact(s, secret string) string {
	if secret == "" {
		return s
	}
	s = strings.ReplaceAll(s, secret, "[redacted]")
	return strings.ReplaceAll(s, url.QueryEscape(secret), "[redacted]")
}

// clusterView fetches /metrics on the management port and returns the
// node's vendor_cluster_size sample.
func (c *Checker) clusterView(ctx context.Context, s *backend.Server) (ClusterSample, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	target := c.opts.Scheme + "://" + s.Mgmt() + c.opts.MetricsPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return ClusterSample{}, fmt.Errorf("health: metrics request: %w", err)
	}
	req.Header.Set("User-Agent", "kclb-health")
	req.Header.Set("Accept", "text/plain")
	resp, err := c.client.Do(req)
	if err != nil {
		return ClusterSample{}, fmt.Errorf("health: metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ClusterSample{}, fmt.Errorf("health: metrics: HTTP %d", resp.StatusCode)
	}
	return ParseClusterSize(io.LimitReader(resp.Body, c.opts.MaxMetricsBytes))
}
