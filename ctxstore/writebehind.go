package ctxstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Backoff between attempts to write a batch the cold tier refused: it
// starts at retryMin, doubles up to retryMax, and each wait is drawn at
// random from its upper half.
const (
	retryMin = 20 * time.Millisecond
	retryMax = time.Second
)

// inflightBatches is how many batches may be on their way to the cold tier
// at once, each written by a writer goroutine of its own: while the cold
// tier applies one, the next is sent (and the write-behind goroutine takes
// and retires batches meanwhile). Batches in flight never share a key, so
// the writes of a key stay in order.
const inflightBatches = 2

// batch is one cold write in progress.
type batch struct {
	keys  []Key
	ws    []Write
	items []batchItem // one per write
	deq   uint64      // the queue's deq count once this batch was taken
	ok    bool        // written; false if Close gave up first
	done  bool        // back from its writer
}

// batchItem is what finish needs to know about one write of a batch.
type batchItem struct {
	e  *entry // the version written; nil for a Delete put before its Put
	sl *slot  // the key's slot: it stays in the map until finish removes it
	h  uint64
}

// writeBehind is the store's write-behind goroutine: it writes whatever is
// queued, in batches, until Close has been called and the queue is empty,
// or Close gives up. Its writer goroutines write the batches, retrying each
// until it succeeds; it retires them in the order it took them.
func (s *Store) writeBehind() {
	defer close(s.stopped)
	toWrite := make(chan *batch, inflightBatches)
	written := make(chan *batch, inflightBatches)
	var writers sync.WaitGroup
	for range inflightBatches {
		writers.Go(func() {
			for b := range toWrite {
				b.ok = s.write(b)
				written <- b
			}
		})
	}
	defer func() {
		close(toWrite)
		writers.Wait()
	}()

	free := make([]*batch, inflightBatches)
	for i := range free {
		free[i] = new(batch)
	}
	var inflight []*batch // oldest first
	aborted := false      // Close gave up: retire what was written, take nothing
	var lastTake time.Time
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		if aborted && len(inflight) == 0 {
			return
		}
		wait := s.lingerLeft(lastTake)
		if n := len(free); n > 0 && !aborted && wait <= 0 && s.take(free[n-1]) {
			b := free[n-1]
			free = free[:n-1]
			b.done = false
			inflight = append(inflight, b)
			lastTake = time.Now()
			toWrite <- b
			continue
		}
		var wake, closing, urgent <-chan struct{}
		var lingered <-chan time.Time
		if len(free) > 0 && !aborted {
			if wait > 0 && s.queueLen() > 0 {
				// Lingering: Puts need not wake this goroutine, only
				// the end of the wait, a Flush or Close.
				linger.Reset(wait)
				lingered, wake, urgent = linger.C, s.urgent, s.closing
			} else {
				wake = s.wake
			}
		}
		if len(inflight) == 0 {
			closing = s.closing
		}
		select {
		case <-lingered:
		case <-urgent:
		case b := <-written:
			b.done = true
			aborted = aborted || !b.ok
			for len(inflight) > 0 && inflight[0].done {
				if !inflight[0].ok {
					return // it and what follows stay in the buffer, reported by Close
				}
				s.finish(inflight[0])
				free = append(free, inflight[0])
				inflight = inflight[1:]
			}
		case <-wake:
		case <-closing:
			if s.queueLen() == 0 {
				return
			}
		}
	}
}

// lingerLeft returns how much longer the next batch should wait, given
// when the last one was taken: nothing once Linger has passed, or while a
// Flush or Close waits.
func (s *Store) lingerLeft(lastTake time.Time) time.Duration {
	if s.cfg.Linger == 0 || s.flushing.Load() > 0 {
		return 0
	}
	select {
	case <-s.closing:
		return 0
	default:
	}
	return s.cfg.Linger - time.Since(lastTake)
}

func (s *Store) queueLen() int {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	return len(s.queue) - s.qhead
}

// take fills b with the queued keys, oldest first, up to MaxBatch or up to
// the first key still in flight in an earlier batch, and their newest
// versions; it reports whether there were any.
func (s *Store) take(b *batch) bool {
	// Look at the front of the queue; only this goroutine removes from it.
	s.qmu.Lock()
	b.keys = append(b.keys[:0], s.queue[s.qhead:s.qhead+min(len(s.queue)-s.qhead, s.cfg.MaxBatch)]...)
	s.qmu.Unlock()

	clear(b.items) // drop references to written versions
	b.ws, b.items = b.ws[:0], b.items[:0]
	n := 0
	for _, k := range b.keys {
		h := s.hash(k)
		sh := &s.shards[h%numShards]
		sh.mu.Lock()
		sl := sh.slots[k]
		if sl.inflight {
			sh.mu.Unlock()
			break // its earlier version must reach the cold tier first
		}
		sl.queued = false // a Put from now on queues the key again
		sl.inflight = true
		e := sl.e
		sh.mu.Unlock()
		n++
		if e.afterDelete {
			b.ws = append(b.ws, Write{Key: k})
			b.items = append(b.items, batchItem{sl: sl, h: h})
		}
		if !e.deleted && e.enc == nil {
			e.buf = encBuffers.Get().(*[]byte)
			e.enc = e.rec.appendEncoded(*e.buf, e.rec.seq)
		}
		b.ws = append(b.ws, Write{Key: k, Seq: e.rec.seq, Data: e.enc, TTL: s.cfg.TTL})
		b.items = append(b.items, batchItem{e: e, sl: sl, h: h})
	}
	b.keys = b.keys[:n]

	s.qmu.Lock()
	clear(s.queue[s.qhead : s.qhead+n])
	s.qhead += n
	if s.qhead > len(s.queue)/2 { // reuse the front half
		s.queue = s.queue[:copy(s.queue, s.queue[s.qhead:])]
		s.qhead = 0
	}
	s.deq += uint64(n)
	b.deq = s.deq
	s.qmu.Unlock()
	return n > 0
}

// write writes b to the cold tier, retrying with backoff until it succeeds
// or Close gives up (then it returns false).
func (s *Store) write(b *batch) bool {
	backoff := retryMin
	for failures := 0; ; failures++ {
		if s.wctx.Err() != nil {
			return false // Close gave up: write nothing more
		}
		err := s.cold.Write(s.wctx, b.ws)
		if err == nil {
			if failures > 0 {
				s.cfg.Logger.Info("ctxstore: cold writes recovered", "failedAttempts", failures)
			}
			return true
		}
		s.stats.coldErrors.Add(1)
		if failures == 0 {
			s.cfg.Logger.Warn("ctxstore: cold write failed; retrying with backoff", "records", len(b.ws), "err", err)
		}
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-t.C:
		case <-s.wctx.Done():
			t.Stop()
			return false
		}
		backoff = min(2*backoff, retryMax)
	}
}

// finish retires the versions b wrote. A session whose newest version is
// now cold leaves the buffer, and its version moves to the hot tier. Since
// ristretto applies Sets asynchronously and may drop or refuse them, the
// hot tier is then checked to hold that version or nothing (so that a Get
// falls back to the cold tier, never to an older copy) before the slot,
// which Gets read first, goes.
func (s *Store) finish(b *batch) {
	for i, it := range b.items {
		if it.e == nil || it.e.deleted || b.ws[i].Err != nil {
			continue
		}
		sh := &s.shards[it.h%numShards]
		sh.mu.Lock()
		if it.sl.e == it.e {
			s.hot.SetWithTTL(it.h, it.e, int64(len(it.e.enc)), s.cfg.HotTTL)
		}
		sh.mu.Unlock()
	}
	s.hot.Wait() // apply every Set made so far
	for i, it := range b.items {
		if it.e == nil {
			continue // the Delete before an afterDelete Put
		}
		w := &b.ws[i]
		stale := errors.Is(w.Err, ErrStale)
		sh := &s.shards[it.h%numShards]
		sh.mu.Lock()
		it.sl.inflight = false
		if it.sl.e == it.e {
			if v, ok := s.hot.Get(it.h); ok && v != it.e {
				s.hot.Del(it.h)
			}
			delete(sh.slots, w.Key)
			sh.gen++
			s.dirty.Add(-1)
		} else {
			// A newer version waits in the slot, which a Get reads first:
			// the hot copy, older still, would only hold its turns in
			// memory until that version is written and takes its place.
			s.hot.Del(it.h)
		}
		// Written: only the decoded record stays hot, and the buffer can
		// serve another Put.
		if it.e.buf != nil {
			releaseBuffer(it.e.buf, it.e.enc)
		}
		it.e.enc, it.e.buf = nil, nil
		w.Data = nil
		sh.mu.Unlock()
		if stale {
			s.stats.stale.Add(1)
			s.report(w.Key, fmt.Errorf("%w: %s: the cold tier holds a newer record than seq %d", ErrStale, w.Key, w.Seq))
		}
	}
	s.stats.written.Add(uint64(len(b.ws)))
	s.stats.batches.Add(1)
	s.pmu.Lock()
	s.done = b.deq
	close(s.progress)
	s.progress = make(chan struct{})
	s.pmu.Unlock()
}

func (s *Store) report(k Key, err error) {
	if s.cfg.OnWriteError != nil {
		s.cfg.OnWriteError(k, err)
	}
}

// progressChan returns the channel closed when the write-behind goroutine
// next finishes a batch.
func (s *Store) progressChan() <-chan struct{} {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	return s.progress
}

// Flush waits until every write acknowledged before the call is in the
// cold tier. Writes keep flowing meanwhile; Flush does not wait for later
// ones. If ctx ends first, Flush returns ctx's error, wrapped.
func (s *Store) Flush(ctx context.Context) error {
	s.qmu.Lock()
	target := s.enq
	s.qmu.Unlock()
	s.flushing.Add(1)
	defer s.flushing.Add(-1)
	select {
	case s.urgent <- struct{}{}: // cut a Linger short
	default:
	}
	for {
		s.pmu.Lock()
		done, progress := s.done, s.progress
		s.pmu.Unlock()
		if done >= target {
			return nil
		}
		select {
		case <-progress:
		case <-s.stopped:
			if s.flushed(target) {
				return nil
			}
			return fmt.Errorf("ctxstore: flush: %w", ErrClosed)
		case <-ctx.Done():
			return fmt.Errorf("ctxstore: flush: %d sessions not yet in the cold tier: %w", s.dirty.Load(), ctx.Err())
		}
	}
}

func (s *Store) flushed(target uint64) bool {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	return s.done >= target
}

// Close stops the store: from its start, Get, Put and Delete return
// ErrClosed. It writes every acknowledged write to the cold tier, then
// stops the store's goroutines. If ctx ends before the writes are done,
// Close stops retrying (once a write in progress returns: a Redis client
// gives up at its read timeout), reports each unwritten session to
// [Config.OnWriteError] and returns an error saying how many there were.
// Close may be called more than once and concurrently; every call waits
// for the store to stop and returns the same result.
func (s *Store) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		// Every use of the hot tier and every new slot happens under a
		// shard lock after checking closed, so once this loop is over the
		// buffer can only shrink and the hot tier can be closed.
		for i := range s.shards {
			sh := &s.shards[i]
			sh.mu.Lock()
			sh.closed = true
			sh.mu.Unlock()
		}
		close(s.closing)
	})
	select {
	case <-s.stopped:
	case <-ctx.Done():
		s.abortOnce.Do(func() {
			s.abortErr = ctx.Err()
			s.abort()
		})
		<-s.stopped
	}
	s.finalOnce.Do(s.shutdown)
	return s.closeErr
}

// shutdown runs once the write-behind goroutine has exited.
func (s *Store) shutdown() {
	s.stopWatch()
	s.abort() // release wctx
	var lost []Key
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k := range sh.slots {
			lost = append(lost, k)
		}
		sh.mu.Unlock()
	}
	s.hot.Close()
	if len(lost) == 0 {
		return
	}
	for _, k := range lost {
		s.report(k, fmt.Errorf("ctxstore: %s not written to the cold tier before Close gave up: %w", k, s.abortErr))
	}
	s.closeErr = fmt.Errorf("ctxstore: close: %d acknowledged writes not in the cold tier: %w", len(lost), s.abortErr)
}
