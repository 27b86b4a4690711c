package kcsim

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// NodeHeader names the response header that tells which node answered a
// login-flow request (auth, login-actions, token). It is not Keycloak's; tests
// use it to check affinity.
const NodeHeader = "X-Kcsim-Node"

// Messages Keycloak shows on its error pages.
const (
	msgTimedOut      = "Your login attempt timed out. Login will start from the beginning."
	msgCookieMissing = "Cookie not found. Please make sure cookies are enabled in your browser."
	msgInvalidUser   = "Invalid username or password."
)

// trafficHandler serves the traffic port.
type trafficHandler struct {
	n *Node
}

// ServeHTTP dispatches on the path with plain string comparisons (no regexp).
func (t *trafficHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := t.n
	n.stats.requests.Add(1)
	if d := time.Duration(n.delay.Load()); d > 0 {
		tm := time.NewTimer(d)
		select {
		case <-tm.C:
		case <-r.Context().Done():
			tm.Stop()
			return
		}
	}
	p := r.URL.Path
	if p == n.pages.helloPath {
		n.stats.byClass[ClassHello].Add(1)
		n.serveHello(w)
		return
	}
	switch {
	case strings.HasPrefix(p, "/realms/"):
		n.serveRealm(w, r, p[len("/realms/"):])
	case p == "/":
		n.count(ClassAdmin)
		n.redirect(w, "/admin/")
	case p == "/admin" || p == "/admin/":
		n.count(ClassAdmin)
		n.redirect(w, "/admin/master/console/")
	case strings.HasPrefix(p, "/admin/"):
		n.count(ClassAdmin)
		n.page(w, http.StatusOK, n.pages.adminPage)
	case strings.HasPrefix(p, "/resources/") || p == "/js/keycloak.js":
		n.count(ClassResources)
		n.serveResource(w, p)
	case p == "/robots.txt":
		n.count(ClassResources)
		h := w.Header()
		h.Set("Content-Type", "text/plain;charset=utf-8")
		n.pages.setSecurityHeaders(h, false)
		io.WriteString(w, "User-agent: *\nDisallow: /\n")
	case p == "/echo":
		n.count(ClassTestHook)
		n.serveEcho(w, r)
	case p == "/bigheader":
		n.count(ClassTestHook)
		n.serveBigHeader(w, r)
	case p == "/stream":
		n.count(ClassTestHook)
		n.serveStream(w, r)
	case p == "/lb-check" && n.opts.MultiSite:
		n.count(ClassOther)
		n.serveLBCheck(w)
	default:
		// Includes /health*, /metrics and (without MultiSite) /lb-check:
		// 404 on the traffic port.
		n.count(ClassOther)
		n.notFound(w)
	}
}

// serveLBCheck answers the multi-site /lb-check like Keycloak's health
// endpoints: 200 UP, or 503 DOWN while the site is offline.
func (n *Node) serveLBCheck(w http.ResponseWriter) {
	status, body := http.StatusOK, `{"status":"UP"}`
	if n.siteOffline.Load() {
		status, body = http.StatusServiceUnavailable, `{"status":"DOWN"}`
	}
	h := w.Header()
	h["Content-Type"] = n.pages.ctJSON
	h["Cache-Control"] = n.pages.cacheNoStore
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func (n *Node) count(c PathClass) { n.stats.byClass[c].Add(1) }

// serveHello mirrors peer-bench's backend: pre-rendered body and headers.
func (n *Node) serveHello(w http.ResponseWriter) {
	h := w.Header()
	h["Content-Type"] = n.pages.ctJSON
	h["Cache-Control"] = n.pages.cacheNoStore
	h["X-Node"] = n.pages.nodeVal
	h["Set-Cookie"] = n.pages.helloCookie
	h["Content-Length"] = n.pages.helloLen
	w.Write(n.pages.helloBody)
}

// page writes an HTML page with Keycloak's security headers.
func (n *Node) page(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = n.pages.ctHTML
	h["Cache-Control"] = n.pages.cacheNoStore
	n.pages.setSecurityHeaders(h, false)
	w.WriteHeader(status)
	w.Write(body)
}

// jsonResponse writes a JSON Keycloak response with its security headers.
func (n *Node) jsonResponse(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	h := w.Header()
	h["Content-Type"] = n.pages.ctJSON
	h["Cache-Control"] = n.pages.cacheNoStore
	n.pages.setSecurityHeaders(h, false)
	w.WriteHeader(status)
	w.Write(b)
}

func (n *Node) redirect(w http.ResponseWriter, loc string) {
	h := w.Header()
	h.Set("Location", loc)
	n.pages.setSecurityHeaders(h, false)
	w.WriteHeader(http.StatusFound)
}

func (n *Node) notFound(w http.ResponseWriter) {
	n.page(w, http.StatusNotFound, messagePage("Page not found", "Page not found"))
}

// serveRealm handles /realms/{realm}/...; rest is the path after "/realms/".
func (n *Node) serveRealm(w http.ResponseWriter, r *http.Request, rest string) {
	realm, sub, _ := strings.Cut(rest, "/")
	if realm != n.opts.Realm {
		n.count(ClassRealm)
		n.jsonResponse(w, http.StatusNotFound, map[string]string{"error": "Realm does not exist"})
		return
	}
	switch sub {
	case ".well-known/openid-configuration":
		n.count(ClassWellKnown)
		n.serveDiscovery(w, r)
	case "protocol/openid-connect/auth":
		n.count(ClassAuth)
		n.serveAuth(w, r)
	case "login-actions/authenticate":
		n.count(ClassLoginActions)
		n.serveAuthenticate(w, r)
	case "protocol/openid-connect/token":
		n.count(ClassToken)
		n.serveToken(w, r)
	case "protocol/openid-connect/login-status-iframe.html":
		n.count(ClassIframe)
		n.iframe(w, n.pages.iframePage)
	case "protocol/openid-connect/3p-cookies/step1.html":
		n.count(ClassIframe)
		n.iframe(w, n.pages.step1Page)
	case "protocol/openid-connect/3p-cookies/step2.html":
		n.count(ClassIframe)
		n.iframe(w, n.pages.step2Page)
	case "protocol/openid-connect/certs":
		n.count(ClassRealm)
		n.jsonResponse(w, http.StatusOK, map[string]any{"keys": []map[string]string{
			{"kid": "kcsim-fake-hs512-key", "kty": "oct", "alg": "HS512", "use": "sig"},
		}})
	case "":
		n.count(ClassRealm)
		base := n.baseURL(r) + "/realms/" + realm
		n.jsonResponse(w, http.StatusOK, map[string]any{
			"realm": realm, "public_key": "kcsim-fake-public-key",
			"token-service": base + "/protocol/openid-connect", "account-service": base + "/account",
			"tokens-not-before": 0,
		})
	default:
		n.count(ClassRealm)
		n.notFound(w)
	}
}

// iframe writes one of the pages Keycloak serves without framing headers.
func (n *Node) iframe(w http.ResponseWriter, body []byte) {
	h := w.Header()
	h["Content-Type"] = n.pages.ctHTML
	n.pages.setSecurityHeaders(h, true)
	w.Write(body)
}

// baseURL is scheme://host[:port] as Keycloak computes it with
// proxy-headers=xforwarded: X-Forwarded-Proto/-Host/-Port when present (a
// host without port means no port), else the request's Host.
func (n *Node) baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if v := firstValue(r.Header.Get("X-Forwarded-Proto")); v != "" {
		scheme = strings.ToLower(v)
	}
	host := r.Host
	if v := firstValue(r.Header.Get("X-Forwarded-Host")); v != "" {
		host = v
	}
	if port := firstValue(r.Header.Get("X-Forwarded-Port")); port != "" {
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.Trim(host, "[]")
		if scheme == "https" && port == "443" || scheme == "http" && port == "80" {
			if strings.Contains(host, ":") {
				host = "[" + host + "]"
			}
		} else {
			host = net.JoinHostPort(host, port)
		}
	}
	return scheme + "://" + host
}

// firstValue returns the first element of a comma-separated header value.
func firstValue(v string) string {
	if i := strings.IndexByte(v, ','); i >= 0 {
		v = v[:i]
	}
	return strings.TrimSpace(v)
}

func (n *Node) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	iss := n.baseURL(r) + "/realms/" + n.opts.Realm
	oidc := iss + "/protocol/openid-connect"
	n.jsonResponse(w, http.StatusOK, map[string]any{
		"issuer":                                iss,
		"authorization_endpoint":                oidc + "/auth",
		"token_endpoint":                        oidc + "/token",
		"introspection_endpoint":                oidc + "/token/introspect",
		"userinfo_endpoint":                     oidc + "/userinfo",
		"end_session_endpoint":                  oidc + "/logout",
		"jwks_uri":                              oidc + "/certs",
		"check_session_iframe":                  oidc + "/login-status-iframe.html",
		"grant_types_supported":                 []string{"authorization_code", "refresh_token", "client_credentials"},
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public", "pairwise"},
		"id_token_signing_alg_values_supported": []string{"HS512"},
		"scopes_supported":                      []string{"openid", "profile", "email"},
		"code_challenge_methods_supported":      []string{"plain", "S256"},
	})
}

// cookieAttrs returns "; Path=/realms/{realm}/" plus "; Secure" over HTTPS.
func (n *Node) cookieAttrs(secure bool) string {
	a := "; Path=/realms/" + n.opts.Realm + "/"
	if secure {
		a += "; Secure"
	}
	return a
}

// restartClaims is the payload of the KC_RESTART cookie: enough to restart
// the login on another node (non-strict mode).
type restartClaims struct {
	ClientID    string `json:"cid"`
	RedirectURI string `json:"ruri"`
	State       string `json:"state"`
	Nonce       string `json:"nonce"`
}

// serveAuth starts a login: creates an auth session, sets Keycloak's login
// cookies and renders the login form.
func (n *Node) serveAuth(w http.ResponseWriter, r *http.Request) {
	w.Header()[NodeHeader] = n.pages.nodeVal
	q := r.URL.Query()
	clientID, redirectURI := q.Get("client_id"), q.Get("redirect_uri")
	if clientID == "" {
		n.page(w, http.StatusBadRequest, messagePage("Error", "Client not found."))
		return
	}
	if redirectURI == "" {
		n.page(w, http.StatusBadRequest, messagePage("Error", "Invalid parameter: redirect_uri"))
		return
	}
	id, route := "", ""
	if c, err := r.Cookie("AUTH_SESSION_ID"); err == nil {
		if a, err := ParseAuthSessionID(c.Value); err == nil {
			if old := n.store.session(a.ID); old != nil {
				id, route = a.ID, old.route // a new tab of an existing auth session
			}
		}
	}
	if id == "" {
		id = newUUID()
		route, _ = n.sessionRoute()
	}
	as := &authSession{
		id: id, clientID: clientID, redirectURI: redirectURI, route: route,
		state: q.Get("state"), nonce: q.Get("nonce"), tabID: randToken(8), created: time.Now(),
	}
	n.store.putSession(as)

	base := n.baseURL(r)
	secure := strings.HasPrefix(base, "https:")
	attrs := n.cookieAttrs(secure)
	if n.opts.NoRoute {
		route = ""
	}
	val := EncodeAuthSessionID(n.opts.CookieFormat, id, route, n.signKey)
	restart := fakeJWT(map[string]any{
		"cid": clientID, "ruri": redirectURI, "state": as.state, "nonce": as.nonce,
		"pty": "openid-connect", "act": "AUTHENTICATE",
		"notes": map[string]string{"scope": q.Get("scope"), "iss": base + "/realms/" + n.opts.Realm, "response_type": "code"},
	}, 1536)
	hash := sha256.Sum256([]byte(id))

	h := w.Header()
	h["Set-Cookie"] = []string{
		"AUTH_SESSION_ID=" + val + attrs + "; SameSite=None; HttpOnly",
		"AUTH_SESSION_ID_LEGACY=" + val + attrs + "; HttpOnly",
		"KC_RESTART=" + restart + attrs + "; HttpOnly",
		"KC_AUTH_SESSION_HASH=" + base64.RawURLEncoding.EncodeToString(hash[:]) + "; Max-Age=60" + attrs + "; SameSite=Strict",
	}
	action := base + "/realms/" + n.opts.Realm + "/login-actions/authenticate?session_code=" + randToken(32) +
		"&execution=" + executionID + "&client_id=" + url.QueryEscape(clientID) + "&tab_id=" + as.tabID
	n.page(w, http.StatusOK, loginPage(n.opts.Realm, action, ""))
}

// executionID is the fixed id of the username/password form execution.
const executionID = "4e4b7a2c-7c1f-4a8e-9a53-5c0b1d2e3f40"

// serveAuthenticate completes the login form: checks the auth session,
// issues a code bound to it and redirects back to the client.
func (n *Node) serveAuthenticate(w http.ResponseWriter, r *http.Request) {
	w.Header()[NodeHeader] = n.pages.nodeVal
	c, err := r.Cookie("AUTH_SESSION_ID")
	if err != nil {
		n.page(w, http.StatusBadRequest, messagePage("Error", msgCookieMissing))
		return
	}
	a, err := ParseAuthSessionID(c.Value)
	if err != nil {
		n.page(w, http.StatusBadRequest, messagePage("Error", msgTimedOut))
		return
	}
	as := n.store.session(a.ID)
	if as == nil {
		if n.opts.Strict {
			// An unknown session whose route names this node is one
			// that expired here, not a misroute, unless routes are
			// being written wrong (then the route proves nothing).
			if a.Route != n.opts.Node || n.wrongRoute.Load() != 0 {
				n.stats.misroutes.Add(1)
			}
			n.page(w, http.StatusBadRequest, messagePage("Error", msgTimedOut))
			return
		}
		// Non-strict: the session lives "in the cluster"; restore it from KC_RESTART.
		var rc restartClaims
		kr, err := r.Cookie("KC_RESTART")
		if err == nil {
			err = decodeJWT(kr.Value, &rc)
		}
		if err != nil || rc.ClientID == "" || rc.RedirectURI == "" {
			n.page(w, http.StatusBadRequest, messagePage("Error", msgTimedOut))
			return
		}
		as = &authSession{id: a.ID, clientID: rc.ClientID, redirectURI: rc.RedirectURI, state: rc.State, nonce: rc.Nonce, created: time.Now()}
	}
	if r.Method != http.MethodPost {
		n.page(w, http.StatusOK, loginPage(n.opts.Realm, r.URL.String(), ""))
		return
	}
	if err := r.ParseForm(); err != nil {
		n.page(w, http.StatusBadRequest, messagePage("Error", "Invalid Request"))
		return
	}
	user := r.PostForm.Get("username")
	if user == "" || r.PostForm.Get("password") == "" {
		n.page(w, http.StatusOK, loginPage(n.opts.Realm, r.URL.String(), msgInvalidUser))
		return
	}

	code := newUUID() + "." + as.id + "." + n.opts.Node
	n.store.putCode(code, &codeEntry{sessionID: as.id, clientID: as.clientID, redirectURI: as.redirectURI, created: time.Now()})
	n.stats.logins.Add(1)

	base := n.baseURL(r)
	attrs := n.cookieAttrs(strings.HasPrefix(base, "https:"))
	userSession := newUUID()
	sum := sha256.Sum256([]byte(userSession))
	identity := fakeJWT(map[string]any{
		"typ": "Serialized-ID", "sub": newUUID(), "sid": userSession, "state_checker": randToken(16),
		"iss": base + "/realms/" + n.opts.Realm, "preferred_username": user,
	}, 2048)
	h := w.Header()
	h["Set-Cookie"] = []string{
		"KEYCLOAK_IDENTITY=" + identity + attrs + "; SameSite=None; HttpOnly",
		"KEYCLOAK_SESSION=" + base64.RawURLEncoding.EncodeToString(sum[:]) + attrs + "; SameSite=None",
		"KC_RESTART=; Expires=Thu, 01 Jan 1970 00:00:10 GMT; Max-Age=0" + attrs + "; HttpOnly",
	}
	sep := "?"
	if strings.Contains(as.redirectURI, "?") {
		sep = "&"
	}
	loc := as.redirectURI + sep + "state=" + url.QueryEscape(as.state) + "&session_state=" + userSession +
		"&iss=" + url.QueryEscape(base+"/realms/"+n.opts.Realm) + "&code=" + url.QueryEscape(code)
	n.redirect(w, loc)
}

// tokenError writes an OAuth error response.
func (n *Node) tokenError(w http.ResponseWriter, status int, code, desc string) {
	n.jsonResponse(w, status, map[string]string{"error": code, "error_description": desc})
}

// serveToken implements the token endpoint's authorization_code,
// refresh_token and client_credentials grants.
func (n *Node) serveToken(w http.ResponseWriter, r *http.Request) {
	w.Header()[NodeHeader] = n.pages.nodeVal
	if n.tokenFail.Load() {
		n.tokenError(w, http.StatusInternalServerError, "unknown_error", "kcsim: token endpoint failing (token=fail)")
		return
	}
	if r.Method != http.MethodPost {
		n.tokenError(w, http.StatusMethodNotAllowed, "invalid_request", "HTTP method not allowed")
		return
	}
	if err := r.ParseForm(); err != nil {
		n.tokenError(w, http.StatusBadRequest, "invalid_request", "malformed form")
		return
	}
	f := r.PostForm
	clientID, secret, basic := r.BasicAuth()
	if !basic {
		clientID, secret = f.Get("client_id"), f.Get("client_secret")
	}
	iss := n.baseURL(r) + "/realms/" + n.opts.Realm
	switch f.Get("grant_type") {
	case "authorization_code":
		code := f.Get("code")
		entry, found, ok := n.store.redeem(code)
		switch {
		case found && !ok:
			n.tokenError(w, http.StatusBadRequest, "invalid_grant", "Code not valid")
			return
		case found && f.Get("redirect_uri") != entry.redirectURI:
			n.tokenError(w, http.StatusBadRequest, "invalid_grant", "Incorrect redirect_uri")
			return
		case !found:
			parts := strings.Split(code, ".")
			wellFormed := len(parts) == 3 && isUUID(parts[0]) && isUUID(parts[1])
			if n.opts.Strict && wellFormed && parts[2] != n.opts.Node {
				n.stats.misroutes.Add(1)
			}
			if n.opts.Strict || !wellFormed {
				n.tokenError(w, http.StatusBadRequest, "invalid_grant", "Code not valid")
				return
			}
			entry = codeEntry{sessionID: parts[1], clientID: clientID}
		}
		if entry.clientID != "" {
			clientID = entry.clientID
		}
		n.issueTokens(w, iss, clientID, entry.sessionID, true)
	case "refresh_token":
		var claims struct {
			Typ string `json:"typ"`
			Sid string `json:"sid"`
			Azp string `json:"azp"`
		}
		if err := decodeJWT(f.Get("refresh_token"), &claims); err != nil || claims.Typ != "Refresh" {
			n.tokenError(w, http.StatusBadRequest, "invalid_grant", "Invalid refresh token")
			return
		}
		n.issueTokens(w, iss, claims.Azp, claims.Sid, true)
	case "client_credentials":
		if clientID == "" || (n.opts.ProbeSecret != "" && secret != n.opts.ProbeSecret) {
			n.tokenError(w, http.StatusUnauthorized, "unauthorized_client", "Invalid client or Invalid client credentials")
			return
		}
		n.issueTokens(w, iss, clientID, "", false)
	default:
		n.tokenError(w, http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant_type")
	}
}

// issueTokens writes a token response with fake JWTs.
func (n *Node) issueTokens(w http.ResponseWriter, iss, clientID, sid string, withRefresh bool) {
	now := time.Now().Unix()
	sub := newUUID()
	claims := func(typ string) map[string]any {
		return map[string]any{"exp": now + 300, "iat": now, "jti": newUUID(), "iss": iss, "sub": sub,
			"typ": typ, "azp": clientID, "sid": sid, "scope": "openid profile email"}
	}
	resp := map[string]any{
		"access_token":      fakeJWT(claims("Bearer"), 1200),
		"expires_in":        300,
		"token_type":        "Bearer",
		"not-before-policy": 0,
		"scope":             "openid profile email",
	}
	if withRefresh {
		resp["refresh_token"] = fakeJWT(claims("Refresh"), 700)
		resp["refresh_expires_in"] = 1800
		resp["id_token"] = fakeJWT(claims("ID"), 1000)
		resp["session_state"] = sid
	} else {
		resp["refresh_expires_in"] = 0
	}
	n.stats.tokens.Add(1)
	w.Header().Set("Pragma", "no-cache")
	n.jsonResponse(w, http.StatusOK, resp)
}

// serveResource writes a 2 KiB static-looking body with long cache headers.
func (n *Node) serveResource(w http.ResponseWriter, p string) {
	h := w.Header()
	switch {
	case strings.HasSuffix(p, ".js"):
		h.Set("Content-Type", "application/javascript")
	default:
		h.Set("Content-Type", "text/css")
	}
	h.Set("Cache-Control", resourceCacheAge)
	n.pages.setSecurityHeaders(h, false)
	if p == "/js/keycloak.js" {
		w.Write(n.pages.keycloakJS)
		return
	}
	w.Write(n.pages.resourceBody)
}

// EchoResponse is the JSON body of the /echo test hook.
type EchoResponse struct {
	Method     string      `json:"method"`
	URI        string      `json:"uri"`
	Proto      string      `json:"proto"`
	Host       string      `json:"host"`
	Header     http.Header `json:"headers"`
	RemoteAddr string      `json:"remote_addr"`
	TLS        bool        `json:"tls"`
	BodyBytes  int64       `json:"body_bytes"`
	Node       string      `json:"node"`
}

// serveEcho answers the request as received (test hook, not Keycloak).
func (n *Node) serveEcho(w http.ResponseWriter, r *http.Request) {
	nb, _ := io.Copy(io.Discard, io.LimitReader(r.Body, 64<<20))
	writeJSON(w, http.StatusOK, EchoResponse{
		Method: r.Method, URI: r.RequestURI, Proto: r.Proto, Host: r.Host, Header: r.Header,
		RemoteAddr: r.RemoteAddr, TLS: r.TLS != nil, BodyBytes: nb, Node: n.opts.Node,
	})
}

// serveBigHeader answers with an X-Big header of kib KiB (at most 1024).
func (n *Node) serveBigHeader(w http.ResponseWriter, r *http.Request) {
	kib, err := strconv.Atoi(r.URL.Query().Get("kib"))
	if err != nil || kib < 0 || kib > 1024 {
		http.Error(w, "kcsim: kib must be 0..1024", http.StatusBadRequest)
		return
	}
	w.Header().Set("X-Big", strings.Repeat("b", kib<<10))
	w.Header()["X-Node"] = n.pages.nodeVal
	io.WriteString(w, "ok\n")
}

// serveStream flushes chunks chunks (at most 10000), interval apart (at most 10s).
func (n *Node) serveStream(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	chunks, err := strconv.Atoi(q.Get("chunks"))
	if err != nil || chunks < 0 || chunks > 10000 {
		http.Error(w, "kcsim: chunks must be 0..10000", http.StatusBadRequest)
		return
	}
	var interval time.Duration
	if v := q.Get("interval"); v != "" {
		if interval, err = time.ParseDuration(v); err != nil || interval < 0 || interval > 10*time.Second {
			http.Error(w, "kcsim: interval must be a duration 0..10s", http.StatusBadRequest)
			return
		}
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/plain")
	w.Header()["X-Node"] = n.pages.nodeVal
	for i := 0; i < chunks; i++ {
		if i > 0 && interval > 0 {
			t := time.NewTimer(interval)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		if _, err := io.WriteString(w, "chunk "+strconv.Itoa(i)+"\n"); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
