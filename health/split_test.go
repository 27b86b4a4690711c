package health

import (
	"fmt"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/backend"
)

func TestRecordViewMajority(t *testing.T) {
	t0 := time.Date(2026, 7, 31, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		others   []int // sizes seen by the other nodes, recorded at t0
		stale    []int // sizes recorded long ago (ignored)
		size     int   // the judged node's size
		split    bool
		majority int
	}{
		{name: "alone", size: 1, majority: 1},
		{name: "agreement", others: []int{3, 3}, size: 3, majority: 3},
		{name: "isolated node", others: []int{3, 3}, size: 1, split: true, majority: 3},
		{name: "majority node while one is isolated", others: []int{3, 1}, size: 3, majority: 3},
		{name: "tie goes to the larger view", others: []int{1}, size: 2, majority: 2},
		{name: "tie: smaller view is split", others: []int{2}, size: 1, split: true, majority: 2},
		{name: "stale views ignored", stale: []int{5, 5, 5}, others: []int{2}, size: 2, majority: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &Checker{opts: Options{Interval: time.Second}, views: map[*backend.Server]clusterSize{}}
			for i, sz := range tc.stale {
				c.recordView(backend.NewServer(backend.Spec{Name: fmt.Sprint("stale", i)}, nil), sz, t0.Add(-time.Hour))
			}
			for i, sz := range tc.others {
				c.recordView(backend.NewServer(backend.Spec{Name: fmt.Sprint("other", i)}, nil), sz, t0)
			}
			split, majority := c.recordView(backend.NewServer(backend.Spec{Name: "me"}, nil), tc.size, t0)
			if split != tc.split || majority != tc.majority {
				t.Fatalf("split=%v majority=%d, want %v %d", split, majority, tc.split, tc.majority)
			}
		})
	}
}
