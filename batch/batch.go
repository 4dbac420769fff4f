// Package batch is a micro-batcher: it gathers requests from many goroutines
// into batches, makes one call to a backend's batch function per batch, and
// hands each caller its own result or error.
//
// Its default policy, [DispatchWhenIdle], sends a request at once when no
// batch call is in flight and lets batches grow only while one is, so a lone
// request waits for nothing and batches get larger exactly when the backend
// is busy. [FixedWindow] is the plain "wait up to a window or until the batch
// is full" policy, kept for comparison.
//
// A caller that gives up (its context ends) before its batch is dispatched
// is taken out of the queue; after dispatch it is answered with its
// context's error at once, and the batch call's own context is cancelled
// only when every caller in the batch has given up, so no caller's
// cancellation fails another's request.
//
// [Batcher.Do] waits for its result; [Batcher.Submit] takes a callback
// instead, for hosts that cannot afford a parked goroutine per request
// while the backend works.
package batch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Func is the host's batch function. It receives the requests of one batch,
// in the order their callers were accepted, and returns one result per
// request, in the same order.
//
// It fails the whole batch by returning a non-nil error (every caller gets
// that error, unchanged), fails single requests by returning [ItemErrors],
// and must otherwise return exactly len(reqs) results. A wrong count fails
// the batch's callers with [ErrResultCount]; a panic is recovered and fails
// them with [ErrPanic]. Either way the batcher keeps serving.
//
// It runs on one of the batcher's worker goroutines, outside any lock of the
// batcher, at most [Config.MaxInFlight] calls at a time. It may block, and
// should return when ctx is cancelled, which happens only once every caller
// in the batch has given up. It must not retain reqs after it returns (the
// slice is reused). It must not call Close on its own batcher, nor wait for
// requests to it: either could deadlock, as no worker may be free.
type Func[Req, Resp any] func(ctx context.Context, reqs []Req) ([]Resp, error)

// Policy decides when queued requests become a batch.
type Policy int

const (
	// DispatchWhenIdle dispatches at once while no batch call is in flight.
	// While one is, requests accumulate: they leave as one batch when a call
	// slot is free and either [Config.MaxSize] requests are queued or the
	// oldest has waited [Config.MaxWait]. With MaxInFlight 1 no slot frees
	// until the call in flight returns, so the batch holds whatever arrived
	// meanwhile (up to MaxSize) and leaves as soon as the backend is free.
	DispatchWhenIdle Policy = iota

	// FixedWindow dispatches when [Config.MaxSize] requests are queued or
	// the oldest has waited [Config.MaxWait] (the window), whichever comes
	// first, and a call slot is free. A lone request always waits the
	// window.
	FixedWindow
)

// String returns the policy's name as written in Go.
func (p Policy) String() string {
	switch p {
	case DispatchWhenIdle:
		return "DispatchWhenIdle"
	case FixedWindow:
		return "FixedWindow"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// Config holds a [Batcher]'s settings. A zero field means its default.
type Config struct {
	// Policy decides when queued requests become a batch. The zero value is
	// DispatchWhenIdle.
	Policy Policy

	// MaxSize is the largest number of requests in one batch. Zero means 8.
	MaxSize int

	// MaxWait is how long the oldest queued request, counted from its Do
	// call, may wait for its batch to fill while a call slot is free: the
	// window of FixedWindow, and under DispatchWhenIdle the wait for a second
	// (or later) concurrent call when MaxInFlight > 1. Zero means 50 ms.
	MaxWait time.Duration

	// MaxInFlight is the largest number of batch calls running at once, and
	// the number of worker goroutines. Zero means 1.
	MaxInFlight int

	// QueueSize is the largest number of accepted requests waiting for
	// dispatch. It must be at least MaxSize. Zero means 1024, or MaxSize
	// when that is larger.
	QueueSize int

	// FailFast makes Do return ErrFull at once when the queue is full. By
	// default Do blocks until there is room or its context ends; blocked
	// callers are admitted in arrival order.
	FailFast bool
}

// Defaults for zero Config fields.
const (
	defaultMaxSize     = 8
	defaultMaxWait     = 50 * time.Millisecond
	defaultMaxInFlight = 1
	defaultQueueSize   = 1024
)

// withDefaults returns a copy of c with defaults filled in, or an error
// naming the first invalid field.
func (c Config) withDefaults() (Config, error) {
	switch {
	case c.Policy != DispatchWhenIdle && c.Policy != FixedWindow:
		return c, fmt.Errorf("%w: unknown Policy %v", ErrConfig, c.Policy)
	case c.MaxSize < 0:
		return c, fmt.Errorf("%w: MaxSize %d is negative", ErrConfig, c.MaxSize)
	case c.MaxWait < 0:
		return c, fmt.Errorf("%w: MaxWait %v is negative", ErrConfig, c.MaxWait)
	case c.MaxInFlight < 0:
		return c, fmt.Errorf("%w: MaxInFlight %d is negative", ErrConfig, c.MaxInFlight)
	case c.QueueSize < 0:
		return c, fmt.Errorf("%w: QueueSize %d is negative", ErrConfig, c.QueueSize)
	}
	if c.MaxSize == 0 {
		c.MaxSize = defaultMaxSize
	}
	if c.MaxWait == 0 {
		c.MaxWait = defaultMaxWait
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = defaultMaxInFlight
	}
	if c.QueueSize == 0 {
		c.QueueSize = max(defaultQueueSize, c.MaxSize)
	}
	if c.QueueSize < c.MaxSize {
		return c, fmt.Errorf("%w: QueueSize %d is less than MaxSize %d", ErrConfig, c.QueueSize, c.MaxSize)
	}
	return c, nil
}

// Stats is a snapshot of a [Batcher]'s counters, for metrics. Counters only
// grow; Queued, Blocked and InFlight are the current values.
type Stats struct {
	Batches   uint64        // batch calls started
	Items     uint64        // requests dispatched in those calls
	Sizes     []uint64      // Sizes[n] counts the calls of n requests; len MaxSize+1, Sizes[0] is 0
	QueueWait time.Duration // total time dispatched requests waited, from Do to dispatch
	Failed    uint64        // calls that failed as a whole: error, panic or wrong result count
	Rejected  uint64        // Do calls refused with ErrFull
	Canceled  uint64        // requests whose callers gave up before dispatch
	Abandoned uint64        // requests whose callers gave up after dispatch
	Queued    int           // requests waiting for dispatch
	Blocked   int           // callers waiting for room in the queue
	InFlight  int           // batch calls running
}

// Batcher gathers concurrent requests into batches for a [Func]. Create one
// with [New]; the zero value is not usable.
//
// A Batcher is safe for concurrent use by multiple goroutines. It owns
// MaxInFlight worker goroutines, started by New and stopped by Close, that
// run the batch function, and at most one timer for MaxWait. It must not be
// copied after first use.
type Batcher[Req, Resp any] struct {
	fn      Func[Req, Resp]
	cfg     Config
	calls   sync.Pool // of *call[Req, Resp], each with an empty done channel
	work    chan *batch[Req, Resp]
	workers sync.WaitGroup
	timers  sync.WaitGroup // one count while the timer is armed or its callback runs
	closed  chan struct{}  // closed when Close has finished

	abandoned atomic.Uint64

	mu         sync.Mutex
	queue      list[Req, Resp] // accepted, not yet dispatched
	blocked    list[Req, Resp] // waiting for room in queue
	inFlight   int
	closing    bool // Close has begun: refuse new requests, dispatch the rest at once
	workClosed bool // work is closed: workers dispatch for themselves only
	timer      *time.Timer
	timerArmed bool
	batches    uint64
	items      uint64
	sizes      []uint64
	queueWait  time.Duration
	failed     uint64
	rejected   uint64
	canceled   uint64
}

// call states. A call moves pending → queued → dispatched → done, or ends
// early: pending and queued calls are removed (under mu) when their caller
// gives up or Close refuses them, and a dispatched call becomes abandoned
// when its caller gives up first. Dispatched → done and dispatched →
// abandoned race without mu, so state is atomic; whoever loses the race to
// leave dispatched is the one that no longer touches the call.
const (
	statePending int32 = iota
	stateQueued
	stateDispatched
	stateDone
	stateAbandoned
)

// call is one request on its way through the batcher.
type call[Req, Resp any] struct {
	req        Req
	resp       Resp
	err        error
	state      atomic.Int32
	done       chan struct{}     // capacity 1; receives once when resp and err are set
	cb         func(Resp, error) // set by Submit: called instead of signalling done
	prev, next *call[Req, Resp]
	bt         *batchCtx // the call's batch once dispatched
	arrived    time.Time // when Do was called
}

// batch is one dispatched batch: a chain of calls linked by next, and the
// context its batch function runs under.
type batch[Req, Resp any] struct {
	batchCtx
	head *call[Req, Resp]
}

// New returns a Batcher that sends batches of requests to fn as cfg says,
// and starts its cfg.MaxInFlight worker goroutines; call [Batcher.Close] to
// stop them. New copies cfg. It returns an error wrapping [ErrConfig] when fn
// is nil or cfg has a negative or otherwise invalid field.
func New[Req, Resp any](fn Func[Req, Resp], cfg Config) (*Batcher[Req, Resp], error) {
	if fn == nil {
		return nil, fmt.Errorf("%w: nil batch function", ErrConfig)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	b := &Batcher[Req, Resp]{
		fn:     fn,
		cfg:    cfg,
		work:   make(chan *batch[Req, Resp], cfg.MaxInFlight),
		closed: make(chan struct{}),
		sizes:  make([]uint64, cfg.MaxSize+1),
	}
	b.calls.New = func() any { return &call[Req, Resp]{done: make(chan struct{}, 1)} }
	for range cfg.MaxInFlight {
		b.workers.Go(b.worker)
	}
	return b, nil
}

// Do queues req for the next batch and waits for its result. It returns the
// result for req, or the error for req: the batch function's error (whole
// batch or [ItemErrors] entry, unchanged), an error wrapping
// [ErrResultCount] or [ErrPanic], [ErrFull], [ErrClosed], or ctx.Err() when
// ctx ends first.
//
// When ctx ends before the request is dispatched, the request is removed
// and never reaches the batch function. When it ends after dispatch, Do
// returns at once and the result is discarded; the batch call goes on for
// the other callers. When the queue is full Do blocks until there is room
// (or returns ErrFull, with [Config.FailFast]). A ctx that has already ended
// is never accepted.
func (b *Batcher[Req, Resp]) Do(ctx context.Context, req Req) (Resp, error) {
	var zero Resp
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	c, err := b.accept(req, nil, !b.cfg.FailFast)
	if err != nil {
		return zero, err
	}

	if done := ctx.Done(); done != nil {
		select {
		case <-c.done:
		case <-done:
			return b.giveUp(ctx, c)
		}
	} else {
		<-c.done
	}
	return b.result(c)
}

// Submit queues req for the next batch without waiting for it: done is
// called exactly once with req's result or error, as [Batcher.Do] would
// return them, after req's batch call returns. It suits hosts that must not
// park a goroutine per request while the backend works, such as a chat
// server with thousands of sessions each waiting for a model call.
//
// Submit never blocks. It returns [ErrFull] when the queue is full (whatever
// [Config.FailFast] says) and [ErrClosed] once Close has begun; done is then
// never called. A submitted request cannot be withdrawn, and its batch
// call's context is never cancelled on its account. [Batcher.Close] answers
// every submitted request before it returns.
//
// done runs on one of the batcher's worker goroutines, outside the
// batcher's lock, before that worker starts its next batch call, so it must
// not block: hand anything slow to another goroutine. It may call Submit,
// but must not call Do or Close, which could wait for this very worker.
func (b *Batcher[Req, Resp]) Submit(req Req, done func(Resp, error)) error {
	_, err := b.accept(req, done, false)
	return err
}

// accept takes req (with its callback cb, if submitted) into the queue and
// returns its call. When the queue is full, block parks the call among the
// blocked callers; otherwise accept refuses it with ErrFull. Once Close has
// begun it refuses with ErrClosed.
func (b *Batcher[Req, Resp]) accept(req Req, cb func(Resp, error), block bool) (*call[Req, Resp], error) {
	c := b.calls.Get().(*call[Req, Resp])
	c.req, c.cb = req, cb
	c.arrived = time.Now()

	b.mu.Lock()
	var err error
	switch {
	case b.closing:
		err = ErrClosed
	case b.queue.n < b.cfg.QueueSize: // then no one is blocked either
		b.enqueueLocked(c)
		b.dispatchLocked(c.arrived)
	case !block:
		b.rejected++
		err = ErrFull
	default:
		c.state.Store(statePending)
		b.blocked.push(c)
	}
	b.mu.Unlock()
	if err != nil {
		b.recycle(c)
		return nil, err
	}
	return c, nil
}

// giveUp withdraws c, whose caller's ctx has ended, wherever it is.
func (b *Batcher[Req, Resp]) giveUp(ctx context.Context, c *call[Req, Resp]) (Resp, error) {
	var zero Resp
	b.mu.Lock()
	state := c.state.Load()
	switch state {
	case statePending:
		b.blocked.remove(c)
	case stateQueued:
		b.queue.remove(c)
		b.admitLocked()
		b.dispatchLocked(time.Now())
	}
	if state == statePending || state == stateQueued {
		b.canceled++
		b.mu.Unlock()
		b.recycle(c)
		return zero, ctx.Err()
	}
	b.mu.Unlock()

	// Dispatched (or already done): race the worker for the call.
	if bt := c.bt; c.state.CompareAndSwap(stateDispatched, stateAbandoned) {
		b.abandoned.Add(1)
		if bt.live.Add(-1) == 0 {
			bt.cancel()
		}
		return zero, ctx.Err() // the worker recycles c
	}
	<-c.done // the result is set; the send is on its way
	return b.result(c)
}

// result returns c's answer and recycles c.
func (b *Batcher[Req, Resp]) result(c *call[Req, Resp]) (Resp, error) {
	resp, err := c.resp, c.err
	b.recycle(c)
	return resp, err
}

// recycle clears c, which no one else references any more, and pools it.
func (b *Batcher[Req, Resp]) recycle(c *call[Req, Resp]) {
	var zeroReq Req
	var zeroResp Resp
	c.req, c.resp, c.err, c.bt, c.cb = zeroReq, zeroResp, nil, nil, nil
	c.state.Store(statePending)
	b.calls.Put(c)
}

// enqueueLocked accepts c into the queue.
func (b *Batcher[Req, Resp]) enqueueLocked(c *call[Req, Resp]) {
	c.state.Store(stateQueued)
	b.queue.push(c)
}

// admitLocked moves blocked callers into the queue while there is room. It
// runs whenever room is made, so callers block only while the queue is full.
func (b *Batcher[Req, Resp]) admitLocked() {
	for b.blocked.n > 0 && b.queue.n < b.cfg.QueueSize {
		b.enqueueLocked(b.blocked.pop())
	}
}

// dispatchLocked hands every batch that is due at now to the workers, then
// arms the timer for the next one that will be.
func (b *Batcher[Req, Resp]) dispatchLocked(now time.Time) {
	if b.workClosed {
		return
	}
	for bt := b.takeLocked(now); bt != nil; bt = b.takeLocked(now) {
		b.work <- bt // never blocks: at most MaxInFlight batches exist
	}
	b.armLocked(now)
}

// takeLocked removes the next batch due at now from the queue and counts it
// in flight, or returns nil when no batch is due or no call slot is free.
func (b *Batcher[Req, Resp]) takeLocked(now time.Time) *batch[Req, Resp] {
	if b.queue.n == 0 || b.inFlight == b.cfg.MaxInFlight || !b.dueLocked(now) {
		return nil
	}
	n := min(b.queue.n, b.cfg.MaxSize)
	bt := &batch[Req, Resp]{}
	bt.live.Store(int32(n))
	var last *call[Req, Resp]
	for range n {
		c := b.queue.pop()
		c.bt = &bt.batchCtx
		c.state.Store(stateDispatched)
		b.queueWait += now.Sub(c.arrived)
		if last == nil {
			bt.head = c
		} else {
			last.next = c
		}
		last = c
	}
	b.inFlight++
	b.batches++
	b.items += uint64(n)
	b.sizes[n]++
	b.admitLocked()
	return bt
}

// dueLocked reports whether the queue, which is not empty, should become a
// batch at now, given a free call slot.
func (b *Batcher[Req, Resp]) dueLocked(now time.Time) bool {
	switch {
	case b.closing, b.queue.n >= b.cfg.MaxSize:
		return true
	case b.cfg.Policy == DispatchWhenIdle && b.inFlight == 0:
		return true
	}
	return !now.Before(b.deadlineLocked())
}

// deadlineLocked is when the oldest queued request will have waited MaxWait
// since its Do call. Requests are queued in the order of their Do calls (a
// new call never passes a blocked one), so later requests have later
// deadlines.
func (b *Batcher[Req, Resp]) deadlineLocked() time.Time {
	return b.queue.head.arrived.Add(b.cfg.MaxWait)
}

// armLocked starts the timer when requests wait for MaxWait with a call
// slot free. An armed timer is left alone: deadlines only move later, so it
// fires early at worst, and onTimer then arms it again.
func (b *Batcher[Req, Resp]) armLocked(now time.Time) {
	// Once closing, nothing waits for MaxWait, and Close's timers.Wait must
	// not race with an Add.
	if b.closing || b.timerArmed || b.queue.n == 0 || b.inFlight == b.cfg.MaxInFlight {
		return
	}
	d := b.deadlineLocked().Sub(now)
	b.timerArmed = true
	b.timers.Add(1)
	if b.timer == nil {
		b.timer = time.AfterFunc(d, b.onTimer)
	} else {
		b.timer.Reset(d)
	}
}

// onTimer runs in the timer's own goroutine when MaxWait may have passed.
func (b *Batcher[Req, Resp]) onTimer() {
	defer b.timers.Done()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.timerArmed = false
	b.dispatchLocked(time.Now())
}

// worker runs batches until Close. After each batch it takes the next due
// batch itself, so a busy backend gets its next call without a hand-off.
func (b *Batcher[Req, Resp]) worker() {
	reqs := make([]Req, 0, b.cfg.MaxSize)
	calls := make([]*call[Req, Resp], 0, b.cfg.MaxSize)
	for bt := range b.work {
		for bt != nil {
			bt = b.run(bt, reqs, calls)
		}
	}
}

// run makes the batch call for bt, using reqs and calls as scratch space,
// answers its callers, and returns the next batch due, if any.
func (b *Batcher[Req, Resp]) run(bt *batch[Req, Resp], reqs []Req, calls []*call[Req, Resp]) *batch[Req, Resp] {
	for c := bt.head; c != nil; c = c.next {
		calls = append(calls, c)
		reqs = append(reqs, c.req)
	}
	resps, items, err := b.call(&bt.batchCtx, reqs)

	b.mu.Lock()
	b.inFlight--
	if err != nil {
		b.failed++
	}
	now := time.Now()
	next := b.takeLocked(now)
	b.dispatchLocked(now)
	b.mu.Unlock()

	var zero Resp
	for i, c := range calls {
		c.resp, c.err = zero, err
		switch {
		case err != nil:
		case items != nil && items[i] != nil:
			c.err = items[i]
		case resps != nil:
			c.resp = resps[i]
		}
		switch {
		case c.cb != nil: // submitted: answered here, never abandoned
			cb, resp, cerr := c.cb, c.resp, c.err
			b.recycle(c)
			cb(resp, cerr)
		case c.state.CompareAndSwap(stateDispatched, stateDone):
			c.done <- struct{}{}
		default:
			b.recycle(c) // its caller gave up
		}
	}
	clear(reqs)
	clear(calls)
	return next
}

// call runs the batch function on reqs and checks what it returned. On
// success err is nil; items is nil when no request failed, and otherwise
// items and resps (unless nil) hold one entry per request.
func (b *Batcher[Req, Resp]) call(ctx context.Context, reqs []Req) (resps []Resp, items ItemErrors, err error) {
	defer func() {
		if r := recover(); r != nil {
			resps, items, err = nil, nil, fmt.Errorf("%w: %v", ErrPanic, r)
		}
	}()
	resps, err = b.fn(ctx, reqs)
	if err != nil {
		var ok bool
		if items, ok = errors.AsType[ItemErrors](err); !ok {
			return nil, nil, err
		}
	}
	n := len(reqs)
	switch {
	case len(items) == 0 && len(resps) != n: // success, or an empty ItemErrors
		return nil, nil, fmt.Errorf("%w: %d results for %d requests", ErrResultCount, len(resps), n)
	case len(items) == 0:
		return resps, nil, nil
	case len(items) != n || (len(resps) != 0 && len(resps) != n):
		return nil, nil, fmt.Errorf("%w: %d item errors and %d results for %d requests",
			ErrResultCount, len(items), len(resps), n)
	}
	return resps, items, nil
}

// Close stops accepting requests, dispatches every queued request at once
// (without waiting for MaxWait, MaxInFlight calls at a time), waits until
// every batch call has returned and its callers are answered, and stops the
// workers. Callers blocked waiting for room in the queue get [ErrClosed]:
// their requests were never accepted. Nothing accepted is lost.
//
// Close does not cancel batch calls; a hung batch function holds it until
// the function returns, which it should do once every caller of its batch
// has given up. Close may be called more than once and concurrently; every
// call returns once the batcher is closed.
func (b *Batcher[Req, Resp]) Close() {
	b.mu.Lock()
	if b.closing {
		b.mu.Unlock()
		<-b.closed
		return
	}
	b.closing = true
	for c := b.blocked.pop(); c != nil; c = b.blocked.pop() {
		c.err = ErrClosed
		c.state.Store(stateDone)
		c.done <- struct{}{}
	}
	if b.timerArmed && b.timer.Stop() {
		b.timerArmed = false
		b.timers.Done()
	}
	b.dispatchLocked(time.Now())
	close(b.work)
	b.workClosed = true
	b.mu.Unlock()

	b.workers.Wait()
	b.timers.Wait()
	close(b.closed)
}

// Stats returns a snapshot of b's counters.
func (b *Batcher[Req, Resp]) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return Stats{
		Batches:   b.batches,
		Items:     b.items,
		Sizes:     append([]uint64(nil), b.sizes...),
		QueueWait: b.queueWait,
		Failed:    b.failed,
		Rejected:  b.rejected,
		Canceled:  b.canceled,
		Abandoned: b.abandoned.Load(),
		Queued:    b.queue.n,
		Blocked:   b.blocked.n,
		InFlight:  b.inFlight,
	}
}

// list is an intrusive FIFO of calls linked by prev and next, so that a
// caller who gives up leaves it in O(1).
type list[Req, Resp any] struct {
	head, tail *call[Req, Resp]
	n          int
}

func (l *list[Req, Resp]) push(c *call[Req, Resp]) {
	c.prev, c.next = l.tail, nil
	if l.tail == nil {
		l.head = c
	} else {
		l.tail.next = c
	}
	l.tail = c
	l.n++
}

func (l *list[Req, Resp]) remove(c *call[Req, Resp]) {
	if c.prev == nil {
		l.head = c.next
	} else {
		c.prev.next = c.next
	}
	if c.next == nil {
		l.tail = c.prev
	} else {
		c.next.prev = c.prev
	}
	c.prev, c.next = nil, nil
	l.n--
}

// pop removes and returns the oldest call, or nil.
func (l *list[Req, Resp]) pop() *call[Req, Resp] {
	c := l.head
	if c != nil {
		l.remove(c)
	}
	return c
}

// batchCtx is the context a batch function runs under. It carries no values
// and no deadline, and is cancelled when the last caller still waiting for
// its batch gives up. Its done channel is made only if someone asks for it.
type batchCtx struct {
	live atomic.Int32 // callers of the batch still waiting

	mu     sync.Mutex
	done   chan struct{}
	err    error
	afters []*func() // functions to start when cancelled, see AfterFunc
}

func (c *batchCtx) Deadline() (time.Time, bool) { return time.Time{}, false }

func (c *batchCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
	}
	return c.done
}

func (c *batchCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *batchCtx) Value(any) any { return nil }

// AfterFunc arranges to call f in its own goroutine once c is cancelled,
// at once if it already is, as [context.AfterFunc] does; stop keeps f from
// starting and reports whether it did. The context package calls it for a
// context derived from c (a batch function's timeout, say), which then
// needs no goroutine of its own to wait for c.
func (c *batchCtx) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		go f()
		return func() bool { return false }
	}
	p := &f
	c.afters = append(c.afters, p)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		i := slices.Index(c.afters, p)
		if i < 0 {
			return false
		}
		c.afters = slices.Delete(c.afters, i, i+1)
		return true
	}
}

func (c *batchCtx) String() string { return "batch.Context" }

// cancel ends the context with context.Canceled.
func (c *batchCtx) cancel() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = context.Canceled
	if c.done == nil {
		c.done = make(chan struct{})
	}
	close(c.done)
	for _, f := range c.afters {
		go (*f)()
	}
	c.afters = nil
}
