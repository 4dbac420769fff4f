package ring

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"
)

// noSleeper is why the sleeper tests skip in builds without one.
const noSleeper = "this build parks every consumer on a channel (race detector, tag parley_chanpark, or a Go release other than 1.26)"

// TestParkedConsumerPlaces checks where consumers park: one whose ctx can
// never be done as the sleeper, when this build has one and no other
// consumer holds it; the others on the channel. A push hands its item to
// the sleeper first, and Close wakes everyone.
func TestParkedConsumerPlaces(t *testing.T) {
	synctestRun(t, "three consumers", func(t *testing.T) {
		b := New[int](4)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		calls := []<-chan result{start(context.Background(), b, pop)}
		blocked(calls[0])
		calls = append(calls, start(ctx, b, pop), start(context.Background(), b, popBatch(2)))
		blocked(calls[0])
		b.mu.Lock()
		sleeping, onChannel := b.sleep.parked, b.cons.n
		b.mu.Unlock()
		want := 3
		if sleeperAvailable {
			want = 2
		}
		if sleeping != sleeperAvailable || onChannel != want {
			t.Fatalf("parked: sleeper %t and %d on the channel, want sleeper %t and %d", sleeping, onChannel, sleeperAvailable, want)
		}

		if err := b.Push(context.Background(), 1); err != nil {
			t.Fatal(err)
		}
		got := 0
		for i, ch := range calls {
			if blocked(ch) {
				continue
			}
			r := <-ch
			if r.v != 1 || r.err != nil {
				t.Errorf("consumer %d = %+v, want item 1", i, r)
			}
			if sleeperAvailable && i != 0 {
				t.Errorf("consumer %d took the item, want the sleeper (consumer 0)", i)
			}
			calls[i] = nil
			got++
		}
		if got != 1 {
			t.Fatalf("%d consumers returned after one push, want 1", got)
		}
		// The sleeper, once woken, is free for the next consumer.
		calls = append(calls, start(context.Background(), b, pop))
		blocked(calls[len(calls)-1])
		if b.mu.Lock(); b.sleep.parked != sleeperAvailable {
			t.Errorf("a consumer parking after the sleeper woke: sleeper %t, want %t", b.sleep.parked, sleeperAvailable)
		}
		b.mu.Unlock()
		b.Close()
		for i, ch := range calls {
			if ch == nil {
				continue
			}
			if r := <-ch; !errors.Is(r.err, ErrClosed) {
				t.Errorf("consumer %d parked through Close = %+v, want ErrClosed", i, r)
			}
		}
	})
}

// TestPopBatchSleeps checks that a lone PopBatch whose ctx can never be
// done parks as the sleeper too, and gets the burst behind the first item.
func TestPopBatchSleeps(t *testing.T) {
	synctestRun(t, "PopBatch", func(t *testing.T) {
		b := New[int](4)
		done := start(context.Background(), b, popBatch(2))
		blocked(done)
		if b.mu.Lock(); b.sleep.parked != sleeperAvailable {
			t.Errorf("a parked PopBatch: sleeper %t, want %t", b.sleep.parked, sleeperAvailable)
		}
		b.mu.Unlock()
		if n, err := b.PushBatch(context.Background(), []int{1, 2}); n != 2 || err != nil {
			t.Fatalf("PushBatch = %d, %v", n, err)
		}
		if r := <-done; r.v != 1 || r.n != 2 || r.err != nil {
			t.Errorf("PopBatch = %+v, want items 1 and 2", r)
		}
	})
}

// TestSleeperWaitReason checks the wait reason park_runtime.go passes to
// the runtime, a number that is not part of the runtime's promise: a
// consumer parked as the sleeper must show in a goroutine dump as a
// sync.Cond waiter, which is also what makes testing/synctest count it as
// durably blocked. (The trace reason beside it, traceBlockCondWait, was
// checked by hand in an execution trace; no test reads it.)
func TestSleeperWaitReason(t *testing.T) {
	if !sleeperAvailable {
		t.Skip(noSleeper)
	}
	b := New[int](1)
	done := make(chan error, 1)
	go func() {
		_, err := b.Pop(context.Background())
		done <- err
	}()
	// Wait (in real time: this is about the runtime's own state) until the
	// goroutine has parked, then read its status.
	const frame = "ring.(*sleeper[...]).sleep("
	var header string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		header = goroutineHeader(frame)
		if header != "" && !strings.Contains(header, "[running") && !strings.Contains(header, "[runnable") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no goroutine parked in %s within 10s (last header %q)", frame, header)
		}
	}
	if !strings.Contains(header, "[sync.Cond.Wait") {
		t.Errorf("a parked sleeper shows as %q, want a sync.Cond.Wait status: the runtime's wait reasons changed", header)
	}
	b.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("Pop after Close = %v, want ErrClosed", err)
	}
}

// goroutineHeader returns the first line ("goroutine N [status]:") of the
// first goroutine whose stack holds frame, or "" if none does.
func goroutineHeader(frame string) string {
	buf := make([]byte, 1<<20)
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, frame) {
			header, _, _ := strings.Cut(g, "\n")
			return header
		}
	}
	return ""
}
