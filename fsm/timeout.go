package fsm

import (
	"math"
	"math/bits"
	"sync"
	"time"
)

// Expiry is a deadline that came due in a [Wheel].
type Expiry[K comparable] struct {
	Key K

	// Time is when the deadline came due: the first multiple of the
	// wheel's resolution at or after the deadline last armed. Hand it to
	// [Session.Expire], which fires the timeout only if the session's own
	// deadline is at or before Time. (A deadline more than 2^31 ticks
	// ahead, 24 days at 1ms, is delivered early, at that horizon: Expire
	// finds it not due, and arming the session again files it anew.)
	Time time.Time
}

// Entry is a handle to one key's deadline in a [Wheel], returned by
// [Wheel.Add]. It is a small value to store beside the session. The zero
// Entry is invalid, and so is an Entry after [Wheel.Remove]: methods given
// one report false and change nothing, even once the wheel reuses its slot.
type Entry struct {
	idx, gen uint32
}

// WheelConfig sets up a [Wheel]. The zero value gives the defaults.
type WheelConfig struct {
	// Resolution is the wheel's tick: a deadline is delivered at the first
	// multiple of Resolution (in Unix time) at or after it. Zero or
	// negative means 1ms.
	Resolution time.Duration
}

// Wheel holds the deadlines of any number of sessions (a million is
// routine) in a hierarchical timing wheel driven by one goroutine and one
// runtime timer, and delivers each deadline once it is due. Arming costs
// O(1) and no allocation; a session costs 24 bytes in the wheel (with an
// 8-byte key) plus the 8-byte [Entry] its host keeps.
//
// Moving a deadline later, which is what activity does, only records the
// new deadline: the entry stays where it is, and when its old slot comes
// up it is filed again by its new deadline. Moving it earlier refiles it
// at once.
//
// Deadlines are instants of the system's wall clock, like those a
// [Session] computes: if the clock jumps forward, deadlines it skipped are
// delivered at once; if it jumps back, they wait for it to catch up.
//
// Wheel is safe for concurrent use by multiple goroutines and must not be
// copied. The zero value is invalid; use [NewWheel], and Close it to stop
// its goroutine.
type Wheel[K comparable] struct {
	expired func(Expiry[K])
	res     int64 // ns per tick
	epoch   int64 // Unix ns of tick 0, a multiple of res

	mu     sync.Mutex
	core   wheelCore[K]
	wakeAt int64 // tick the goroutine sleeps until; MinInt64 while it runs

	wake      chan struct{} // buffered(1): an earlier deadline was armed
	done      chan struct{}
	exited    chan struct{}
	closeOnce sync.Once
}

// The goroutine works in rounds of at most maxMoves refiled entries and
// maxBatch deliveries per hold of the lock, so Arm never waits long even
// when a million deadlines fall due at once.
const (
	maxMoves = 4096
	maxBatch = 1024
)

// NewWheel returns a wheel that calls expired for each deadline that comes
// due, and starts its goroutine; Close stops it.
//
// expired runs on the wheel's goroutine, one call at a time, in deadline
// order, outside the wheel's lock. It may call Add, Arm and Remove, and
// may block, which delays later deliveries but not arming. It must not
// call Close. Its usual job is to hand the expiry to the session's owner
// (through the owner's queue): the owner then calls [Session.Expire], which
// sorts out expiries that activity made stale in the meantime.
func NewWheel[K comparable](cfg WheelConfig, expired func(Expiry[K])) *Wheel[K] {
	if expired == nil {
		panic("fsm: NewWheel with nil expired func")
	}
	res := int64(cfg.Resolution)
	if res <= 0 {
		res = int64(time.Millisecond)
	}
	now := time.Now().UnixNano()
	w := &Wheel[K]{
		expired: expired,
		res:     res,
		epoch:   now - now%res,
		wakeAt:  math.MaxInt64,
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		exited:  make(chan struct{}),
	}
	w.core.init()
	go w.run()
	return w
}

// Add adds key to the wheel with the given deadline (the zero time for
// none) and returns its handle.
func (w *Wheel[K]) Add(key K, deadline time.Time) Entry {
	w.mu.Lock()
	i, gen := w.core.alloc(key)
	if !deadline.IsZero() {
		w.arm(i, deadline)
	}
	w.mu.Unlock()
	return Entry{idx: uint32(i), gen: gen}
}

// Arm sets e's deadline, replacing any earlier one; the zero time disarms
// it. A deadline already past is delivered promptly. The usual call, after
// every Fire or Expire, is w.Arm(e, session.Deadline()). Arm reports
// whether e is a live handle; if not, it changes nothing.
//
// An expiry the wheel has already handed to its callback is not recalled:
// the session's owner may still receive it after Arm, and [Session.Expire]
// rejects it as not due.
func (w *Wheel[K]) Arm(e Entry, deadline time.Time) bool {
	w.mu.Lock()
	i, ok := w.core.valid(e)
	if ok {
		if deadline.IsZero() {
			w.core.disarm(i)
		} else {
			w.arm(i, deadline)
		}
	}
	w.mu.Unlock()
	return ok
}

// arm arms entry i and wakes the goroutine if it sleeps past the deadline.
func (w *Wheel[K]) arm(i int32, deadline time.Time) {
	if t, moved := w.core.arm(i, w.tickOf(deadline.UnixNano())); moved && t < w.wakeAt {
		w.wakeAt = t
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// Remove deletes e from the wheel and invalidates the handle. It reports
// whether e was live.
func (w *Wheel[K]) Remove(e Entry) bool {
	w.mu.Lock()
	i, ok := w.core.valid(e)
	if ok {
		w.core.release(i)
	}
	w.mu.Unlock()
	return ok
}

// Len returns the number of armed deadlines: added or armed with a
// non-zero deadline and not yet delivered, disarmed or removed.
func (w *Wheel[K]) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.core.armed
}

// Close stops the wheel's goroutine and waits for it to exit: an expired
// call in progress finishes, and no other starts once Close has been
// called. Close is idempotent and safe to call concurrently; the other
// methods keep working on the stopped wheel, but nothing is delivered any
// more.
func (w *Wheel[K]) Close() {
	w.closeOnce.Do(func() { close(w.done) })
	<-w.exited
}

// tickOf returns the first tick at or after the Unix time ns.
func (w *Wheel[K]) tickOf(ns int64) int64 {
	d := ns - w.epoch
	if d <= 0 {
		return d / w.res // truncation rounds up below zero
	}
	return (d-1)/w.res + 1
}

// tickTime returns the Unix time of tick t, in ns.
func (w *Wheel[K]) tickTime(t int64) int64 { return w.epoch + t*w.res }

func (w *Wheel[K]) run() {
	defer close(w.exited)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var batch []Expiry[K]
	for {
		select {
		case <-w.done:
			return
		default:
		}
		w.mu.Lock()
		now := time.Now().UnixNano()
		var more bool
		batch, more = w.core.round(w.nowTick(now), batch[:0], w.epoch, w.res)
		var sleep time.Duration
		switch n, ok := w.core.next(); {
		case more:
			w.wakeAt = math.MinInt64 // we will look again without sleeping
		case ok:
			w.wakeAt = n
			sleep = time.Duration(w.tickTime(n) - now)
		default:
			w.wakeAt = math.MaxInt64
		}
		w.mu.Unlock()

		for _, x := range batch {
			select {
			case <-w.done:
				return // closed: deliver nothing more
			default:
			}
			w.expired(x)
		}
		clear(batch) // drop references to keys until the next round
		if more {
			continue
		}
		if sleep > 0 {
			timer.Reset(sleep)
		}
		select {
		case <-w.done:
			return
		case <-timer.C:
		case <-w.wake:
			timer.Stop()
		}
	}
}

// nowTick returns the last tick at or before the Unix time ns.
func (w *Wheel[K]) nowTick(ns int64) int64 {
	d := ns - w.epoch
	if d < 0 {
		return (d - w.res + 1) / w.res
	}
	return d / w.res
}

// The wheel proper. Ticks are counted from the wheel's epoch. Level L has
// 64 slots of 64^L ticks each; an entry due at tick t > cur lives at the
// level of the highest 6-bit digit in which t and cur differ, in the slot
// given by t's digit there. When cur reaches a slot's first tick, the slot
// is processed: each entry is filed again relative to cur, which moves it
// down a level, or into the ready list once t <= cur. Occupancy bitmaps
// let the wheel jump straight to the next non-empty slot instead of
// stepping through empty ticks.
//
// An entry is split in two parallel arrays: its state (generation, whether
// it is linked, tick), 8 bytes, which is all that moving a deadline later
// touches, and its links and key. Entries are linked by index into circular
// doubly linked lists, one per slot plus the ready list, whose sentinels are
// the first indexes. Both arrays grow in fixed-size chunks, so growing never
// copies them.
const (
	levelBits = 6
	levelMask = 1<<levelBits - 1
	levels    = 11 // 11*6 >= 64 bits of ticks
	readyList = levels << levelBits
	sentinels = readyList + 1

	chunkBits = 12
	chunkSize = 1 << chunkBits

	// horizon is how far ahead of cur a deadline is filed: entries store
	// the low 32 bits of their tick. A later deadline is delivered at the
	// horizon, Session.Expire finds it not due, and re-arming files it
	// again (2^31 ticks is 24 days at 1ms).
	horizon = 1<<31 - 1

	linkedBit = 1 << 31 // in state.gen: the entry is in a list
	genMask   = linkedBit - 1

	unlinked int32 = -1 // next and prev of an entry in no list
)

// state is the hot half of an entry.
type state struct {
	gen  uint32 // generation (matches Entry.gen while live), and linkedBit
	tick uint32 // low 32 bits of the tick the entry is due
}

// link is the cold half of an entry.
type link[K comparable] struct {
	next, prev int32 // in a list; next links the free list once removed
	key        K
}

type wheelCore[K comparable] struct {
	states   []*[chunkSize]state
	links    []*[chunkSize]link[K]
	n        int32 // entries allocated, including sentinels and free ones
	free     int32 // head of the free list, or -1
	cur      int64 // every tick <= cur has been processed
	occupied [levels]uint64
	pending  uint16 // levels whose slot at cur is not yet processed
	armed    int
}

func (c *wheelCore[K]) init() {
	c.grow()
	for i := range int32(sentinels) {
		l := c.link(i)
		l.next, l.prev = i, i
	}
	c.n, c.free = sentinels, -1
}

func (c *wheelCore[K]) grow() {
	c.states = append(c.states, new([chunkSize]state))
	c.links = append(c.links, new([chunkSize]link[K]))
}

func (c *wheelCore[K]) state(i int32) *state {
	return &c.states[i>>chunkBits][i&(chunkSize-1)]
}

func (c *wheelCore[K]) link(i int32) *link[K] {
	return &c.links[i>>chunkBits][i&(chunkSize-1)]
}

// full reconstructs a tick from its low 32 bits, which lie within 2^31 of
// cur.
func (c *wheelCore[K]) full(tick uint32) int64 {
	return c.cur + int64(int32(tick-uint32(c.cur)))
}

func (c *wheelCore[K]) alloc(key K) (int32, uint32) {
	i := c.free
	if i >= 0 {
		c.free = c.link(i).next
	} else {
		i = c.n
		c.n++
		if int(i>>chunkBits) == len(c.states) {
			c.grow()
		}
	}
	st, l := c.state(i), c.link(i)
	if st.gen == 0 {
		st.gen = 1
	}
	l.next, l.prev, l.key = unlinked, unlinked, key
	return i, st.gen
}

func (c *wheelCore[K]) valid(h Entry) (int32, bool) {
	i := int32(h.idx)
	if h.gen == 0 || i < sentinels || i >= c.n {
		return 0, false
	}
	return i, c.state(i).gen&genMask == h.gen
}

// release frees entry i; its generation moves on, so old handles fail.
func (c *wheelCore[K]) release(i int32) {
	c.disarm(i)
	st, l := c.state(i), c.link(i)
	st.gen = (st.gen + 1) & genMask
	var zero K
	l.key = zero
	l.next = c.free
	c.free = i
}

// arm files entry i at tick t, clamped to [cur, cur+horizon], and returns
// the tick and whether the entry moved. An entry in a slot whose deadline
// moves later stays where it is, and only its state changes: the slot is
// processed no later than the old tick, and the entry is refiled then.
// Entries in the ready list (old tick <= cur) always move, so that list
// stays in deadline order.
func (c *wheelCore[K]) arm(i int32, t int64) (int64, bool) {
	t = min(max(t, c.cur), c.cur+horizon)
	st := c.state(i)
	if st.gen&linkedBit != 0 {
		if old := c.full(st.tick); t >= old && old > c.cur {
			st.tick = uint32(t)
			return t, false
		}
		c.unlink(i)
	} else {
		c.armed++
	}
	c.place(i, t)
	return t, true
}

func (c *wheelCore[K]) disarm(i int32) {
	if c.state(i).gen&linkedBit != 0 {
		c.unlink(i)
		c.armed--
	}
}

// place files entry i, linked nowhere, at tick t in [cur, cur+horizon].
func (c *wheelCore[K]) place(i int32, t int64) {
	c.state(i).tick = uint32(t)
	if t <= c.cur {
		c.append(i, readyList)
		return
	}
	level := (bits.Len64(uint64(t^c.cur)) - 1) / levelBits
	slot := t >> (level * levelBits) & levelMask
	c.append(i, int32(level<<levelBits)|int32(slot))
}

// append adds entry i at the end of list.
func (c *wheelCore[K]) append(i, list int32) {
	head, l := c.link(list), c.link(i)
	tail := head.prev
	l.prev, l.next = tail, list
	c.link(tail).next = i
	head.prev = i
	c.state(i).gen |= linkedBit
	if list < readyList {
		c.occupied[list>>levelBits] |= 1 << (list & levelMask)
	}
}

// unlink removes entry i from its list.
func (c *wheelCore[K]) unlink(i int32) {
	l := c.link(i)
	p, n := l.prev, l.next
	c.link(p).next = n
	c.link(n).prev = p
	l.next, l.prev = unlinked, unlinked
	c.state(i).gen &^= linkedBit
	// A circular list whose two neighbours coincide holds only its
	// sentinel now, so the slot is empty.
	if p == n && p < readyList {
		c.occupied[p>>levelBits] &^= 1 << (p & levelMask)
	}
}

// next returns the first tick after cur at which a slot must be processed,
// and false if the wheel is empty (ready list aside). Within a level, the
// non-empty slots all lie after cur's digit; lower levels' slots come
// before higher levels', so the lowest non-empty level decides.
func (c *wheelCore[K]) next() (int64, bool) {
	for level := range levels {
		shift := level * levelBits
		digit := c.cur >> shift & levelMask
		mask := c.occupied[level] &^ (2<<digit - 1)
		if mask != 0 {
			base := c.cur >> (shift + levelBits) << (shift + levelBits)
			return base | int64(bits.TrailingZeros64(mask))<<shift, true
		}
	}
	return 0, false
}

// advance processes slots up to tick now, refiling at most budget entries,
// and returns the budget left; 0 means there may be more to do.
func (c *wheelCore[K]) advance(now int64, budget int) int {
	for budget > 0 {
		if c.pending != 0 {
			level := bits.Len16(c.pending) - 1
			list := int32(level<<levelBits) | int32(c.cur>>(level*levelBits)&levelMask)
			i := c.link(list).next
			if i == list {
				c.pending &^= 1 << level
				continue
			}
			c.unlink(i)
			c.place(i, c.full(c.state(i).tick))
			budget--
			continue
		}
		n, ok := c.next()
		if !ok || n > now {
			// Nothing is filed before now, so jumping there keeps every
			// entry in the level and slot it has.
			c.cur = max(c.cur, now)
			return budget
		}
		c.cur = n
		for level := range levels {
			shift := level * levelBits
			if level > 0 && n&(1<<shift-1) != 0 {
				break
			}
			if c.occupied[level]&(1<<(n>>shift&levelMask)) != 0 {
				c.pending |= 1 << level
			}
		}
	}
	return 0
}

func (c *wheelCore[K]) readyEmpty() bool { return c.link(readyList).next == readyList }

// round does one bounded round of the wheel's work towards tick now: it
// delivers what is ready, or if nothing is, advances first. It appends at
// most maxBatch expiries to dst, and reports whether there is more to do.
// Draining the ready list before advancing further keeps it short, so the
// entries it holds are still in cache when they are delivered.
func (c *wheelCore[K]) round(now int64, dst []Expiry[K], epoch, res int64) ([]Expiry[K], bool) {
	advanced, left := c.readyEmpty(), 0
	if advanced {
		left = c.advance(now, maxMoves)
	}
	dst = c.take(dst, len(dst)+maxBatch, epoch, res)
	return dst, !advanced || left == 0 || !c.readyEmpty()
}

// take appends up to max due entries from the ready list to dst, disarming
// them. Expiry times are epoch + tick*res.
func (c *wheelCore[K]) take(dst []Expiry[K], max int, epoch, res int64) []Expiry[K] {
	for len(dst) < max {
		i := c.link(readyList).next
		if i == readyList {
			break
		}
		c.unlink(i)
		c.armed--
		t := c.full(c.state(i).tick)
		dst = append(dst, Expiry[K]{Key: c.link(i).key, Time: time.Unix(0, epoch+t*res)})
	}
	return dst
}
