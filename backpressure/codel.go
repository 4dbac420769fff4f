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

// Bits of Detector.flags, a lock-free mirror of the state under mu.
const (
	flagAbove    = 1 << iota // a sojourn at or above target started an interval
	flagDropping             // the control law is in its dropping state
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
// (time.Time.UnixNano), which is cheaper than the monotonic one. They may
// arrive slightly out of order from concurrent callers: when an
// observation would change the detector's state, a timestamp older than
// the last state change counts as made at that change, so intervals and
// drop schedules never move backwards, and a clock stepped backwards
// stalls the detector rather than confusing it.
//
// The zero value is ready to use with [DefaultTarget] and [DefaultInterval].
// A Detector is safe for concurrent use by multiple goroutines and must not
// be copied after first use.
type Detector struct {
	target   time.Duration // zero means DefaultTarget
	interval time.Duration // zero means DefaultInterval

	// flags, firstAbove and dropNext are written only under mu but read
	// without it, so that observations which change nothing (a healthy
	// queue, an interval still running, a drop not yet due) take no lock.
	// Writers store firstAbove and dropNext before flags.
	flags      atomic.Uint32
	firstAbove atomic.Int64 // when above: the end of the running interval
	dropNext   atomic.Int64 // when dropping: the next scheduled drop

	mu        sync.Mutex
	latest    int64 // latest timestamp the locked path has seen, if seen
	seen      bool
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
	target := d.Target()
	t := now.UnixNano()
	// Fast paths: observations that change no state. Each linearizes at
	// its loads; a racing transition only shifts a verdict by one
	// observation.
	switch flags := d.flags.Load(); {
	case sojourn < target:
		if flags == 0 {
			return Clear
		}
	case flags == flagAbove:
		if t < d.firstAbove.Load() {
			return Clear
		}
	case flags == flagAbove|flagDropping:
		if t < d.dropNext.Load() {
			return Standing
		}
	}
	return d.observe(sojourn >= target, t)
}

// observe is ObserveAt under the lock: RFC 8289's dequeue, one item at a
// time. above reports a sojourn at or above target; t is the timestamp.
func (d *Detector) observe(above bool, t int64) Verdict {
	interval := int64(d.Interval())
	d.mu.Lock()
	// Callers racing with time.Now() may arrive slightly out of order;
	// the detector's clock does not run backwards.
	if d.seen {
		t = max(t, d.latest)
	}
	d.latest, d.seen = t, true

	flags := d.flags.Load()
	dropping := flags&flagDropping != 0
	// RFC 8289's dodequeue: has the sojourn stayed at or above target for
	// a whole interval?
	okToDrop := false
	switch {
	case !above:
		flags = 0
	case flags&flagAbove == 0:
		flags = flagAbove
		d.firstAbove.Store(t + interval)
	default:
		okToDrop = t >= d.firstAbove.Load()
	}

	v := Clear
	switch {
	case dropping && !okToDrop:
		flags &^= flagDropping
	case dropping:
		v = Standing
		if next := d.dropNext.Load(); t >= next {
			v = Drop
			if d.count < math.MaxUint32 {
				d.count++
			}
			d.dropNext.Store(controlLaw(next, d.count, interval))
		}
	case okToDrop:
		// Enter the dropping state. If the last dropping state ended
		// recently, resume near its drop rate instead of starting over
		// (RFC 8289 section 5.6).
		v = Drop
		flags |= flagDropping
		delta := d.count - d.lastCount
		d.count = 1
		if delta > 1 && t-d.dropNext.Load() < 16*interval {
			d.count = delta
		}
		d.dropNext.Store(controlLaw(t, d.count, interval))
		d.lastCount = d.count
	}
	d.flags.Store(flags)
	d.mu.Unlock()
	return v
}

// controlLaw returns the next drop time, interval/sqrt(count) after t.
func controlLaw(t int64, count uint32, interval int64) int64 {
	return t + int64(float64(interval)/math.Sqrt(float64(count)))
}

// Overloaded reports whether the last observation left the detector in its
// dropping state, that is whether a standing queue persists.
func (d *Detector) Overloaded() bool {
	return d.flags.Load()&flagDropping != 0
}
