package ring_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/parley-go/parley/ring"
)

// A connection's reader pushes messages; the session's worker drains them in
// batches until the reader closes the Buffer.
func Example() {
	ctx := context.Background()
	b := ring.New[string](4)
	reader := make(chan struct{})
	go func() {
		defer close(reader)
		for _, msg := range []string{"hello", "what is my order status?", "bye"} {
			if err := b.Push(ctx, msg); err != nil {
				return // closed by the worker, or ctx done
			}
		}
		b.Close() // the connection ended: let the worker drain what is left
	}()

	batch := make([]string, 16)
	for {
		n, err := b.PopBatch(ctx, batch)
		if errors.Is(err, ring.ErrClosed) {
			break
		}
		for _, msg := range batch[:n] {
			fmt.Println(msg)
		}
	}
	<-reader
	// Output:
	// hello
	// what is my order status?
	// bye
}

func ExampleBuffer_TryPush() {
	b := ring.New[int](2)
	fmt.Println(b.TryPush(1), b.TryPush(2), b.TryPush(3))
	v, ok := b.TryPop()
	fmt.Println(v, ok, b.Len())
	// Output:
	// true true false
	// 1 true 1
}

// A blocked Push gives up when its context ends, and the item stays the
// caller's.
func ExampleBuffer_Push() {
	b := ring.New[string](1)
	b.TryPush("queued")

	ctx, cancel := context.WithCancel(context.Background())
	cancel() // say the connection went away while the worker was busy
	err := b.Push(ctx, "not queued")
	fmt.Println(err, b.Len())
	// Output:
	// context canceled 1
}

// Stamp items when they are pushed to measure how long they queued: this is
// the sojourn time a CoDel-style detector needs. A real host stamps with
// time.Now() and measures with time.Since; fixed times keep this example
// repeatable.
func Example_sojourn() {
	type message struct {
		text     string
		received time.Time
	}
	b := ring.New[message](8)
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	b.TryPush(message{"hi", t0})
	b.TryPush(message{"anyone there?", t0.Add(2 * time.Millisecond)})

	now := t0.Add(7 * time.Millisecond) // the worker gets to them
	batch := make([]message, 8)
	n, _ := b.PopBatch(context.Background(), batch)
	for _, m := range batch[:n] {
		fmt.Printf("%q queued for %v\n", m.text, now.Sub(m.received))
	}
	// Output:
	// "hi" queued for 7ms
	// "anyone there?" queued for 5ms
}

func ExampleBuffer_Stats() {
	ctx := context.Background()
	b := ring.New[int](8)
	b.PushBatch(ctx, []int{1, 2, 3, 4, 5})
	b.PopBatch(ctx, make([]int, 3))
	s := b.Stats()
	fmt.Printf("pushed %d, popped %d, queued %d, high water %d, producer waits %d\n",
		s.Pushed, s.Popped, s.Pushed-s.Popped, s.HighWater, s.Blocked)
	// Output:
	// pushed 5, popped 3, queued 2, high water 5, producer waits 0
}
