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
