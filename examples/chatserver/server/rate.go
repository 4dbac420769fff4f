package server

import (
	"sync"
	"time"
)

// rateMeter measures how many items per second pass a point, over the last
// second or so, from timestamps passed in. It is safe for concurrent use.
type rateMeter struct {
	mu      sync.Mutex
	buckets [rateBuckets]uint64 // items per rateSlot, a ring
	slot    int64               // the slot number (time / rateSlot) of the newest bucket
}

const (
	rateSlot    = 250 * time.Millisecond
	rateBuckets = 5 // the newest, partial slot plus one second of full slots
)

// add records n items passing at now.
func (m *rateMeter) add(n int, now time.Time) {
	m.mu.Lock()
	m.advance(now)
	m.buckets[m.slot%rateBuckets] += uint64(n)
	m.mu.Unlock()
}

// rate returns items per second over the full slots of the last second, as
// of now.
func (m *rateMeter) rate(now time.Time) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.advance(now)
	var sum uint64
	for i := int64(1); i < rateBuckets; i++ {
		sum += m.buckets[(m.slot-i)%rateBuckets]
	}
	return float64(sum) / (float64(rateBuckets-1) * rateSlot.Seconds())
}

// advance moves the ring to now's slot, clearing the slots it passes.
func (m *rateMeter) advance(now time.Time) {
	slot := now.UnixNano() / int64(rateSlot)
	if m.slot == 0 || slot-m.slot >= rateBuckets {
		clear(m.buckets[:])
		m.slot = slot
		return
	}
	for ; m.slot < slot; m.slot++ {
		m.buckets[(m.slot+1)%rateBuckets] = 0
	}
}
