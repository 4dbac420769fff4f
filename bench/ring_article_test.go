package bench

import "sync"

// articleQueue is the published naive design BenchmarkSPSC uses as the
// baseline to beat: a fixed array, one mutex, one sync.Cond shared by both
// sides, and a Signal after every operation whether or not anyone waits.
// With one producer and one consumer at most one side waits at a time, so the
// single condition is enough here (with more goroutines it is not).
type articleQueue struct {
	mu         sync.Mutex
	cond       sync.Cond
	buf        [spscCap]item
	head, size int
}

func newArticleQueue() *articleQueue {
	q := &articleQueue{}
	q.cond.L = &q.mu
	return q
}

func (q *articleQueue) Push(v item) {
	q.mu.Lock()
	for q.size == len(q.buf) {
		q.cond.Wait()
	}
	q.buf[(q.head+q.size)%len(q.buf)] = v
	q.size++
	q.cond.Signal()
	q.mu.Unlock()
}

func (q *articleQueue) Pop() item {
	q.mu.Lock()
	for q.size == 0 {
		q.cond.Wait()
	}
	v := q.buf[q.head]
	q.head = (q.head + 1) % len(q.buf)
	q.size--
	q.cond.Signal()
	q.mu.Unlock()
	return v
}
