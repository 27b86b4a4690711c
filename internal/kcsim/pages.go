package kcsim

import (
	"fmt"
	"html"
	"net/http"
	"strconv"
	"strings"
)

// Keycloak's default security headers (realm "Security Defenses" settings).
const (
	xFrameOptions    = "SAMEORIGIN"
	cspDefault       = "frame-src 'self'; frame-ancestors 'self'; object-src 'none';"
	cspIframe        = "frame-src 'self'; object-src 'none';"
	contentTypeOpts  = "nosniff"
	robotsTag        = "none"
	referrerPolicy   = "no-referrer"
	hstsValue        = "max-age=31536000; includeSubDomains"
	noStore          = "no-store, must-revalidate, max-age=0"
	htmlType         = "text/html;charset=utf-8"
	resourceCacheAge = "max-age=2592000"
)

// one returns a header value slice with capacity 1, safe to share between
// responses: an Add on it reallocates instead of writing into the shared array.
func one(v string) []string { return []string{v}[:1:1] }

// pages holds pre-rendered bodies and header values of one node.
type pages struct {
	helloPath   string
	helloBody   []byte
	helloLen    []string
	helloCookie []string
	nodeVal     []string

	ctJSON, ctHTML, cacheNoStore                                                []string
	secFrame, secCSP, secIframeCSP, secNosniff, secRobots, secReferrer, secHSTS []string

	resourceBody []byte
	keycloakJS   []byte
	adminPage    []byte
	iframePage   []byte
	step1Page    []byte
	step2Page    []byte
}

// newPages pre-renders everything that does not depend on the request.
func newPages(o Options) pages {
	p := pages{
		helloPath:    "/realms/" + o.Realm + "/hello",
		helloCookie:  one("AUTH_SESSION_ID=abc123." + o.Node + "; Path=/realms/" + o.Realm + "/; HttpOnly"),
		nodeVal:      one(o.Node),
		ctJSON:       one("application/json"),
		ctHTML:       one(htmlType),
		cacheNoStore: one(noStore),
		secFrame:     one(xFrameOptions),
		secCSP:       one(cspDefault),
		secIframeCSP: one(cspIframe),
		secNosniff:   one(contentTypeOpts),
		secRobots:    one(robotsTag),
		secReferrer:  one(referrerPolicy),
		secHSTS:      one(hstsValue),
	}
	// Same shape as shared/tools/peer-bench/backend: 955 bytes for node "node1".
	p.helloBody = fmt.Appendf(nil, `{"realm":%q,"node":%q,"msg":"hello","pad":%q}`+"\n", o.Realm, o.Node, strings.Repeat("x", 900))
	p.helloLen = one(strconv.Itoa(len(p.helloBody)))

	var css strings.Builder
	css.WriteString("/* kcsim static resource */\n")
	for i := 0; css.Len() < 2048; i++ {
		fmt.Fprintf(&css, ".kc-rule-%03d { margin: 0; padding: %dpx; }\n", i, i%17)
	}
	p.resourceBody = []byte(css.String()[:2048-1] + "\n")
	p.keycloakJS = []byte("/* kcsim keycloak.js stand-in */\nfunction Keycloak(config) { this.config = config; }\n")

	p.adminPage = []byte(`<!DOCTYPE html><html><head><meta charset="utf-8"><title>Keycloak Administration Console</title></head>` +
		`<body><div id="app">kcsim admin console (node ` + html.EscapeString(o.Node) + `)</div></body></html>` + "\n")
	p.iframePage = []byte(`<!DOCTYPE html><html><head><title>login status iframe</title></head><body><script>` +
		`window.addEventListener("message", function (e) { e.source.postMessage("unchanged", e.origin); });` +
		`</script></body></html>` + "\n")
	p.step1Page = []byte(`<!DOCTYPE html><html><head><title>3p cookies step 1</title></head><body><script>` +
		`document.cookie = "KEYCLOAK_3P_COOKIE_SAMESITE=supported; max-age=60; samesite=none; secure";` +
		`window.location = "step2.html";</script></body></html>` + "\n")
	p.step2Page = []byte(`<!DOCTYPE html><html><head><title>3p cookies step 2</title></head><body><script>` +
		`parent.postMessage(document.cookie ? "supported" : "unsupported", "*");</script></body></html>` + "\n")
	return p
}

// setSecurityHeaders sets Keycloak's security headers on a page response.
// iframe selects the variant Keycloak uses on login-status-iframe.html and
// the 3p-cookies pages: no X-Frame-Options and no frame-ancestors.
func (p *pages) setSecurityHeaders(h http.Header, iframe bool) {
	if iframe {
		h["Content-Security-Policy"] = p.secIframeCSP
	} else {
		h["X-Frame-Options"] = p.secFrame
		h["Content-Security-Policy"] = p.secCSP
	}
	h["X-Content-Type-Options"] = p.secNosniff
	h["X-Robots-Tag"] = p.secRobots
	h["Referrer-Policy"] = p.secReferrer
	h["Strict-Transport-Security"] = p.secHSTS
}

// loginPage renders the username/password form posting to action.
func loginPage(realm, action, errMsg string) []byte {
	var b strings.Builder
	b.WriteString(`<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Sign in to `)
	b.WriteString(html.EscapeString(realm))
	b.WriteString(`</title><link href="/resources/kcsim/login/keycloak.v2/css/styles.css" rel="stylesheet"></head><body>`)
	b.WriteString(`<h1 id="kc-page-title">Sign in to your account</h1>`)
	if errMsg != "" {
		b.WriteString(`<div class="alert-error"><span id="input-error">`)
		b.WriteString(html.EscapeString(errMsg))
		b.WriteString(`</span></div>`)
	}
	b.WriteString(`<form id="kc-form-login" onsubmit="login.disabled = true; return true;" action="`)
	b.WriteString(html.EscapeString(action))
	b.WriteString(`" method="post">`)
	b.WriteString(`<input tabindex="1" id="username" name="username" value="" type="text" autofocus autocomplete="username">`)
	b.WriteString(`<input tabindex="2" id="password" name="password" type="password" autocomplete="current-password">`)
	b.WriteString(`<input type="hidden" id="id-hidden-input" name="credentialId" value="">`)
	b.WriteString(`<input tabindex="4" name="login" id="kc-login" type="submit" value="Sign In">`)
	b.WriteString("</form></body></html>\n")
	return []byte(b.String())
}

// messagePage renders Keycloak's error page with msg.
func messagePage(title, msg string) []byte {
	return []byte(`<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>` + html.EscapeString(title) +
		`</title></head><body><div id="kc-error-message"><p class="instruction">` + html.EscapeString(msg) +
		"</p></div></body></html>\n")
}
