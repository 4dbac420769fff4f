package bench

import (
	"context"
	"sync"
)

// condRing is ring.Buffer's design with the parking path ring rejected: one
// sync.Cond per side instead of a channel token, with the same waiter
// counts, the same wake-only-on-transition rule, Signal issued after
// unlocking, and context.AfterFunc to wake a parked call whose ctx ends.
// BenchmarkPingPong and BenchmarkBurst run it beside ring.Buffer as
// impl=ring-cond: that comparison is the measurement behind ring's choice.
// Only the operations the benchmarks use are here.
type condRing struct {
	mu                sync.Mutex
	notFull, notEmpty sync.Cond
	buf               []item
	head, tail        uint64
	pWait, cWait      int
}

func newCondRing(capacity int) *condRing {
	r := &condRing{buf: make([]item, capacity)}
	r.notFull.L = &r.mu
	r.notEmpty.L = &r.mu
	return r
}

// wait parks on c with r.mu held, counting itself in *n.
func (r *condRing) wait(ctx context.Context, c *sync.Cond, n *int) error {
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() {
			r.mu.Lock()
			c.Broadcast()
			r.mu.Unlock()
		})
		defer stop()
	}
	*n++
	c.Wait()
	*n--
	return ctx.Err()
}

func (r *condRing) Push(ctx context.Context, v item) error {
	r.mu.Lock()
	for r.tail-r.head == uint64(len(r.buf)) {
		if err := r.wait(ctx, &r.notFull, &r.pWait); err != nil {
			r.mu.Unlock()
			return err
		}
	}
	r.buf[r.tail%uint64(len(r.buf))] = v
	r.tail++
	signal := r.tail-r.head == 1 && r.cWait > 0
	r.mu.Unlock()
	if signal {
		r.notEmpty.Signal()
	}
	return nil
}

func (r *condRing) Pop(ctx context.Context) (item, error) {
	r.mu.Lock()
	for r.tail == r.head {
		if err := r.wait(ctx, &r.notEmpty, &r.cWait); err != nil {
			r.mu.Unlock()
			return item{}, err
		}
	}
	signal := r.tail-r.head == uint64(len(r.buf)) && r.pWait > 0
	j := r.head % uint64(len(r.buf))
	v := r.buf[j]
	r.buf[j] = item{}
	r.head++
	r.mu.Unlock()
	if signal {
		r.notFull.Signal()
	}
	return v, nil
}

func (r *condRing) PopBatch(ctx context.Context, dst []item) (int, error) {
	r.mu.Lock()
	for r.tail == r.head {
		if err := r.wait(ctx, &r.notEmpty, &r.cWait); err != nil {
			r.mu.Unlock()
			return 0, err
		}
	}
	n := min(len(dst), int(r.tail-r.head))
	for i := range n {
		j := (r.head + uint64(i)) % uint64(len(r.buf))
		dst[i], r.buf[j] = r.buf[j], item{}
	}
	signal := r.tail-r.head == uint64(len(r.buf)) && r.pWait > 0
	r.head += uint64(n)
	r.mu.Unlock()
	if signal {
		r.notFull.Signal()
	}
	return n, nil
}
