package admin

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// HandoverRequest is a planned VRRP handover (POST /v1/vrrp/handover).
type HandoverRequest struct {
	// Back ends the handover: the configured priorities return, so a
	// higher-priority edge takes the VIPs back by preemption.
	Back bool
	// Drain bounds how long the Master waits, with keep-alive off, for its
	// client connections to close before it gives up the VIPs. Zero means
	// DefaultHandoverDrain.
	Drain time.Duration
}

// DefaultHandoverDrain is the drain bound of a handover without drain=.
const DefaultHandoverDrain = 2 * time.Second

// HandoverResult is the body of a successful POST /v1/vrrp/handover.
type HandoverResult struct {
	Back bool `json:"back"`
	// WasMaster is true when some instance was Master when the request
	// came (only then do the VIPs move).
	WasMaster bool `json:"was_master"`
	// DrainedMillis is how long the Master waited for its client
	// connections to close; OpenConnections is how many were still open
	// when it gave up the VIPs (0 unless the drain bound passed).
	DrainedMillis   float64 `json:"drained_ms"`
	OpenConnections int     `json:"open_connections"`
	// VRRP is the instances' status after the change.
	VRRP []VRRPStatus `json:"vrrp"`
}

// handover starts or ends a planned VRRP handover.
func (h *handler) handover(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(r) {
		h.s.unauthorized.Add(1)
		writeError(w, http.StatusUnauthorized, "handover needs a bearer token on this listener", nil)
		return
	}
	if h.s.opts.Handover == nil {
		writeError(w, http.StatusNotImplemented, "handover is not available (no VRRP instance)", nil)
		return
	}
	req := HandoverRequest{Back: r.URL.Query().Get("back") == "1", Drain: DefaultHandoverDrain}
	if d := r.URL.Query().Get("drain"); d != "" {
		v, err := time.ParseDuration(d)
		if err != nil || v < 0 || v > MaxWaitTimeout {
			writeError(w, http.StatusBadRequest, "drain: want a duration between 0s and 1h", nil)
			return
		}
		req.Drain = v
	}
	res, err := h.s.opts.Handover(r.Context(), req)
	if err != nil {
		writeError(w, http.StatusConflict, err.Error(), nil)
		return
	}
	h.s.opts.Logger.Info("vrrp handover", "back", req.Back, "drained_ms", res.DrainedMillis, "open_connections", res.OpenConnections)
	writeJSON(w, http.StatusOK, res)
}

// Handover asks kclb to start (back false) or end a planned VRRP handover.
func (c *Client) Handover(ctx context.Context, back bool, drain time.Duration) (*HandoverResult, error) {
	q := url.Values{"drain": {drain.String()}}
	if back {
		q.Set("back", "1")
	}
	var res HandoverResult
	if err := c.do(ctx, http.MethodPost, "/v1/vrrp/handover?"+q.Encode(), &res); err != nil {
		return nil, err
	}
	return &res, nil
}
