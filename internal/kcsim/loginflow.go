package kcsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
)

// LoginStep names one step of the browser login flow.
type LoginStep uint8

// Steps of LoginFlow, in order.
const (
	StepAuth         LoginStep = iota + 1 // GET .../protocol/openid-connect/auth
	StepAuthenticate                      // POST .../login-actions/authenticate
	StepToken                             // POST .../protocol/openid-connect/token
)

// String returns the step's name.
func (s LoginStep) String() string {
	switch s {
	case StepAuth:
		return "auth"
	case StepAuthenticate:
		return "authenticate"
	case StepToken:
		return "token"
	}
	return fmt.Sprintf("LoginStep(%d)", uint8(s))
}

// LoginError reports which step of a login failed.
type LoginError struct {
	Step   LoginStep
	Status int    // HTTP status, 0 if no response
	Node   string // NodeHeader of the response, if any
	Err    error
}

// Error describes the step, status and cause.
func (e *LoginError) Error() string {
	return fmt.Sprintf("kcsim login: step %s (status %d, node %q): %v", e.Step, e.Status, e.Node, e.Err)
}

// Unwrap returns the cause.
func (e *LoginError) Unwrap() error { return e.Err }

// LoginFlow performs Keycloak's browser login (auth → authenticate → token)
// from the client side, through any base URL (a node or a proxy). Set the
// fields before use; Run may be called concurrently if Client is safe for it.
type LoginFlow struct {
	// Client sends the requests. It must have a cookie jar for the flow to
	// work; redirects are never followed (a copy with CheckRedirect is
	// used). If nil, each Run uses a new client with a fresh jar and its own
	// connections, closed when Run returns.
	Client *http.Client
	// Realm defaults to "test".
	Realm string
	// ClientID defaults to "kclb-test".
	ClientID string
	// RedirectURI defaults to "https://app.example/callback".
	RedirectURI string
	// Username and Password default to "user" and "password".
	Username, Password string
	// Header, if set, is added to every request (e.g. X-Forwarded-*).
	Header http.Header
}

// LoginResult tells what a successful login produced and which nodes
// answered each step (from NodeHeader).
type LoginResult struct {
	AuthNode, AuthenticateNode, TokenNode string
	// AuthSessionID is the AUTH_SESSION_ID value set in step 1.
	AuthSessionID string
	Code          string
	AccessToken   string
	RefreshToken  string
}

// Run logs in through baseURL (e.g. "http://127.0.0.1:8080"). On failure it
// returns a *LoginError naming the step.
func (f *LoginFlow) Run(ctx context.Context, baseURL string) (*LoginResult, error) {
	realm, clientID, redirectURI := def(f.Realm, "test"), def(f.ClientID, "kclb-test"), def(f.RedirectURI, "https://app.example/callback")
	base, err := url.Parse(strings.TrimSuffix(baseURL, "/"))
	if err != nil {
		return nil, &LoginError{Step: StepAuth, Err: fmt.Errorf("base URL: %w", err)}
	}
	var c http.Client
	if f.Client != nil {
		c = *f.Client
	} else {
		jar, _ := cookiejar.New(nil)
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		c.Jar, c.Transport = jar, tr
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	res := &LoginResult{}
	state := randToken(12)

	// Step 1: the authorization request renders the login form.
	q := url.Values{"client_id": {clientID}, "redirect_uri": {redirectURI}, "response_type": {"code"},
		"scope": {"openid"}, "state": {state}, "nonce": {randToken(12)}}
	authURL := base.String() + "/realms/" + realm + "/protocol/openid-connect/auth?" + q.Encode()
	resp, body, err := f.do(ctx, &c, http.MethodGet, authURL, nil)
	if err != nil {
		return nil, &LoginError{Step: StepAuth, Err: err}
	}
	res.AuthNode = resp.Header.Get(NodeHeader)
	if resp.StatusCode != http.StatusOK {
		return nil, &LoginError{Step: StepAuth, Status: resp.StatusCode, Node: res.AuthNode, Err: errors.New("want 200")}
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == "AUTH_SESSION_ID" {
			res.AuthSessionID = ck.Value
		}
	}
	action, err := formAction(body)
	if err != nil {
		return nil, &LoginError{Step: StepAuth, Status: resp.StatusCode, Node: res.AuthNode, Err: err}
	}
	// Post to the form's path on our base URL (the absolute action may name
	// a host the test cannot reach).
	au, err := url.Parse(action)
	if err != nil {
		return nil, &LoginError{Step: StepAuth, Status: resp.StatusCode, Node: res.AuthNode, Err: fmt.Errorf("form action %q: %w", action, err)}
	}

	// Step 2: post the credentials; expect a redirect carrying the code.
	form := url.Values{"username": {def(f.Username, "user")}, "password": {def(f.Password, "password")}, "credentialId": {""}}
	resp, _, err = f.do(ctx, &c, http.MethodPost, base.String()+au.RequestURI(), form)
	if err != nil {
		return nil, &LoginError{Step: StepAuthenticate, Err: err}
	}
	res.AuthenticateNode = resp.Header.Get(NodeHeader)
	if resp.StatusCode != http.StatusFound {
		return nil, &LoginError{Step: StepAuthenticate, Status: resp.StatusCode, Node: res.AuthenticateNode, Err: errors.New("want 302")}
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err == nil && !strings.HasPrefix(loc.String(), redirectURI) {
		err = fmt.Errorf("redirect to %q, want %q", loc, redirectURI)
	}
	if err == nil && loc.Query().Get("state") != state {
		err = fmt.Errorf("state %q, want %q", loc.Query().Get("state"), state)
	}
	if err == nil && loc.Query().Get("code") == "" {
		err = errors.New("no code in redirect")
	}
	if err != nil {
		return nil, &LoginError{Step: StepAuthenticate, Status: resp.StatusCode, Node: res.AuthenticateNode, Err: err}
	}
	res.Code = loc.Query().Get("code")

	// Step 3: redeem the code.
	form = url.Values{"grant_type": {"authorization_code"}, "code": {res.Code}, "redirect_uri": {redirectURI}, "client_id": {clientID}}
	resp, body, err = f.do(ctx, &c, http.MethodPost, base.String()+"/realms/"+realm+"/protocol/openid-connect/token", form)
	if err != nil {
		return nil, &LoginError{Step: StepToken, Err: err}
	}
	res.TokenNode = resp.Header.Get(NodeHeader)
	if resp.StatusCode != http.StatusOK {
		return nil, &LoginError{Step: StepToken, Status: resp.StatusCode, Node: res.TokenNode, Err: fmt.Errorf("want 200, body %.200s", body)}
	}
	var tok struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || tok.AccessToken == "" {
		return nil, &LoginError{Step: StepToken, Status: resp.StatusCode, Node: res.TokenNode, Err: fmt.Errorf("no access_token in %.200s (%v)", body, err)}
	}
	res.AccessToken, res.RefreshToken = tok.AccessToken, tok.RefreshToken
	return res, nil
}

// do sends one request (a form POST if form is non-nil) and reads the body.
func (f *LoginFlow) do(ctx context.Context, c *http.Client, method, u string, form url.Values) (*http.Response, []byte, error) {
	var rd io.Reader
	if form != nil {
		rd = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, nil, fmt.Errorf("new request: %w", err)
	}
	for k, vs := range f.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp, nil, fmt.Errorf("%s %s: read body: %w", method, u, err)
	}
	return resp, body, nil
}

// formAction extracts the action URL of the login form.
func formAction(body []byte) (string, error) {
	s := string(body)
	i := strings.Index(s, `id="kc-form-login"`)
	if i < 0 {
		return "", errors.New("no login form in page")
	}
	s = s[i:]
	j := strings.Index(s, `action="`)
	if j < 0 {
		return "", errors.New("login form has no action")
	}
	s = s[j+len(`action="`):]
	k := strings.IndexByte(s, '"')
	if k < 0 {
		return "", errors.New("login form action unterminated")
	}
	return html.UnescapeString(s[:k]), nil
}

func def(v, d string) string {
	if v == "" {
		return d
	}
	return v
}
