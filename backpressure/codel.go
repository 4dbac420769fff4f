package backpressure

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultTarget and DefaultInterval are the CoDel parameters of RFC 8289,
// chosen for packet queues in front of links. They suit backends whose
// service time is well under a millisecond; see the package documentation
// for slower backends.
const (
	DefaultTarget   = 5 * time.Millisecond
	DefaultInterval = 100 * time.Millisecond
)

// Verdict is what a [Detector] concludes from one sojourn observation.
type Verdict uint8

// The verdicts, from healthy to the control law's drop signal.
const (
	// Clear means there is no standing queue: either the sojourn was below
	// target or it has not stayed above target for a whole interval yet.
	Clear Verdict = iota
	// Standing means sojourn times have stayed above target for at least a
	// whole interval: the queue is overloaded, and admission control should
	// refuse new work until a sojourn below target is seen again.
	Standing
	// Drop is Standing at a moment when the RFC 8289 control law schedules a
	// drop (the first one, then one every interval/sqrt(count)). A queue
	// doing RFC-style head drop discards this item; admission control
	// treats it exactly as Standing.
	Drop
)

// Overloaded reports whether v signals a standing queue (Standing or Drop).
func (v Verdict) Overloaded() bool { return v != Clear }

// String returns "clear", "standing" or "drop".
func (v Verdict) String() string {
	switch v {
	case Clear:
		return "clear"
	case Standing:
		return "standing"
	case Drop:
		return "drop"
	}
	return fmt.Sprintf("Verdict(%d)", uint8(v))
}

// Detector.state packs one of these codes into its top codeBits bits,
// above the low stampBits bits of a UnixNano time (the stamp): when clear,
// the time of the last state change; when above, the end of the running
// interval; when dropping, the next scheduled drop. Zero is the unseen
// state of a new Detector.
const (
	stateUnseen   = iota // no state change yet: no time to hold to
	stateClear           // no interval running
	stateAbove           // sojourns at or above target; an interval runs
	stateDropping        // the control law is in its dropping state

	codeBits  = 2
	stampBits = 64 - codeBits
)

// Detector is a CoDel overload detector (RFC 8289) fed with queue sojourn
// times: how long each item waited before it was served. It signals
// overload only when sojourn times have stayed at or above a target for a
// whole interval, so bursts that drain within an interval pass untouched.
//
// A Detector runs no goroutine and no timer: every decision is worked out
// from the observation's timestamp. [Detector.ObserveAt] takes that
// timestamp explicitly and does not allocate; [Detector.Observe] reads the
// clock. Timestamps are compared by their wall-clock reading
// (time.Time.UnixNano), which is cheaper than the monotonic one, and must
// lie within 73 years of each other. They may arrive slightly out of order
// from concurrent callers: when an observation would change the detector's
// state, a timestamp older than the last state change counts as made at
// that change, so intervals and drop schedules never move backwards, and a
// clock stepped backwards stalls the detector rather than confusing it.
//
// The zero value is ready to use with [DefaultTarget] and [DefaultInterval].
// A Detector is safe for concurrent use by multiple goroutines and must not
// be copied after first use.
type Detector struct {
	target   time.Duration // zero means DefaultTarget
	interval time.Duration // zero means DefaultInterval

	// state is a state code and a stamp (see stamp). Outside the dropping
	// state it is the whole state: moving between clear and above is one
	// CompareAndSwap, taking no lock. Moving into, within or out of the
	// dropping state also needs the fields below, so it takes mu and then
	// swaps state; while state holds stateDropping only holders of mu
	// change it.
	state atomic.Uint64

	mu        sync.Mutex
	latest    int64  // when dropping: the time of the last state change
	dropNext  int64  // the next drop, or the last one scheduled
	count     uint32 // drops in the current (or last) dropping state
	lastCount uint32 // count when the last dropping state began
}

// NewDetector returns a Detector that signals overload once sojourn times
// have stayed at or above target for a whole interval.
//
// target is the sojourn a healthy queue may briefly exceed; interval is how
// long it may exceed it before that counts as a standing queue, and it also
// paces the control law's drops. Both must be positive and target must be
// below interval, or NewDetector returns an error wrapping [ErrConfig]. The
// package documentation gives guidance for backends slower than a network
// link, where the RFC's 5 ms / 100 ms shed healthy bursts.
func NewDetector(target, interval time.Duration) (*Detector, error) {
	switch {
	case target <= 0:
		return nil, fmt.Errorf("%w: detector target %v must be positive", ErrConfig, target)
	case interval <= 0:
		return nil, fmt.Errorf("%w: detector interval %v must be positive", ErrConfig, interval)
	case target >= interval:
		return nil, fmt.Errorf("%w: detector target %v must be below interval %v", ErrConfig, target, interval)
	}
	return &Detector{target: target, interval: interval}, nil
}

// Target returns the sojourn time above which an interval starts.
func (d *Detector) Target() time.Duration {
	if d.target == 0 {
		return DefaultTarget
	}
	return d.target
}

// Interval returns how long sojourn times must stay at or above target
// before the detector reports a standing queue.
func (d *Detector) Interval() time.Duration {
	if d.interval == 0 {
		return DefaultInterval
	}
	return d.interval
}

// Observe is ObserveAt with the current time.
func (d *Detector) Observe(sojourn time.Duration) Verdict {
	return d.ObserveAt(sojourn, time.Now())
}

// ObserveAt records that an item leaving the queue at now waited sojourn,
// and returns the detector's verdict for that item under the CoDel control
// law. A host whose queue has just become empty may observe a zero sojourn,
// which (as in RFC 8289) ends any interval and any dropping state.
func (d *Detector) ObserveAt(sojourn time.Duration, now time.Time) Verdict {
	above := sojourn >= d.Target()
	t := now.UnixNano()
	// Fast paths: observations that change no state, which take effect
	// at the load they decide on.
	w := d.state.Load()
	switch code := w >> stampBits; {
	case !above:
		if code <= stateClear {
			return Clear
		}
	case code == stateAbove:
		if before(t, w) {
			return Clear // the interval is still running
		}
	case code == stateDropping:
		if before(t, w) {
			return Standing // the next drop is not due yet
		}
	}
	return d.observe(w, above, t)
}

// observe is RFC 8289's dequeue for an observation that the fast paths of
// ObserveAt found to change the state word w, one item at a time. above
// reports a sojourn at or above target; t is the timestamp. The
// observation takes effect at the CompareAndSwap that changes the state.
// If that fails, another observation changed the state first, and this one
// decides again from the state that one left.
//
// A timestamp older than the last state change counts as made at that
// change: the detector's clock does not run backwards.
func (d *Detector) observe(w uint64, above bool, t int64) Verdict {
	interval := int64(d.Interval())
	for {
		switch code := w >> stampBits; {
		case code <= stateClear:
			if !above {
				return Clear
			}
			// An interval starts.
			start := t
			if code == stateClear {
				start = max(t, stamp(w, t))
			}
			if d.state.CompareAndSwap(w, pack(start+interval, stateAbove)) {
				return Clear
			}
		case code == stateAbove && !above:
			// The interval, which began at its end minus interval, ends
			// early.
			latest := max(t, stamp(w, t)-interval)
			if d.state.CompareAndSwap(w, pack(latest, stateClear)) {
				return Clear
			}
		case above && before(t, w):
			// The interval is still running, or the next drop is not
			// due yet.
			if code == stateDropping {
				return Standing
			}
			return Clear
		default: // into, within or out of the dropping state
			if v, ok := d.observeDropping(w, above, t, interval); ok {
				return v
			}
		}
		w = d.state.Load()
	}
}

// observeDropping is RFC 8289's dequeue for an observation that moves the
// detector into, within or out of its dropping state, given the state word
// w it decided on. It reports false, having changed nothing, if the state
// is no longer w.
func (d *Detector) observeDropping(w uint64, above bool, t, interval int64) (Verdict, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var (
		v         Verdict
		next      uint64
		latest    = d.latest
		count     = d.count
		dropNext  = d.dropNext
		lastCount = d.lastCount
	)
	switch {
	case w>>stampBits == stateAbove:
		// Sojourns have stayed at or above target for a whole interval,
		// which began before t: enter the dropping state. If the last
		// dropping state ended recently, resume near its drop rate
		// instead of starting over (RFC 8289 section 5.6).
		v = Drop
		delta := count - lastCount
		count = 1
		if delta > 1 && t-dropNext < 16*interval {
			count = delta
		}
		latest, lastCount = t, count
		dropNext = controlLaw(t, count, interval)
		next = pack(dropNext, stateDropping)
	case !above:
		latest = max(t, latest)
		v, next = Clear, pack(latest, stateClear)
	default: // a drop is due
		latest = max(t, latest)
		if count < math.MaxUint32 {
			count++
		}
		dropNext = controlLaw(dropNext, count, interval)
		v, next = Drop, pack(dropNext, stateDropping)
	}
	// Only an observation moving between clear and above can have changed
	// state since w was loaded, and only if w is not dropping.
	if !d.state.CompareAndSwap(w, next) {
		return 0, false
	}
	d.latest, d.count, d.dropNext, d.lastCount = latest, count, dropNext, lastCount
	return v, true
}

// pack returns the state word of code with stamp t.
func pack(t int64, code uint64) uint64 {
	return uint64(t)&(1<<stampBits-1) | code<<stampBits
}

// stamp returns the time in the state word w. The word keeps only the low
// stampBits bits of it, so stamp works them out from t: the difference is
// taken modulo 2^62 and read as signed, which is exact for times within 73
// years of each other, as Detector documents.
func stamp(w uint64, t int64) int64 {
	return t - int64((uint64(t)-w)<<codeBits)>>codeBits
}

// before reports whether t is before the stamp in w, in one subtraction.
func before(t int64, w uint64) bool {
	return int64((uint64(t)-w)<<codeBits) < 0
}

// controlLaw returns the next drop time, interval/sqrt(count) after t.
func controlLaw(t int64, count uint32, interval int64) int64 {
	return t + int64(float64(interval)/math.Sqrt(float64(count)))
}

// Overloaded reports whether the last observation left the detector in its
// dropping state, that is whether a standing queue persists.
func (d *Detector) Overloaded() bool {
	return d.state.Load()>>stampBits == stateDropping
}
