package backpressure_test

import (
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/parley-go/parley/backpressure"
)

// newGate returns a gate over a 10 ms / 100 ms detector.
func newGate(t testing.TB, cfg backpressure.GateConfig) *backpressure.Gate {
	t.Helper()
	d, err := backpressure.NewDetector(10*time.Millisecond, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	g, err := backpressure.NewGate(d, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// admission is one AdmitAt call and its expected outcome.
type admission struct {
	key     string
	sojourn float64 // milliseconds
	at      float64 // milliseconds
	reason  error   // nil: admitted
	perKey  bool
	retry   time.Duration
}

// checkAdmit runs AdmitAt for a and compares the outcome.
func checkAdmit(t *testing.T, g *backpressure.Gate, i int, a admission) {
	t.Helper()
	err := g.AdmitAt(a.key, ms(a.sojourn), at(a.at))
	if a.reason == nil {
		if err != nil {
			t.Errorf("step %d: AdmitAt(%q, %vms, %vms) = %v, want nil", i, a.key, a.sojourn, a.at, err)
		}
		return
	}
	rej, ok := errors.AsType[*backpressure.Rejection](err)
	if !ok || !errors.Is(err, a.reason) {
		t.Errorf("step %d: AdmitAt(%q, %vms, %vms) = %v, want a Rejection for %v", i, a.key, a.sojourn, a.at, err, a.reason)
		return
	}
	if rej.PerKey != a.perKey || rej.RetryAfter != a.retry {
		t.Errorf("step %d: AdmitAt(%q, %vms, %vms) = %+v, want PerKey %v, RetryAfter %v", i, a.key, a.sojourn, a.at, *rej, a.perKey, a.retry)
	}
}

func TestGateAdmit(t *testing.T) {
	over, limited := backpressure.ErrOverloaded, backpressure.ErrRateLimited
	tests := []struct {
		name  string
		cfg   backpressure.GateConfig
		steps []admission
	}{
		{"no limits admits while healthy", backpressure.GateConfig{}, []admission{
			{"a", 1, 0, nil, false, 0},
			{"a", 50, 1, nil, false, 0}, // above target, interval just started
			{"b", 1, 2, nil, false, 0},
		}},
		{"standing queue sheds until a short sojourn", backpressure.GateConfig{}, []admission{
			{"a", 20, 0, nil, false, 0},
			{"a", 20, 100, over, false, 100 * time.Millisecond},
			{"b", 30, 150, over, false, 100 * time.Millisecond},
			{"c", 2, 160, nil, false, 0},
			{"c", 20, 170, nil, false, 0},
		}},
		{"per-key bucket", backpressure.GateConfig{KeyRate: 2, KeyBurst: 2}, []admission{
			{"a", 0, 0, nil, false, 0},
			{"a", 0, 0, nil, false, 0},
			{"a", 0, 0, limited, true, 500 * time.Millisecond},
			{"b", 0, 0, nil, false, 0}, // other keys are independent
			{"a", 0, 200, limited, true, 300 * time.Millisecond},
			{"a", 0, 500, nil, false, 0},
			{"a", 0, 500, limited, true, 500 * time.Millisecond},
		}},
		{"global bucket", backpressure.GateConfig{GlobalRate: 10, GlobalBurst: 1}, []admission{
			{"a", 0, 0, nil, false, 0},
			{"b", 0, 0, limited, false, 100 * time.Millisecond},
			{"b", 0, 60, limited, false, 40 * time.Millisecond},
			{"b", 0, 100, nil, false, 0},
		}},
		{"default bursts are one second's worth", backpressure.GateConfig{KeyRate: 0.5, GlobalRate: 2.5}, []admission{
			{"a", 0, 0, nil, false, 0}, // key burst 1
			{"a", 0, 0, limited, true, 2 * time.Second},
			{"b", 0, 0, nil, false, 0}, // global burst 3
			{"c", 0, 0, nil, false, 0},
			{"d", 0, 0, limited, false, 400 * time.Millisecond},
		}},
		{"a global refusal gives the key its token back", backpressure.GateConfig{KeyRate: 0.1, KeyBurst: 1, GlobalRate: 1, GlobalBurst: 1}, []admission{
			{"a", 0, 0, nil, false, 0},
			{"b", 0, 0, limited, false, time.Second},
			// b's own bucket refills only after 10 s: admitted at 1 s
			// only if the refused request did not keep b's token.
			{"b", 0, 1000, nil, false, 0},
		}},
		{"overload takes no token", backpressure.GateConfig{KeyRate: 0.1, KeyBurst: 1}, []admission{
			{"x", 20, 0, nil, false, 0}, // x's token taken; interval starts
			{"a", 20, 100, over, false, 100 * time.Millisecond},
			{"a", 1, 101, nil, false, 0}, // a still has its one token
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGate(t, tt.cfg)
			for i, a := range tt.steps {
				checkAdmit(t, g, i, a)
			}
		})
	}
}

func TestNewGate(t *testing.T) {
	var d backpressure.Detector
	tests := []struct {
		name string
		det  *backpressure.Detector
		cfg  backpressure.GateConfig
		ok   bool
	}{
		{"zero config", &d, backpressure.GateConfig{}, true},
		{"all limits", &d, backpressure.GateConfig{GlobalRate: 100, GlobalBurst: 10, KeyRate: 1, KeyBurst: 3, MaxKeys: 1000}, true},
		{"nil detector", nil, backpressure.GateConfig{}, false},
		{"negative global rate", &d, backpressure.GateConfig{GlobalRate: -1}, false},
		{"negative key burst", &d, backpressure.GateConfig{KeyRate: 1, KeyBurst: -1}, false},
		{"negative max keys", &d, backpressure.GateConfig{MaxKeys: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := backpressure.NewGate(tt.det, tt.cfg)
			if tt.ok && (err != nil || g == nil) {
				t.Fatalf("NewGate(%+v) = %v, %v, want a gate", tt.cfg, g, err)
			}
			if !tt.ok && !errors.Is(err, backpressure.ErrConfig) {
				t.Fatalf("NewGate(%+v) error = %v, want ErrConfig", tt.cfg, err)
			}
		})
	}
}

func TestGateStats(t *testing.T) {
	g := newGate(t, backpressure.GateConfig{KeyRate: 1, KeyBurst: 1, GlobalRate: 2, GlobalBurst: 2})
	g.AdmitAt("a", 0, at(0))      // admitted
	g.AdmitAt("a", 0, at(0))      // key
	g.AdmitAt("b", 0, at(0))      // admitted
	g.AdmitAt("c", 0, at(0))      // global
	g.AdmitAt("d", ms(20), at(0)) // global; interval starts
	g.AdmitAt("e", ms(20), at(100))
	got := g.Stats()
	want := backpressure.GateStats{Admitted: 2, Overloaded: 1, RateLimitedKey: 1, RateLimitedGlobal: 2, Standing: true, Keys: 4}
	if got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
	if g.Detector().Overloaded() != got.Standing {
		t.Errorf("Detector().Overloaded() = %v, want %v", g.Detector().Overloaded(), got.Standing)
	}
}

// TestGateEvictsIdleKeys checks that buckets idle for their refill time
// are dropped as the gate is used, and that MaxKeys bounds the rest.
func TestGateEvictsIdleKeys(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		g := newGate(t, backpressure.GateConfig{KeyRate: 1, KeyBurst: 2}) // refill: 2 s
		for i := range 1000 {
			g.AdmitAt("old"+strconv.Itoa(i), 0, at(0))
		}
		if n := g.Stats().Keys; n != 1000 {
			t.Fatalf("Keys = %d after 1000 keys, want 1000", n)
		}
		// Not yet idle for a full refill: nothing goes.
		for i := range 100 {
			g.AdmitAt("mid"+strconv.Itoa(i), 0, at(1999))
		}
		if n := g.Stats().Keys; n != 1100 {
			t.Fatalf("Keys = %d before the refill time, want 1100", n)
		}
		for i := range 1000 {
			g.AdmitAt("new"+strconv.Itoa(i), 0, at(2000))
		}
		// Every shard was touched at 2 s, so every old key is gone; the
		// mid keys stay until 3999 ms.
		if n := g.Stats().Keys; n != 1100 {
			t.Errorf("Keys = %d after the refill time, want 1100", n)
		}
	})
	t.Run("max keys", func(t *testing.T) {
		g := newGate(t, backpressure.GateConfig{KeyRate: 0.001, KeyBurst: 1, MaxKeys: 64})
		for i := range 5000 {
			if err := g.AdmitAt(strconv.Itoa(i), 0, at(float64(i))); err != nil {
				t.Fatalf("AdmitAt(new key %d) = %v, want nil", i, err)
			}
		}
		if n := g.Stats().Keys; n > 64 {
			t.Errorf("Keys = %d, want <= MaxKeys (64)", n)
		}
		// The most recent key is still held and still limited.
		if err := g.AdmitAt("4999", 0, at(5000)); !errors.Is(err, backpressure.ErrRateLimited) {
			t.Errorf("AdmitAt(recent key) = %v, want ErrRateLimited", err)
		}
	})
}

// TestGateConcurrent admits from many goroutines at one instant (run with
// -race): exactly the global burst is admitted whatever the interleaving,
// and every request is counted once.
func TestGateConcurrent(t *testing.T) {
	const goroutines, perG, burst = 16, 200, 500
	g := newGate(t, backpressure.GateConfig{GlobalRate: 1, GlobalBurst: burst, KeyRate: 1, KeyBurst: perG})
	var wg sync.WaitGroup
	for w := range goroutines {
		wg.Go(func() {
			for i := range perG {
				g.AdmitAt(strconv.Itoa((w*perG+i)%50), 0, at(0))
			}
		})
	}
	wg.Wait()
	s := g.Stats()
	if s.Admitted != burst || s.RateLimitedGlobal != goroutines*perG-burst || s.RateLimitedKey != 0 || s.Keys != 50 {
		t.Errorf("Stats() = %+v, want %d admitted, the rest refused by the global bucket, 50 keys", s, burst)
	}
}

func TestRejectionError(t *testing.T) {
	tests := []struct {
		r    backpressure.Rejection
		want string
	}{
		{backpressure.Rejection{Reason: backpressure.ErrOverloaded, RetryAfter: 4 * time.Second}, "backpressure: overloaded, retry after 4s"},
		{backpressure.Rejection{Reason: backpressure.ErrRateLimited, RetryAfter: 250 * time.Millisecond, PerKey: true}, "backpressure: rate limited (per key), retry after 250ms"},
	}
	for _, tt := range tests {
		if got := tt.r.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

// BenchmarkGate measures one admission with now passed in, cycling over
// 10,000 session keys whose buckets already exist (a chat server's steady
// state).
func BenchmarkGate(b *testing.B) {
	cases := []struct {
		name string
		cfg  backpressure.GateConfig
	}{
		{"limits=none", backpressure.GateConfig{}},
		// Limits that never bind, with buckets that take 1000 s to refill
		// so that no key goes idle and is evicted during the run.
		{"limits=key", backpressure.GateConfig{KeyRate: 1e6, KeyBurst: 1e9}},
		{"limits=key+global", backpressure.GateConfig{KeyRate: 1e6, KeyBurst: 1e9, GlobalRate: 1e6, GlobalBurst: 1e9}},
	}
	keys := make([]string, 10000)
	for i := range keys {
		keys[i] = "session-" + strconv.Itoa(i)
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			g := newGate(b, c.cfg)
			now := epoch
			warm(g, keys, now)
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				now = now.Add(time.Microsecond)
				if err := g.AdmitAt(keys[i%len(keys)], time.Millisecond, now); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		b.Run(c.name+"/parallel", func(b *testing.B) {
			g := newGate(b, c.cfg)
			warm(g, keys, epoch)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				now := epoch
				i := 0
				for pb.Next() {
					now = now.Add(time.Microsecond)
					g.AdmitAt(keys[i%len(keys)], time.Millisecond, now)
					i++
				}
			})
		})
	}
}

// warm admits one request per key so that every bucket exists.
func warm(g *backpressure.Gate, keys []string, now time.Time) {
	for _, k := range keys {
		g.AdmitAt(k, 0, now)
	}
}
