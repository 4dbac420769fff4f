// Package ring provides Buffer, a bounded first-in, first-out queue that
// hands items from a producer goroutine to a consumer goroutine and pushes
// back on the producer when it is full.
//
// A Buffer decouples a connection's reader from the worker that serves it:
// when the worker falls behind, [Buffer.Push] blocks, so backpressure reaches
// the reader instead of memory growing or items being dropped. The consumer
// should prefer [Buffer.PopBatch], which takes everything queued (up to the
// length of its slice) under one lock acquisition; that is where a Buffer
// gains most over a channel.
//
// One consumer at a time that waits with a context that can never be done
// (such as context.Background()) parks its goroutine directly with the Go
// runtime's scheduler, which makes a single hand-off cheaper than a
// channel's; any other parks on a channel. This takes the gc toolchain's Go
// 1.26 without the race detector (see park_runtime.go); build with the tag
// parley_chanpark to park every consumer on a channel. A push hands its item
// to that consumer before any parked on the channel.
//
// A Buffer keeps no timestamps. To feed a queueing-delay detector (such as a
// CoDel detector), stamp each item when it is pushed and subtract that stamp
// from the time it is popped; see the sojourn example.
package ring

import (
	"context"
	"errors"
	"math/bits"
	"sync"
	"time"
)

// ErrClosed is returned by Push and PushBatch once the Buffer is closed, and
// by Pop and PopBatch once it is closed and every item pushed before Close
// has been popped.
var ErrClosed = errors.New("ring: buffer closed")

// Buffer is a bounded FIFO queue of T with blocking, cancellable operations on
// both sides. Its capacity is fixed by [New] and is a power of two.
//
// Concurrency: a Buffer is built for one producer goroutine, which calls
// Push, TryPush and PushBatch, and one consumer goroutine, which calls Pop,
// TryPop and PopBatch; "one" means one at a time, so a side may move between
// goroutines that hand over to each other. Close, Len, Cap and Stats may be
// called from any goroutine at any time. Several producers are also safe,
// and each producer's items are popped in the order it pushed them. Several
// consumers are safe in that every item is popped exactly once, but two
// consumers may see items in either order. The performance figures in bench/
// are for one producer and one consumer.
//
// The zero value is not usable; create Buffers with New. A Buffer must not be
// copied after first use.
type Buffer[T any] struct {
	mu     sync.Mutex
	closed bool
	head   uint64 // items popped; the next one is buf[head&mask]
	tail   uint64 // items pushed; the next free slot is buf[tail&mask]
	buf    []T    // len(buf) is a power of two
	cons   receivers[T]
	sleep  sleeper[T]
	prod   waiters

	high        uint64        // most items held in buf at once
	blocked     uint64        // producer waits for room
	blockedTime time.Duration // total time producers waited for room
}

// New returns an empty, open Buffer that holds up to capacity items,
// rounded up to the next power of two. Like make, it panics if capacity is
// not positive (or too large to round up).
func New[T any](capacity int) *Buffer[T] {
	if capacity <= 0 || capacity > 1<<(bits.UintSize-2) {
		panic("ring: capacity out of range")
	}
	return &Buffer[T]{buf: make([]T, 1<<bits.Len(uint(capacity-1)))}
}

// Cap returns the number of items the Buffer can hold.
func (b *Buffer[T]) Cap() int { return len(b.buf) }

// Len returns the number of items queued.
func (b *Buffer[T]) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return int(b.tail - b.head)
}

// Stats is a snapshot of a Buffer's counters since New, for export as
// metrics. Pushed-Popped is the number of items queued when it was taken.
type Stats struct {
	Pushed      uint64        // items accepted by Push, TryPush and PushBatch
	Popped      uint64        // items returned by Pop, TryPop and PopBatch
	Blocked     uint64        // times a producer found the Buffer full and waited
	BlockedTime time.Duration // total time producers spent waiting for room

	// HighWater is the most items queued at once. An item that a push hands
	// straight to a parked consumer is never queued.
	HighWater int
}

// Stats returns a snapshot of the Buffer's counters. It costs one lock
// acquisition and allocates nothing.
func (b *Buffer[T]) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return Stats{
		Pushed:      b.tail,
		Popped:      b.head,
		Blocked:     b.blocked,
		BlockedTime: b.blockedTime,
		HighWater:   int(b.high),
	}
}

// Close closes the Buffer. Producers blocked in Push or PushBatch return
// ErrClosed at once, keeping the items they had not yet enqueued, and later
// pushes fail with ErrClosed. The consumer still pops every item queued
// before Close, then gets ErrClosed. Close is idempotent and may be called
// from any goroutine.
func (b *Buffer[T]) Close() {
	b.mu.Lock()
	b.closed = true
	sl, k, ch := b.sleep.parked, b.cons.n, b.cons.ch
	b.sleep.parked, b.cons.n = false, 0 // claim every parked consumer, to tell it
	wp := b.producerWake()
	b.mu.Unlock()
	if sl {
		b.sleep.wake(delivery[T]{})
	}
	for range k {
		ch <- delivery[T]{}
	}
	wake(wp)
}

// Push appends v, waiting while the Buffer is full. It returns nil once v is
// queued; ErrClosed if the Buffer is or becomes closed before there is room;
// or ctx.Err() if ctx is done first. On error v is not queued. ctx is only
// consulted when Push has to wait, so a Push that finds room succeeds even
// with a done ctx.
func (b *Buffer[T]) Push(ctx context.Context, v T) error {
	b.mu.Lock()
	// The two common cases first: hand v to a parked consumer (which
	// implies an open, empty Buffer), or queue it. While no other producer
	// is parked, neither has a wake-up to pass on.
	if b.prod.n == 0 {
		if b.consumersParked() {
			_, sl, ch := b.claim(1)
			b.mu.Unlock()
			b.handOver(sl, ch, v)
			return nil
		}
		if !b.closed && !b.full() {
			b.append(v)
			b.mu.Unlock()
			return nil
		}
	}
	return b.pushSlow(ctx, v)
}

// pushSlow is Push when the Buffer is full or closed, or producers are
// parked. b.mu is held on entry and released on return.
func (b *Buffer[T]) pushSlow(ctx context.Context, v T) error {
	if b.full() && !b.closed {
		if err := b.waitRoom(ctx); err != nil {
			b.mu.Unlock()
			return err
		}
	}
	if b.closed {
		b.closedUnlock()
		return ErrClosed
	}
	b.putUnlock(v)
	return nil
}

// TryPush appends v if there is room and the Buffer is open, and reports
// whether it did. It never blocks.
func (b *Buffer[T]) TryPush(v T) bool {
	b.mu.Lock()
	if b.closed || b.full() {
		b.mu.Unlock()
		return false
	}
	b.putUnlock(v)
	return true
}

// PushBatch appends the items of vs in order, as many as fit under each lock
// acquisition, waiting for room while the Buffer is full. It returns the
// number of items queued, which is len(vs) when the error is nil. On
// ErrClosed or a done ctx, vs[n:] were not queued and remain the caller's. An
// empty vs returns 0, nil at once. As with Push, ctx is only consulted when
// PushBatch has to wait.
func (b *Buffer[T]) PushBatch(ctx context.Context, vs []T) (int, error) {
	n := 0
	for n < len(vs) {
		b.mu.Lock()
		if b.full() && !b.closed {
			if err := b.waitRoom(ctx); err != nil {
				b.mu.Unlock()
				return n, err
			}
		}
		if b.closed {
			b.closedUnlock()
			return n, ErrClosed
		}
		// Parked consumers mean an empty buf: hand them the first items.
		h, sl, ch := b.claim(len(vs) - n)
		k := b.put(vs[n+h:])
		wp := b.producerWake()
		b.mu.Unlock()
		for i, v := range vs[n : n+h] {
			b.handOver(sl && i == 0, ch, v)
		}
		wake(wp)
		n += h + k
	}
	return n, nil
}

// Pop removes and returns the oldest item, waiting while the Buffer is empty.
// It returns ErrClosed once the Buffer is closed and drained, or ctx.Err() if
// ctx is done while it waits; on error no item is removed. ctx is only
// consulted when Pop has to wait.
func (b *Buffer[T]) Pop(ctx context.Context) (T, error) {
	b.mu.Lock()
	if !b.empty() {
		v := b.shift()
		b.poppedUnlock(1)
		return v, nil
	}
	// Park. A consumer that keeps up with its producer parks on every Pop,
	// so the common parks (open Buffer, ctx never done or channel made) are
	// spelled out here rather than in a call to receive (which cost 4.5%
	// of BenchmarkPingPong/impl=ring's round trip).
	if b.canSleep(ctx) {
		return b.sleepUnlock().result()
	}
	ch := b.cons.ch
	if ch == nil || b.closed {
		return b.receive(ctx)
	}
	b.cons.n++
	b.mu.Unlock()
	if done := ctx.Done(); done != nil {
		return b.await(ctx, ch, done)
	}
	return (<-ch).result()
}

// TryPop removes and returns the oldest item if there is one; ok reports
// whether there was. It never blocks.
func (b *Buffer[T]) TryPop() (v T, ok bool) {
	b.mu.Lock()
	if b.empty() {
		b.mu.Unlock()
		return v, false
	}
	v = b.shift()
	b.poppedUnlock(1)
	return v, true
}

// PopBatch waits until at least one item is queued, then moves the oldest
// items, up to len(dst), into dst and returns how many it moved. What is
// queued is taken under one lock acquisition, so one call drains a burst.
// It returns 0 and ErrClosed once the Buffer is closed and drained, or 0
// and ctx.Err() if ctx is done while it waits. Like an io.Reader given an
// empty slice, it returns 0, nil at once when len(dst) is 0 (including a
// nil dst). ctx is only consulted when PopBatch has to wait.
func (b *Buffer[T]) PopBatch(ctx context.Context, dst []T) (int, error) {
	if len(dst) == 0 {
		return 0, nil
	}
	b.mu.Lock()
	if !b.empty() {
		return b.takeUnlock(dst), nil
	}
	v, err := b.receive(ctx)
	if err != nil {
		return 0, err
	}
	// A push handed v over; take what was queued behind it while this
	// consumer was waking up, so that one call returns the whole burst.
	dst[0] = v
	if len(dst) == 1 {
		return 1, nil
	}
	b.mu.Lock()
	if b.empty() {
		b.mu.Unlock()
		return 1, nil
	}
	return 1 + b.takeUnlock(dst[1:]), nil
}

func (b *Buffer[T]) mask() uint64 { return uint64(len(b.buf) - 1) }
func (b *Buffer[T]) full() bool   { return b.tail-b.head == uint64(len(b.buf)) }
func (b *Buffer[T]) empty() bool  { return b.tail == b.head }

// append stores v in the free slot at the tail. b.mu must be held.
func (b *Buffer[T]) append(v T) {
	b.buf[b.tail&b.mask()] = v
	b.tail++
	b.high = max(b.high, b.tail-b.head)
}

// shift removes and returns the item at the head of a non-empty buf and
// clears its slot so that the GC can reclaim what it held. b.mu must be held.
func (b *Buffer[T]) shift() T {
	i := b.head & b.mask()
	v := b.buf[i]
	var zero T
	b.buf[i] = zero
	b.head++
	return v
}

// putUnlock queues v on an open Buffer with room, handing it straight to a
// parked consumer if there is one, releases b.mu and wakes whoever must
// know.
func (b *Buffer[T]) putUnlock(v T) {
	k, sl, ch := b.claim(1)
	if k == 0 {
		b.append(v)
	}
	wp := b.producerWake()
	b.mu.Unlock()
	if k > 0 {
		b.handOver(sl, ch, v)
	}
	wake(wp)
}

// put copies as many leading items of vs as fit into the free slots and
// returns how many it copied. b.mu must be held.
func (b *Buffer[T]) put(vs []T) int {
	n := min(len(vs), len(b.buf)-int(b.tail-b.head))
	i := int(b.tail & b.mask())
	k := copy(b.buf[i:], vs[:n]) // up to the end of buf, then wrap
	copy(b.buf, vs[k:n])
	b.tail += uint64(n)
	b.high = max(b.high, b.tail-b.head)
	return n
}

// takeUnlock moves the oldest items of a non-empty buf, up to len(dst), into
// dst, clears the slots they occupied, releases b.mu and returns how many it
// moved.
func (b *Buffer[T]) takeUnlock(dst []T) int {
	n := min(len(dst), int(b.tail-b.head))
	i := int(b.head & b.mask())
	k := copy(dst[:n], b.buf[i:]) // up to the end of buf, then wrap
	clear(b.buf[i : i+k])
	clear(b.buf[:copy(dst[k:n], b.buf)])
	b.head += uint64(n)
	b.poppedUnlock(uint64(n))
	return n
}

// poppedUnlock finishes a pop of n items from buf: it releases b.mu and
// wakes a parked producer if the pop made room in a full Buffer. Only that
// transition needs a wake-up, since producers park only on a full Buffer.
// No consumer needs waking either: consumers park only on an empty Buffer.
func (b *Buffer[T]) poppedUnlock(n uint64) {
	var wp chan struct{}
	if b.prod.n > 0 && b.tail-b.head+n == uint64(len(b.buf)) {
		wp = b.producerWake()
	}
	b.mu.Unlock()
	wake(wp)
}

// closedUnlock releases b.mu after a push that found the Buffer closed, and
// passes the news on to another parked producer.
func (b *Buffer[T]) closedUnlock() {
	wp := b.producerWake()
	b.mu.Unlock()
	wake(wp)
}

// producerWake returns the channel to wake a parked producer on, or nil if
// none is parked or none could make progress. With one producer it returns
// nil unless that producer is parked; with several, a producer that pushes
// uses it to pass a wake-up on while room remains. b.mu must be held.
func (b *Buffer[T]) producerWake() chan struct{} {
	if b.prod.n > 0 && (b.closed || !b.full()) {
		return b.prod.token
	}
	return nil
}

// waitRoom parks the producer until the Buffer has room or is closed, and
// records the wait in the Stats. b.mu is held on entry and on return.
func (b *Buffer[T]) waitRoom(ctx context.Context) error {
	start := time.Now()
	b.blocked++
	var err error
	for b.full() && !b.closed && err == nil {
		err = b.prod.park(ctx, &b.mu)
	}
	b.blockedTime += time.Since(start)
	return err
}

// The parking paths. Consumers park only on an empty Buffer, and a push
// that finds one parked hands it the item directly instead of queueing it,
// as a channel does with a waiting receiver: the woken consumer returns
// without taking the mutex again.
//
// One consumer at a time whose ctx can never be done parks as the sleeper
// (park_runtime.go): its goroutine parks with the runtime's gopark and the
// push that claims it wakes it with goready, the primitives that channels
// and sync.Cond are built on, without a channel's own lock and wait queue.
// It is the common case: one consumer, waiting for its producer. Any other
// consumer parks on a channel, because a channel receive can select on
// ctx.Done(): a cancellable park needs no context.AfterFunc registration (an
// allocation and a Broadcast for every park), and nothing at all on the
// fast path. In builds without the sleeper (park_chan.go: the race
// detector, the tag parley_chanpark, a Go release other than 1.26) every
// consumer parks on the channel.
//
// Producers park only on a full Buffer, which a healthy system rarely sees,
// so they take the simpler path of a wake-up token and the mutex again to
// push. Channels are made on a side's first park, so a side that never
// waits costs no channel.
//
// bench/ measures the choice against a bare channel and against
// impl=ring-cond, this Buffer parked on two sync.Conds with waiter counts
// and context.AfterFunc. Medians of 6 runs on the 2-core development
// machine (AMD EPYC, GOMAXPROCS=2), per round trip:
//
//	                          chan      ring      ring-cond
//	PingPong, Background      284 ns    250 ns    324 ns
//	PingPong, cancellable     627 ns    606 ns    1031 ns, 5 allocs
//
// Before the sleeper, the Background ping-pong parked on the channel and
// trailed a bare channel by 15 to 21%, taking the channel's lock on top of
// the Buffer's mutex: in one run alternating the two designs 4 times, 291
// ns against the sleeper's 223 ns.

// A delivery is what a parked consumer receives: an item, or ok == false
// when Close woke it.
type delivery[T any] struct {
	v  T
	ok bool
}

// receivers is the consumers' parking place. n counts parked consumers not
// yet claimed; a claim (under the Buffer's mutex) commits the claimer to
// send one delivery on ch, which has room for one so that a claimer never
// blocks while there is a single consumer. n rises only while the Buffer is
// empty and open, and pushes claim rather than fill buf while n > 0, so
// n > 0 implies an empty buf.
type receivers[T any] struct {
	n  int
	ch chan delivery[T]
}

// consumersParked reports whether any consumer is parked and unclaimed,
// which implies an open, empty Buffer. b.mu must be held.
func (b *Buffer[T]) consumersParked() bool { return b.sleep.parked || b.cons.n > 0 }

// claim takes up to max parked consumers, each to be handed one item, and
// returns how many it took, whether the first of them is the sleeper, and
// the channel to send the items for the others on. The items count as
// pushed and popped at once: head and tail both move, so buf stays empty.
// b.mu must be held.
func (b *Buffer[T]) claim(max int) (k int, sl bool, ch chan delivery[T]) {
	if b.sleep.parked && max > 0 {
		b.sleep.parked, sl, k = false, true, 1
	}
	if n := min(b.cons.n, max-k); n > 0 {
		b.cons.n -= n
		k += n
		ch = b.cons.ch
	}
	b.tail += uint64(k)
	b.head += uint64(k)
	return k, sl, ch
}

// handOver hands v to a consumer that a claim took: the sleeper if sl, else
// one parked on ch. It is called after unlocking, once per claimed consumer.
func (b *Buffer[T]) handOver(sl bool, ch chan delivery[T], v T) {
	if sl {
		b.sleep.wake(delivery[T]{v, true})
		return
	}
	ch <- delivery[T]{v, true}
}

// canSleep reports whether a consumer about to park on an empty Buffer can
// park as the sleeper: this build has one, the Buffer is open, no other
// consumer holds it, and ctx can never be done (a sleeper cannot be woken
// by a cancellation). b.mu must be held.
func (b *Buffer[T]) canSleep(ctx context.Context) bool {
	return sleeperAvailable && !b.closed && b.sleep.free() && ctx.Done() == nil
}

// sleepUnlock parks the calling consumer as the sleeper, releasing b.mu,
// and returns the delivery that wakes it.
func (b *Buffer[T]) sleepUnlock() delivery[T] {
	b.sleep.arm()
	b.mu.Unlock()
	return b.sleep.sleep()
}

// receive parks the calling consumer on an empty Buffer until a push hands
// it an item, Close wakes it or ctx is done. b.mu is held on entry and
// released on return.
func (b *Buffer[T]) receive(ctx context.Context) (T, error) {
	if b.closed {
		b.mu.Unlock()
		var zero T
		return zero, ErrClosed
	}
	if b.canSleep(ctx) {
		return b.sleepUnlock().result()
	}
	if b.cons.ch == nil {
		b.cons.ch = make(chan delivery[T], 1)
	}
	b.cons.n++
	ch := b.cons.ch
	b.mu.Unlock()
	if done := ctx.Done(); done != nil {
		return b.await(ctx, ch, done)
	}
	return (<-ch).result()
}

// await is receive's wait for a consumer that is parked on ch with a ctx
// that can be done.
func (b *Buffer[T]) await(ctx context.Context, ch chan delivery[T], done <-chan struct{}) (T, error) {
	select {
	case d := <-ch:
		return d.result()
	case <-done:
	}
	b.mu.Lock()
	left := b.cons.n > 0 // unclaimed: leave, unless a push claimed us first
	if left {
		b.cons.n--
	}
	b.mu.Unlock()
	if left {
		var zero T
		return zero, ctx.Err()
	}
	return (<-ch).result() // we were claimed, so a delivery is on its way
}

// result returns what a Pop that received d returns.
func (d delivery[T]) result() (T, error) {
	if !d.ok {
		return d.v, ErrClosed // d.v is the zero T
	}
	return d.v, nil
}

// waiters is the producers' parking place. n counts parked producers; a
// token on the channel (room for one) means "look again": a woken producer
// re-checks under the mutex and parks again if it must, so a stale token,
// left by a producer that gave up on its ctx, costs one spurious wake-up and
// never a wrong answer. Tokens are sent after unlocking and never block: if
// the channel already holds one, a producer is bound to take it, and a
// producer that pushes passes a token on while others could push too.
type waiters struct {
	n     int
	token chan struct{}
}

// park registers the caller, releases mu, sleeps until a token arrives or ctx
// is done, and takes mu again. It returns ctx.Err() if ctx ended the wait; a
// caller woken by a token gets nil even if ctx is done too.
func (w *waiters) park(ctx context.Context, mu *sync.Mutex) error {
	if w.token == nil {
		w.token = make(chan struct{}, 1)
	}
	w.n++
	token := w.token
	mu.Unlock()
	var err error
	if done := ctx.Done(); done == nil {
		<-token
	} else {
		select {
		case <-token:
		case <-done:
			err = ctx.Err()
		}
	}
	mu.Lock()
	w.n--
	return err
}

// wake leaves a token on w if there is room; a full w already holds one.
func wake(w chan struct{}) {
	if w == nil {
		return
	}
	select {
	case w <- struct{}{}:
	default:
	}
}
