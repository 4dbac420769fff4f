package backpressure

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Defaults for the zero fields of a [GuardConfig].
const (
	DefaultMaxAttempts = 3
	DefaultBaseBackoff = 100 * time.Millisecond
	DefaultMaxBackoff  = 5 * time.Second
	DefaultRetryRatio  = 0.1
	DefaultRetryBurst  = 10
	DefaultTripAfter   = 5
	DefaultOpenFor     = 10 * time.Second
)

// GuardConfig holds a [Guard]'s settings. The zero value is usable: three
// attempts, backoff from 100 ms up to 5 s, retries capped at 10% of calls,
// a breaker that opens after 5 consecutive failures for 10 s, no per-attempt
// timeout and no fallback.
type GuardConfig[T any] struct {
	// AttemptTimeout bounds each attempt: the call's context is cancelled
	// after it, and the attempt counts as a failure. Zero means attempts
	// are bounded only by the caller's context.
	AttemptTimeout time.Duration
	// MaxAttempts is the most attempts one call makes, the first included;
	// 1 disables retries. Zero means DefaultMaxAttempts.
	MaxAttempts int
	// BaseBackoff and MaxBackoff shape the wait before retry n (n >= 1): a
	// uniformly random duration in [0, min(MaxBackoff, BaseBackoff*2^(n-1))]
	// ("full jitter"), so clients that failed together do not retry
	// together. Zero means DefaultBaseBackoff and DefaultMaxBackoff.
	BaseBackoff, MaxBackoff time.Duration
	// RetryRatio and RetryBurst form the retry budget: over any stretch of
	// calls, retries never exceed RetryRatio times the calls started plus
	// RetryBurst, so a failing backend sees at most that much extra load
	// instead of a retry storm. A retry the budget refuses ends the call
	// with the last error. Zero means DefaultRetryRatio (0.1) and
	// DefaultRetryBurst (10). RetryRatio must not exceed 1.
	RetryRatio float64
	RetryBurst int
	// TripAfter is how many consecutive failed attempts open the breaker.
	// Zero means DefaultTripAfter.
	TripAfter uint32
	// OpenFor is how long the breaker stays open before it lets probes
	// through (half-open). Zero means DefaultOpenFor.
	OpenFor time.Duration
	// HalfOpenProbes is how many attempts the half-open breaker lets
	// through, and how many must succeed in a row to close it. Zero means 1.
	HalfOpenProbes uint32
	// Permanent reports errors that retrying cannot fix, such as a
	// malformed request. They end the call at once and count as breaker
	// successes, since the backend answered. It is asked once per failed
	// attempt, on the calling goroutine, holding no lock; it should be
	// quick. Nil means every error may be retried.
	Permanent func(err error) bool
	// Fallback, if set, answers a call that the breaker refuses (see
	// ErrOpen); err is that refusal. Its result is returned with
	// Result.Fallback set so the host can mark it. It runs on the calling
	// goroutine, holds no lock of the Guard, may block (honouring ctx) and
	// may call the Guard. Nil means a refused call returns the error.
	Fallback func(ctx context.Context, err error) (T, error)
}

// Result is what [Guard.Call] returns.
type Result[T any] struct {
	// Value is the backend's answer, or the fallback's when Fallback is set.
	Value T
	// Fallback is true when Value came from GuardConfig.Fallback because
	// the breaker refused the call, not from the backend.
	Fallback bool
	// Attempts is how many times the backend was called.
	Attempts int
}

// BreakerState is the state of a [Guard]'s circuit breaker.
type BreakerState uint8

// The breaker states.
const (
	// Closed lets every attempt through.
	Closed BreakerState = iota
	// HalfOpen lets GuardConfig.HalfOpenProbes attempts through to test
	// the backend.
	HalfOpen
	// Open refuses every attempt until GuardConfig.OpenFor has passed.
	Open
)

// String returns "closed", "half-open" or "open".
func (s BreakerState) String() string {
	switch s {
	case Closed:
		return "closed"
	case HalfOpen:
		return "half-open"
	case Open:
		return "open"
	}
	return fmt.Sprintf("BreakerState(%d)", uint8(s))
}

// GuardStats is a snapshot of a [Guard]'s counters, for metrics.
type GuardStats struct {
	// Calls counts calls to Guard.Call.
	Calls uint64
	// Succeeded counts calls answered by the backend without error;
	// Failed counts calls that returned an error, fallbacks excluded.
	Succeeded, Failed uint64
	// Retries counts attempts after the first; RetriesDenied counts
	// retries the budget refused.
	Retries, RetriesDenied uint64
	// Refused counts attempts the breaker refused; Fallbacks counts calls
	// answered by the fallback.
	Refused, Fallbacks uint64
	// State is the breaker's state now.
	State BreakerState
	// Opened, HalfOpened and Reclosed count the breaker's transitions
	// into each state.
	Opened, HalfOpened, Reclosed uint64
}

// Guard calls a model backend through a circuit breaker
// (github.com/sony/gobreaker/v2), with an optional per-attempt timeout,
// retries with exponential backoff and full jitter under a retry budget,
// and an optional fallback answer while the breaker is open. An attempt
// that fails because the caller's context is done is not counted against
// the backend.
//
// A Guard runs no goroutine of its own. The zero value is not usable; call
// [NewGuard]. A Guard is safe for concurrent use by multiple goroutines.
type Guard[T any] struct {
	cb        *gobreaker.CircuitBreaker[T]
	timeout   time.Duration
	attempts  int
	base, cap time.Duration
	permanent func(error) bool
	fallback  func(context.Context, error) (T, error)
	budget    retryBudget
	jitter    func(limit time.Duration) time.Duration // tests replace it

	calls, succeeded, failed, retries, denied, refused, fallbacks atomic.Uint64
	opened, halfOpened, reclosed                                  atomic.Uint64
}

// NewGuard returns a Guard configured by cfg. Negative durations or counts,
// a RetryRatio above 1, or BaseBackoff above MaxBackoff return an error
// wrapping [ErrConfig].
func NewGuard[T any](cfg GuardConfig[T]) (*Guard[T], error) {
	switch {
	case cfg.AttemptTimeout < 0 || cfg.BaseBackoff < 0 || cfg.MaxBackoff < 0 || cfg.OpenFor < 0:
		return nil, fmt.Errorf("%w: negative guard duration", ErrConfig)
	case cfg.MaxAttempts < 0 || cfg.RetryBurst < 0:
		return nil, fmt.Errorf("%w: negative guard count", ErrConfig)
	case !(cfg.RetryRatio >= 0 && cfg.RetryRatio <= 1):
		return nil, fmt.Errorf("%w: guard retry ratio %v outside [0, 1]", ErrConfig, cfg.RetryRatio)
	}
	g := &Guard[T]{
		timeout:   cfg.AttemptTimeout,
		attempts:  cmp.Or(cfg.MaxAttempts, DefaultMaxAttempts),
		base:      cmp.Or(cfg.BaseBackoff, DefaultBaseBackoff),
		cap:       cmp.Or(cfg.MaxBackoff, DefaultMaxBackoff),
		permanent: cfg.Permanent,
		fallback:  cfg.Fallback,
		jitter:    fullJitter,
	}
	if g.base > g.cap {
		return nil, fmt.Errorf("%w: guard base backoff %v above max backoff %v", ErrConfig, g.base, g.cap)
	}
	g.budget.init(cmp.Or(cfg.RetryRatio, DefaultRetryRatio), cmp.Or(cfg.RetryBurst, DefaultRetryBurst))
	tripAfter := cmp.Or(cfg.TripAfter, DefaultTripAfter)
	g.cb = gobreaker.NewCircuitBreaker[T](gobreaker.Settings{
		MaxRequests: cfg.HalfOpenProbes,
		Timeout:     cmp.Or(cfg.OpenFor, DefaultOpenFor),
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= tripAfter },
		// gobreaker calls this under its own lock; it only counts.
		OnStateChange: func(_ string, _, to gobreaker.State) {
			switch to {
			case gobreaker.StateOpen:
				g.opened.Add(1)
			case gobreaker.StateHalfOpen:
				g.halfOpened.Add(1)
			case gobreaker.StateClosed:
				g.reclosed.Add(1)
			}
		},
		IsSuccessful: func(err error) bool {
			_, permanent := err.(permanentError)
			return err == nil || permanent
		},
		IsExcluded: func(err error) bool {
			_, gone := err.(callerDone)
			return gone
		},
	})
	return g, nil
}

// callerDone and permanentError mark an attempt's error for the breaker;
// attempt strips them again.
type callerDone struct{ err error }

func (e callerDone) Error() string { return e.err.Error() }

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }

// Call calls the backend through the breaker and returns its answer.
//
// Each attempt runs call on the calling goroutine with a context derived
// from ctx (bounded by AttemptTimeout if set). A failed attempt is retried
// after a jittered backoff while attempts remain, the error is not
// Permanent, the retry budget allows and ctx is not done; the error
// returned then wraps the last attempt's. If the breaker refuses an
// attempt, Call returns the Fallback's answer with Result.Fallback set, or,
// without a Fallback, an error wrapping [ErrOpen]. If ctx is done, Call
// returns promptly with an error wrapping ctx.Err(), and an attempt cut
// short by it is not counted as a backend failure.
func (g *Guard[T]) Call(ctx context.Context, call func(ctx context.Context) (T, error)) (Result[T], error) {
	g.calls.Add(1)
	g.budget.deposit()
	var res Result[T]
	for {
		if err := ctx.Err(); err != nil {
			return g.fail(res, abandon(ctx, res.Attempts, nil))
		}
		v, out, err := g.attempt(ctx, call)
		if out == refused {
			g.refused.Add(1)
			if g.fallback == nil {
				return g.fail(res, err)
			}
			g.fallbacks.Add(1)
			res.Fallback = true
			res.Value, err = g.fallback(ctx, err)
			return res, err
		}
		res.Attempts++
		switch {
		case out == succeeded:
			g.succeeded.Add(1)
			res.Value = v
			return res, nil
		case out == abandoned:
			return g.fail(res, abandon(ctx, res.Attempts, err))
		case out == permanent:
			return g.fail(res, err)
		case res.Attempts >= g.attempts:
			return g.fail(res, fmt.Errorf("backpressure: attempt %d of %d failed: %w", res.Attempts, g.attempts, err))
		case !g.budget.withdraw():
			g.denied.Add(1)
			return g.fail(res, fmt.Errorf("backpressure: retry budget exhausted (attempts: %d): %w", res.Attempts, err))
		}
		if sleep(ctx, g.jitter(g.backoff(res.Attempts))) != nil {
			return g.fail(res, abandon(ctx, res.Attempts, err))
		}
		g.retries.Add(1)
	}
}

// abandon returns the error for a call whose context is done: it wraps
// ctx.Err() and, if it says more, the last attempt's error.
func abandon(ctx context.Context, attempts int, last error) error {
	cerr := ctx.Err()
	if last == nil || errors.Is(last, cerr) {
		return fmt.Errorf("backpressure: call abandoned (attempts: %d): %w", attempts, cerr)
	}
	return fmt.Errorf("backpressure: call abandoned (attempts: %d): %w (last attempt: %w)", attempts, cerr, last)
}

// outcome classifies one attempt.
type outcome uint8

const (
	succeeded outcome = iota
	failed            // the backend failed: retry if allowed
	permanent         // the backend answered with a Permanent error
	abandoned         // the caller's context ended the attempt
	refused           // the breaker refused the attempt
)

// attempt makes one attempt through the breaker. For a refusal, err is the
// translated ErrOpen error; otherwise it is call's own error.
func (g *Guard[T]) attempt(ctx context.Context, call func(context.Context) (T, error)) (T, outcome, error) {
	v, err := g.cb.Execute(func() (T, error) {
		actx := ctx
		if g.timeout > 0 {
			var cancel context.CancelFunc
			actx, cancel = context.WithTimeout(ctx, g.timeout)
			defer cancel()
		}
		v, err := call(actx)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			err = callerDone{err} // excluded from the breaker's counts
		case g.permanent != nil && g.permanent(err):
			err = permanentError{err} // counted as a success
		}
		return v, err
	})
	switch e := err.(type) {
	case nil:
		return v, succeeded, nil
	case callerDone:
		return v, abandoned, e.err
	case permanentError:
		return v, permanent, e.err
	}
	switch err {
	case gobreaker.ErrOpenState:
		return v, refused, errOpenState
	case gobreaker.ErrTooManyRequests:
		return v, refused, errTooManyRequests
	}
	return v, failed, err
}

// fail counts a failed call and returns res with err.
func (g *Guard[T]) fail(res Result[T], err error) (Result[T], error) {
	g.failed.Add(1)
	return res, err
}

// backoff returns the cap on the wait before retry n: BaseBackoff*2^(n-1),
// at most MaxBackoff.
func (g *Guard[T]) backoff(n int) time.Duration {
	d := g.base
	for i := 1; i < n && d < g.cap; i++ {
		d *= 2
	}
	return min(d, g.cap)
}

// fullJitter returns a uniformly random duration in [0, limit].
func fullJitter(limit time.Duration) time.Duration {
	return rand.N(limit + 1)
}

// sleep waits for d or until ctx is done, whichever is first, and returns
// ctx.Err() in the latter case.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// State returns the breaker's state now.
func (g *Guard[T]) State() BreakerState {
	return breakerState(g.cb.State())
}

func breakerState(s gobreaker.State) BreakerState {
	switch s {
	case gobreaker.StateOpen:
		return Open
	case gobreaker.StateHalfOpen:
		return HalfOpen
	}
	return Closed
}

// Stats returns a snapshot of the guard's counters. The counters are read
// one by one, so a snapshot taken under load may be off by the calls in
// flight.
func (g *Guard[T]) Stats() GuardStats {
	return GuardStats{
		Calls:         g.calls.Load(),
		Succeeded:     g.succeeded.Load(),
		Failed:        g.failed.Load(),
		Retries:       g.retries.Load(),
		RetriesDenied: g.denied.Load(),
		Refused:       g.refused.Load(),
		Fallbacks:     g.fallbacks.Load(),
		State:         g.State(),
		Opened:        g.opened.Load(),
		HalfOpened:    g.halfOpened.Load(),
		Reclosed:      g.reclosed.Load(),
	}
}

// retryBudget is a token bucket counted in calls, not time: each call
// deposits ratio tokens, each retry withdraws one, and the balance is
// capped at (and starts at) burst tokens. Retries therefore never exceed
// ratio*calls + burst. Tokens are held in millionths.
type retryBudget struct {
	perCall int64
	max     int64
	balance atomic.Int64
}

const budgetUnit = 1_000_000

func (b *retryBudget) init(ratio float64, burst int) {
	b.perCall = int64(ratio * budgetUnit)
	b.max = int64(burst) * budgetUnit
	b.balance.Store(b.max)
}

func (b *retryBudget) deposit() {
	for {
		old := b.balance.Load()
		if old >= b.max {
			return
		}
		if b.balance.CompareAndSwap(old, min(old+b.perCall, b.max)) {
			return
		}
	}
}

func (b *retryBudget) withdraw() bool {
	for {
		old := b.balance.Load()
		if old < budgetUnit {
			return false
		}
		if b.balance.CompareAndSwap(old, old-budgetUnit) {
			return true
		}
	}
}
