package main

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// The latency histogram is HDR-style: durations are counted in microseconds
// in buckets that are exact below 128 µs and, above that, split every power
// of two into 64 equal parts, so a bucket is never wider than 1/64 (1.6%) of
// its values. Values above maxMicros land in the last bucket.
const (
	subBits   = 6
	subCount  = 1 << subBits
	maxBits   = 40
	maxMicros = 1<<maxBits - 1 // about 12.7 days
	nBuckets  = (maxBits - subBits + 1) * subCount
)

// bucketOf returns the bucket that counts v microseconds.
func bucketOf(v uint64) int {
	if v > maxMicros {
		v = maxMicros
	}
	e := max(bits.Len64(v)-(subBits+1), 0)
	return e*subCount + int(v>>e)
}

// bucketBounds returns the smallest value of bucket i and its width, in
// microseconds.
func bucketBounds(i int) (low, width uint64) {
	if i < 2*subCount {
		return uint64(i), 1
	}
	e := i/subCount - 1
	m := uint64(i - e*subCount)
	return m << e, 1 << e
}

// histogram counts durations in log-spaced buckets. The zero value is an
// empty histogram ready to use. It is safe for concurrent use by multiple
// goroutines: record is a few atomic adds, and a reader taking a snapshot
// while others record sees each count at some moment during the copy.
type histogram struct {
	counts [nBuckets]atomic.Uint64
	max    atomic.Uint64
}

// record counts d; negative durations count as zero.
func (h *histogram) record(d time.Duration) {
	v := uint64(max(d, 0) / time.Microsecond)
	h.counts[bucketOf(v)].Add(1)
	raise(&h.max, v)
}

// raise sets m to v if v is larger.
func raise(m *atomic.Uint64, v uint64) {
	for old := m.Load(); v > old; old = m.Load() {
		if m.CompareAndSwap(old, v) {
			return
		}
	}
}

// snapshot copies the current counts into dst.
func (h *histogram) snapshot(dst *counts) {
	for i := range h.counts {
		dst[i] = h.counts[i].Load()
	}
}

// counts is a copy of a histogram's buckets, or the difference of two
// copies (the durations recorded between them).
type counts [nBuckets]uint64

// sub sets c to a minus b bucket by bucket; b must be an earlier snapshot
// of the same histogram.
func (c *counts) sub(a, b *counts) {
	for i := range c {
		c[i] = a[i] - b[i]
	}
}

// total returns the number of durations counted.
func (c *counts) total() uint64 {
	var n uint64
	for _, v := range c {
		n += v
	}
	return n
}

// quantile returns the duration below which a fraction q (0 to 1) of the
// counted durations lie, as the middle of the bucket holding that rank, or
// zero when nothing was counted. Its error is at most half a bucket's width.
func (c *counts) quantile(q float64) time.Duration {
	n := c.total()
	if n == 0 {
		return 0
	}
	rank := min(max(uint64(math.Ceil(q*float64(n))), 1), n)
	i, seen := 0, c[0]
	for seen < rank {
		i++
		seen += c[i]
	}
	low, width := bucketBounds(i)
	return time.Duration(low)*time.Microsecond + time.Duration(width)*time.Microsecond/2
}
