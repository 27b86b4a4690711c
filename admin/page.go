package admin

import (
	_ "embed"
	"net/http"
)

// statsPage is the self-contained stats page: inline CSS and JS, no
// external assets. It reads /v1/status every two seconds and shows
// drain/ready/maint buttons when the status says the caller is
// authorised (a token given as #token=... is sent as a bearer token).
//
//go:embed stats.html
var statsPage []byte

func (h *handler) page(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'")
	w.Write(statsPage)
}
