package main

import (
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kclb/kclb/bench/driver"
	"github.com/kclb/kclb/bench/load"
	"github.com/kclb/kclb/bench/report"
	"github.com/kclb/kclb/bench/target"
)

// mode is how a scenario generates load.
type mode uint8

const (
	modeH1   mode = iota // raw HTTP/1.1 client
	modeH2               // HTTP/2 streams
	modeMix              // Keycloak login mix on net/http
	modeIdle             // held idle keep-alive connections
)

func (m mode) String() string {
	return [...]string{"h1", "h2", "mix", "idle"}[m]
}

// scenario is one row group of the report.
type scenario struct {
	name, desc string
	mode       mode
	tls        bool           // over the target's HTTPS listener (targets without one are skipped)
	key        target.KeyType // server certificate type
	workers    int            // connections (h1, mix users, idle) or connections (h2)
	streams    int            // h2: concurrent streams per connection
	newConn    bool           // h1: a new connection per request
	resume     bool           // h1+tls: offer TLS session resumption
	rate       float64        // > 0: open loop at this many requests/s
	// rateOf, if set, names the scenario whose HAProxy median req/s, halved,
	// replaces rate when that scenario ran first in the same session
	// (issue 16: "p99 at a fixed rate of half HAProxy's peak").
	rateOf string
	path   string
	// fault and clear are kcsim control forms posted to the second node
	// one third and two thirds into each measured run.
	fault, clear string
	// minDuration lengthens runs of this scenario (failure detection
	// needs several health-check intervals).
	minDuration time.Duration
	// noDirect leaves the direct target out (it adds nothing to the row
	// and the suite's time is bounded).
	noDirect bool
	// optional scenarios run only when named in -scenarios.
	optional bool
}

func (s scenario) kind() report.Kind {
	if s.mode == modeIdle {
		return report.Idle
	}
	return report.Throughput
}

const helloPath = "/realms/test/hello"

// idleTLS is how many connections the idle HTTPS scenario holds: a fifth
// of the plain one's (each costs a handshake to open), at least 1000.
func idleTLS(idleConns int) int { return max(idleConns/5/1000*1000, 1000) }

// allScenarios is the default suite, in run order. openRate is the rate of
// the fixed-rate scenario when HAProxy's peak is not measured first.
func allScenarios(idleConns int, openRate float64) []scenario {
	all := []scenario{
		{name: "http-ka-c64", mode: modeH1, workers: 64, path: helloPath,
			desc: "HTTP/1.1 keep-alive, 64 connections, closed loop, small (955-byte) responses; raw-socket client."},
		{name: "http-ka-c1000", mode: modeH1, workers: 1000, path: helloPath, noDirect: true,
			desc: "HTTP/1.1 keep-alive, 1000 connections, closed loop: throughput, CPU and peak RSS with many clients (direct is left out to keep the suite under 10 minutes)."},
		{name: "http-ka-fixed", mode: modeH1, workers: 64, rate: openRate, rateOf: "http-ka-c64", path: helloPath, noDirect: true,
			desc: "HTTP/1.1 keep-alive, 64 connections, open loop at a fixed total rate: latency under a fixed load, measured from each request's intended send time (no coordinated omission); direct is left out to keep the suite under 10 minutes."},
		{name: "https-ka-c64", mode: modeH1, tls: true, workers: 64, path: helloPath,
			desc: "HTTP/1.1 over TLS 1.3 (ECDSA P-256, X25519) with keep-alive, 64 connections, closed loop."},
		{name: "tls-hs-ecdsa", mode: modeH1, tls: true, newConn: true, workers: 50, path: helloPath,
			desc: "A new TLS connection per request (Connection: close), full handshakes, ECDSA P-256 certificate, 50 concurrent clients: handshakes per second."},
		{name: "tls-hs-rsa", mode: modeH1, tls: true, newConn: true, key: target.RSA, workers: 50, path: helloPath,
			desc: "As tls-hs-ecdsa with an RSA 2048 certificate."},
		{name: "tls-resume", mode: modeH1, tls: true, newConn: true, resume: true, workers: 50, path: helloPath,
			desc: "A new TLS connection per request with TLS 1.3 session resumption (tickets), ECDSA certificate, 50 concurrent clients."},
		{name: "h2-c64-m10", mode: modeH2, tls: true, workers: 64, streams: 10, path: helloPath,
			desc: "HTTP/2 over TLS, 64 connections with 10 concurrent streams each (640 in flight); backends over HTTP/1.1."},
		{name: fmt.Sprintf("idle-%dk", idleConns/1000), mode: modeIdle, workers: idleConns, path: helloPath, noDirect: true,
			desc: fmt.Sprintf("%d keep-alive connections, each after one request, held idle; memory per connection = (peak VmRSS - VmRSS before) / connections. The target is restarted before each run (direct is left out).", idleConns)},
		{name: "login-mix", mode: modeMix, tls: true, workers: 32,
			desc: "Keycloak mix over HTTPS (HTTP/1.1, keep-alive), 32 users with cookie jars: per login 2 static resources, OIDC discovery, login page, credentials POST, code exchange, 2 token refreshes; each step is one sample. A login that changes node midway counts as an affinity error. The stand-ins run in strict mode: a node rejects (400) and counts login steps for logins it does not own, so a proxy without affinity (nginx open source) shows status errors and misroutes here."},
		{name: "fail-refuse", mode: modeH1, workers: 256, rate: 2000, path: helloPath, optional: true,
			fault: "refuse=on", clear: "refuse=off", minDuration: 9 * time.Second,
			desc: "Failure under load (run only when named): HTTP/1.1 keep-alive, 256 connections, open loop at 2000 req/s; node 2's traffic port refuses connections and drops open ones (kcsim refuse=on) from one third to two thirds of the run, while its management port (health checks) stays UP, so only retries, redispatch and passive detection help. Latency is taken from the intended send time, so a stall shows in full."},
		{name: "fail-slow", mode: modeH1, workers: 256, rate: 2000, path: helloPath, optional: true,
			fault: "delay=200ms", clear: "delay=0s", minDuration: 9 * time.Second,
			desc: "Failure under load (run only when named): as fail-refuse, but node 2 answers 200 ms late (kcsim delay=200ms) instead of refusing; both proxies balance round robin."},
	}
	if idleConns < 10000 {
		return all // the quick suite (under 2 minutes) leaves idle HTTPS out
	}
	// Idle HTTPS connections after the plain ones.
	i := slices.IndexFunc(all, func(sc scenario) bool { return sc.mode == modeMix })
	n := idleTLS(idleConns)
	return slices.Insert(all, i, scenario{name: fmt.Sprintf("idle-tls-%dk", n/1000), mode: modeIdle, tls: true, workers: n, path: helloPath, noDirect: true,
		desc: fmt.Sprintf("%d keep-alive HTTPS connections (TLS 1.3, ECDSA P-256), each after one request, held idle, as browsers hold them between logins; memory per connection as in the idle row.", n)})
}

// selectScenarios filters all by a comma-separated list of names or name
// prefixes ("tls" selects every tls-* scenario); "" selects all but the
// optional ones.
func selectScenarios(all []scenario, list string) ([]scenario, error) {
	if strings.TrimSpace(list) == "" {
		var out []scenario
		for _, s := range all {
			if !s.optional {
				out = append(out, s)
			}
		}
		return out, nil
	}
	var out []scenario
	seen := map[string]bool{}
	for _, want := range strings.Split(list, ",") {
		want = strings.TrimSpace(want)
		n := 0
		for _, s := range all {
			if s.name == want || strings.HasPrefix(s.name, want) {
				n++
				if !seen[s.name] {
					seen[s.name] = true
					out = append(out, s)
				}
			}
		}
		if n == 0 {
			var names []string
			for _, s := range all {
				names = append(names, s.name)
			}
			return nil, fmt.Errorf("-scenarios: unknown %q (have %s)", want, strings.Join(names, ", "))
		}
	}
	return out, nil
}

// clientTLS returns the client TLS config for a scenario: trust the bench
// certificate, TLS 1.2+, X25519 only (as OpenSSL 3.0's default client,
// so Go's post-quantum hybrid does not tax Go servers alone).
func clientTLS(c *target.Cert, resume bool) *tls.Config {
	cfg := &tls.Config{
		RootCAs:          c.Pool,
		ServerName:       "localhost",
		MinVersion:       tls.VersionTLS12,
		CurvePreferences: []tls.CurveID{tls.X25519},
	}
	if resume {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1024)
	}
	return cfg
}

// loadFor builds the load configuration of sc against addr. stats, if
// non-nil after the run, returns TLS handshake counts.
func loadFor(sc scenario, addr string, cert *target.Cert, workers int) (cfg load.Config, stats func() (resumed, handshakes int64), cleanup func()) {
	cleanup = func() {}
	cfg.Workers = workers
	cfg.Rate = sc.rate
	var tc *tls.Config
	scheme := "http://"
	if sc.tls {
		tc = clientTLS(cert, sc.resume)
		scheme = "https://"
	}
	switch sc.mode {
	case modeH2:
		nw, closeAll := load.H2Workers(load.H2Options{Addr: addr, Host: "localhost", Path: sc.path, TLS: tc, Conns: workers})
		cfg.Workers = workers * sc.streams
		cfg.NewWorker, cleanup = nw, closeAll
	case modeMix:
		nw, closeAll := load.MixWorkers(load.MixOptions{BaseURL: scheme + addr, TLS: tc})
		cfg.NewWorker, cleanup = nw, closeAll
	default:
		var ws []*load.H1Worker
		cfg.NewWorker = func(int) load.Worker {
			w := load.NewH1Worker(load.H1Options{Addr: addr, Host: "localhost", Path: sc.path, TLS: tc, NewConnPerRequest: sc.newConn})
			ws = append(ws, w)
			return w
		}
		stats = func() (r, h int64) {
			for _, w := range ws {
				r += w.Resumed
				h += w.Handshakes
			}
			return r, h
		}
	}
	return cfg, stats, cleanup
}

// builtinName labels rows measured by bench/load.
const builtinName = "builtin"

// parseDrivers reads -driver: a comma-separated list of wrk, h2load and
// builtin ("" or builtin alone: the built-in generator only).
func parseDrivers(list string) ([]driver.Tool, error) {
	var tools []driver.Tool
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" || name == builtinName {
			continue
		}
		t, err := driver.ParseTool(name)
		if err != nil {
			return nil, fmt.Errorf("-driver: unknown %q (want builtin, wrk, h2load or a list)", name)
		}
		if !slices.Contains(tools, t) {
			tools = append(tools, t)
		}
	}
	return tools, nil
}

// driverFor picks the external tool that runs sc, if any of tools can:
// wrk runs closed-loop HTTP/1.1 rows (keep-alive, or Connection: close for
// a new connection per request; over TLS wrk resumes the session on every
// reconnect, so of those only the resumption row), h2load closed-loop
// HTTP/2 rows. Otherwise ok is false and why, when tools were asked for,
// says why the built-in generator runs the row.
func driverFor(sc scenario, tools []driver.Tool) (t driver.Tool, ok bool, why string) {
	fullHandshakes := sc.tls && sc.newConn && !sc.resume
	switch {
	case sc.mode == modeH1 && sc.rate == 0 && !fullHandshakes && slices.Contains(tools, driver.Wrk):
		return driver.Wrk, true, ""
	case sc.mode == modeH2 && sc.rate == 0 && slices.Contains(tools, driver.H2load):
		return driver.H2load, true, ""
	case len(tools) == 0:
		return 0, false, ""
	case sc.rate > 0:
		return 0, false, "a fixed request rate: wrk and h2load cannot pace one (wrk2 is not packaged), so the built-in open-loop generator runs this row"
	case fullHandshakes:
		return 0, false, "wrk resumes the TLS session on every new connection (only each connection slot's first handshake is full), so full handshakes need the built-in generator; wrk runs tls-resume instead"
	case sc.mode == modeIdle:
		return 0, false, "idle connections are opened and held by the built-in generator"
	case sc.mode == modeMix:
		return 0, false, "the login flow (cookies, forms, tokens) needs the built-in generator"
	case sc.mode == modeH2:
		return 0, false, "HTTP/2 rows use h2load only when -driver lists it"
	default:
		return 0, false, "HTTP/1.1 rows use wrk only when -driver lists it"
	}
}

// Costs the wall-time estimate assumes besides the measured time: starting
// a target and waiting until it is ready, and the bookkeeping around each
// run (backend counters, starting an external tool).
const (
	startCost = time.Second
	runCost   = 300 * time.Millisecond
	// idleOpenRate is how fast the idle scenario opens connections.
	idleOpenRate = 3000.0
)

// activeTargets counts the targets that run sc: direct serves plain HTTP
// only, stays out of fault scenarios, and out of noDirect ones.
func activeTargets(sc scenario, targets []string) int {
	n := 0
	for _, t := range targets {
		if t == "direct" && (sc.tls || sc.fault != "" || sc.noDirect) {
			continue
		}
		n++
	}
	return n
}

// estimate is the wall time the scenarios take with o's runs, durations
// and warm-ups on targets, builds not included.
func estimate(scs []scenario, targets []string, o options) time.Duration {
	var total time.Duration
	for _, sc := range scs {
		n := time.Duration(activeTargets(sc, targets))
		runs := time.Duration(o.runs)
		if sc.mode == modeIdle {
			open := time.Duration(float64(sc.workers) / idleOpenRate * float64(time.Second))
			total += runs * n * (startCost + open + time.Second)
			continue
		}
		total += n * (startCost + o.warmup + runs*(max(o.duration, sc.minDuration)+runCost))
	}
	return total
}
