package backpressure_test

import (
	"testing"
	"time"

	"github.com/parley-go/parley/backpressure"
)

// FuzzDetector feeds a detector (target 10 ms, interval 100 ms) a sequence
// of observations and checks it against a direct model of the definition:
// the detector is overloaded exactly when every sojourn since some
// observation at time s has been at or above target and an observation at
// or after s+interval has been made. Drop verdicts come only while
// overloaded, and entering overload is always a Drop. Each input pair is a
// time step (0..255 ms) and a sojourn (0..31 ms). Out-of-order timestamps
// are covered by TestDetectorControlLaw.
func FuzzDetector(f *testing.F) {
	f.Add([]byte{0, 20, 50, 20, 58, 20, 60, 20, 20, 5, 10, 20})
	f.Add([]byte{8, 15, 108, 15, 0, 15, 108, 15, 8, 9, 108, 31, 108, 31})
	f.Add([]byte{255, 31, 0, 31, 4, 31, 255, 31, 3, 0, 255, 31, 255, 31})
	f.Fuzz(func(t *testing.T, ops []byte) {
		const target, interval = 10 * time.Millisecond, 100 * time.Millisecond
		d, err := backpressure.NewDetector(target, interval)
		if err != nil {
			t.Fatal(err)
		}
		var (
			now      time.Duration
			above    bool // model: a run of sojourns >= target is on
			runStart time.Duration
			dropping bool
		)
		for i := 0; i+1 < len(ops); i += 2 {
			now += time.Duration(ops[i]) * time.Millisecond
			sojourn := time.Duration(ops[i+1]%32) * time.Millisecond
			v := d.ObserveAt(sojourn, epoch.Add(now))

			entered := false
			switch {
			case sojourn < target:
				above, dropping = false, false
			case !above:
				above, runStart = true, now
			case !dropping && now-runStart >= interval:
				dropping, entered = true, true
			}
			if v.Overloaded() != dropping || d.Overloaded() != dropping {
				t.Fatalf("op %d (t=%v, sojourn %v): verdict %v, Overloaded() %v; model overloaded: %v", i/2, now, sojourn, v, d.Overloaded(), dropping)
			}
			if entered && v != backpressure.Drop {
				t.Fatalf("op %d (t=%v): entering overload gave %v, want drop", i/2, now, v)
			}
		}
	})
}
