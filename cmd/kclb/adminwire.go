package main

import (
	"context"
	"sync"

	"github.com/kclb/kclb/proxy"
)

// newObserver returns the metrics sink for the proxy handler. Until the
// metrics package is wired, requests are only counted by the handler.
func (in *instance) newObserver() (proxy.Observer, error) { return nil, nil }

// startAdmin starts the operator interface (admin API, metrics) for in;
// its goroutines are added to wg and stop when ctx ends. The admin
// listener is not wired yet, so nothing is started.
func (in *instance) startAdmin(ctx context.Context, wg *sync.WaitGroup) error { return nil }
