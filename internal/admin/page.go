package admin

import (
	_ "embed"
	"encoding/csv"
	"net/http"
	"slices"
	"strconv"
)

// statsPage is the self-contained stats page: inline CSS and JS, no
// external assets. It reads /v1/status every two seconds and shows
// drain/ready/maint buttons when the status says the caller is
// authorised (a token given as #token=... is sent as a bearer token).
// It links to /stats.csv for a download of the same table.
//
//go:embed stats.html
var statsPage []byte

func (h *handler) page(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'; frame-ancestors 'none'")
	w.Write(statsPage)
}

// CSVHeader is the first line of /stats.csv; every server follows in
// pool order, then a row named "TOTAL" with the sums of the counters.
var CSVHeader = []string{"server", "address", "health", "admin", "available", "weight",
	"in_flight", "queued", "requests", "errors", "redispatches", "recent_requests",
	"resp_1xx", "resp_2xx", "resp_3xx", "resp_4xx", "resp_5xx", "bytes_in", "bytes_out",
	"downtime_seconds", "downs", "last_check", "last_check_latency_ms", "passes_in_row", "fails_in_row", "reason"}

// csvCounts are the summed columns of /stats.csv.
type csvCounts struct {
	inFlight, queued                       int64
	requests, errors, redispatches, recent uint64
	codes                                  CodeCounts
	bytesIn, bytesOut, downs               uint64
}

// add adds s's counters to c.
func (c *csvCounts) add(s ServerStatus) {
	c.inFlight += s.InFlight
	c.queued += s.Queued
	c.requests += s.Requests
	c.errors += s.Errors
	c.redispatches += s.Redispatches
	if s.RecentRequests != nil {
		c.recent += *s.RecentRequests
	}
	if r := s.Responses; r != nil {
		c.codes.Informational += r.Informational
		c.codes.Success += r.Success
		c.codes.Redirect += r.Redirect
		c.codes.ClientError += r.ClientError
		c.codes.ServerError += r.ServerError
	}
	c.bytesIn += s.BytesIn
	c.bytesOut += s.BytesOut
	c.downs += s.Downs
}

func csvUint(v uint64) string { return strconv.FormatUint(v, 10) }

// csv serves the servers of the status as CSV (like HAProxy's ";csv").
func (h *handler) csv(w http.ResponseWriter, r *http.Request) {
	st := h.s.Snapshot(h.authorized(r))
	hd := w.Header()
	hd.Set("Content-Type", "text/csv; charset=utf-8")
	hd.Set("Content-Disposition", `attachment; filename="kclb-`+safeFileName(st.Name)+`-stats.csv"`)
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	cw := csv.NewWriter(w)
	cw.Write(CSVHeader)
	var tot csvCounts
	avail := 0
	for _, s := range st.Servers {
		var one csvCounts
		one.add(s)
		tot.add(s)
		if s.Available {
			avail++
		}
		recent, check, lat := "", "", ""
		if s.RecentRequests != nil {
			recent = csvUint(*s.RecentRequests)
		}
		if s.Check != nil {
			check, lat = s.Check.Result, strconv.FormatFloat(s.Check.LatencyMillis, 'f', 1, 64)
		}
		row := []string{s.Name, s.Address, s.Health, s.Admin, strconv.FormatBool(s.Available), strconv.Itoa(s.Weight)}
		row = append(row, one.cells(recent)...)
		row[col("downtime_seconds")] = strconv.FormatFloat(s.DowntimeSeconds, 'f', 0, 64)
		cw.Write(append(row, check, lat, strconv.Itoa(s.Passes), strconv.Itoa(s.Fails), s.Reason))
	}
	row := []string{"TOTAL", "", "", "", strconv.Itoa(avail) + "/" + strconv.Itoa(len(st.Servers)), ""}
	cw.Write(append(append(row, tot.cells(csvUint(tot.recent))...), "", "", "", "", ""))
	cw.Flush()
}

// cells returns the columns in_flight .. downs of CSVHeader, with
// downtime_seconds empty and recent as recent_requests.
func (c *csvCounts) cells(recent string) []string {
	i := func(v int64) string { return strconv.FormatInt(v, 10) }
	return []string{i(c.inFlight), i(c.queued), csvUint(c.requests), csvUint(c.errors), csvUint(c.redispatches), recent,
		csvUint(c.codes.Informational), csvUint(c.codes.Success), csvUint(c.codes.Redirect), csvUint(c.codes.ClientError), csvUint(c.codes.ServerError),
		csvUint(c.bytesIn), csvUint(c.bytesOut), "", csvUint(c.downs)}
}

// col returns the index of name in CSVHeader.
func col(name string) int { return slices.Index(CSVHeader, name) }

// safeFileName keeps the letters, digits, '-', '_' and '.' of name.
func safeFileName(name string) string {
	b := make([]byte, 0, len(name))
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' {
			b = append(b, c)
		}
	}
	if len(b) == 0 {
		return "kclb"
	}
	return string(b)
}
