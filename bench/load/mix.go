package load

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// MixOptions configure the Keycloak mix.
type MixOptions struct {
	// BaseURL is the scheme://host:port of the proxy (or a node).
	BaseURL string
	// Realm is the realm name; default "test".
	Realm string
	// ClientID is the OIDC client; default "bench".
	ClientID string
	// TLS is the client TLS config for https base URLs.
	TLS *tls.Config
	// HTTP2 lets the client negotiate h2 over TLS.
	HTTP2 bool
	// Timeout bounds each request; default 10s.
	Timeout time.Duration
	// NodeCookie is the cookie whose route suffix (after the first '.')
	// names the node that owns the login; default "AUTH_SESSION_ID".
	NodeCookie string
}

// The mix, per simulated user: two static resources, OIDC discovery, the
// login page, the credentials POST, the code exchange, two refreshes; then
// the user forgets its cookies and logs in again.
const (
	stepStatic1 = iota
	stepStatic2
	stepDiscovery
	stepAuth
	stepLogin
	stepToken
	stepRefresh1
	stepRefresh2
	numSteps
)

// MixSteps is the number of requests in one simulated user's login cycle.
const MixSteps = numSteps

// MixWorkers returns a NewWorker function for the mix and a function that
// closes the shared transport's idle connections. Each worker is a user with
// its own cookie jar; all share one connection pool with keep-alive.
func MixWorkers(o MixOptions) (newWorker func(i int) Worker, closeAll func()) {
	if o.Realm == "" {
		o.Realm = "test"
	}
	if o.ClientID == "" {
		o.ClientID = "bench"
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.NodeCookie == "" {
		o.NodeCookie = "AUTH_SESSION_ID"
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: o.Timeout}).DialContext,
		TLSClientConfig:     o.TLS,
		ForceAttemptHTTP2:   o.HTTP2,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     time.Minute,
	}
	if !o.HTTP2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	newWorker = func(i int) Worker {
		jar, _ := cookiejar.New(nil)
		return &mixUser{
			o:  o,
			id: i,
			c: &http.Client{
				Transport:     tr,
				Jar:           jar,
				Timeout:       o.Timeout,
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			},
			base: o.BaseURL + "/realms/" + o.Realm,
		}
	}
	return newWorker, tr.CloseIdleConnections
}

type mixUser struct {
	o    MixOptions
	id   int
	c    *http.Client
	base string

	step    int
	flow    int
	action  string // login form action URL
	code    string
	refresh string
	node    string // route seen at the start of the login
	buf     bytes.Buffer
}

var formAction = regexp.MustCompile(`action="([^"]+)"`)

func (u *mixUser) restart() {
	jar, _ := cookiejar.New(nil)
	u.c.Jar = jar
	u.step, u.action, u.code, u.refresh, u.node = 0, "", "", "", ""
	u.flow++
}

// Do performs the user's next step. A failed step restarts the user's flow.
func (u *mixUser) Do(ctx context.Context) error {
	err := u.do(ctx)
	if err != nil {
		u.restart()
		return err
	}
	u.step++
	if u.step == numSteps {
		u.restart()
	}
	return nil
}

func (u *mixUser) do(ctx context.Context) error {
	redirect := "https://app.example/cb"
	switch u.step {
	case stepStatic1:
		_, err := u.get(ctx, u.o.BaseURL+"/resources/bench/login/keycloak.v2/css/styles.css", 200)
		return err
	case stepStatic2:
		_, err := u.get(ctx, u.o.BaseURL+"/resources/bench/common/keycloak/img/favicon.ico", 200)
		return err
	case stepDiscovery:
		_, err := u.get(ctx, u.base+"/.well-known/openid-configuration", 200)
		return err
	case stepAuth:
		q := url.Values{"client_id": {u.o.ClientID}, "response_type": {"code"}, "scope": {"openid"},
			"redirect_uri": {redirect}, "state": {fmt.Sprintf("s%d-%d", u.id, u.flow)}}
		resp, err := u.get(ctx, u.base+"/protocol/openid-connect/auth?"+q.Encode(), 200)
		if err != nil {
			return err
		}
		m := formAction.FindSubmatch(u.buf.Bytes())
		if m == nil {
			return &Error{Kind: ErrParse, Err: fmt.Errorf("login page has no form action")}
		}
		u.action = html.UnescapeString(string(m[1]))
		if strings.HasPrefix(u.action, "/") {
			u.action = u.o.BaseURL + u.action
		}
		u.node = u.route(resp.Request.URL)
		return nil
	case stepLogin:
		resp, err := u.post(ctx, u.action, url.Values{"username": {fmt.Sprintf("user%d", u.id)}, "password": {"secret"}}, 302)
		if err != nil {
			return err
		}
		loc, err := url.Parse(resp.Header.Get("Location"))
		if err != nil || loc.Query().Get("code") == "" {
			return &Error{Kind: ErrParse, Err: fmt.Errorf("login redirect without code: %q", resp.Header.Get("Location"))}
		}
		u.code = loc.Query().Get("code")
		if n := u.route(resp.Request.URL); u.node != "" && n != "" && n != u.node {
			return &Error{Kind: ErrAffinity, Err: fmt.Errorf("login moved from %s to %s", u.node, n)}
		}
		return nil
	case stepToken:
		return u.token(ctx, url.Values{"grant_type": {"authorization_code"}, "code": {u.code},
			"client_id": {u.o.ClientID}, "redirect_uri": {redirect}})
	default: // refreshes
		return u.token(ctx, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {u.refresh},
			"client_id": {u.o.ClientID}})
	}
}

// route returns the route suffix of the node cookie for URL, or "".
func (u *mixUser) route(at *url.URL) string {
	for _, c := range u.c.Jar.Cookies(at) {
		if c.Name == u.o.NodeCookie {
			if _, r, ok := strings.Cut(c.Value, "."); ok {
				return r
			}
		}
	}
	return ""
}

func (u *mixUser) token(ctx context.Context, form url.Values) error {
	if _, err := u.post(ctx, u.base+"/protocol/openid-connect/token", form, 200); err != nil {
		return err
	}
	var tok struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(u.buf.Bytes(), &tok); err != nil || tok.RefreshToken == "" {
		return &Error{Kind: ErrParse, Err: fmt.Errorf("token response without refresh_token (%v)", err)}
	}
	u.refresh = tok.RefreshToken
	return nil
}

func (u *mixUser) get(ctx context.Context, target string, want int) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, kindErr(ErrOther, err)
	}
	return u.send(req, want)
}

func (u *mixUser) post(ctx context.Context, target string, form url.Values, want int) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, kindErr(ErrOther, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return u.send(req, want)
}

func (u *mixUser) send(req *http.Request, want int) (*http.Response, error) {
	resp, err := u.c.Do(req)
	if err != nil {
		return nil, kindErr(ErrRead, err)
	}
	u.buf.Reset()
	_, err = io.Copy(&u.buf, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return nil, kindErr(ErrRead, err)
	}
	if resp.StatusCode != want {
		return nil, &Error{Kind: ErrStatus, Err: fmt.Errorf("%s %s: status %d, want %d", req.Method, req.URL.Path, resp.StatusCode, want)}
	}
	return resp, nil
}

func (u *mixUser) Close() error { return nil }
