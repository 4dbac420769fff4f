package backpressure_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/parley-go/parley/backpressure"
)

// A detector scaled for 2 s model calls absorbs a burst whose queueing
// delay falls back below target within the interval, and reports a
// standing queue once delay stays above target for a whole interval.
func ExampleDetector() {
	d, err := backpressure.NewDetector(time.Second, 4*time.Second)
	if err != nil {
		panic(err)
	}
	start := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, o := range []struct{ at, sojourn time.Duration }{
		{0, 200 * time.Millisecond},
		{1 * time.Second, 1500 * time.Millisecond}, // a burst: an interval starts
		{3 * time.Second, 2500 * time.Millisecond},
		{4 * time.Second, 800 * time.Millisecond}, // drained within the interval
		{5 * time.Second, 1200 * time.Millisecond},
		{8 * time.Second, 2 * time.Second},
		{9 * time.Second, 3 * time.Second}, // above target for a whole interval
		{10 * time.Second, 3 * time.Second},
		{11 * time.Second, 400 * time.Millisecond},
	} {
		v := d.ObserveAt(o.sojourn, start.Add(o.at))
		fmt.Printf("t=%v sojourn=%v: %v\n", o.at, o.sojourn, v)
	}
	// Output:
	// t=0s sojourn=200ms: clear
	// t=1s sojourn=1.5s: clear
	// t=3s sojourn=2.5s: clear
	// t=4s sojourn=800ms: clear
	// t=5s sojourn=1.2s: clear
	// t=8s sojourn=2s: clear
	// t=9s sojourn=3s: drop
	// t=10s sojourn=3s: standing
	// t=11s sojourn=400ms: clear
}

// A chat server admits each message of a session through the gate and puts
// the retry-after hint of a refusal into its error frame.
func ExampleGate_AdmitAt() {
	d, err := backpressure.NewDetector(time.Second, 4*time.Second)
	if err != nil {
		panic(err)
	}
	gate, err := backpressure.NewGate(d, backpressure.GateConfig{KeyRate: 0.5, KeyBurst: 2})
	if err != nil {
		panic(err)
	}
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	for i := range 3 {
		err := gate.AdmitAt("session-42", 30*time.Millisecond, now)
		if rej, ok := errors.AsType[*backpressure.Rejection](err); ok {
			fmt.Printf("message %d: %v, retry_after_ms=%d\n", i, rej.Reason, rej.RetryAfter.Milliseconds())
			continue
		}
		fmt.Printf("message %d: admitted\n", i)
	}
	// Output:
	// message 0: admitted
	// message 1: admitted
	// message 2: backpressure: rate limited, retry_after_ms=2000
}

// While the breaker is open, the guard answers with the fallback and marks
// the result so the host can tell it from a model answer.
func ExampleGuard_Call() {
	guard, err := backpressure.NewGuard(backpressure.GuardConfig[string]{
		MaxAttempts: 1,
		TripAfter:   1,
		Fallback: func(context.Context, error) (string, error) {
			return "We are busy right now; please try again in a minute.", nil
		},
	})
	if err != nil {
		panic(err)
	}
	model := func(context.Context) (string, error) { return "", errors.New("model: unavailable") }
	for range 2 {
		res, err := guard.Call(context.Background(), model)
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		fmt.Printf("fallback=%v: %s\n", res.Fallback, res.Value)
	}
	fmt.Println("breaker:", guard.State())
	// Output:
	// error: backpressure: attempt 1 of 1 failed: model: unavailable
	// fallback=true: We are busy right now; please try again in a minute.
	// breaker: open
}

// Under an overload that lasts, a line lets refused clients back in the
// order they were first refused, and tells each when its turn comes.
func ExampleLine() {
	line, err := backpressure.NewLine(100*time.Millisecond, 500*time.Millisecond)
	if err != nil {
		panic(err)
	}
	start := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	// 100 requests admitted in the first half second: 200 a second.
	for i := range 100 {
		var none backpressure.Ticket
		line.Admitted(&none, 0, start.Add(time.Duration(i)*5*time.Millisecond))
	}
	now := start.Add(500 * time.Millisecond)
	// Then admission refuses alice and bob for overload, in that order.
	var alice, bob, carol backpressure.Ticket
	line.Refused(&alice, now)
	line.Refused(&bob, now)
	// Carol's request arrives while they wait: her turn comes after theirs.
	ok, _ := line.Pass(&carol, 300*time.Millisecond, now)
	fmt.Println("carol passes:", ok, "tickets:", alice, bob, carol)
	// Bob comes back 7 ms later: at 200 a second his turn comes at 10 ms.
	ok, _ = line.Pass(&bob, 300*time.Millisecond, now.Add(7*time.Millisecond))
	fmt.Println("bob passes at 7 ms:", ok)
	ok, _ = line.Pass(&bob, 300*time.Millisecond, now.Add(11*time.Millisecond))
	fmt.Println("bob passes at 11 ms:", ok)
	line.Admitted(&bob, 300*time.Millisecond, now.Add(11*time.Millisecond))
	fmt.Println("waiting:", line.Waiting(now.Add(11*time.Millisecond)), "bob's ticket:", bob)
	// Output:
	// carol passes: false tickets: 1 2 3
	// bob passes at 7 ms: false
	// bob passes at 11 ms: true
	// waiting: 1 bob's ticket: 0
}
