package backpressure

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxKeys is the number of per-key token buckets a [Gate] holds at
// most when GateConfig.MaxKeys is zero.
const DefaultMaxKeys = 1 << 16

// GateConfig holds a [Gate]'s token-bucket settings. The zero value limits
// nothing: the gate then sheds only on overload.
type GateConfig struct {
	// GlobalRate is the sustained number of admissions per second across
	// all keys. Zero means no global limit (unlike rate.Limit zero, which
	// allows nothing); rate.Inf also means no limit.
	GlobalRate rate.Limit
	// GlobalBurst is how many admissions the global bucket allows at once.
	// Zero means one second's worth of GlobalRate, at least 1.
	GlobalBurst int

	// KeyRate is the sustained number of admissions per second for each
	// key (a session or a tenant). Zero means no per-key limit.
	KeyRate rate.Limit
	// KeyBurst is how many admissions one key's bucket allows at once. Zero
	// means one second's worth of KeyRate, at least 1.
	KeyBurst int
	// MaxKeys bounds how many per-key buckets the gate holds. A key's
	// bucket is dropped once it has been idle long enough to refill
	// (KeyBurst/KeyRate), which loses nothing; if MaxKeys keys are still
	// active, the least recently used is dropped and starts over with a
	// full bucket. Zero means DefaultMaxKeys. The bound is applied per
	// shard, so the gate may hold up to MaxKeys rounded up to a multiple
	// of 32.
	MaxKeys int
}

// Gate decides whether to admit a request. It composes a [Detector] fed
// with the host's queue sojourn times, which sheds while a standing queue
// persists, with a global token bucket and per-key token buckets from
// golang.org/x/time/rate. A refusal is a [*Rejection] carrying
// [ErrOverloaded] or [ErrRateLimited] and a retry-after hint.
//
// A Gate runs no goroutine; idle per-key buckets are evicted as the gate is
// used. The zero value is not usable; call [NewGate]. A Gate is safe for
// concurrent use by multiple goroutines.
type Gate struct {
	det    *Detector
	global *rate.Limiter // nil: no global limit
	keys   *keyTable     // nil: no per-key limit

	admitted      atomic.Uint64
	overloaded    atomic.Uint64
	limitedKey    atomic.Uint64
	limitedGlobal atomic.Uint64
}

// GateStats is a snapshot of a [Gate]'s counters, for metrics.
type GateStats struct {
	// Admitted counts requests admitted.
	Admitted uint64
	// Overloaded counts requests shed with ErrOverloaded.
	Overloaded uint64
	// RateLimitedKey and RateLimitedGlobal count requests shed with
	// ErrRateLimited by the per-key and the global bucket.
	RateLimitedKey, RateLimitedGlobal uint64
	// Standing reports whether the detector was in its dropping state
	// (overloaded) at its last observation.
	Standing bool
	// Keys is the number of per-key buckets held.
	Keys int
}

// NewGate returns a Gate that sheds when d reports a standing queue and
// otherwise applies the token buckets cfg describes. d may be shared with
// other gates or observed elsewhere by the host. Negative rates, bursts or
// MaxKeys return an error wrapping [ErrConfig].
func NewGate(d *Detector, cfg GateConfig) (*Gate, error) {
	if d == nil {
		return nil, fmt.Errorf("%w: gate needs a detector", ErrConfig)
	}
	if cfg.GlobalRate < 0 || cfg.GlobalBurst < 0 || cfg.KeyRate < 0 || cfg.KeyBurst < 0 || cfg.MaxKeys < 0 {
		return nil, fmt.Errorf("%w: negative gate setting in %+v", ErrConfig, cfg)
	}
	g := &Gate{det: d}
	if cfg.GlobalRate > 0 && cfg.GlobalRate != rate.Inf {
		g.global = rate.NewLimiter(cfg.GlobalRate, burstOr(cfg.GlobalBurst, cfg.GlobalRate))
	}
	if cfg.KeyRate > 0 && cfg.KeyRate != rate.Inf {
		maxKeys := cfg.MaxKeys
		if maxKeys == 0 {
			maxKeys = DefaultMaxKeys
		}
		g.keys = newKeyTable(cfg.KeyRate, burstOr(cfg.KeyBurst, cfg.KeyRate), maxKeys)
	}
	return g, nil
}

// burstOr returns burst, or one second's worth of limit if burst is zero.
func burstOr(burst int, limit rate.Limit) int {
	if burst > 0 {
		return burst
	}
	return int(max(1, math.Min(math.Ceil(float64(limit)), math.MaxInt32)))
}

// Admit is AdmitAt with the current time.
func (g *Gate) Admit(key string, sojourn time.Duration) error {
	return g.AdmitAt(key, sojourn, time.Now())
}

// AdmitAt decides at now whether to admit a request for key whose queueing
// delay so far is sojourn (for a chat message: the time it sat in its
// session's queue plus the wait for the model). It returns nil to admit,
// or a [*Rejection]:
//
//   - the sojourn is always observed by the detector first; if it reports a
//     standing queue, the request is shed with ErrOverloaded and a
//     RetryAfter of the detector's interval, and no token is taken;
//   - otherwise the request takes a token from key's bucket and from the
//     global bucket; if either is empty, any token already taken is put
//     back and the request is shed with ErrRateLimited and a RetryAfter of
//     the time until that bucket will hold a token.
//
// key is ignored when the gate has no per-key limit.
func (g *Gate) AdmitAt(key string, sojourn time.Duration, now time.Time) error {
	if g.det.ObserveAt(sojourn, now).Overloaded() {
		g.overloaded.Add(1)
		return &Rejection{Reason: ErrOverloaded, RetryAfter: g.det.Interval()}
	}
	var keyRes *rate.Reservation
	if g.keys != nil {
		keyRes = g.keys.limiter(key, now).ReserveN(now, 1)
		if wait := keyRes.DelayFrom(now); wait > 0 {
			keyRes.CancelAt(now)
			g.limitedKey.Add(1)
			return &Rejection{Reason: ErrRateLimited, RetryAfter: wait, PerKey: true}
		}
	}
	if g.global != nil {
		res := g.global.ReserveN(now, 1)
		if wait := res.DelayFrom(now); wait > 0 {
			res.CancelAt(now)
			if keyRes != nil {
				keyRes.CancelAt(now)
			}
			g.limitedGlobal.Add(1)
			return &Rejection{Reason: ErrRateLimited, RetryAfter: wait}
		}
	}
	g.admitted.Add(1)
	return nil
}

// Detector returns the detector the gate observes sojourn times with.
func (g *Gate) Detector() *Detector { return g.det }

// Stats returns a snapshot of the gate's counters. The counters are read
// one by one, so a snapshot taken under load may be off by the requests
// in flight.
func (g *Gate) Stats() GateStats {
	s := GateStats{
		Admitted:          g.admitted.Load(),
		Overloaded:        g.overloaded.Load(),
		RateLimitedKey:    g.limitedKey.Load(),
		RateLimitedGlobal: g.limitedGlobal.Load(),
		Standing:          g.det.Overloaded(),
	}
	if g.keys != nil {
		s.Keys = g.keys.len()
	}
	return s
}
