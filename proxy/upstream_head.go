package proxy

import (
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// appendHead appends the request line and header block of r, a request
// without a body, to b byte for byte as (*http.Request).Write would
// write them, but without its allocations. It returns false, having
// appended nothing, for the requests it leaves to Request.Write: with a
// body, trailers,
// Transfer-Encoding or Close set, an opaque URL, a host that is not
// plain ASCII, carries an IPv6 zone or is invalid, or a target with
// control bytes.
func appendHead(b []byte, r *http.Request) ([]byte, bool) {
	if (r.Body != nil && r.Body != http.NoBody) || r.URL == nil || r.URL.Opaque != "" ||
		len(r.TransferEncoding) > 0 || r.Trailer != nil || r.Close {
		return b, false
	}
	host := r.Host
	if host == "" {
		host = r.URL.Host
	}
	if !plainHost(host) || !httpguts.ValidHostHeader(host) {
		return b, false
	}
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	query := r.URL.ForceQuery || r.URL.RawQuery != ""
	if hasCTL(path) || (query && hasCTL(r.URL.RawQuery)) {
		return b, false
	}
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}

	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, path...)
	if query {
		b = append(b, '?')
		b = append(b, r.URL.RawQuery...)
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\n"...)
	ua := "Go-http-client/1.1"
	if vv, ok := r.Header["User-Agent"]; ok {
		ua = ""
		if len(vv) > 0 {
			ua = vv[0]
		}
	}
	if ua != "" { // tested before cleaning, like Request.Write
		b = appendField(b, "User-Agent", cleanHeaderValue(ua))
	}
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		b = append(b, "Content-Length: 0\r\n"...)
	}

	var buf [32]string
	keys := buf[:0]
	for k := range r.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		keys = append(keys, k)
	}
	sortNames(keys)
	for _, k := range keys {
		if !httpguts.ValidHeaderFieldName(k) {
			continue // Request.Write drops them too
		}
		for _, v := range r.Header[k] {
			b = appendField(b, k, cleanHeaderValue(v))
		}
	}
	return append(b, "\r\n"...), true
}

// sortNames sorts header names as slices.Sort does, with an insertion
// sort (a request has a few dozen fields at most) whose comparison is
// mostly decided by the first byte (fieldAfter).
func sortNames(keys []string) {
	for i := 1; i < len(keys); i++ {
		k := keys[i]
		j := i
		for ; j > 0 && fieldAfter(keys[j-1], k); j-- {
			keys[j] = keys[j-1]
		}
		keys[j] = k
	}
}

func appendField(b []byte, k, v string) []byte {
	b = append(b, k...)
	b = append(b, ": "...)
	b = append(b, v...)
	return append(b, "\r\n"...)
}

// cleanHeaderValue turns CR and LF into spaces and trims surrounding
// ASCII white space, as Request.Write does.
func cleanHeaderValue(v string) string {
	if hasCRLF(v) {
		b := []byte(v)
		for i, c := range b {
			if c == '\r' || c == '\n' {
				b[i] = ' '
			}
		}
		v = string(b)
	}
	return trimOWS(v) // TrimString's other spaces, CR and LF, are gone
}

// plainHost reports whether host is ASCII and carries no IPv6 zone, so
// Request.Write would send it unchanged.
func plainHost(host string) bool {
	for i := 0; i < len(host); i++ {
		if host[i] >= 0x80 {
			return false
		}
	}
	return !strings.HasPrefix(host, "[") || !strings.Contains(host, "%")
}

// hasCTL reports whether s holds an ASCII control byte.
func hasCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < ' ' || b == 0x7f {
			return true
		}
	}
	return false
}
