package fsm

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkWheelArm moves the deadline of a random one of armed entries:
// later (what activity does, recorded in place), earlier (refiled at once),
// or away and back (disarm, then arm).
func BenchmarkWheelArm(b *testing.B) {
	for _, armed := range []int{1000, 1_000_000} {
		for _, move := range []string{"later", "earlier", "rearm"} {
			b.Run(fmt.Sprintf("armed=%d/move=%s", armed, move), func(b *testing.B) {
				w := NewWheel(WheelConfig{}, func(Expiry[int]) {})
				defer w.Close()
				base := time.Now().Add(time.Hour)
				r := rand.New(rand.NewPCG(1, 2))
				entries := make([]Entry, armed)
				for i := range entries {
					entries[i] = w.Add(i, base.Add(time.Duration(r.IntN(30_000))*time.Millisecond))
				}
				seq := make([]Entry, 1<<20)
				for k := range seq {
					seq[k] = entries[r.IntN(armed)]
				}
				b.ReportAllocs()
				k := 0
				for b.Loop() {
					k++
					e := seq[k&(len(seq)-1)]
					switch move {
					case "later":
						w.Arm(e, base.Add(30*time.Second+time.Duration(k)))
					case "earlier":
						w.Arm(e, base.Add(-time.Duration(k)))
					case "rearm":
						w.Arm(e, time.Time{})
						w.Arm(e, base.Add(time.Duration(k)))
					}
				}
			})
		}
	}
}

// BenchmarkWheelCore is BenchmarkWheelArm's "later" case on the bare
// wheel, without lock or time conversions.
func BenchmarkWheelCore(b *testing.B) {
	const armed = 1_000_000
	var c wheelCore[int]
	c.init()
	r := rand.New(rand.NewPCG(1, 2))
	idx := make([]int32, armed)
	for i := range idx {
		idx[i], _ = c.alloc(i)
		c.arm(idx[i], 3_600_000+int64(r.IntN(30_000)))
	}
	seq := make([]int32, 1<<20)
	for k := range seq {
		seq[k] = idx[r.IntN(armed)]
	}
	k := 0
	for b.Loop() {
		k++
		c.arm(seq[k&(len(seq)-1)], 3_630_000+int64(k))
	}
}

// BenchmarkWheelAdvance files due entries spread over 30 s of 1 ms ticks,
// a third of them moved later once (refiled when their first slot comes),
// and advances the bare wheel until all are delivered: ns/timeout is the
// wheel's whole cost per delivered deadline, cascades included.
func BenchmarkWheelAdvance(b *testing.B) {
	b.Run("due=1000000", func(b *testing.B) {
		const n, span = 1_000_000, 30_000
		r := rand.New(rand.NewPCG(1, 2))
		ticks := make([]int64, n)
		for i := range ticks {
			ticks[i] = 1 + int64(r.IntN(span))
		}
		var c wheelCore[int]
		batch := make([]Expiry[int], 0, maxBatch)
		delivered := 0
		for b.Loop() {
			b.StopTimer()
			c = wheelCore[int]{}
			c.init()
			for k, t := range ticks {
				i, _ := c.alloc(k)
				c.arm(i, t)
				if k%3 == 0 {
					c.arm(i, t+span)
				}
			}
			b.StartTimer()
			for more := true; more; {
				batch, more = c.round(2*span+1, batch[:0], 0, 1)
				delivered += len(batch)
			}
		}
		if delivered != b.N*n {
			b.Fatalf("delivered %d, want %d", delivered, b.N*n)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/timeout")
	})
}
