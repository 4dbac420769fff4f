// Package ctxstore keeps each conversation's record (state machine
// snapshot, bounded context window of turns, slots) in a hot in-process
// tier and writes it behind, in batches, to a durable cold tier, so that a
// restarted process serves every session again on first touch and no
// acknowledged write is lost.
//
// The hot tier is a ristretto cache sized in encoded bytes. The cold tier
// is a [Cold]: [Bolt] (an embedded file, the default for one machine),
// [Redis] (shared by a fleet) or [Memory] (tests). A [Store.Put] is visible
// to the next [Store.Get] on the same process at once, whatever the hot
// cache does with it: records wait in a write-behind buffer, which Get
// reads first, until the cold tier has them. [Store.Flush] and
// [Store.Close] return only when every acknowledged write is cold.
//
// Expiry follows one rule: the cold tier's TTL is the truth. A hot entry
// lives at most 2/3 of the cold entry's remaining life and is dropped early
// when the cold tier reports the key expired ([Expirer]).
//
// Writers on different processes cannot lose each other's updates: each
// Put moves the record's sequence number forward by one, and the cold tier
// refuses a write whose sequence number is not newer than the stored one
// ([ErrStale], returned by Put while the other version still waits to be
// written, and passed to [Config.OnWriteError] when the cold tier finds
// it).
package ctxstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
)

// Config holds the optional settings of a [Store]. A zero field means its
// default.
type Config struct {
	// TTL is how long a session's cold entry lives after its last Put.
	// Default 24h.
	TTL time.Duration

	// HotTTL is how long a hot entry lives. It is capped at 2/3 of TTL,
	// and an entry loaded from the cold tier gets at most 2/3 of the cold
	// entry's remaining life. Default 10 minutes (or 2/3 of TTL if less).
	HotTTL time.Duration

	// HotBytes is the hot tier's budget in encoded record bytes; the
	// cache evicts (and may refuse) entries to stay within it. Records
	// waiting for the cold tier are held outside this budget. Default
	// 32 MiB.
	HotBytes int64

	// MaxRecordBytes is the largest encoded record Put accepts; larger
	// ones get ErrTooLarge. Default 1 MiB.
	MaxRecordBytes int

	// MaxPending bounds the write-behind buffer: the number of sessions
	// acknowledged but not yet in the cold tier. A Put of a session not
	// already waiting blocks while the buffer is full. Default 16384.
	MaxPending int

	// MaxBatch is the most records one cold write carries. Batches form
	// on their own: while one is being written, the next collects what
	// arrives, and a repeated Put of a waiting session replaces its record
	// in place. Default 256.
	MaxBatch int

	// Linger is the least time between the starts of two cold writes.
	// While it runs, repeated Puts of a waiting session coalesce into one
	// write, so a busy store writes each chatty session at most once per
	// Linger instead of once per Put: less work for a cold tier that pays
	// per record (bbolt rewrites a page for each). Acknowledged writes wait
	// up to Linger longer for the cold tier; Flush and Close do not wait
	// for it. Pair a long Linger with a MaxBatch that holds every session
	// that may wait. Zero means a batch goes as soon as a writer is free.
	Linger time.Duration

	// Window bounds the context window of the store's records.
	Window Window

	// OnWriteError, if set, is told about every acknowledged write that
	// will never reach the cold tier: refused as stale (err wraps
	// ErrStale; the hot copy is dropped, so the next Get reads the
	// winner), or still waiting when Close gave up (err wraps the
	// context's error). It runs on the store's write-behind goroutine (or
	// in Close), must not block for long and must not call Put, Delete,
	// Flush or Close.
	OnWriteError func(k Key, err error)

	// Logger receives a warning when cold writes start failing and a
	// note when they recover. Default slog.Default().
	Logger *slog.Logger
}

// Defaults of Config.
const (
	defaultTTL            = 24 * time.Hour
	defaultHotTTL         = 10 * time.Minute
	defaultHotBytes       = 32 << 20
	defaultMaxRecordBytes = 1 << 20
	defaultMaxPending     = 16384
	defaultMaxBatch       = 256
)

func (c Config) withDefaults() Config {
	c.TTL = cmp.Or(max(c.TTL, 0), defaultTTL)
	c.HotTTL = min(cmp.Or(max(c.HotTTL, 0), defaultHotTTL), c.TTL*2/3)
	c.HotBytes = cmp.Or(max(c.HotBytes, 0), defaultHotBytes)
	c.MaxRecordBytes = cmp.Or(max(c.MaxRecordBytes, 0), defaultMaxRecordBytes)
	c.MaxPending = cmp.Or(max(c.MaxPending, 0), defaultMaxPending)
	c.MaxBatch = cmp.Or(max(c.MaxBatch, 0), defaultMaxBatch)
	c.Linger = max(c.Linger, 0)
	c.Window = c.Window.withDefaults()
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Store is a two-tier record store. See the package documentation for the
// guarantees.
//
// New starts the write-behind goroutine, which takes and retires batches,
// and its writer goroutines, and one more to watch expiries if the cold
// tier is an [Expirer]; Close stops them. The zero Store is
// invalid; use [New]. A Store is safe for concurrent use by multiple
// goroutines.
type Store struct {
	cfg  Config
	cold Cold
	hot  *ristretto.Cache[uint64, *entry]
	seed maphash.Seed

	shards [numShards]shard
	dirty  atomic.Int64 // slots in all shards: the write-behind depth

	// The write-behind queue: keys of slots waiting to be written, oldest
	// first. enq counts keys ever queued, deq keys ever taken.
	qmu      sync.Mutex
	queue    []Key
	qhead    int
	enq, deq uint64
	wake     chan struct{} // tells the write-behind goroutine to look

	// done is the deq count of the last batch finished: every key queued
	// before it is in the cold tier. progress is closed (and replaced)
	// each time a batch finishes, waking Flush and full Puts.
	pmu      sync.Mutex
	done     uint64
	progress chan struct{}

	closing   chan struct{} // closed by Close: drain and exit
	flushing  atomic.Int32  // Flush calls waiting: write without lingering
	urgent    chan struct{} // tells a lingering write-behind goroutine to look
	stopped   chan struct{} // closed when the write-behind goroutine exits
	wctx      context.Context
	abort     context.CancelFunc // cancels wctx when Close gives up
	abortErr  error              // why Close gave up
	abortOnce sync.Once
	closeOnce sync.Once
	finalOnce sync.Once
	closeErr  error
	stopWatch func()

	stats counters
}

// numShards splits the buffer and load maps so that Gets and Puts of
// different sessions rarely share a lock.
const numShards = 64

// shard guards the write-behind slots and in-flight loads of its keys.
type shard struct {
	mu    sync.Mutex
	slots map[Key]*slot
	loads map[Key]*load
	// gen counts slot removals and expiries in the shard; a load that saw
	// one happen while it read the cold tier does not warm the hot tier.
	gen    uint64
	closed bool     // set by Close
	_      [64]byte // keep shards on separate cache lines
}

// slot holds a session's latest acknowledged record until the cold tier
// has it.
type slot struct {
	e        *entry
	queued   bool // the key is in the write-behind queue
	inflight bool // a batch carrying a version of the key is being written
}

// entry is one version of a record, as the hot tier and the write-behind
// buffer hold it. Its fields never change after it is shared, except enc
// and buf, which only the write-behind goroutine touches.
type entry struct {
	rec     Record // shares its contents; a copy is handed to each Get
	deleted bool   // a Delete waiting for the cold tier
	// afterDelete marks a Put that replaced a Delete still waiting in the
	// queue: the cold tier must apply the Delete first, or the Put could be
	// refused by the record the Delete was meant to remove.
	afterDelete bool
	enc         []byte  // the encoded record, from batching until the cold tier has it
	buf         *[]byte // enc's buffer, from encBuffers
}

// load is one cold load that concurrent misses of a key wait for.
type load struct {
	done chan struct{}
	e    *entry
	err  error
}

type counters struct {
	hits, misses, coldLoads, written, batches, stale, coldErrors, expiryEvents atomic.Uint64
}

// Stats is a snapshot of a Store's counters, for metrics; the zero Stats
// is all zeros. The hit ratio is Hits / (Hits + Misses).
type Stats struct {
	Hits         uint64 // Gets answered from memory (hot tier or write-behind buffer)
	Misses       uint64 // Gets that had to wait for the cold tier
	ColdLoads    uint64 // cold loads made; concurrent misses of a key share one
	Pending      int    // sessions acknowledged but not yet in the cold tier
	Written      uint64 // records written to (or deleted from) the cold tier
	Batches      uint64 // cold write batches
	Stale        uint64 // writes the cold tier refused as stale
	ColdErrors   uint64 // failed cold loads and write attempts (each retry counts)
	ExpiryEvents uint64 // expiries reported by the cold tier
}

// New returns a Store in front of cold, which it does not take ownership
// of: close the Store before closing cold.
func New(cold Cold, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	hot, err := ristretto.NewCache(&ristretto.Config[uint64, *entry]{
		NumCounters: max(10*cfg.HotBytes/1024, 1<<14), // ~10 per 1 KiB record
		MaxCost:     cfg.HotBytes,
		BufferItems: 64,
	})
	if err != nil {
		return nil, fmt.Errorf("ctxstore: hot tier: %w", err)
	}
	s := &Store{
		cfg:      cfg,
		cold:     cold,
		hot:      hot,
		seed:     maphash.MakeSeed(),
		wake:     make(chan struct{}, 1),
		progress: make(chan struct{}),
		closing:  make(chan struct{}),
		urgent:   make(chan struct{}, 1),
		stopped:  make(chan struct{}),
	}
	for i := range s.shards {
		s.shards[i].slots = make(map[Key]*slot)
		s.shards[i].loads = make(map[Key]*load)
	}
	s.wctx, s.abort = context.WithCancel(context.Background())
	go s.writeBehind()
	s.stopWatch = func() {}
	if ex, ok := cold.(Expirer); ok {
		s.stopWatch = ex.WatchExpiry(s.expired)
	}
	return s, nil
}

// NewRecord returns an empty record for the session, with sequence number
// 0, ready to fill and Put.
func (s *Store) NewRecord(tenant, id string) *Record {
	return &Record{key: Key{Tenant: tenant, ID: id}, win: &s.cfg.Window}
}

// Get returns the session's record: from memory if it is there, or else
// loaded from the cold tier (concurrent misses of one session share one
// load) and kept hot. It returns an error wrapping ErrNotFound if the
// session has no record, and ErrCorrupt if the stored record does not
// decode.
func (s *Store) Get(ctx context.Context, tenant, id string) (*Record, error) {
	k := Key{Tenant: tenant, ID: id}
	if err := k.check(); err != nil {
		return nil, err
	}
	h := s.hash(k)
	sh := &s.shards[h%numShards]
	sh.mu.Lock()
	e, err := s.cached(sh, k, h)
	sh.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if e != nil {
		s.stats.hits.Add(1)
		return e.view(nil)
	}
	s.stats.misses.Add(1)
	return s.load(ctx, k, h, sh).view()
}

// cached returns k's newest version held in memory, or nil. Hot entries
// are checked against k, so a hash collision is a miss. The caller holds
// sh.mu, which keeps Close from closing the hot tier underneath.
func (s *Store) cached(sh *shard, k Key, h uint64) (*entry, error) {
	if sh.closed {
		return nil, ErrClosed
	}
	if len(sh.slots) > 0 { // usually not: writes wait only milliseconds
		if sl := sh.slots[k]; sl != nil {
			return sl.e, nil
		}
	}
	if e, ok := s.hot.Get(h); ok && e.rec.key == k {
		return e, nil
	}
	return nil, nil
}

// view returns a copy of e's record for a caller.
func (e *entry) view(err error) (*Record, error) {
	switch {
	case err != nil:
		return nil, err
	case e.deleted:
		return nil, fmt.Errorf("%w: %s", ErrNotFound, e.rec.key)
	}
	r := e.rec
	return &r, nil
}

// loaded is the outcome of a load.
type loaded struct {
	e   *entry
	err error
}

func (l loaded) view() (*Record, error) { return l.e.view(l.err) }

// load loads k from the cold tier, or waits for a load already under way.
func (s *Store) load(ctx context.Context, k Key, h uint64, sh *shard) loaded {
	for {
		sh.mu.Lock()
		if e, err := s.cached(sh, k, h); e != nil || err != nil {
			sh.mu.Unlock()
			return loaded{e, err}
		}
		if l := sh.loads[k]; l != nil {
			sh.mu.Unlock()
			select {
			case <-l.done:
				if isContextErr(l.err) && ctx.Err() == nil {
					continue // the loading caller gave up; we have not
				}
				return loaded{l.e, l.err}
			case <-ctx.Done():
				return loaded{err: ctx.Err()}
			}
		}
		l := &load{done: make(chan struct{})}
		sh.loads[k] = l
		gen := sh.gen
		sh.mu.Unlock()

		l.e, l.err = s.loadCold(ctx, k, h, sh, gen)
		close(l.done)
		return loaded{l.e, l.err}
	}
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// loadCold reads k from the cold tier and, unless something newer happened
// to k meanwhile, warms the hot tier with it.
func (s *Store) loadCold(ctx context.Context, k Key, h uint64, sh *shard, gen uint64) (*entry, error) {
	s.stats.coldLoads.Add(1)
	var e *entry
	data, expires, err := s.cold.Load(ctx, k)
	if err == nil {
		var r *Record
		if r, err = decode(k, data, &s.cfg.Window); err == nil {
			e = &entry{rec: r.share()}
		}
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		s.stats.coldErrors.Add(1)
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	delete(sh.loads, k)
	if sl := sh.slots[k]; sl != nil {
		return sl.e, nil // a Put or Delete came in while we read: it is newer
	}
	if e != nil && sh.gen == gen && !sh.closed {
		if ttl := s.hotTTL(expires); ttl > 0 {
			s.hot.SetWithTTL(h, e, int64(len(data)), ttl)
		}
	}
	return e, err
}

// hotTTL returns how long a hot entry whose cold entry expires at expires
// may live: HotTTL, but at most 2/3 of the cold entry's remaining life.
func (s *Store) hotTTL(expires time.Time) time.Duration {
	if expires.IsZero() {
		return s.cfg.HotTTL
	}
	return min(s.cfg.HotTTL, time.Until(expires)*2/3)
}

// Put stores r as the session's new record and moves r's sequence number
// forward by one. The record is visible to Gets at once and reaches the
// cold tier shortly after (see Flush).
//
// If another writer Put the session since r was read, r is stale. Put
// returns an error wrapping ErrStale, and stores nothing, when the other
// version is still waiting for the cold tier; otherwise the cold tier
// refuses r's write, the store drops r's version so that Gets read the
// other one, and [Config.OnWriteError] is told. Put returns ErrTooLarge if the
// encoded record exceeds [Config.MaxRecordBytes]; ErrBadKey for a record
// without a valid key. While the write-behind buffer is full, Put waits
// for room; if ctx ends first it returns an error wrapping ErrBacklog and
// ctx's error.
func (s *Store) Put(ctx context.Context, r *Record) error {
	if err := r.key.check(); err != nil {
		return err
	}
	next := r.seq + 1
	if n := r.encodedLen(next); n > s.cfg.MaxRecordBytes {
		return fmt.Errorf("%w: %s encodes to %d bytes, limit %d", ErrTooLarge, r.key, n, s.cfg.MaxRecordBytes)
	}
	// The version is r's contents as they are now: shared, so never
	// changed again. The write-behind goroutine encodes it, off the
	// caller's path (and not at all if a newer Put replaces it first).
	rec := r.share()
	rec.seq, rec.win = next, &s.cfg.Window
	if err := s.stage(ctx, &entry{rec: rec}); err != nil {
		return err
	}
	r.seq = next
	return nil
}

// Delete removes the session's record, from memory at once and from the
// cold tier behind, in order with earlier Puts. It waits for room in the
// write-behind buffer as Put does.
func (s *Store) Delete(ctx context.Context, tenant, id string) error {
	k := Key{Tenant: tenant, ID: id}
	if err := k.check(); err != nil {
		return err
	}
	return s.stage(ctx, &entry{rec: Record{key: k}, deleted: true})
}

// stage makes e the session's newest version and queues it for the cold
// tier.
func (s *Store) stage(ctx context.Context, e *entry) error {
	k := e.rec.key
	h := s.hash(k)
	sh := &s.shards[h%numShards]
	for {
		sh.mu.Lock()
		if sh.closed {
			sh.mu.Unlock()
			return ErrClosed
		}
		// Only a waiting version is checked: looking in the hot tier too
		// would cost a Put as much again, and the cold tier refuses a stale
		// write anyway (see OnWriteError).
		sl := sh.slots[k]
		if sl != nil && !e.deleted && !sl.e.deleted && sl.e.rec.seq >= e.rec.seq {
			sh.mu.Unlock()
			return fmt.Errorf("%w: %s: Put of seq %d, seq %d is waiting for the cold tier", ErrStale, k, e.rec.seq, sl.e.rec.seq)
		}
		if sl == nil {
			if !s.reserve() {
				sh.mu.Unlock()
				if err := s.waitRoom(ctx); err != nil {
					return err
				}
				continue
			}
			sl = &slot{}
			sh.slots[k] = sl
		}
		if sl.queued && !e.deleted {
			e.afterDelete = sl.e.deleted || sl.e.afterDelete
		}
		sl.e = e
		if !sl.queued {
			sl.queued = true
			s.enqueue(k)
		}
		// The hot tier is left alone: Gets read the slot first, and the
		// write-behind goroutine moves the version to the hot tier once it
		// is cold, off the caller's path.
		sh.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
		return nil
	}
}

// reserve takes a place in the write-behind buffer if one is free.
func (s *Store) reserve() bool {
	for {
		n := s.dirty.Load()
		if n >= int64(s.cfg.MaxPending) {
			return false
		}
		if s.dirty.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// waitRoom waits for the write-behind buffer to have room.
func (s *Store) waitRoom(ctx context.Context) error {
	room := s.progressChan()
	if s.dirty.Load() < int64(s.cfg.MaxPending) {
		return nil // room was made before we took the channel
	}
	select {
	case <-room:
		return nil
	case <-s.stopped:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("%w (%d sessions waiting for the cold tier): %w", ErrBacklog, s.dirty.Load(), ctx.Err())
	}
}

func (s *Store) enqueue(k Key) {
	s.qmu.Lock()
	s.queue = append(s.queue, k)
	s.enq++
	s.qmu.Unlock()
}

// expired drops k's hot entry after the cold tier expired it, unless a
// newer write is on its way there.
func (s *Store) expired(k Key) {
	s.stats.expiryEvents.Add(1)
	if k.check() != nil {
		return
	}
	h := s.hash(k)
	sh := &s.shards[h%numShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.closed || sh.slots[k] != nil {
		return
	}
	sh.gen++
	if e, ok := s.hot.Get(h); ok && e.rec.key == k {
		s.hot.Del(h)
	}
}

// hash is the hot tier's key for k (a hot entry's key is checked on every
// hit, so a collision costs a miss, never another session's record).
func (s *Store) hash(k Key) uint64 {
	return maphash.String(s.seed, k.ID) ^ bits.RotateLeft64(maphash.String(s.seed, k.Tenant), 29)*0x9e3779b97f4a7c15
}

// Stats returns a snapshot of the store's counters.
func (s *Store) Stats() Stats {
	return Stats{
		Hits:         s.stats.hits.Load(),
		Misses:       s.stats.misses.Load(),
		ColdLoads:    s.stats.coldLoads.Load(),
		Pending:      int(s.dirty.Load()),
		Written:      s.stats.written.Load(),
		Batches:      s.stats.batches.Load(),
		Stale:        s.stats.stale.Load(),
		ColdErrors:   s.stats.coldErrors.Load(),
		ExpiryEvents: s.stats.expiryEvents.Load(),
	}
}
