// Package hist is a log-bucketed latency histogram in the style of HdrHistogram:
// fixed memory, no allocation per recorded sample, a bounded relative error
// (below 1/2^(SubBits-1), about 0.8 %), and lossless merging of histograms
// recorded by separate goroutines.
package hist

import (
	"math"
	"math/bits"
	"time"
)

// SubBits is the number of significant bits kept per value. Values below
// 2^SubBits are stored exactly; larger values keep their top SubBits bits.
const SubBits = 8

const (
	subCount = 1 << SubBits       // exact buckets for small values
	half     = 1 << (SubBits - 1) // buckets per power of two above subCount
	maxShift = 64 - SubBits       // highest shift a uint64 value can need
	nBuckets = subCount + maxShift*half
)

// Histogram counts non-negative int64 values (nanoseconds, by convention).
// The zero value is an empty histogram ready to use. A Histogram is not safe
// for concurrent use: give each goroutine its own and Merge them afterwards.
type Histogram struct {
	counts [nBuckets]uint64
	total  uint64
	min    int64
	max    int64
	sum    float64
}

// index maps a value to its bucket.
func index(v uint64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(v) - SubBits
	mant := v >> shift // in [half, subCount)
	return subCount + (shift-1)*half + int(mant-half)
}

// bounds returns the smallest and largest values that map to bucket i.
func bounds(i int) (lo, hi uint64) {
	if i < subCount {
		return uint64(i), uint64(i)
	}
	j := i - subCount
	shift := j/half + 1
	mant := uint64(j%half + half)
	lo = mant << shift
	hi = lo + (uint64(1) << shift) - 1
	return lo, hi
}

// Record adds one value. Negative values are recorded as 0.
func (h *Histogram) Record(v int64) { h.RecordN(v, 1) }

// RecordN adds n occurrences of value v, as n calls of Record would.
// Negative values are recorded as 0; n == 0 records nothing.
func (h *Histogram) RecordN(v int64, n uint64) {
	if n == 0 {
		return
	}
	if v < 0 {
		v = 0
	}
	h.counts[index(uint64(v))] += n
	if h.total == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.total += n
	h.sum += float64(v) * float64(n)
}

// RecordDuration adds one duration as nanoseconds.
func (h *Histogram) RecordDuration(d time.Duration) { h.Record(int64(d)) }

// Merge adds every count of o into h. o is unchanged.
func (h *Histogram) Merge(o *Histogram) {
	if o.total == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.total == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.total += o.total
	h.sum += o.sum
}

// Reset empties the histogram.
func (h *Histogram) Reset() { *h = Histogram{} }

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.total }

// Min is the smallest recorded value, exact; 0 when empty.
func (h *Histogram) Min() int64 { return h.min }

// Max is the largest recorded value, exact; 0 when empty.
func (h *Histogram) Max() int64 { return h.max }

// Mean is the exact arithmetic mean; 0 when empty.
func (h *Histogram) Mean() float64 {
	if h.total == 0 {
		return 0
	}
	return h.sum / float64(h.total)
}

// Quantile returns the value at quantile q in [0, 1]: the middle of the
// bucket holding the ceil(q*Count())-th smallest value, clamped to the exact
// Min and Max. It returns 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) int64 {
	if h.total == 0 {
		return 0
	}
	if q <= 0 {
		return h.min
	}
	if q >= 1 {
		return h.max
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bounds(i)
			v := int64(lo + (hi-lo)/2)
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}

// Bucket is one non-empty bucket: values in [Lo, Hi] were seen Count times.
type Bucket struct {
	Lo, Hi int64
	Count  uint64
}

// Buckets returns the non-empty buckets in increasing order. It allocates and
// is meant for reports, not for the recording path.
func (h *Histogram) Buckets() []Bucket {
	var out []Bucket
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		lo, hi := bounds(i)
		out = append(out, Bucket{Lo: int64(lo), Hi: int64(min(hi, math.MaxInt64))})
		out[len(out)-1].Count = c
	}
	return out
}
