package backpressure_test

import (
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-go/parley/backpressure"
)

// at returns the virtual instant ms milliseconds after epoch.
func at(ms float64) time.Time {
	return epoch.Add(time.Duration(ms * float64(time.Millisecond)))
}

func ms(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }

func TestNewDetector(t *testing.T) {
	tests := []struct {
		name             string
		target, interval time.Duration
		ok               bool
	}{
		{"rfc defaults", 5 * time.Millisecond, 100 * time.Millisecond, true},
		{"slow backend", time.Second, 4 * time.Second, true},
		{"zero target", 0, 100 * time.Millisecond, false},
		{"negative target", -time.Millisecond, 100 * time.Millisecond, false},
		{"zero interval", 5 * time.Millisecond, 0, false},
		{"negative interval", 5 * time.Millisecond, -time.Second, false},
		{"target equals interval", time.Second, time.Second, false},
		{"target above interval", 2 * time.Second, time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := backpressure.NewDetector(tt.target, tt.interval)
			if !tt.ok {
				if !errors.Is(err, backpressure.ErrConfig) {
					t.Fatalf("NewDetector(%v, %v) error = %v, want ErrConfig", tt.target, tt.interval, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewDetector(%v, %v) error = %v", tt.target, tt.interval, err)
			}
			if d.Target() != tt.target || d.Interval() != tt.interval {
				t.Errorf("Target, Interval = %v, %v, want %v, %v", d.Target(), d.Interval(), tt.target, tt.interval)
			}
		})
	}
}

func TestDetectorZeroValue(t *testing.T) {
	var d backpressure.Detector
	if d.Target() != backpressure.DefaultTarget || d.Interval() != backpressure.DefaultInterval {
		t.Errorf("zero Detector: Target, Interval = %v, %v, want RFC defaults", d.Target(), d.Interval())
	}
	// A standing queue under the defaults: 6 ms sojourns for 100 ms.
	if v := d.ObserveAt(ms(6), at(0)); v != backpressure.Clear {
		t.Errorf("ObserveAt(6ms, 0) = %v, want clear", v)
	}
	if v := d.ObserveAt(ms(6), at(100)); v != backpressure.Drop {
		t.Errorf("ObserveAt(6ms, 100ms) = %v, want drop", v)
	}
}

// step is one observation and the verdict it must produce.
type step struct {
	at, sojourn float64 // milliseconds
	want        backpressure.Verdict
	overloaded  bool // Detector.Overloaded after the step
}

// TestDetectorControlLaw walks the detector through the RFC 8289 control
// law with explicit timestamps (target 10 ms, interval 100 ms).
func TestDetectorControlLaw(t *testing.T) {
	const (
		clear    = backpressure.Clear
		standing = backpressure.Standing
		drop     = backpressure.Drop
	)
	tests := []struct {
		name  string
		steps []step
	}{
		{"short sojourns never signal", []step{
			{0, 0, clear, false}, {50, 9.9, clear, false}, {500, 1, clear, false},
		}},
		{"burst that drains within an interval", []step{
			{0, 20, clear, false},   // interval starts, ends at 100
			{60, 40, clear, false},  // still above, interval not over
			{99, 12, clear, false},  // still above
			{99.5, 3, clear, false}, // below target: interval abandoned
			{120, 20, clear, false}, // a new interval, ending at 220
			{200, 20, clear, false},
		}},
		{"standing queue and the drop schedule", []step{
			{0, 20, clear, false},
			{99, 20, clear, false},
			{100, 20, drop, true}, // interval over: first drop, next at 100+100/sqrt(1) = 200
			{150, 20, standing, true},
			{199, 20, standing, true},
			{200, 20, drop, true},     // count 2: next at 200+100/sqrt(2) = 270.7
			{270, 20, standing, true}, // before 270.7
			{271, 20, drop, true},     // count 3: next at 270.7+57.7 = 328.4
			{328, 20, standing, true},
			{329, 20, drop, true},  // count 4: next at 328.4+50 = 378.4
			{330, 5, clear, false}, // below target: dropping ends
			{331, 20, clear, false},
		}},
		{"re-entering soon resumes the drop rate", []step{
			{0, 20, clear, false}, {100, 20, drop, true}, // count 1, next 200
			{200, 20, drop, true}, // count 2, next 270.7
			{271, 20, drop, true}, // count 3, next 328.4
			{329, 20, drop, true}, // count 4, next 378.4
			{330, 5, clear, false},
			{331, 20, clear, false}, // interval until 431
			{431, 20, drop, true},   // delta = 4-1 = 3: count 3, next 431+57.7 = 488.7
			{488, 20, standing, true},
			{489, 20, drop, true}, // count 4, next 488.7+50 = 538.7
			{538, 20, standing, true},
			{539, 20, drop, true},
		}},
		{"re-entering after a long calm starts over", []step{
			{0, 20, clear, false}, {100, 20, drop, true}, // next 200
			{200, 20, drop, true}, // count 2, next 270.7
			{271, 20, drop, true}, // count 3, next 328.4
			{272, 5, clear, false},
			{3000, 20, clear, false}, // 3000-328 >= 16 intervals
			{3100, 20, drop, true},   // count 1, next 3200
			{3199, 20, standing, true},
			{3200, 20, drop, true},
		}},
		{"zero sojourn ends the dropping state", []step{
			{0, 20, clear, false}, {100, 20, drop, true},
			{101, 0, clear, false},
			{102, 20, clear, false},
		}},
		{"timestamps slightly out of order", []step{
			{10, 20, clear, false}, // interval ends at 110
			{9, 20, clear, false},  // earlier timestamp from a racing caller
			{110, 20, drop, true},
			{105, 20, standing, true}, // before the next drop (210)
		}},
		{"older timestamps count as made at the last state change", []step{
			{10, 20, clear, false}, // interval 10..110
			{5, 5, clear, false},   // ends it, as if at 10
			{6, 20, clear, false},  // a new interval, as if from 10: ends at 110
			{109, 20, clear, false},
			{110, 20, drop, true},  // next drop at 210
			{50, 5, clear, false},  // ends dropping, as if at 110
			{60, 20, clear, false}, // interval 110..210
			{209, 20, clear, false},
			{210, 20, drop, true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := backpressure.NewDetector(10*time.Millisecond, 100*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tt.steps {
				if got := d.ObserveAt(ms(s.sojourn), at(s.at)); got != s.want {
					t.Errorf("step %d: ObserveAt(%vms, %vms) = %v, want %v", i, s.sojourn, s.at, got, s.want)
				}
				if got := d.Overloaded(); got != s.overloaded {
					t.Errorf("step %d: after ObserveAt(%vms, %vms) Overloaded() = %v, want %v", i, s.sojourn, s.at, got, s.overloaded)
				}
			}
		})
	}
}

func TestVerdict(t *testing.T) {
	tests := []struct {
		v          backpressure.Verdict
		str        string
		overloaded bool
	}{
		{backpressure.Clear, "clear", false},
		{backpressure.Standing, "standing", true},
		{backpressure.Drop, "drop", true},
		{backpressure.Verdict(9), "Verdict(9)", true},
	}
	for _, tt := range tests {
		if got := tt.v.String(); got != tt.str {
			t.Errorf("Verdict(%d).String() = %q, want %q", tt.v, got, tt.str)
		}
		if got := tt.v.Overloaded(); got != tt.overloaded {
			t.Errorf("%v.Overloaded() = %v, want %v", tt.v, got, tt.overloaded)
		}
	}
}

// TestDetectorConcurrent hammers one detector from many goroutines (run
// with -race), then checks that it still follows the control law.
func TestDetectorConcurrent(t *testing.T) {
	d, err := backpressure.NewDetector(10*time.Millisecond, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 0))
			for i := range 2000 {
				d.ObserveAt(ms(rng.Float64()*30), at(float64(i)))
			}
		})
	}
	wg.Wait()
	if v := d.ObserveAt(0, at(5000)); v != backpressure.Clear || d.Overloaded() {
		t.Errorf("after a zero sojourn: verdict %v, Overloaded() = %v, want clear, false", v, d.Overloaded())
	}
	d.ObserveAt(ms(20), at(6000))
	if v := d.ObserveAt(ms(20), at(6100)); v != backpressure.Drop {
		t.Errorf("standing queue after concurrent use: verdict %v, want drop", v)
	}
}

// TestDetectorConcurrentFlapping has goroutines observe sojourns
// alternating above and below target, so that nearly every observation
// changes state (run with -race). The interval is too long to complete, so
// every verdict must be clear.
func TestDetectorConcurrentFlapping(t *testing.T) {
	d, err := backpressure.NewDetector(10*time.Millisecond, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 5000 {
				sojourn := ms(20)
				if (i+g)%2 == 1 {
					sojourn = ms(1)
				}
				if v := d.ObserveAt(sojourn, at(float64(i))); v != backpressure.Clear {
					t.Errorf("goroutine %d: ObserveAt(%v, %vms) = %v, want clear", g, sojourn, i, v)
					return
				}
			}
		})
	}
	wg.Wait()
	if d.Overloaded() {
		t.Error("Overloaded() = true after flapping, want false")
	}
	d.ObserveAt(ms(1), at(5000))
	d.ObserveAt(ms(20), at(5000))
	if v := d.ObserveAt(ms(20), at(5000).Add(time.Hour)); v != backpressure.Drop {
		t.Errorf("standing queue after flapping: verdict %v, want drop", v)
	}
}

// TestDetectorConcurrentRounds has goroutines observe long sojourns with
// occasional short ones, timestamped from a shared millisecond clock and
// up to 49 ms stale, as from racing callers of time.Now (run with -race).
// Each round starts in the dropping state, so the goroutines race its
// locked moves (following and leaving it) against the lock-free ones that
// start and end intervals, however the scheduler runs them. Each goroutine
// ends its round with a short sojourn, so in whatever order the
// observations took effect, the round leaves the detector clear, its clock
// at most the latest timestamp used. Probes between rounds check exactly
// that; an observation lost to a racing one would show there.
func TestDetectorConcurrentRounds(t *testing.T) {
	const interval = 100 * time.Millisecond
	d, err := backpressure.NewDetector(10*time.Millisecond, interval)
	if err != nil {
		t.Fatal(err)
	}
	var (
		clock atomic.Int64 // ms after epoch
		drops atomic.Int64
	)
	clock.Store(1000)
	for round := range 1000 {
		d.ObserveAt(ms(20), at(float64(clock.Add(1))))
		if v := d.ObserveAt(ms(20), at(float64(clock.Add(interval.Milliseconds())))); v != backpressure.Drop {
			t.Fatalf("round %d: entering the dropping state: verdict %v, want drop", round, v)
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := range 8 {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(round), uint64(g)))
				<-start
				for i := range 40 {
					now := at(float64(clock.Add(1) - rng.Int64N(50)))
					if i == 39 || rng.IntN(200) == 0 {
						if v := d.ObserveAt(ms(1), now); v != backpressure.Clear {
							t.Errorf("round %d: short sojourn: verdict %v, want clear", round, v)
						}
						continue
					}
					if d.ObserveAt(ms(20), now) == backpressure.Drop {
						drops.Add(1)
					}
				}
			})
		}
		close(start)
		wg.Wait()
		if d.Overloaded() {
			t.Fatalf("round %d: Overloaded() = true after short sojourns, want false", round)
		}
		// An interval started now, later than every timestamp used, must
		// run exactly from now.
		now := at(float64(clock.Add(1)))
		for _, p := range []struct {
			at   time.Time
			want backpressure.Verdict
		}{
			{now, backpressure.Clear},
			{now.Add(interval - 1), backpressure.Clear},
			{now.Add(interval), backpressure.Drop},
		} {
			if v := d.ObserveAt(ms(20), p.at); v != p.want {
				t.Fatalf("round %d: probe ObserveAt(20ms, %v after the round) = %v, want %v", round, p.at.Sub(now), v, p.want)
			}
		}
		d.ObserveAt(ms(1), now.Add(interval))
		clock.Add(interval.Milliseconds())
	}
	t.Logf("%d drop verdicts in the racing observations", drops.Load())
}

// BenchmarkDetector measures one decision with now passed in, 1 µs apart.
// state=clear is a healthy queue; state=interval has sojourns above target
// while an interval runs; state=dropping is a standing queue between drops.
// Those are the decisions a host makes almost always, and they take no
// lock. state=flapping alternates sojourns above and below target, so every
// observation changes state and takes the lock: the worst case.
func BenchmarkDetector(b *testing.B) {
	cases := []struct {
		name     string
		sojourns []time.Duration // cycled through
		prime    bool            // enter the dropping state before timing
		want     bool            // some verdicts must be overloaded
	}{
		{"state=clear", []time.Duration{ms(1)}, false, false},
		{"state=interval", []time.Duration{ms(20)}, false, false},
		{"state=dropping", []time.Duration{ms(20)}, true, true},
		{"state=flapping", []time.Duration{ms(20), ms(1)}, false, false},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			d, err := backpressure.NewDetector(10*time.Millisecond, time.Hour)
			if err != nil {
				b.Fatal(err)
			}
			now := epoch
			if c.prime {
				d.ObserveAt(c.sojourns[0], now)
				now = now.Add(time.Hour)
			}
			overloaded, i := 0, 0
			b.ReportAllocs()
			for b.Loop() {
				now = now.Add(time.Microsecond)
				if d.ObserveAt(c.sojourns[i%len(c.sojourns)], now).Overloaded() {
					overloaded++
				}
				i++
			}
			if (overloaded > 0) != c.want {
				b.Fatalf("%d overloaded verdicts, want some: %v", overloaded, c.want)
			}
		})
	}
	b.Run("state=mixed/parallel", func(b *testing.B) {
		d, err := backpressure.NewDetector(10*time.Millisecond, 100*time.Millisecond)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			now := epoch
			i := 0
			for pb.Next() {
				i++
				now = now.Add(time.Microsecond)
				d.ObserveAt(time.Duration(i%32)*time.Millisecond, now)
			}
		})
	})
}
