package backend

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

func TestPoolOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opts PoolOptions
		want []string // "Field: Msg", in order
	}{
		{"zero value", PoolOptions{}, nil},
		{"edges and offs", PoolOptions{PanicThreshold: 1, MaxEjectionPercent: 100, PassiveFails: -1, EjectionTime: -1, Slowstart: -time.Second}, nil},
		{"out of range", PoolOptions{PanicThreshold: 1.5, MaxEjectionPercent: 101}, []string{
			"PanicThreshold: 1.5 is not a fraction in 0..1", "MaxEjectionPercent: 101 is out of range 1..100"}},
		{"negative", PoolOptions{PanicThreshold: -0.1, MaxEjectionPercent: -1}, []string{
			"PanicThreshold: -0.1 is not a fraction in 0..1", "MaxEjectionPercent: -1 is out of range 1..100"}},
		{"NaN", PoolOptions{PanicThreshold: math.NaN()}, []string{"PanicThreshold: NaN is not a fraction in 0..1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			var fe *FieldError
			if err != nil && !errors.As(err, &fe) {
				t.Fatalf("Validate = %T %v, want *FieldErrors", err, err)
			}
			if got, want := fmt.Sprint(err), strings.Join(tt.want, "\n"); (err != nil || tt.want != nil) && got != want {
				t.Errorf("Validate:\n%s\nwant\n%s", got, want)
			}
			// NewPool refuses exactly what Validate refuses.
			if _, err := NewPool(nil, tt.opts); (err == nil) != (tt.want == nil) {
				t.Errorf("NewPool = %v; Validate found %d problems", err, len(tt.want))
			}
		})
	}
}

func TestSpecValidate(t *testing.T) {
	for _, tt := range []struct {
		spec Spec
		want string
	}{
		{Spec{Name: "a"}, "<nil>"},
		{Spec{Name: "a", Weight: MaxWeight, MaxConn: 1}, "<nil>"},
		{Spec{Name: "a", Weight: MaxWeight + 1, MaxConn: -1}, "Weight: 1001 is out of range 1..1000\nMaxConn: -1 is less than 0"},
		{Spec{Name: "a", Weight: -1}, "Weight: -1 is out of range 1..1000"},
	} {
		if got := fmt.Sprint(tt.spec.Validate()); got != tt.want {
			t.Errorf("%+v: Validate:\n%s\nwant\n%s", tt.spec, got, tt.want)
		}
		if _, err := NewPool([]Spec{tt.spec}, PoolOptions{}); (err == nil) != (tt.want == "<nil>") {
			t.Errorf("%+v: NewPool = %v", tt.spec, err)
		}
	}
}
