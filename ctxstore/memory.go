package ctxstore

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Memory is a [Cold] tier held in process memory, for tests and examples:
// it survives a [Store] being closed and reopened, not the process. Expired
// entries are dropped when next touched.
//
// The zero Memory is empty and ready to use. It is safe for concurrent use
// by multiple goroutines and must not be copied after first use.
type Memory struct {
	mu sync.Mutex
	m  map[Key]memEntry
}

type memEntry struct {
	seq     uint64
	data    []byte
	expires time.Time
}

// Load implements [Cold.Load].
func (m *Memory) Load(ctx context.Context, k Key) ([]byte, time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.live(k, time.Now())
	if !ok {
		return nil, time.Time{}, fmt.Errorf("%w: %s", ErrNotFound, k)
	}
	return slices.Clone(e.data), e.expires, nil
}

// Write implements [Cold.Write].
func (m *Memory) Write(ctx context.Context, ws []Write) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = make(map[Key]memEntry)
	}
	now := time.Now()
	for i := range ws {
		w := &ws[i]
		w.Err = nil
		if w.Data == nil {
			delete(m.m, w.Key)
			continue
		}
		if cur, ok := m.live(w.Key, now); ok && refuses(cur.seq, cur.data, w) {
			w.Err = ErrStale
			continue
		}
		m.m[w.Key] = memEntry{seq: w.Seq, data: slices.Clone(w.Data), expires: now.Add(w.TTL)}
	}
	return nil
}

// Len returns the number of live entries.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, now := 0, time.Now()
	for k := range m.m {
		if _, ok := m.live(k, now); ok {
			n++
		}
	}
	return n
}

// live returns k's entry if it has not expired, deleting it if it has.
func (m *Memory) live(k Key, now time.Time) (memEntry, bool) {
	e, ok := m.m[k]
	if ok && !now.Before(e.expires) {
		delete(m.m, k)
		return memEntry{}, false
	}
	return e, ok
}
