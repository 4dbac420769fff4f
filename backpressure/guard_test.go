package backpressure

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sony/gobreaker/v2"
)

var errBackend = errors.New("model: backend failed")

// backend is a scripted model backend: call i (from 0) fails with
// script[i] if set, and it records when it was called.
type backend struct {
	mu     sync.Mutex
	script []error
	calls  []time.Time
	delay  time.Duration // each call takes this long, or until ctx is done
}

func (b *backend) call(ctx context.Context) (string, error) {
	b.mu.Lock()
	i := len(b.calls)
	b.calls = append(b.calls, time.Now())
	var err error
	if i < len(b.script) {
		err = b.script[i]
	}
	b.mu.Unlock()
	if b.delay > 0 {
		select {
		case <-time.After(b.delay):
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("answer %d", i), nil
}

func (b *backend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.calls)
}

// gaps returns the time between consecutive calls.
func (b *backend) gaps() []time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	var gs []time.Duration
	for i := 1; i < len(b.calls); i++ {
		gs = append(gs, b.calls[i].Sub(b.calls[i-1]))
	}
	return gs
}

// newTestGuard returns a guard whose jitter always waits the full backoff,
// so virtual-time waits are exact.
func newTestGuard(t *testing.T, cfg GuardConfig[string]) *Guard[string] {
	t.Helper()
	g, err := NewGuard(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g.jitter = func(limit time.Duration) time.Duration { return limit }
	return g
}

func TestGuardRetries(t *testing.T) {
	tests := []struct {
		name     string
		cfg      GuardConfig[string]
		script   []error
		want     string // answer, or "" for an error
		wantErr  error
		attempts int
		gaps     []time.Duration
	}{
		{
			name: "first attempt succeeds", script: nil,
			want: "answer 0", attempts: 1,
		},
		{
			name: "two failures then success", script: []error{errBackend, errBackend},
			want: "answer 2", attempts: 3, gaps: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond},
		},
		{
			name: "attempts exhausted", script: []error{errBackend, errBackend, errBackend},
			wantErr: errBackend, attempts: 3, gaps: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond},
		},
		{
			name:   "backoff doubles up to its cap",
			cfg:    GuardConfig[string]{MaxAttempts: 6, BaseBackoff: time.Second, MaxBackoff: 5 * time.Second, TripAfter: 100},
			script: []error{errBackend, errBackend, errBackend, errBackend, errBackend},
			want:   "answer 5", attempts: 6,
			gaps: []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second},
		},
		{
			name:    "permanent error is not retried",
			cfg:     GuardConfig[string]{Permanent: func(err error) bool { return errors.Is(err, errBackend) }},
			script:  []error{errBackend},
			wantErr: errBackend, attempts: 1,
		},
		{
			name:    "one attempt disables retries",
			cfg:     GuardConfig[string]{MaxAttempts: 1},
			script:  []error{errBackend},
			wantErr: errBackend, attempts: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newTestGuard(t, tt.cfg)
				b := &backend{script: tt.script}
				res, err := g.Call(t.Context(), b.call)
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("Call() error = %v, want %v", err, tt.wantErr)
					}
				} else if err != nil || res.Value != tt.want {
					t.Fatalf("Call() = %+v, %v, want %q", res, err, tt.want)
				}
				if res.Attempts != tt.attempts || b.count() != tt.attempts || res.Fallback {
					t.Errorf("Call() Attempts = %d, backend calls = %d, Fallback = %v; want %d, %d, false", res.Attempts, b.count(), res.Fallback, tt.attempts, tt.attempts)
				}
				if got := b.gaps(); fmt.Sprint(got) != fmt.Sprint(tt.gaps) {
					t.Errorf("gaps between attempts = %v, want %v", got, tt.gaps)
				}
			})
		})
	}
}

// TestGuardFullJitter checks that real backoff waits fall in
// [0, BaseBackoff*2^(n-1)] and are spread over it.
func TestGuardFullJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, err := NewGuard(GuardConfig[string]{MaxAttempts: 3, TripAfter: 1000, RetryBurst: 1000})
		if err != nil {
			t.Fatal(err)
		}
		var first, second []time.Duration
		for range 200 {
			b := &backend{script: []error{errBackend, errBackend}}
			if _, err := g.Call(t.Context(), b.call); err != nil {
				t.Fatal(err)
			}
			gs := b.gaps()
			first, second = append(first, gs[0]), append(second, gs[1])
		}
		for _, c := range []struct {
			waits []time.Duration
			limit time.Duration
		}{{first, 100 * time.Millisecond}, {second, 200 * time.Millisecond}} {
			var low, high int
			for _, w := range c.waits {
				if w < 0 || w > c.limit {
					t.Fatalf("backoff wait %v outside [0, %v]", w, c.limit)
				}
				if w < c.limit/4 {
					low++
				}
				if w > c.limit*3/4 {
					high++
				}
			}
			// Uniform: about 50 of 200 in each quarter; 10 is far below.
			if low < 10 || high < 10 {
				t.Errorf("waits up to %v: %d in the lowest quarter, %d in the highest, want both >= 10 of 200", c.limit, low, high)
			}
		}
	})
}

func TestGuardAttemptTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newTestGuard(t, GuardConfig[string]{AttemptTimeout: time.Second, MaxAttempts: 2, TripAfter: 2})
		b := &backend{delay: time.Hour}
		start := time.Now()
		_, err := g.Call(t.Context(), b.call)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Call() error = %v, want DeadlineExceeded", err)
		}
		// Two attempts of 1 s plus one 100 ms backoff.
		if d := time.Since(start); d != 2100*time.Millisecond {
			t.Errorf("Call took %v, want 2.1s", d)
		}
		// Timeouts are the backend's failures: two of them trip the breaker.
		if s := g.State(); s != Open {
			t.Errorf("State() = %v after two timeouts, want open", s)
		}
	})
}

func TestGuardCallerCancellation(t *testing.T) {
	t.Run("during an attempt", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			g := newTestGuard(t, GuardConfig[string]{TripAfter: 1})
			b := &backend{delay: time.Hour}
			for range 5 {
				ctx, cancel := context.WithTimeout(t.Context(), time.Second)
				_, err := g.Call(ctx, b.call)
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Call() error = %v, want the caller's DeadlineExceeded", err)
				}
			}
			// The caller gave up each time; the backend never failed.
			if s := g.Stats(); s.State != Closed || b.count() != 5 || s.Failed != 5 || s.Retries != 0 {
				t.Errorf("after 5 cancelled calls: Stats() = %+v, backend calls %d; want closed, 5 calls, 5 failed, no retries", s, b.count())
			}
			if c := g.cb.Counts(); c.TotalFailures != 0 || c.TotalExclusions != 5 {
				t.Errorf("breaker counts = %+v, want 0 failures and 5 exclusions", c)
			}
		})
	})
	t.Run("during backoff", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			g := newTestGuard(t, GuardConfig[string]{BaseBackoff: time.Minute, MaxBackoff: time.Minute})
			b := &backend{script: []error{errBackend}}
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			start := time.Now()
			_, err := g.Call(ctx, b.call)
			want := "backpressure: call abandoned (attempts: 1): context deadline exceeded (last attempt: model: backend failed)"
			if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, errBackend) || err.Error() != want {
				t.Fatalf("Call() error = %v, want %q", err, want)
			}
			if d := time.Since(start); d != time.Second || b.count() != 1 {
				t.Errorf("Call returned after %v with %d backend calls, want 1s and 1", d, b.count())
			}
		})
	})
	t.Run("before the call", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			g := newTestGuard(t, GuardConfig[string]{})
			b := &backend{}
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			if _, err := g.Call(ctx, b.call); !errors.Is(err, context.Canceled) || b.count() != 0 {
				t.Errorf("Call(cancelled ctx) = %v with %d backend calls, want Canceled and none", err, b.count())
			}
		})
	})
}

func TestGuardBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newTestGuard(t, GuardConfig[string]{MaxAttempts: 1, TripAfter: 3, OpenFor: 10 * time.Second})
		b := &backend{script: []error{errBackend, errBackend, errBackend}}
		for range 3 {
			if _, err := g.Call(t.Context(), b.call); !errors.Is(err, errBackend) {
				t.Fatalf("Call() error = %v, want the backend's", err)
			}
		}
		_, err := g.Call(t.Context(), b.call)
		if !errors.Is(err, ErrOpen) || err.Error() != "backpressure: circuit breaker open (circuit breaker is open)" {
			t.Fatalf("Call() on an open breaker = %v, want ErrOpen", err)
		}
		if b.count() != 3 {
			t.Errorf("backend calls = %d, want 3: the open breaker must not call it", b.count())
		}

		time.Sleep(10*time.Second - time.Millisecond)
		if s := g.State(); s != Open {
			t.Fatalf("State() = %v just before OpenFor has passed, want open", s)
		}
		time.Sleep(2 * time.Millisecond)
		if s := g.State(); s != HalfOpen {
			t.Fatalf("State() = %v after OpenFor, want half-open", s)
		}
		// One probe in flight: a second call is refused meanwhile.
		b.delay = time.Second
		probe := make(chan error)
		go func() {
			_, err := g.Call(t.Context(), b.call)
			probe <- err
		}()
		synctest.Wait()
		if _, err := g.Call(t.Context(), b.call); !errors.Is(err, ErrOpen) || !errors.Is(err, gobreaker.ErrTooManyRequests) {
			t.Errorf("Call() during the half-open probe = %v, want ErrOpen (too many requests)", err)
		}
		if err := <-probe; err != nil {
			t.Fatalf("probe Call() = %v, want success", err)
		}
		want := GuardStats{Calls: 6, Succeeded: 1, Failed: 5, Refused: 2, State: Closed, Opened: 1, HalfOpened: 1, Reclosed: 1}
		if s := g.Stats(); s != want {
			t.Errorf("Stats() = %+v, want %+v", s, want)
		}
	})
}

// TestGuardPermanent checks that a Permanent error is returned at once,
// asks Permanent once, and counts as a success for the breaker: the
// backend answered.
func TestGuardPermanent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		asked := 0
		g := newTestGuard(t, GuardConfig[string]{TripAfter: 1, Permanent: func(err error) bool {
			asked++
			return errors.Is(err, errBackend)
		}})
		b := &backend{script: []error{errBackend, errBackend, errBackend}}
		for i := range 3 {
			res, err := g.Call(t.Context(), b.call)
			if err != errBackend || res.Attempts != 1 {
				t.Fatalf("call %d: Call() = %+v, %v, want the backend's error unwrapped after 1 attempt", i, res, err)
			}
		}
		if s := g.Stats(); s.State != Closed || s.Opened != 0 || s.Retries != 0 || asked != 3 {
			t.Errorf("Stats() = %+v, Permanent asked %d times; want closed, never opened, no retries, 3 asks", s, asked)
		}
	})
}

func TestGuardFallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var fallbackErr error
		g := newTestGuard(t, GuardConfig[string]{
			MaxAttempts: 1, TripAfter: 1,
			Fallback: func(ctx context.Context, err error) (string, error) {
				fallbackErr = err
				return "the assistant is busy, please retry", nil
			},
		})
		b := &backend{script: []error{errBackend}}
		if res, err := g.Call(t.Context(), b.call); !errors.Is(err, errBackend) || res.Fallback {
			t.Fatalf("failing Call() = %+v, %v, want the backend's error and no fallback", res, err)
		}
		res, err := g.Call(t.Context(), b.call)
		if err != nil || !res.Fallback || res.Value != "the assistant is busy, please retry" || res.Attempts != 0 {
			t.Fatalf("Call() on an open breaker = %+v, %v, want the fallback answer marked Fallback, 0 attempts", res, err)
		}
		if !errors.Is(fallbackErr, ErrOpen) {
			t.Errorf("fallback got err %v, want ErrOpen", fallbackErr)
		}
		if s := g.Stats(); s.Fallbacks != 1 || s.Refused != 1 || s.Failed != 1 {
			t.Errorf("Stats() = %+v, want 1 fallback, 1 refused, 1 failed", s)
		}
	})
}

// TestGuardRetryBudget checks that retries never exceed RetryRatio of the
// calls plus RetryBurst against a backend that always fails.
func TestGuardRetryBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newTestGuard(t, GuardConfig[string]{MaxAttempts: 5, RetryRatio: 0.1, RetryBurst: 2, TripAfter: 1 << 30})
		failing := func(context.Context) (string, error) { return "", errBackend }
		const calls = 200
		for i := range calls {
			if _, err := g.Call(t.Context(), failing); !errors.Is(err, errBackend) {
				t.Fatalf("call %d: error = %v, want the backend's", i, err)
			}
			s := g.Stats()
			if limit := 0.1*float64(i+1) + 2; float64(s.Retries) > limit {
				t.Fatalf("after %d calls: %d retries, want <= %v", i+1, s.Retries, limit)
			}
		}
		s := g.Stats()
		// The budget refills by 0.1 per call: nearly all of it is used.
		if s.Retries < 0.1*calls || s.RetriesDenied == 0 {
			t.Errorf("Stats() = %+v, want about %d retries and some denied", s, calls/10+2)
		}
	})
}

// TestGuardConcurrent runs many callers at once against a flaky backend
// (run with -race) and checks that every call is accounted for once.
func TestGuardConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newTestGuard(t, GuardConfig[string]{
			TripAfter: 3, OpenFor: 500 * time.Millisecond, AttemptTimeout: 50 * time.Millisecond,
			Fallback: func(context.Context, error) (string, error) { return "fallback", nil },
		})
		var n sync.Mutex
		i := 0
		flaky := func(ctx context.Context) (string, error) {
			n.Lock()
			i++
			k := i
			n.Unlock()
			if k%3 == 0 {
				<-ctx.Done() // times out
				return "", ctx.Err()
			}
			return "ok", nil
		}
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				for range 20 {
					if _, err := g.Call(t.Context(), flaky); err != nil && !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("Call() error = %v", err)
					}
					time.Sleep(100 * time.Millisecond)
				}
			})
		}
		wg.Wait()
		s := g.Stats()
		if s.Calls != 1000 || s.Succeeded+s.Failed+s.Fallbacks != s.Calls {
			t.Errorf("Stats() = %+v, want 1000 calls, each succeeded, failed or answered by the fallback", s)
		}
		if s.Succeeded == 0 || s.Fallbacks == 0 || s.Retries == 0 || s.Opened == 0 || s.HalfOpened == 0 || s.Reclosed == 0 {
			t.Errorf("Stats() = %+v, want every path taken: successes, fallbacks, retries, open, half-open, reclosed", s)
		}
	})
}

func TestNewGuard(t *testing.T) {
	tests := []struct {
		name string
		cfg  GuardConfig[int]
		ok   bool
	}{
		{"zero", GuardConfig[int]{}, true},
		{"negative timeout", GuardConfig[int]{AttemptTimeout: -1}, false},
		{"negative attempts", GuardConfig[int]{MaxAttempts: -1}, false},
		{"ratio above one", GuardConfig[int]{RetryRatio: 1.5}, false},
		{"negative ratio", GuardConfig[int]{RetryRatio: -0.1}, false},
		{"base above max", GuardConfig[int]{BaseBackoff: time.Minute, MaxBackoff: time.Second}, false},
		{"base above default max", GuardConfig[int]{BaseBackoff: time.Minute}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewGuard(tt.cfg)
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrConfig)) {
				t.Errorf("NewGuard(%+v) error = %v, want ok %v or ErrConfig", tt.cfg, err, tt.ok)
			}
		})
	}
}

func TestBreakerStateString(t *testing.T) {
	for s, want := range map[BreakerState]string{Closed: "closed", HalfOpen: "half-open", Open: "open", 7: "BreakerState(7)"} {
		if got := s.String(); got != want {
			t.Errorf("BreakerState(%d).String() = %q, want %q", s, got, want)
		}
	}
}
