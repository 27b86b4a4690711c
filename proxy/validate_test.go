package proxy

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/backend"
)

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want []string // "Field: Msg", in order
	}{
		{"zero value", Options{}, nil},
		{"edges and offs", Options{BlockedStatus: 403, Retries: MaxRetries, MaxResponseHeaderBytes: MinResponseHeaderBytes,
			BodyBufferBytes: MaxBufferBytes, QueueSize: -1, BodyWaitsPerClient: -1}, nil},
		{"none", Options{Retries: -1, BodyBufferBytes: -1}, nil},
		{"ranges", Options{BlockedStatus: 500, Retries: 101, MaxResponseHeaderBytes: 8192, BodyBufferBytes: MaxBufferBytes + 1, MaxIdlePerServer: -1}, []string{
			"BlockedStatus: 500 is not 403 or 404", "Retries: 101 is out of range 0..100",
			"MaxResponseHeaderBytes: 8192 is out of range 65536..67108864", "BodyBufferBytes: 67108865 is out of range 0..67108864",
			"MaxIdlePerServer: -1 is less than 0"}},
		{"negative durations", Options{ConnectTimeout: -time.Second, ServerTimeout: -1, QueueTimeout: -1, BodyTimeout: -1, ClientTimeout: -1, IdleTimeout: -1}, []string{
			"ConnectTimeout: must be greater than 0, got -1s", "ServerTimeout: must be greater than 0, got -1ns",
			"QueueTimeout: must be greater than 0, got -1ns", "BodyTimeout: must be greater than 0, got -1ns",
			"ClientTimeout: must be greater than 0, got -1ns", "IdleTimeout: must be greater than 0, got -1ns"}},
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
			// New refuses what Validate refuses.
			opts := tt.opts
			pool, err := backend.NewPool(nil, backend.PoolOptions{})
			if err != nil {
				t.Fatal(err)
			}
			opts.Pool, opts.Router = pool, BalancerRouter{}
			if _, err := New(opts); (err == nil) != (tt.want == nil) {
				t.Errorf("New = %v; Validate found %d problems", err, len(tt.want))
			}
		})
	}
}

func TestServerOptionsValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts ServerOptions
		want string
	}{
		{"zero value", ServerOptions{}, "<nil>"},
		{"edges", ServerOptions{MaxHeaderBytes: MinRequestHeaderBytes, MaxConcurrentStreams: MaxStreams, KeepAlive: time.Second}, "<nil>"},
		{"ranges", ServerOptions{MaxHeaderBytes: 1024, MaxConcurrentStreams: -1},
			"MaxHeaderBytes: 1024 is out of range 4096..67108864\nMaxConcurrentStreams: -1 is out of range 1..2147483647"},
		{"negative durations", ServerOptions{HeaderTimeout: -1, ClientTimeout: -1, WriteTimeout: -1, KeepAlive: -time.Second},
			"HeaderTimeout: must be greater than 0, got -1ns\nClientTimeout: must be greater than 0, got -1ns\n" +
				"WriteTimeout: must be greater than 0, got -1ns\nKeepAlive: must be greater than 0, got -1s"},
	} {
		if got := fmt.Sprint(tt.opts.Validate()); got != tt.want {
			t.Errorf("%s: Validate:\n%s\nwant\n%s", tt.name, got, tt.want)
		}
	}
}
