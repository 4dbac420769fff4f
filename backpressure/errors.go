package backpressure

import (
	"errors"
	"fmt"
	"time"

	"github.com/sony/gobreaker/v2"
)

var (
	// ErrConfig is wrapped by the errors NewDetector, NewGate, NewGuard and
	// NewLine return for invalid settings.
	ErrConfig = errors.New("backpressure: invalid config")

	// ErrOverloaded is the [Rejection.Reason] when the gate's detector
	// reports a standing queue.
	ErrOverloaded = errors.New("backpressure: overloaded")

	// ErrRateLimited is the [Rejection.Reason] when a token bucket, global
	// or per key, has no token for the request.
	ErrRateLimited = errors.New("backpressure: rate limited")

	// ErrOpen is returned, wrapped, by [Guard.Call] when the circuit breaker
	// refuses a call: it is open, or half-open with its probes in flight.
	ErrOpen = errors.New("backpressure: circuit breaker open")
)

// Breaker refusals, translated from gobreaker's unprefixed sentinels once
// so that refusing a call does not allocate.
var (
	errOpenState       = fmt.Errorf("%w (%w)", ErrOpen, gobreaker.ErrOpenState)
	errTooManyRequests = fmt.Errorf("%w (half-open: %w)", ErrOpen, gobreaker.ErrTooManyRequests)
)

// Rejection is the error [Gate.AdmitAt] returns when it refuses a request.
// Its Reason is [ErrOverloaded] or [ErrRateLimited], so errors.Is matches
// those sentinels; errors.AsType[*Rejection] yields the retry-after hint for
// a Retry-After header or an error frame.
type Rejection struct {
	// Reason is ErrOverloaded or ErrRateLimited.
	Reason error
	// RetryAfter is how long the client should wait before trying again:
	// for a rate limit, the time until the bucket holds a token; for
	// overload, the detector's interval. It is never negative.
	RetryAfter time.Duration
	// PerKey is true when the request's own key ran out of tokens, false
	// when the global bucket did or the gate is overloaded.
	PerKey bool
}

// Error returns the reason and the hint, for example
// "backpressure: rate limited (per key), retry after 250ms".
func (r *Rejection) Error() string {
	scope := ""
	if r.PerKey {
		scope = " (per key)"
	}
	return fmt.Sprintf("%v%s, retry after %v", r.Reason, scope, r.RetryAfter)
}

// Unwrap returns r.Reason.
func (r *Rejection) Unwrap() error { return r.Reason }
