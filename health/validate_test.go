package health

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want []string // "Field: Msg", in order
	}{
		{"zero value", Options{}, nil},
		{"everything set", Options{Path: "/r", LivePath: "/l", StartedPath: "/s", MetricsPath: "/m", Scheme: "https", TrafficScheme: "http",
			Interval: time.Second, Timeout: time.Second, Rise: 1, Fall: 1, MaxBodyBytes: 1, MaxMetricsBytes: 1, Jitter: -1,
			Realm: "r", WellKnown: true, ClusterCheck: ClusterEject, TokenProbe: TokenProbe{ClientID: "c", SecretFile: "/s", Interval: time.Second}}, nil},
		{"paths", Options{Path: "ready", LivePath: "/live now", StartedPath: "/\x00", MetricsPath: "metrics"}, []string{
			`Path: "ready" must start with "/"`, `LivePath: "/live now" contains white space or control characters`,
			`StartedPath: "/\x00" contains white space or control characters`, `MetricsPath: "metrics" must start with "/"`}},
		{"schemes", Options{Scheme: "ftp", TrafficScheme: "gopher"}, []string{
			`Scheme: "ftp" is not "http" or "https"`, `TrafficScheme: "gopher" is not "http" or "https"`}},
		{"negative", Options{Interval: -time.Second, Timeout: -1, Rise: -1, Fall: -2, MaxBodyBytes: -1, MaxMetricsBytes: -1,
			TokenProbe: TokenProbe{ClientID: "c", SecretFile: "/s", Interval: -time.Second}, Realm: "r"}, []string{
			"Interval: must be greater than 0, got -1s", "Timeout: must be greater than 0, got -1ns",
			"TokenProbe.Interval: must be greater than 0, got -1s", "Rise: -1 is less than 1", "Fall: -2 is less than 1",
			"MaxBodyBytes: -1 is less than 1", "MaxMetricsBytes: -1 is less than 1"}},
		{"cluster mode", Options{ClusterCheck: ClusterEject + 1}, []string{"ClusterCheck: 3 is not a known cluster mode"}},
		{"token without secret", Options{Realm: "r", TokenProbe: TokenProbe{ClientID: "c"}}, []string{
			"TokenProbe.SecretFile: is required with the probe's client ID"}},
		{"realm needed", Options{WellKnown: true}, []string{"Realm: is required by the well-known and token probes"}},
		{"realm characters", Options{Realm: "a?b"}, []string{`Realm: "a?b" is not a realm name`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			if err := tt.opts.Validate(); err != nil {
				for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
					var fe *FieldError
					if !errors.As(e, &fe) {
						t.Fatalf("%T %v is not a *FieldError", e, e)
					}
					got = append(got, fe.Error())
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Validate:\n%q\nwant\n%q", got, tt.want)
			}
			// withDefaults (New) refuses exactly what Validate refuses.
			if _, err := tt.opts.withDefaults(); (err == nil) != (tt.want == nil) {
				t.Errorf("withDefaults = %v; Validate found %d problems", err, len(tt.want))
			}
		})
	}
}
