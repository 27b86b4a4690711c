package admin

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"
)

// TestHandoverEndpoint: POST /v1/vrrp/handover needs the token over TCP,
// passes back and drain through, refuses a bad drain and answers 501
// without VRRP (issue 17, item 3).
func TestHandoverEndpoint(t *testing.T) {
	pool := testPool(t)
	var got []HandoverRequest
	s, _ := New(Options{Pool: pool, Token: "s3cret", Handover: func(_ context.Context, r HandoverRequest) (*HandoverResult, error) {
		got = append(got, r)
		if r.Drain == time.Hour {
			return nil, errors.New("refused")
		}
		return &HandoverResult{Back: r.Back, VRRP: []VRRPStatus{{Name: "VI_1", State: "backup", Standby: !r.Back}}}, nil
	}})
	base := tcpServer(t, s, false)
	ctx := context.Background()
	var apiErr *APIError
	if _, err := NewTCPClient(base, "").Handover(ctx, false, time.Second); !errors.As(err, &apiErr) || apiErr.Code != http.StatusUnauthorized {
		t.Fatalf("without token: %v", err)
	}
	c := NewTCPClient(base, "s3cret")
	res, err := c.Handover(ctx, false, 3*time.Second)
	if err != nil || res.Back || len(res.VRRP) != 1 || !res.VRRP[0].Standby {
		t.Fatalf("handover: %+v, %v", res, err)
	}
	if res, err := c.Handover(ctx, true, 0); err != nil || !res.Back {
		t.Fatalf("back: %+v, %v", res, err)
	}
	if len(got) != 2 || got[0] != (HandoverRequest{Drain: 3 * time.Second}) || got[1] != (HandoverRequest{Back: true}) {
		t.Fatalf("requests seen: %+v", got)
	}
	if _, err := c.Handover(ctx, false, time.Hour); !errors.As(err, &apiErr) || apiErr.Code != http.StatusConflict {
		t.Fatalf("handler error: %v", err)
	}
	if _, err := c.Handover(ctx, false, 2*time.Hour); !errors.As(err, &apiErr) || apiErr.Code != http.StatusBadRequest {
		t.Fatalf("drain 2h: %v", err)
	}
	none, _ := New(Options{Pool: pool})
	if _, err := NewTCPClient(tcpServer(t, none, true), "").Handover(ctx, false, 0); !errors.As(err, &apiErr) || apiErr.Code != http.StatusNotImplemented {
		t.Fatalf("without VRRP: %v", err)
	}
}
