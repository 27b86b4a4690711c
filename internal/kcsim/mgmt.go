package kcsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Health check names as Keycloak reports them.
const (
	checkCluster  = "Keycloak cluster health check"
	checkDatabase = "Keycloak database connections async health check"
	checkInit     = "Keycloak Initialized"
	checkShutdown = "Graceful Shutdown"
)

// failingSinceLayout is Keycloak's "Failing since" timestamp format.
const failingSinceLayout = "2006-01-02 15:04:05,000"

// healthJSON is the Content-Type of health responses (Quarkus SmallRye Health).
const healthJSON = "application/json; charset=UTF-8"

// check is one entry of a health body.
type check struct {
	name string
	up   bool
	data string // pre-rendered JSON object for "data", or ""
}

// healthBody renders a SmallRye health body exactly as Keycloak does:
// {"status":"UP","checks":[{"name":"...","status":"UP"},...]} with no spaces
// and no trailing newline. The overall status is DOWN if any check is DOWN.
func healthBody(checks ...check) (body string, up bool) {
	up = true
	for _, c := range checks {
		up = up && c.up
	}
	var b strings.Builder
	b.WriteString(`{"status":"`)
	b.WriteString(upDown(up))
	b.WriteString(`","checks":[`)
	for i, c := range checks {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"name":"`)
		b.WriteString(c.name)
		b.WriteString(`","status":"`)
		b.WriteString(upDown(c.up))
		b.WriteByte('"')
		if c.data != "" {
			b.WriteString(`,"data":`)
			b.WriteString(c.data)
		}
		b.WriteByte('}')
	}
	b.WriteString(`]}`)
	return b.String(), up
}

func upDown(up bool) string {
	if up {
		return "UP"
	}
	return "DOWN"
}

// Health bodies, as documented in docs/keycloak.md:
//   - /health/live: {"status":"UP","checks":[]} (always, it never blocks)
//   - /health/started: "Keycloak Initialized", DOWN while Starting
//   - /health/ready: cluster and database checks; Starting adds a DOWN
//     "Keycloak Initialized" first, graceful shutdown adds a DOWN
//     "Graceful Shutdown" first
//   - /health: everything (Graceful Shutdown, Keycloak Initialized, cluster,
//     database)
func (n *Node) dbCheck() check {
	if !n.dbDown.Load() {
		return check{name: checkDatabase, up: true}
	}
	since := time.Unix(0, n.failingSince.Load()).UTC().Format(failingSinceLayout)
	return check{name: checkDatabase, data: `{"Failing since":"` + since + `"}`}
}

func (n *Node) readyBody() (string, bool) {
	checks := make([]check, 0, 4)
	if n.shutdown.Load() {
		checks = append(checks, check{name: checkShutdown})
	}
	if n.starting.Load() {
		checks = append(checks, check{name: checkInit})
	}
	checks = append(checks, check{name: checkCluster, up: true}, n.dbCheck())
	return healthBody(checks...)
}

func (n *Node) startedBody() (string, bool) {
	return healthBody(check{name: checkInit, up: !n.starting.Load()})
}

func (n *Node) aggregateBody() (string, bool) {
	return healthBody(
		check{name: checkShutdown, up: !n.shutdown.Load()},
		check{name: checkInit, up: !n.starting.Load()},
		check{name: checkCluster, up: true},
		n.dbCheck(),
	)
}

func liveBody() (string, bool) { return healthBody() }

// newManagementHandler builds the management port's mux.
func (n *Node) newManagementHandler() http.Handler {
	mux := http.NewServeMux()
	health := func(f func() (string, bool)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				w.Header().Set("Allow", "GET, HEAD")
				http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
				return
			}
			body, up := f()
			h := w.Header()
			h.Set("Content-Type", healthJSON)
			h.Set("Content-Length", strconv.Itoa(len(body)))
			if up {
				w.WriteHeader(http.StatusOK)
			} else {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			if r.Method != http.MethodHead {
				w.Write([]byte(body))
			}
		}
	}
	mux.HandleFunc("/health", health(n.aggregateBody))
	mux.HandleFunc("/health/live", health(liveBody))
	mux.HandleFunc("/health/ready", health(n.readyBody))
	mux.HandleFunc("/health/started", health(n.startedBody))
	mux.HandleFunc("GET /metrics", n.serveMetrics)
	mux.HandleFunc("POST /kcsim/control", n.serveControl)
	mux.HandleFunc("GET /kcsim/control", n.serveSwitches)
	mux.HandleFunc("GET /kcsim/stats", n.serveStats)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Resource not found", http.StatusNotFound)
	})
	return mux
}

// serveMetrics writes Prometheus text exposition (format 0.0.4) with the
// vendor_ metrics Keycloak's Infinispan/JGroups layer exports. Values are
// printed as floats ("3.0"), as Micrometer does.
func (n *Node) serveMetrics(w http.ResponseWriter, r *http.Request) {
	size := n.opts.ClusterSize
	if n.split.Load() {
		size = 1
	}
	lbl := fmt.Sprintf(`cluster=%q,node=%q`, n.opts.ClusterName, n.opts.Node)
	var b strings.Builder
	fmt.Fprintf(&b, "# HELP vendor_cluster_size The size of the cluster\n# TYPE vendor_cluster_size gauge\n")
	fmt.Fprintf(&b, "vendor_cluster_size{%s} %d.0\n", lbl, size)
	fmt.Fprintf(&b, "# HELP vendor_jgroups_merge3_get_num_merge_events Number of times a MERGE3 event was sent\n# TYPE vendor_jgroups_merge3_get_num_merge_events gauge\n")
	fmt.Fprintf(&b, "vendor_jgroups_merge3_get_num_merge_events{%s} %d.0\n", lbl, n.merges.Load())
	fmt.Fprintf(&b, "# HELP vendor_statistics_number_of_entries Number of entries currently in the cache\n# TYPE vendor_statistics_number_of_entries gauge\n")
	fmt.Fprintf(&b, "vendor_statistics_number_of_entries{cache=\"authenticationSessions\",node=%q} %d.0\n", n.opts.Node, n.store.count())
	fmt.Fprintf(&b, "# HELP http_server_requests_seconds_count Number of HTTP requests\n# TYPE http_server_requests_seconds_count counter\n")
	fmt.Fprintf(&b, "http_server_requests_seconds_count{node=%q} %d.0\n", n.opts.Node, n.stats.requests.Load())
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Write([]byte(b.String()))
}

// serveControl applies the switches named in the query
// (db=down|up, split=on|off, delay=<duration>, refuse=on|off,
// starting=on|off, token=fail|ok, site=offline|online,
// wrong_route=<share 0..1>) and answers the resulting switch JSON.
// Any invalid value fails the whole request with 400 before anything changes.
func (n *Node) serveControl(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "kcsim control: "+err.Error(), http.StatusBadRequest)
		return
	}
	var apply []func()
	onOff := func(key, on, off string, set func(bool)) error {
		v := r.Form.Get(key)
		switch v {
		case "":
		case on:
			apply = append(apply, func() { set(true) })
		case off:
			apply = append(apply, func() { set(false) })
		default:
			return fmt.Errorf("kcsim control: %s=%q, want %s or %s", key, v, on, off)
		}
		return nil
	}
	errs := []error{
		onOff("db", "down", "up", n.SetDatabaseDown),
		onOff("split", "on", "off", n.SetSplit),
		onOff("refuse", "on", "off", n.SetRefuse),
		onOff("starting", "on", "off", n.SetStarting),
		onOff("token", "fail", "ok", n.SetTokenFail),
		onOff("site", "offline", "online", n.SetSiteOffline),
	}
	if v := r.Form.Get("delay"); v != "" {
		d, err := time.ParseDuration(v)
		if err == nil && d < 0 {
			err = fmt.Errorf("negative")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("kcsim control: delay=%q: %w", v, err))
		} else {
			apply = append(apply, func() { n.SetDelay(d) })
		}
	}
	if v := r.Form.Get("wrong_route"); v != "" {
		p, err := strconv.ParseFloat(v, 64)
		if err == nil && !(p >= 0 && p <= 1) {
			err = fmt.Errorf("outside [0, 1]")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("kcsim control: wrong_route=%q: %w", v, err))
		} else {
			apply = append(apply, func() { n.SetWrongRoute(p) })
		}
	}
	for _, err := range errs {
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	for _, f := range apply {
		f()
	}
	n.serveSwitches(w, r)
}

func (n *Node) serveSwitches(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.Switches())
}

func (n *Node) serveStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.Stats())
}

// writeJSON writes v as a JSON response with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
