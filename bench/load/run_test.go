package load

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestPacerCount(t *testing.T) {
	start := time.Unix(1000, 0)
	tests := []struct {
		name string
		rate float64
		d    time.Duration
		want int64
	}{
		{name: "1000/s for 1s", rate: 1000, d: time.Second, want: 1000},
		{name: "3/s for 1s", rate: 3, d: time.Second, want: 3},
		{name: "fractional end", rate: 3, d: 1100 * time.Millisecond, want: 4},
		{name: "7777/s for 2.5s", rate: 7777, d: 2500 * time.Millisecond, want: 19443},
		{name: "zero rate", rate: 0, d: time.Second, want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPacer(start, tc.rate, tc.d)
			var n atomic.Int64
			var last atomic.Int64
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for {
						at, ok := p.Next()
						if !ok {
							return
						}
						if at.Before(start) || !at.Before(start.Add(tc.d)) {
							t.Errorf("intended time %v outside the run", at.Sub(start))
						}
						n.Add(1)
						for {
							l := last.Load()
							if int64(at.Sub(start)) <= l || last.CompareAndSwap(l, int64(at.Sub(start))) {
								break
							}
						}
					}
				})
			}
			wg.Wait()
			if n.Load() != tc.want || p.Planned() != tc.want {
				t.Fatalf("sent %d, planned %d, want %d", n.Load(), p.Planned(), tc.want)
			}
			if tc.want > 1 {
				wantLast := time.Duration(float64(tc.want-1) * 1e9 / tc.rate)
				if got := time.Duration(last.Load()); got != wantLast {
					t.Fatalf("last intended send at %v, want %v", got, wantLast)
				}
			}
		})
	}
}

// countingServer counts the requests it answers and returns a 955-byte body.
func countingServer(t *testing.T, tlsOn, h2 bool) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	body := strings.Repeat("x", 955)
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if r.URL.Path == "/fail" {
			http.Error(w, "no", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
	}))
	s.EnableHTTP2 = h2
	if tlsOn {
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s, &n
}

func clientTLS(s *httptest.Server) *tls.Config {
	c := s.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	c.ServerName = "example.com"
	return c
}

func TestRunMatchesServerCounts(t *testing.T) {
	tests := []struct {
		name    string
		tls     bool
		h2      bool
		cfg     func(s *httptest.Server) Config
		wantErr ErrKind
		resumed bool
	}{
		{name: "h1 keep-alive closed loop", cfg: func(s *httptest.Server) Config {
			return Config{Workers: 4, Duration: time.Second, NewWorker: func(int) Worker {
				return NewH1Worker(H1Options{Addr: s.Listener.Addr().String(), Path: "/hello"})
			}}
		}},
		{name: "h1 new connection per request", cfg: func(s *httptest.Server) Config {
			return Config{Workers: 2, Duration: 300 * time.Millisecond, NewWorker: func(int) Worker {
				return NewH1Worker(H1Options{Addr: s.Listener.Addr().String(), NewConnPerRequest: true})
			}}
		}},
		{name: "h1 open loop", cfg: func(s *httptest.Server) Config {
			return Config{Workers: 4, Duration: 500 * time.Millisecond, Rate: 2000, NewWorker: func(int) Worker {
				return NewH1Worker(H1Options{Addr: s.Listener.Addr().String()})
			}}
		}},
		{name: "h1 status errors", wantErr: ErrStatus, cfg: func(s *httptest.Server) Config {
			return Config{Workers: 2, Duration: 200 * time.Millisecond, NewWorker: func(int) Worker {
				return NewH1Worker(H1Options{Addr: s.Listener.Addr().String(), Path: "/fail"})
			}}
		}},
		{name: "https handshakes with resumption", tls: true, resumed: true, cfg: func(s *httptest.Server) Config {
			tc := clientTLS(s)
			tc.ClientSessionCache = tls.NewLRUClientSessionCache(16)
			return Config{Workers: 2, Duration: 300 * time.Millisecond, NewWorker: func(int) Worker {
				return NewH1Worker(H1Options{Addr: s.Listener.Addr().String(), TLS: tc, NewConnPerRequest: true})
			}}
		}},
		{name: "h2 two conns three streams", tls: true, h2: true, cfg: func(s *httptest.Server) Config {
			nw, _ := H2Workers(H2Options{Addr: s.Listener.Addr().String(), Host: "example.com", TLS: clientTLS(s), Conns: 2})
			return Config{Workers: 6, Duration: 300 * time.Millisecond, NewWorker: nw}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, served := countingServer(t, tc.tls, tc.h2)
			cfg := tc.cfg(s)
			var workers []Worker
			nw := cfg.NewWorker
			cfg.NewWorker = func(i int) Worker { w := nw(i); workers = append(workers, w); return w }
			var prog Progress
			res := Run(context.Background(), cfg, &prog)
			got := res.Requests + res.TotalErrors()
			if got == 0 {
				t.Fatal("no requests")
			}
			if int64(got) != served.Load() {
				t.Fatalf("client counted %d requests (%d ok, errors %v), server %d", got, res.Requests, res.Errors, served.Load())
			}
			if prog.Done() != res.Requests || prog.Errs() != res.TotalErrors() {
				t.Fatalf("progress %d/%d, result %d/%d", prog.Done(), prog.Errs(), res.Requests, res.TotalErrors())
			}
			if res.Latency.Count() != res.Requests {
				t.Fatalf("histogram has %d samples, %d requests", res.Latency.Count(), res.Requests)
			}
			if tc.wantErr != ErrOther {
				if res.Errors[tc.wantErr] != got {
					t.Fatalf("errors %v, want all %d of kind %v", res.Errors, got, tc.wantErr)
				}
			} else if res.TotalErrors() != 0 {
				t.Fatalf("errors %v", res.Errors)
			}
			if cfg.Rate > 0 && int64(got) != res.Planned {
				t.Fatalf("open loop sent %d of %d planned", got, res.Planned)
			}
			if tc.resumed {
				var hs, res int64
				for _, w := range workers {
					hs += w.(*H1Worker).Handshakes
					res += w.(*H1Worker).Resumed
				}
				if res == 0 || res < hs-int64(len(workers))-1 {
					t.Fatalf("%d of %d handshakes resumed", res, hs)
				}
			}
		})
	}
}

func TestOpenLoopCountsQueueingDelay(t *testing.T) {
	// One worker, a server that stalls 100 ms once, 200 req/s: requests
	// scheduled during the stall must show the delay they suffered.
	var stalled atomic.Bool
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if stalled.CompareAndSwap(false, true) {
			time.Sleep(100 * time.Millisecond)
		}
	}))
	t.Cleanup(s.Close)
	res := Run(context.Background(), Config{Workers: 1, Duration: 300 * time.Millisecond, Rate: 200,
		NewWorker: func(int) Worker { return NewH1Worker(H1Options{Addr: s.Listener.Addr().String()}) }}, nil)
	if res.Requests != uint64(res.Planned) {
		t.Fatalf("%d of %d planned requests", res.Requests, res.Planned)
	}
	// About 20 requests were due during the stall; the p90 must see a wait
	// of more than one send interval.
	if p := time.Duration(res.Latency.Quantile(0.9)); p < 10*time.Millisecond {
		t.Fatalf("p90 %v hides the stall (coordinated omission)", p)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want ErrKind
	}{
		{name: "typed", err: fmt.Errorf("wrap: %w", &Error{Kind: ErrAffinity, Err: errors.New("x")}), want: ErrAffinity},
		{name: "eof", err: io.EOF, want: ErrRead},
		{name: "deadline", err: context.DeadlineExceeded, want: ErrTimeout},
		{name: "unknown", err: errors.New("x"), want: ErrOther},
		{name: "kindErr timeout wins", err: kindErr(ErrRead, context.DeadlineExceeded), want: ErrTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.err); got != tc.want {
				t.Fatalf("Classify = %v, want %v", got, tc.want)
			}
		})
	}
	if ErrStatus.String() != "status" || ErrKind(200).String() != "ErrKind(200)" {
		t.Fatal("ErrKind.String")
	}
}

func TestOpenLoopBacklogIsCountedNotSent(t *testing.T) {
	// A server slower than the schedule: 1 worker, 20 ms per request, 500
	// req/s for 200 ms (100 planned). Only the requests sent before the
	// grace period ends reach the server; the rest count as timeouts.
	var served atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		time.Sleep(20 * time.Millisecond)
	}))
	t.Cleanup(s.Close)
	res := Run(context.Background(), Config{Workers: 1, Duration: 200 * time.Millisecond, Rate: 500, Grace: 100 * time.Millisecond,
		NewWorker: func(int) Worker { return NewH1Worker(H1Options{Addr: s.Listener.Addr().String()}) }}, nil)
	if res.Planned != 100 || int64(res.Requests+res.TotalErrors()) != res.Planned {
		t.Fatalf("planned %d, ok %d, errors %v", res.Planned, res.Requests, res.Errors)
	}
	if res.Errors[ErrTimeout] == 0 || int64(res.Requests) != served.Load() {
		t.Fatalf("ok %d, served %d, errors %v", res.Requests, served.Load(), res.Errors)
	}
}
