package health

import (
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/kclb/kclb/internal/backend"
)

func TestHTTPSManagement(t *testing.T) {
	k := newFakeKCWith(t, "node1", 1, true)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.mgmt.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		caFile   string
		insecure bool
		want     backend.Health
		reason   string
	}{
		{name: "CA file", caFile: caFile, want: backend.HealthUp},
		{name: "insecure skip verify", insecure: true, want: backend.HealthUp},
		{name: "unknown authority", want: backend.HealthDead, reason: "certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions()
			opts.Scheme = "https"
			opts.TrafficScheme = "http"
			opts.CAFile = tc.caFile
			opts.InsecureSkipVerify = tc.insecure
			synctest.Test(t, func(t *testing.T) {
				e := newEnvClock(t, []backend.Spec{k.spec()}, opts, nil)
				for range e.opts.Fall {
					e.step()
				}
				s := e.pool.Servers()[0]
				if s.Health() != tc.want {
					t.Fatalf("health %v, want %v (detail %+v)", s.Health(), tc.want, s.Detail())
				}
				if !strings.Contains(s.Detail().Reason, tc.reason) {
					t.Fatalf("reason %q, want %q in it", s.Detail().Reason, tc.reason)
				}
			})
		})
	}
}

func TestTokenReasonNeverHoldsSecret(t *testing.T) {
	const secret = "Very$ecretValue-1234567890"
	c := &Checker{}
	tests := []struct {
		name string
		body string
	}{
		{name: "echoed", body: `{"error":"bad ` + secret + `"}`},
		{name: "echoed at the clip boundary", body: `{"error":"` + strings.Repeat("x", maxField-10) + secret + `"}`},
		{name: "form-encoded echo", body: `{"error":"bad Very%24ecretValue-1234567890"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := c.judgeToken("token", fetched{status: 401, body: []byte(tc.body)}, secret)
			r.reason = redact(r.reason, secret)
			if r.ok {
				t.Fatal("401 judged ok")
			}
			for i := 0; i+6 <= len(secret); i++ {
				if strings.Contains(r.reason, secret[i:i+6]) {
					t.Fatalf("reason %q holds part of the secret %q", r.reason, secret[i:i+6])
				}
			}
		})
	}
}
