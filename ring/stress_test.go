package ring

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// stressItems is how many items each stress test moves.
func stressItems() int {
	if testing.Short() {
		return 100_000
	}
	return 2_000_000
}

// side drives one goroutine of a stress test through random operations:
// single and batch calls, Try calls, and now and then a ctx that expires
// within microseconds, so that cancellation races with hand-offs.
type side struct {
	rng *rand.Rand
	buf []int
}

func newSide(seed uint64) *side {
	return &side{rng: rand.New(rand.NewPCG(seed, seed)), buf: make([]int, 100)}
}

// ctx returns a context for the next call and its cancel function.
func (s *side) ctx() (context.Context, context.CancelFunc) {
	if s.rng.IntN(32) == 0 {
		return context.WithTimeout(context.Background(), time.Duration(s.rng.IntN(50))*time.Microsecond)
	}
	return context.Background(), func() {}
}

// push queues all of vs in order, by whatever calls the dice pick, retrying
// what a cancelled call left. It returns ErrClosed if b is closed.
func (s *side) push(b *Buffer[int], vs []int) error {
	for len(vs) > 0 {
		ctx, cancel := s.ctx()
		n, err := 0, error(nil)
		switch s.rng.IntN(3) {
		case 0:
			if err = b.Push(ctx, vs[0]); err == nil {
				n = 1
			}
		case 1:
			if b.TryPush(vs[0]) {
				n = 1
			}
		default:
			n, err = b.PushBatch(ctx, vs[:1+s.rng.IntN(len(vs))])
		}
		cancel()
		if errors.Is(err, ErrClosed) {
			return err
		}
		vs = vs[n:]
	}
	return nil
}

// pop takes at least one item from b (unless it is closed and drained, when
// it returns ErrClosed) and returns what it took, valid until the next call.
func (s *side) pop(b *Buffer[int]) ([]int, error) {
	for {
		ctx, cancel := s.ctx()
		var n int
		var err error
		switch s.rng.IntN(3) {
		case 0:
			if s.buf[0], err = b.Pop(ctx); err == nil {
				n = 1
			}
		case 1:
			if v, ok := b.TryPop(); ok {
				s.buf[0], n = v, 1
			}
		default:
			n, err = b.PopBatch(ctx, s.buf[:1+s.rng.IntN(len(s.buf))])
		}
		cancel()
		if n > 0 || errors.Is(err, ErrClosed) {
			return s.buf[:n], err
		}
	}
}

// TestStressSPSC moves millions of items from one producer to one consumer
// with random calls and batch sizes, and checks that they arrive in order,
// each exactly once.
func TestStressSPSC(t *testing.T) {
	for _, capacity := range []int{1, 2, 16, 1024} {
		t.Run(fmt.Sprint("capacity=", capacity), func(t *testing.T) {
			t.Parallel()
			items := stressItems() / 4
			b := New[int](capacity)
			seed := rand.Uint64()
			t.Logf("seed %d", seed)
			var wg sync.WaitGroup
			wg.Go(func() {
				p := newSide(seed)
				vs := make([]int, 64)
				for next := 0; next < items; {
					k := min(1+p.rng.IntN(len(vs)), items-next)
					for i := range k {
						vs[i] = next + i
					}
					if p.push(b, vs[:k]) != nil {
						return // the consumer closed b on a failure
					}
					next += k
				}
				b.Close()
			})
			c := newSide(seed + 1)
			want := 0
			for {
				got, err := c.pop(b)
				if errors.Is(err, ErrClosed) {
					break
				}
				if i := firstOutOfSequence(got, want); i >= 0 {
					t.Errorf("popped %d, want %d", got[i], want+i)
					b.Close()
					break
				}
				want += len(got)
			}
			wg.Wait()
			if want != items {
				t.Errorf("consumer got %d items, want %d", want, items)
			}
			if s := b.Stats(); s.Pushed != uint64(items) || s.Popped != uint64(items) {
				t.Errorf("Stats() = %+v, want %d pushed and popped", s, items)
			}
		})
	}
}

// firstOutOfSequence returns the index of the first of got that is not its
// position plus first, or -1 if every one is.
func firstOutOfSequence(got []int, first int) int {
	for i, v := range got {
		if v != first+i {
			return i
		}
	}
	return -1
}

// TestStressSeveral runs several producers and consumers on one Buffer:
// every item must arrive exactly once, and with one consumer each producer's
// items must arrive in the order it pushed them.
func TestStressSeveral(t *testing.T) {
	for _, consumers := range []int{1, 3} {
		t.Run(fmt.Sprint("consumers=", consumers), func(t *testing.T) {
			t.Parallel()
			stressSeveral(t, 3, consumers)
		})
	}
}

func stressSeveral(t *testing.T, producers, consumers int) {
	items := stressItems() / 8 / producers
	b := New[int](8)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	// An item is producer*items + sequence number.
	var wg, pwg sync.WaitGroup
	for p := range producers {
		pwg.Go(func() {
			s := newSide(seed + uint64(p))
			vs := make([]int, 16)
			for next := 0; next < items; {
				k := min(1+s.rng.IntN(len(vs)), items-next)
				for i := range k {
					vs[i] = p*items + next + i
				}
				if err := s.push(b, vs[:k]); err != nil {
					t.Error(err)
					return
				}
				next += k
			}
		})
	}
	wg.Go(func() {
		pwg.Wait()
		b.Close()
	})
	seen := make([][]int, consumers) // what each consumer took, in order
	for c := range consumers {
		wg.Go(func() {
			s := newSide(seed + uint64(producers+c))
			for {
				got, err := s.pop(b)
				if err != nil {
					return
				}
				seen[c] = append(seen[c], got...)
			}
		})
	}
	wg.Wait()
	count := make([]int, producers*items)
	for _, vs := range seen {
		for _, v := range vs {
			count[v]++
		}
	}
	for v, n := range count {
		if n != 1 {
			t.Fatalf("item %d of producer %d was delivered %d times, want once", v%items, v/items, n)
		}
	}
	if consumers > 1 {
		return
	}
	last := make([]int, producers)
	for p := range last {
		last[p] = -1
	}
	for _, v := range seen[0] {
		p, seq := v/items, v%items
		if seq != last[p]+1 {
			t.Fatalf("consumer took item %d of producer %d after item %d", seq, p, last[p])
		}
		last[p] = seq
	}
}
