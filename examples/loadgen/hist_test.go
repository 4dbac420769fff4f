package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestBucketBounds(t *testing.T) {
	values := []uint64{0, 1, 63, 64, 127, 128, 129, 255, 256, 1000, 499_999, 500_000, 1 << 30, maxMicros - 1, maxMicros}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		values = append(values, rng.Uint64N(maxMicros+1)>>rng.UintN(40))
	}
	slices.Sort(values)
	prev := 0
	for _, v := range values {
		i := bucketOf(v)
		if i < prev || i >= nBuckets {
			t.Fatalf("bucketOf(%d) = %d, want in [%d, %d)", v, i, prev, nBuckets)
		}
		prev = i
		low, width := bucketBounds(i)
		if v < low || v >= low+width {
			t.Errorf("bucketOf(%d) = %d with bounds [%d, %d), which do not hold it", v, i, low, low+width)
		}
		if width > 1 && width*subCount > low {
			t.Errorf("bucket %d = [%d, +%d) is wider than 1/%d of its values", i, low, width, subCount)
		}
	}
	if got := bucketOf(math.MaxUint64); got != nBuckets-1 {
		t.Errorf("bucketOf(MaxUint64) = %d, want the last bucket %d", got, nBuckets-1)
	}
}

func TestQuantile(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	tests := []struct {
		name string
		gen  func() time.Duration
	}{
		{"lognormal around 500ms", func() time.Duration {
			return time.Duration(500e6 * math.Exp(0.3*rng.NormFloat64()))
		}},
		{"uniform to 2ms", func() time.Duration { return time.Duration(rng.Int64N(2e6)) }},
		{"constant", func() time.Duration { return 42 * time.Millisecond }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h histogram
			exact := make([]time.Duration, 20000)
			for i := range exact {
				exact[i] = tt.gen()
				h.record(exact[i])
			}
			slices.Sort(exact)
			var c counts
			h.snapshot(&c)
			for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
				want := exact[int(math.Ceil(q*float64(len(exact))))-1]
				got := c.quantile(q)
				// half a bucket (1/128 of the value) plus the microsecond truncation
				if diff := (got - want).Abs(); diff > want/100+time.Microsecond {
					t.Errorf("quantile(%v) = %v, want %v within 1%%", q, got, want)
				}
			}
			if got, want := time.Duration(h.max.Load())*time.Microsecond, exact[len(exact)-1].Truncate(time.Microsecond); got != want {
				t.Errorf("max = %v, want %v", got, want)
			}
		})
	}
}

func TestQuantileEmptyAndNegative(t *testing.T) {
	var h histogram
	var c counts
	h.snapshot(&c)
	if got := c.quantile(0.99); got != 0 {
		t.Errorf("empty quantile(0.99) = %v, want 0", got)
	}
	h.record(-time.Second)
	h.snapshot(&c)
	if got := c.quantile(0.5); got >= time.Microsecond {
		t.Errorf("quantile after recording -1s = %v, want under 1µs (negative counts as zero)", got)
	}
}

func TestHistogramConcurrent(t *testing.T) {
	var h histogram
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				h.record(time.Duration(g*1000+i) * time.Microsecond)
			}
		})
	}
	wg.Wait()
	var c counts
	h.snapshot(&c)
	if got := c.total(); got != 8000 {
		t.Errorf("total = %d, want 8000", got)
	}
	if got := h.max.Load(); got != 7999 {
		t.Errorf("max = %d µs, want 7999", got)
	}
	var d counts
	d.sub(&c, &c)
	if got := d.total(); got != 0 {
		t.Errorf("a snapshot minus itself holds %d, want 0", got)
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	var h histogram
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		d := 500 * time.Millisecond
		for pb.Next() {
			h.record(d)
			d += 7 * time.Microsecond
		}
	})
}
