package backpressure

import (
	"hash/maphash"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// keyShards is the number of independently locked parts of a keyTable.
const keyShards = 32

// keyTable holds one token bucket per key with bounded memory. A bucket
// idle for its full refill time holds burst tokens again, exactly like a
// new one, so evicting it loses nothing; those are evicted as the table is
// used. If the table is still full, the least recently used key is evicted
// and starts again with a full bucket when it returns.
type keyTable struct {
	limit    rate.Limit
	burst    int
	idle     time.Duration // refill time: an entry idle this long is evictable
	perShard int
	seed     maphash.Seed
	shards   [keyShards]keyShard
}

// keyShard is a map plus a recency list, most recently used at head.
type keyShard struct {
	mu         sync.Mutex
	m          map[string]*keyEntry
	head, tail *keyEntry
}

type keyEntry struct {
	key        string
	lim        *rate.Limiter
	last       time.Time // latest use
	prev, next *keyEntry
}

func newKeyTable(limit rate.Limit, burst, maxKeys int) *keyTable {
	t := &keyTable{
		limit:    limit,
		burst:    burst,
		idle:     refillTime(limit, burst),
		perShard: (maxKeys + keyShards - 1) / keyShards,
		seed:     maphash.MakeSeed(),
	}
	for i := range t.shards {
		t.shards[i].m = make(map[string]*keyEntry)
	}
	return t
}

// refillTime is how long an empty bucket takes to fill up again.
func refillTime(limit rate.Limit, burst int) time.Duration {
	secs := float64(burst) / float64(limit)
	if secs >= math.MaxInt64/float64(time.Second) {
		return math.MaxInt64
	}
	return time.Duration(math.Ceil(secs * float64(time.Second)))
}

// limiter returns key's bucket, creating it if needed, and marks the key
// used at now.
func (t *keyTable) limiter(key string, now time.Time) *rate.Limiter {
	s := &t.shards[maphash.String(t.seed, key)%keyShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[key]
	if e == nil {
		e = &keyEntry{key: key, lim: rate.NewLimiter(t.limit, t.burst), last: now}
		s.m[key] = e
	} else {
		s.unlink(e)
		if now.After(e.last) {
			e.last = now
		}
	}
	s.pushFront(e)
	// Evict from the cold end: over capacity, or idle for a full refill.
	for s.tail != e && (len(s.m) > t.perShard || now.Sub(s.tail.last) >= t.idle) {
		old := s.tail
		s.unlink(old)
		delete(s.m, old.key)
	}
	return e.lim
}

// len returns the number of keys held.
func (t *keyTable) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

func (s *keyShard) pushFront(e *keyEntry) {
	e.prev, e.next = nil, s.head
	if s.head != nil {
		s.head.prev = e
	}
	s.head = e
	if s.tail == nil {
		s.tail = e
	}
}

func (s *keyShard) unlink(e *keyEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		s.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		s.tail = e.prev
	}
	e.prev, e.next = nil, nil
}
