package hist

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// exact returns the ceil(q*n)-th smallest value of sorted.
func exact(sorted []int64, q float64) int64 {
	r := int(math.Ceil(q * float64(len(sorted))))
	if r < 1 {
		r = 1
	}
	return sorted[r-1]
}

func TestQuantilesKnownDistributions(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name string
		gen  func(i int) int64
		n    int
	}{
		{name: "uniform 1..100000", n: 100000, gen: func(i int) int64 { return int64(i + 1) }},
		{name: "small exact values", n: 1000, gen: func(i int) int64 { return int64(i % 200) }},
		{name: "exponential ms", n: 200000, gen: func(int) int64 { return int64(rng.ExpFloat64() * 1e6) }},
		{name: "lognormal with tail", n: 200000, gen: func(int) int64 { return int64(math.Exp(rng.NormFloat64()*1.5 + 13)) }},
		{name: "constant", n: 500, gen: func(int) int64 { return 123456789 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h Histogram
			vals := make([]int64, tc.n)
			for i := range vals {
				vals[i] = tc.gen(i)
				h.Record(vals[i])
			}
			sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
			if h.Count() != uint64(tc.n) {
				t.Fatalf("Count = %d, want %d", h.Count(), tc.n)
			}
			if h.Min() != vals[0] || h.Max() != vals[len(vals)-1] {
				t.Fatalf("Min/Max = %d/%d, want %d/%d", h.Min(), h.Max(), vals[0], vals[len(vals)-1])
			}
			for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
				want := exact(vals, q)
				got := h.Quantile(q)
				tol := float64(want)/float64(half) + 1
				if math.Abs(float64(got-want)) > tol {
					t.Errorf("Quantile(%v) = %d, want %d ± %.0f", q, got, want, tol)
				}
			}
		})
	}
}

func TestMergeEqualsSingle(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var all, a, b Histogram
	for i := range 50000 {
		v := int64(rng.ExpFloat64() * 5e5)
		all.Record(v)
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	var m Histogram
	m.Merge(&a)
	m.Merge(&b)
	if m != all {
		t.Fatalf("merged histogram differs: count %d vs %d, p99 %d vs %d", m.Count(), all.Count(), m.Quantile(0.99), all.Quantile(0.99))
	}
	var empty Histogram
	m.Merge(&empty)
	if m != all {
		t.Fatal("merging an empty histogram changed the result")
	}
}

func TestBucketBoundsRoundTrip(t *testing.T) {
	for _, v := range []uint64{0, 1, 255, 256, 257, 511, 512, 1 << 20, 1<<20 + 12345, 1<<62 + 7, math.MaxInt64, math.MaxUint64} {
		i := index(v)
		if i < 0 || i >= nBuckets {
			t.Fatalf("index(%d) = %d out of range", v, i)
		}
		lo, hi := bounds(i)
		if v < lo || v > hi {
			t.Errorf("value %d maps to bucket %d = [%d, %d]", v, i, lo, hi)
		}
		if v >= subCount && float64(hi-lo)/float64(lo) > 1.0/half {
			t.Errorf("bucket [%d, %d] too wide", lo, hi)
		}
	}
}

func TestEmptyAndNegative(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 || h.Mean() != 0 {
		t.Fatal("empty histogram must report zeros")
	}
	h.Record(-5)
	if h.Min() != 0 || h.Count() != 1 {
		t.Fatalf("negative value: min %d count %d", h.Min(), h.Count())
	}
	if bs := h.Buckets(); len(bs) != 1 || bs[0].Count != 1 {
		t.Fatalf("Buckets = %+v", bs)
	}
}

func TestRecordDoesNotAllocate(t *testing.T) {
	var h Histogram
	n := testing.AllocsPerRun(1000, func() { h.Record(987654) })
	if n != 0 {
		t.Fatalf("Record allocates %v times", n)
	}
}

func BenchmarkRecord(b *testing.B) {
	b.ReportAllocs()
	var h Histogram
	for i := range b.N {
		h.Record(int64(i) * 997)
	}
}

// TestRecordNEqualsRepeatedRecord: the external drivers (bench/driver)
// rebuild histograms from (value, count) pairs; that must equal recording
// each value count times.
func TestRecordNEqualsRepeatedRecord(t *testing.T) {
	var a, b Histogram
	pairs := []struct {
		v int64
		n uint64
	}{{-5, 2}, {0, 1}, {17, 0}, {300, 7}, {1 << 20, 3}, {5e9, 1}}
	for _, p := range pairs {
		a.RecordN(p.v, p.n)
		for range p.n {
			b.Record(p.v)
		}
	}
	if a != b {
		t.Fatalf("RecordN: count %d min %d max %d mean %v; repeated Record: count %d min %d max %d mean %v",
			a.Count(), a.Min(), a.Max(), a.Mean(), b.Count(), b.Min(), b.Max(), b.Mean())
	}
}
