package admin

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The TCP admin listener is reachable from the network, so (issue 12,
// item 8) every request on it passes guard first:
//
//   - its Host must be the listener's own address (for a loopback
//     listener also localhost:PORT) or one of Options.Hosts, so that a
//     web page whose name an attacker re-binds to the admin address
//     (DNS rebinding) cannot read or change anything: 421 otherwise;
//   - everything but the stats page itself (static HTML with no data)
//     needs the bearer token, reads included, unless Options.PublicRead;
//   - a source address that failed the token maxTokenFailures times
//     within tokenFailWindow is answered 429 until the window ends, the
//     right token included.

// Token failure limits per source address.
const (
	maxTokenFailures = 10
	tokenFailWindow  = time.Minute
	// maxFailEntries bounds the failure table; when it is full of
	// addresses still inside their window it starts over.
	maxFailEntries = 4096
)

// failTable counts failed tokens per source address in fixed windows.
// The zero value is ready to use.
type failTable struct {
	mu sync.Mutex // guards m
	m  map[netip.Addr]failEntry
}

type failEntry struct {
	n     int
	since time.Time
}

// blocked reports whether a has used up its failures at now.
func (t *failTable) blocked(a netip.Addr, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[a]
	return ok && e.n >= maxTokenFailures && now.Sub(e.since) < tokenFailWindow
}

// fail records a failed token from a at now.
func (t *failTable) fail(a netip.Addr, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[netip.Addr]failEntry)
	}
	e, ok := t.m[a]
	if !ok && len(t.m) >= maxFailEntries {
		for k, v := range t.m {
			if now.Sub(v.since) >= tokenFailWindow {
				delete(t.m, k)
			}
		}
		if len(t.m) >= maxFailEntries {
			clear(t.m)
		}
	}
	if now.Sub(e.since) >= tokenFailWindow {
		e = failEntry{since: now}
	}
	e.n++
	t.m[a] = e
}

// hostAllowed reports whether r's Host names this listener: its own
// address, localhost:PORT on a loopback listener, or one of names
// (compared without case; a name without a port matches any port).
func hostAllowed(r *http.Request, names []string) bool {
	host := r.Host
	if host == "" {
		return false
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ap, err := netip.ParseAddrPort(la.String()); err == nil {
			ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			if strings.EqualFold(host, ap.String()) {
				return true
			}
			if ap.Addr().IsLoopback() && strings.EqualFold(host, "localhost:"+strconv.Itoa(int(ap.Port()))) {
				return true
			}
		}
	}
	hostOnly := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		hostOnly = h
	}
	for _, n := range names {
		if strings.EqualFold(host, n) {
			return true
		}
		if _, _, err := net.SplitHostPort(n); err != nil && strings.EqualFold(hostOnly, strings.Trim(n, "[]")) {
			return true
		}
	}
	return false
}

// publicPage reports whether r asks for the stats page itself, which
// holds no data (the page reads /v1/status with the token).
func publicPage(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && (r.URL.Path == "/" || r.URL.Path == "/stats")
}

// guard wraps an untrusted listener's handler with the Host, token and
// rate checks described above.
func (h *handler) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hostAllowed(r, h.s.opts.Hosts) {
			h.s.misdirected.Add(1)
			writeError(w, http.StatusMisdirectedRequest, "Host "+strconv.Quote(r.Host)+" does not name this admin listener (add it to admin.hosts)", nil)
			return
		}
		read := r.Method == http.MethodGet || r.Method == http.MethodHead
		if publicPage(r) || (read && h.s.opts.PublicRead) {
			next.ServeHTTP(w, r)
			return
		}
		peer, _ := netip.ParseAddrPort(r.RemoteAddr)
		src := peer.Addr().Unmap()
		now := time.Now()
		if h.s.failures.blocked(src, now) {
			h.s.unauthorized.Add(1)
			w.Header().Set("Retry-After", strconv.Itoa(int(tokenFailWindow.Seconds())))
			writeError(w, http.StatusTooManyRequests, "too many invalid tokens from this address; try again later", nil)
			return
		}
		if !h.authorized(r) {
			h.s.failures.fail(src, now)
			h.s.unauthorized.Add(1)
			h.s.opts.Logger.Warn("admin request refused: missing or invalid token", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
			w.Header().Set("WWW-Authenticate", `Bearer realm="kclb"`)
			writeError(w, http.StatusUnauthorized, "a valid bearer token is required on this listener", nil)
			return
		}
		next.ServeHTTP(w, r)
	})
}
