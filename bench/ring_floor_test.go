package bench

import (
	"context"
	"errors"
	"sync"
)

// floorQueue is the least a lock-based queue can do that, like ring.Buffer,
// hands an item to a consumer parked on a channel: a mutex for the data, a
// count of parked consumers, and a push that claims a parked consumer under
// the mutex and sends it the item on a channel after unlocking, so that the
// woken consumer does not take the mutex again. It has none of ring.Buffer's
// other duties (no Close, no parked producers, no Stats), and it is not
// generic. BenchmarkPingPong runs it as impl=mutex-chan: the floor of a
// single hand-off for a Buffer that parks its consumers on a channel, as
// ring.Buffer does with a cancellable ctx (and in race-detector builds).
// Parked as the sleeper, ring.Buffer's consumer does without the channel.
type floorQueue struct {
	mu         sync.Mutex
	buf        []item
	head, tail uint64    // items popped and pushed
	parked     int       // consumers parked on ch and not yet claimed
	ch         chan item // room for one, so that a claimer never blocks
}

func newFloorQueue(capacity int) *floorQueue {
	return &floorQueue{buf: make([]item, capacity), ch: make(chan item, 1)}
}

// errFloorFull is what floorQueue.Push returns instead of waiting for room:
// the ping-pong keeps one item in flight and never fills a queue.
var errFloorFull = errors.New("bench: floorQueue is full")

func (q *floorQueue) Push(_ context.Context, v item) error {
	q.mu.Lock()
	if q.parked > 0 {
		q.parked--
		q.mu.Unlock()
		q.ch <- v
		return nil
	}
	if q.tail-q.head == uint64(len(q.buf)) {
		q.mu.Unlock()
		return errFloorFull
	}
	q.buf[q.tail%uint64(len(q.buf))] = v
	q.tail++
	q.mu.Unlock()
	return nil
}

func (q *floorQueue) Pop(ctx context.Context) (item, error) {
	q.mu.Lock()
	if q.tail != q.head {
		j := q.head % uint64(len(q.buf))
		v := q.buf[j]
		q.buf[j] = item{}
		q.head++
		q.mu.Unlock()
		return v, nil
	}
	q.parked++
	q.mu.Unlock()
	done := ctx.Done()
	if done == nil {
		return <-q.ch, nil
	}
	select {
	case v := <-q.ch:
		return v, nil
	case <-done:
		q.mu.Lock()
		left := q.parked > 0 // not claimed: leave
		if left {
			q.parked--
		}
		q.mu.Unlock()
		if left {
			return item{}, ctx.Err()
		}
		return <-q.ch, nil // claimed: the item is on its way
	}
}
