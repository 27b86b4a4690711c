package metrics

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kclb/kclb/affinity"
	"github.com/kclb/kclb/internal/backend"
	"github.com/kclb/kclb/internal/pathpolicy"
)

// desc builds a metric description.
func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// Metric descriptions of the scrape-time collector. They are immutable
// after package initialisation.
var (
	dBuild       = desc("kclb_build_info", "kclb build information; always 1.", "version", "goversion")
	dStart       = desc("kclb_start_time_seconds", "Start time of the kclb process, Unix seconds.")
	dPanic       = desc("kclb_panic_mode", "1 while the pool routes to live-but-down servers because too few are up.")
	dAvailable   = desc("kclb_servers_available", "Number of servers that take new clients.")
	dRequests    = desc("kclb_requests_total", "Requests handled by the proxy by response code class (none: client went away).", "code")
	dBlocked     = desc("kclb_blocked_requests_total", "Requests refused by the path policy, by verdict.", "verdict")
	dSrvResp     = desc("kclb_server_responses_total", "Responses from each server to clients, by code class.", "server", "code")
	dSrvReq      = desc("kclb_server_requests_total", "Requests forwarded to each server (attempts that got a connection slot).", "server")
	dSrvErr      = desc("kclb_server_errors_total", "Failed exchanges with each server (connect errors, resets, truncated bodies).", "server")
	dSrvRedisp   = desc("kclb_server_redispatches_total", "Requests first tried on, or pinned to, each server that were sent elsewhere.", "server")
	dSrvInFl     = desc("kclb_server_in_flight_requests", "Requests currently forwarded to each server.", "server")
	dSrvQueue    = desc("kclb_server_queued_requests", "Requests waiting for a connection slot on each server.", "server")
	dSrvHealth   = desc("kclb_server_health", "Health state of each server (1 for the current state).", "server", "state")
	dSrvUp       = desc("kclb_server_up", "1 when the server's health is up.", "server")
	dSrvAdmin    = desc("kclb_server_admin_state", "Admin state of each server (1 for the current state).", "server", "state")
	dSrvAvail    = desc("kclb_server_available", "1 when the server takes new clients.", "server")
	dSrvWeight   = desc("kclb_server_weight", "Effective weight of each server (slow start applied).", "server")
	dSrvLastUse  = desc("kclb_server_last_request_timestamp_seconds", "When each server last started a request, Unix seconds (0: never).", "server")
	dSrvChecks   = desc("kclb_server_health_checks_total", "Active health-check rounds per server by result.", "server", "result")
	dSrvFails    = desc("kclb_server_check_consecutive_failures", "Consecutive failed health checks of each server.", "server")
	dProxy       = desc("kclb_proxy_events_total", "Proxy events: retry, no_server, queue_rejected, bad_gateway, gateway_timeout, client_abort, truncated, bad_request, body_limited.", "event")
	dConns       = desc("kclb_client_connections_total", "Client connections: accepted; rejected (a malformed, oversized or timed-out request head refused before any request ran); unused (closed without a request).", "event")
	dConnsOpen   = desc("kclb_client_connections_open", "Client connections open now.")
	dAffHits     = desc("kclb_affinity_hits_total", "Affinity routing decisions by source (balancer: new client).", "source")
	dAffMiss     = desc("kclb_affinity_misses_total", "Affinity cookies or routes ignored, by reason.", "reason")
	dAffNoSrv    = desc("kclb_affinity_no_server_total", "Routing attempts for which no server was eligible.")
	dAffRedisp   = desc("kclb_affinity_redispatches_total", "Pinned clients sent to another server.")
	dAffLearned  = desc("kclb_affinity_routes_learned_total", "Changes to the learned Keycloak route table.")
	dAffConfl    = desc("kclb_affinity_route_conflicts_total", "AUTH_SESSION_ID routes a server set that name another server (keycloak#43933).")
	dAffRoutes   = desc("kclb_affinity_routes", "Learned Keycloak routes.")
	dVRRPState   = desc("kclb_vrrp_state", "VRRP state of each instance (1 for the current state).", "instance", "state")
	dVRRPPrio    = desc("kclb_vrrp_priority", "Effective VRRP priority of each instance.", "instance")
	dVRRPTrans   = desc("kclb_vrrp_transitions_total", "VRRP state transitions of each instance.", "instance")
	dVRRPHealth  = desc("kclb_vrrp_tracked_health", "Health tracked by each VRRP instance (1 for the current one): ok, degraded (panic mode: priority - track_weight), down (priority - 2 x track_weight).", "instance", "health")
	dVRRPAdv     = desc("kclb_vrrp_adverts_total", "VRRP adverts of each instance: sent, received (valid), received_as_master (from another router while Master), resignations (priority 0 received).", "instance", "event")
	dVRRPDrops   = desc("kclb_vrrp_dropped_packets_total", "Received VRRP packets dropped before the state machine, by reason (ttl, own, unknown_peer, truncated, malformed, version, checksum, vrid, auth, interval, owner).", "instance", "reason")
	dVRRPErrors  = desc("kclb_vrrp_errors_total", "Failed VRRP side effects (VIP changes, gratuitous ARP, hooks, notify commands, sends).", "instance")
	dVRRPLag     = desc("kclb_vrrp_timer_lag_max_seconds", "Largest delay between a VRRP timer deadline and the moment it ran; near the advert interval, false failovers become likely.", "instance")
	dAdminUnauth = desc("kclb_admin_unauthorized_total", "Admin mutations refused for a missing or invalid bearer token.")
	dSrvBytesIn  = desc("kclb_server_bytes_in_total", "Request body bytes received from clients and forwarded to each server (requests the server answered).", "server")
	dSrvBytesOut = desc("kclb_server_bytes_out_total", "Response body bytes from each server written to clients.", "server")
	dCertExpiry  = desc("kclb_certificate_not_after_seconds", "End of validity of each loaded TLS certificate, Unix seconds.", "file", "name")
	dOCSPAge     = desc("kclb_certificate_ocsp_staple_age_seconds", "Age of the OCSP response stapled to each TLS certificate (now minus its thisUpdate); absent while none is stapled.", "file", "name")
	dReloads     = desc("kclb_reloads_total", "Configuration reloads by result (ok: applied; failed: the running configuration stayed in force).", "result")
	dConfigInfo  = desc("kclb_config_info", "Configuration in force; always 1. hash is the SHA-256 of the configuration file as loaded.", "hash")
)

var healthStates = []backend.Health{backend.HealthUp, backend.HealthDown, backend.HealthDead, backend.HealthStarting}
var adminStates = []backend.AdminState{backend.AdminReady, backend.AdminDrain, backend.AdminMaint}

// collector reads kclb's state at scrape time.
type collector struct{ m *Metrics }

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dBuild, dStart, dPanic, dAvailable, dRequests, dBlocked,
		dSrvResp, dSrvReq, dSrvErr, dSrvRedisp, dSrvInFl, dSrvQueue, dSrvHealth, dSrvUp, dSrvAdmin,
		dSrvAvail, dSrvWeight, dSrvLastUse, dSrvChecks, dSrvFails, dProxy, dConns, dConnsOpen, dAffHits, dAffMiss, dAffNoSrv,
		dAffRedisp, dAffLearned, dAffConfl, dAffRoutes, dVRRPState, dVRRPPrio, dVRRPTrans,
		dVRRPHealth, dVRRPAdv, dVRRPDrops, dVRRPErrors, dVRRPLag, dAdminUnauth,
		dSrvBytesIn, dSrvBytesOut, dCertExpiry, dOCSPAge, dReloads, dConfigInfo} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m, o := c.m, c.m.opts
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	gauge(dBuild, 1, o.Version, runtime.Version())
	gauge(dStart, float64(o.Started.UnixNano())/1e9)
	gauge(dPanic, b2f(o.Pool.Panic()))
	for i, cl := range codeClasses {
		counter(dRequests, m.requests[i].Load(), cl)
	}
	for _, v := range []pathpolicy.Verdict{pathpolicy.Blocked, pathpolicy.AdminDenied, pathpolicy.Invalid} {
		counter(dBlocked, m.blocked[v].Load(), v.String())
	}

	servers := o.Pool.Servers()
	m.prune(servers)
	hot := *m.servers.Load()
	avail := 0
	for _, s := range servers {
		n := s.Name()
		cs := s.Counters()
		counter(dSrvReq, cs.Requests, n)
		counter(dSrvErr, cs.Errors, n)
		counter(dSrvRedisp, cs.Redispatches, n)
		gauge(dSrvInFl, float64(cs.InFlight), n)
		gauge(dSrvQueue, float64(cs.Queued), n)
		h := s.Health()
		for _, st := range healthStates {
			gauge(dSrvHealth, b2f(h == st), n, st.String())
		}
		gauge(dSrvUp, b2f(h == backend.HealthUp), n)
		a := s.Admin()
		for _, st := range adminStates {
			gauge(dSrvAdmin, b2f(a == st), n, st.String())
		}
		av := s.Available()
		if av {
			avail++
		}
		gauge(dSrvAvail, b2f(av), n)
		gauge(dSrvWeight, float64(s.Weight()), n)
		lu := 0.0
		if t := s.LastUse(); !t.IsZero() {
			lu = float64(t.UnixNano()) / 1e9
		}
		gauge(dSrvLastUse, lu, n)
		gauge(dSrvFails, float64(s.Detail().Fails), n)
		hc := hot[s]
		for i, cl := range codeClasses {
			var v uint64
			if hc != nil {
				v = hc.codes[i].Load()
			}
			counter(dSrvResp, v, n, cl)
		}
		var pass, fail, bin, bout uint64
		if hc != nil {
			pass, fail = hc.checks[1].Load(), hc.checks[0].Load()
			bin, bout = hc.bytesIn.Load(), hc.bytesOut.Load()
		}
		counter(dSrvBytesIn, bin, n)
		counter(dSrvBytesOut, bout, n)
		counter(dSrvChecks, pass, n, "pass")
		counter(dSrvChecks, fail, n, "fail")
	}
	gauge(dAvailable, float64(avail))

	if o.Proxy != nil {
		ps := o.Proxy()
		for _, e := range []struct {
			name string
			v    uint64
		}{{"retry", ps.Retries}, {"no_server", ps.NoServer}, {"queue_rejected", ps.QueueFull},
			{"bad_gateway", ps.BadGateway}, {"gateway_timeout", ps.Timeouts},
			{"client_abort", ps.ClientAborts}, {"truncated", ps.Truncated}, {"bad_request", ps.BadRequests},
			{"body_limited", ps.BodyLimited}} {
			counter(dProxy, e.v, e.name)
		}
	}
	if o.Conns != nil {
		cc := o.Conns()
		counter(dConns, cc.Accepted, "accepted")
		counter(dConns, cc.Rejected, "rejected")
		counter(dConns, cc.Unused, "unused")
		gauge(dConnsOpen, float64(cc.Open))
	}
	if a := affinityOf(o); a != nil {
		st := a.Stats()
		for i, v := range st.Hits {
			counter(dAffHits, v, affinity.Source(i).String())
		}
		for i, v := range st.Misses {
			counter(dAffMiss, v, affinity.MissReason(i).String())
		}
		counter(dAffNoSrv, st.NoServer)
		counter(dAffRedisp, st.Redispatches)
		counter(dAffLearned, st.RoutesLearned)
		counter(dAffConfl, st.RouteConflicts)
		gauge(dAffRoutes, float64(st.Routes))
	}
	if o.VRRP != nil {
		for _, v := range o.VRRP() {
			states := v.States
			if len(states) == 0 {
				states = []string{v.State}
			}
			for _, st := range states {
				gauge(dVRRPState, b2f(st == v.State), v.Instance, st)
			}
			gauge(dVRRPPrio, float64(v.Priority), v.Instance)
			counter(dVRRPTrans, v.Transitions, v.Instance)
			if v.Health != "" {
				hs := v.Healths
				if len(hs) == 0 {
					hs = []string{v.Health}
				}
				for _, h := range hs {
					gauge(dVRRPHealth, b2f(h == v.Health), v.Instance, h)
				}
			}
			counter(dVRRPAdv, v.AdvertsSent, v.Instance, "sent")
			counter(dVRRPAdv, v.AdvertsReceived, v.Instance, "received")
			counter(dVRRPAdv, v.AdvertsAsMaster, v.Instance, "received_as_master")
			counter(dVRRPAdv, v.Resignations, v.Instance, "resignations")
			for r, n := range v.Drops {
				counter(dVRRPDrops, n, v.Instance, r)
			}
			counter(dVRRPErrors, v.Errors, v.Instance)
			gauge(dVRRPLag, v.MaxTimerLagSeconds, v.Instance)
		}
	}
	if o.AdminUnauthorized != nil {
		counter(dAdminUnauth, o.AdminUnauthorized())
	}
	if o.Certificates != nil {
		for _, ce := range o.Certificates() {
			gauge(dCertExpiry, float64(ce.NotAfter.Unix()), ce.File, ce.Name)
			if !ce.OCSPThisUpdate.IsZero() {
				gauge(dOCSPAge, time.Since(ce.OCSPThisUpdate).Seconds(), ce.File, ce.Name)
			}
		}
	}
	if o.Reloads != nil {
		r := o.Reloads()
		counter(dReloads, r.OK, "ok")
		counter(dReloads, r.Failed, "failed")
	}
	if o.ConfigHash != nil {
		gauge(dConfigInfo, 1, o.ConfigHash())
	}
}

// affinityOf returns the affinity policy in force, or nil.
func affinityOf(o Options) *affinity.Affinity {
	if o.Affinity == nil {
		return nil
	}
	return o.Affinity()
}
