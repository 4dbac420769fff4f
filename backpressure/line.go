package backpressure

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// Ticket is a client's place in a [Line]. The zero value is no place. Each
// client (a session, a connection) keeps its own Ticket and passes a
// pointer to it to every call of the Line; the Line sets and clears it.
type Ticket uint64

// Line lets the clients refused for overload back in first come, first
// served, instead of by lottery among everyone's retries.
//
// Under an overload that lasts, admission refuses most requests, and each
// client comes back after the retry-after it was given. Were every attempt
// an even chance, some requests would be refused dozens of times in a row
// while others got in at once; worse, a client whose request was just
// served sends its next one while the queue moves up, ahead of everyone
// refused before. So a client refused for overload takes a ticket, and
// tickets are called in order at the rate at which requests were admitted
// lately. [Line.Pass] lets a request on to admission only if its client
// holds no ticket while none is waiting, holds a called ticket, or finds
// nothing queued for the backend (wait zero); every refusal says when the
// client's ticket will be called. Until a rate has been measured over a
// whole span (at first, and after a quiet spell of four spans), the line
// holds nobody back while the wait is within target. The rate is what
// admission let through, spans that admitted nothing included, except
// that a run of such spans (a stalled backend) takes it down to a quarter
// at most. Keeping the rate through those spans let the line call tickets
// faster than a capped backend took them, which undid its order; letting
// it fall to nothing left the line calling tickets at a trickle long
// after a stall.
//
// Tickets are called faster than that rate, half a ticket more for each
// ticket holder who gets in, while those find the expected wait within
// target and no client holding a called ticket has been refused for a
// span. Without that, a line left behind by a burst would take in
// newcomers as fast as it calls tickets, and every request would go
// through it for as long as traffic lasts; and after a stall the line
// would go on calling tickets at the rate it measured while little got in.
//
// A client that leaves keeps its ticket until it is called, which costs
// nothing but the slot it would have taken: if nobody else takes it,
// nothing is queued and the next request gets in.
//
// The wiring, once per request, with wait the queueing delay a request
// admitted now should expect:
//
//	if ok, eta := line.Pass(&ticket, wait, now); !ok {
//		return refuse(eta) // not this client's turn yet
//	}
//	if err := gate.AdmitAt(key, wait, now); errors.Is(err, ErrOverloaded) {
//		return refuse(max(hint, line.Refused(&ticket, now)))
//	}
//	line.Admitted(&ticket, wait, now)
//
// The zero value is not ready: use [NewLine]. A Line is safe for concurrent
// use by multiple goroutines and must not be copied after first use; a
// Ticket belongs to its client, which must not use it from two goroutines
// at once. Every method takes the time explicitly, runs no goroutine and
// does not allocate; retry-after hints are spread with math/rand/v2's
// global source, so they are not reproducible.
type Line struct {
	span   time.Duration // how long admissions are counted for one rate sample
	target time.Duration // while the wait is within this, the line drains

	mu     sync.Mutex
	next   Ticket    // the ticket the next refused client takes; tickets start at 1
	called float64   // tickets up to this one are called
	at     time.Time // when called was last moved on
	rate   float64   // admissions per second, smoothed over the last few spans
	// overshot is when a client holding a called ticket was last refused
	// for overload: tickets were called faster than the backend takes them.
	overshot time.Time
	start    time.Time // start of the span being counted
	count    int       // admissions since start
	// idle is set while spans admit nothing with tickets waiting; floor
	// is the least the rate falls to meanwhile.
	idle  bool
	floor float64
}

// NewLine returns an empty line that measures the admission rate over
// spans of span (the detector's interval suits) and drains while the
// expected wait is within target (the detector's target). Both must be
// positive; otherwise the error wraps [ErrConfig].
func NewLine(target, span time.Duration) (*Line, error) {
	if target <= 0 || span <= 0 {
		return nil, fmt.Errorf("%w: line target %v and span %v must be positive", ErrConfig, target, span)
	}
	return &Line{span: span, target: target, next: 1}, nil
}

// Pass reports whether a request of the client holding *t may go on to
// admission at now, given the queueing delay wait that admission expects.
// It may if nobody waits and the client holds no ticket, if its ticket is
// called, if wait is zero (nothing is queued for the backend), or if no
// rate has been measured yet and wait is within target. When it may not,
// the client holds a ticket (a new one at the back if it held none), and
// retryAfter is how long until the ticket is called, up to ten spans and
// spread by up to a tenth more so that clients told together do not all
// come back at once; zero when no rate has been measured yet.
func (l *Line) Pass(t *Ticket, wait time.Duration, now time.Time) (ok bool, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.advance(now)
	n := *t
	if n == 0 && l.empty() || n != 0 && float64(n) <= l.called || wait == 0 || l.rate == 0 && wait <= l.target {
		return true, 0
	}
	if n == 0 {
		n = l.issue(t)
	}
	return false, l.eta(n)
}

// Refused records that admission refused a request of the client holding
// *t for overload at now: the client takes a ticket if it held none. It
// returns how long until the ticket is called (as [Line.Pass] does), zero
// when it is called already or that is not known yet.
func (l *Line) Refused(t *Ticket, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.advance(now)
	n := *t
	if n == 0 {
		n = l.issue(t)
	}
	if float64(n) <= l.called {
		l.overshot = now
		return 0
	}
	return l.eta(n)
}

// Admitted counts a request admitted at now, when admission expected the
// queueing delay wait, and takes the client's ticket back.
func (l *Line) Admitted(t *Ticket, wait time.Duration, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.count++
	l.advance(now)
	if *t != 0 && wait <= l.target && now.Sub(l.overshot) >= l.span {
		// A called client got in, the backend keeps up, and no called
		// client was refused lately: call half a ticket more than the
		// rate would, so that the line drains.
		l.called = min(l.called+drainStep, float64(l.next-1))
	}
	*t = 0
}

// maxWaitSpans caps the retry-after the line tells a client, in spans. A
// client further back comes back then and is told again; the rate may
// have been measured while the backend was stalled.
const maxWaitSpans = 10

// drainStep is how many tickets more are called for each ticket holder
// admitted while the backend keeps up.
const drainStep = 0.5

// Waiting returns how many tickets are not called yet at now.
func (l *Line) Waiting(now time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.advance(now)
	return int(float64(l.next-1) - math.Floor(l.called))
}

// empty reports whether every ticket issued has been called. l.mu is held.
func (l *Line) empty() bool { return l.called >= float64(l.next-1) }

// issue hands out the next ticket. l.mu is held.
func (l *Line) issue(t *Ticket) Ticket {
	// called never runs past the last ticket issued, so on an empty line
	// the new ticket is the next to be called.
	*t = l.next
	l.next++
	return *t
}

// advance calls the tickets that the rate has reached since the last call
// and folds a span that ended by now into the rate. l.mu is held.
func (l *Line) advance(now time.Time) {
	if l.start.IsZero() {
		l.start, l.at = now, now
		return
	}
	if d := now.Sub(l.at); d > 0 {
		l.called = min(l.called+l.rate*d.Seconds(), float64(l.next-1))
		l.at = now
	}
	d := now.Sub(l.start)
	switch {
	case d < l.span:
		return
	case d >= 4*l.span:
		// A quiet spell: the old rate says nothing, and a sample over
		// the spell would say next to nothing. Measure afresh.
		l.rate = 0
	case l.count == 0 && !l.empty():
		// Nothing got in while tickets waited: the backend stalled, or
		// admission refused everyone for a span. Fold the span in as
		// usual, but a run of such spans takes the rate down to a quarter
		// of what it was before the run at most, so that the line does not
		// call tickets at next to nothing once the backend serves again.
		if !l.idle {
			l.idle, l.floor = true, l.rate/4
		}
		l.rate = max(l.rate*3/4, l.floor)
		l.start, l.count = now, 0
		return
	case l.rate == 0:
		l.rate = float64(l.count) / d.Seconds()
	default:
		l.rate += (float64(l.count)/d.Seconds() - l.rate) / 4
	}
	l.idle = false
	l.start, l.count = now, 0
}

// eta returns how long until ticket n is called, spread by up to a tenth;
// zero when it is called or no rate has been measured yet. l.mu is held.
func (l *Line) eta(n Ticket) time.Duration {
	ahead := float64(n) - l.called
	if ahead <= 0 || l.rate <= 0 {
		return 0
	}
	d := time.Duration(math.Min(ahead/l.rate, maxWaitSpans*l.span.Seconds()) * float64(time.Second))
	return d + rand.N(d/10+1)
}
