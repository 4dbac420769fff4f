package ring

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// canceled is a context that is already done.
var canceled = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

func TestNew(t *testing.T) {
	tests := []struct {
		capacity, want int
	}{
		{1, 1}, {2, 2}, {3, 4}, {5, 8}, {8, 8}, {1000, 1024}, {4096, 4096}, {4097, 8192},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint("capacity=", tt.capacity), func(t *testing.T) {
			b := New[int](tt.capacity)
			if got := b.Cap(); got != tt.want {
				t.Errorf("New(%d).Cap() = %d, want %d", tt.capacity, got, tt.want)
			}
			if got := b.Len(); got != 0 {
				t.Errorf("New(%d).Len() = %d, want 0", tt.capacity, got)
			}
		})
	}
}

func TestNewPanics(t *testing.T) {
	for _, capacity := range []int{0, -1, 1<<62 + 1} {
		t.Run(fmt.Sprint("capacity=", capacity), func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%d) did not panic", capacity)
				}
			}()
			New[int](capacity)
		})
	}
}

func TestTryPushTryPop(t *testing.T) {
	b := New[int](4)
	next, want := 0, 0
	// Several laps, so that head and tail wrap around buf.
	for lap := range 5 {
		for b.TryPush(next) {
			next++
		}
		if got := b.Len(); got != 4 {
			t.Fatalf("lap %d: Len() after filling = %d, want 4", lap, got)
		}
		for range lap%4 + 1 {
			v, ok := b.TryPop()
			if !ok || v != want {
				t.Fatalf("lap %d: TryPop() = %d, %t, want %d, true", lap, v, ok, want)
			}
			want++
		}
	}
	for v, ok := b.TryPop(); ok; v, ok = b.TryPop() {
		if v != want {
			t.Fatalf("TryPop() = %d, want %d", v, want)
		}
		want++
	}
	if want != next {
		t.Errorf("popped %d items, pushed %d", want, next)
	}
	if v, ok := b.TryPop(); ok {
		t.Errorf("TryPop() on empty = %d, true, want false", v)
	}
}

func TestBatches(t *testing.T) {
	tests := []struct {
		name   string
		start  int // items pushed and popped first, to move head and tail
		queued int // items queued before the batch
		push   int // length of the PushBatch slice (fits: queued+push <= 8)
		dst    int // length of the PopBatch slice
	}{
		{"aligned", 0, 0, 8, 8},
		{"wrap push", 6, 0, 5, 8},
		{"wrap pop", 5, 2, 5, 7},
		{"small dst", 3, 1, 6, 2},
		{"dst larger than queue", 7, 3, 2, 16},
		{"one", 7, 0, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			b := New[int](8)
			next := 0
			pushN := func(n int) []int {
				vs := make([]int, n)
				for i := range vs {
					vs[i] = next
					next++
				}
				return vs
			}
			for _, v := range pushN(tt.start) {
				b.TryPush(v)
				b.TryPop()
			}
			var model []int
			for _, v := range pushN(tt.queued) {
				b.TryPush(v)
				model = append(model, v)
			}
			vs := pushN(tt.push)
			if n, err := b.PushBatch(ctx, vs); n != len(vs) || err != nil {
				t.Fatalf("PushBatch(%d items) = %d, %v, want %d, nil", len(vs), n, err, len(vs))
			}
			model = append(model, vs...)
			for len(model) > 0 {
				dst := make([]int, tt.dst)
				n, err := b.PopBatch(ctx, dst)
				want := min(len(model), tt.dst)
				if n != want || err != nil {
					t.Fatalf("PopBatch(len %d) = %d, %v, want %d, nil", tt.dst, n, err, want)
				}
				if !slices.Equal(dst[:n], model[:n]) {
					t.Fatalf("PopBatch moved %v, want %v", dst[:n], model[:n])
				}
				model = model[n:]
			}
			if got := b.Len(); got != 0 {
				t.Errorf("Len() after draining = %d, want 0", got)
			}
		})
	}
}

func TestPopClearsSlots(t *testing.T) {
	ctx := context.Background()
	pops := map[string]func(b *Buffer[*int]) int{
		"Pop": func(b *Buffer[*int]) int {
			if _, err := b.Pop(ctx); err != nil {
				t.Fatal(err)
			}
			return 1
		},
		"TryPop": func(b *Buffer[*int]) int {
			if _, ok := b.TryPop(); !ok {
				t.Fatal("TryPop found nothing")
			}
			return 1
		},
		"PopBatch": func(b *Buffer[*int]) int {
			n, err := b.PopBatch(ctx, make([]*int, 3))
			if err != nil {
				t.Fatal(err)
			}
			return n
		},
	}
	for name, pop := range pops {
		t.Run(name, func(t *testing.T) {
			b := New[*int](4)
			for i := range 3 { // leave head mid-buffer so PopBatch wraps
				b.TryPush(&i)
				pop(b)
			}
			for i := range 4 {
				b.TryPush(&i)
			}
			for left := 4; left > 0; left -= pop(b) {
			}
			for i, p := range b.buf {
				if p != nil {
					t.Errorf("after %s, buf[%d] still holds a pointer", name, i)
				}
			}
		})
	}
}

func TestZeroLengthBatches(t *testing.T) {
	b := New[int](2)
	b.Close()
	if n, err := b.PopBatch(canceled, nil); n != 0 || err != nil {
		t.Errorf("PopBatch(nil) = %d, %v, want 0, nil", n, err)
	}
	if n, err := b.PushBatch(canceled, []int{}); n != 0 || err != nil {
		t.Errorf("PushBatch(empty) = %d, %v, want 0, nil", n, err)
	}
}

func TestDoneContextFastPath(t *testing.T) {
	b := New[int](2)
	if err := b.Push(canceled, 1); err != nil {
		t.Errorf("Push(done ctx) with room = %v, want nil", err)
	}
	if n, err := b.PushBatch(canceled, []int{2}); n != 1 || err != nil {
		t.Errorf("PushBatch(done ctx) with room = %d, %v, want 1, nil", n, err)
	}
	if v, err := b.Pop(canceled); v != 1 || err != nil {
		t.Errorf("Pop(done ctx) with an item = %d, %v, want 1, nil", v, err)
	}
	dst := make([]int, 2)
	if n, err := b.PopBatch(canceled, dst); n != 1 || dst[0] != 2 || err != nil {
		t.Errorf("PopBatch(done ctx) with an item = %d (%v), %v, want 1 ([2]), nil", n, dst[:n], err)
	}
}

func TestStats(t *testing.T) {
	b := New[int](8)
	for i := range 6 {
		b.TryPush(i)
	}
	for range 4 {
		b.TryPop()
	}
	b.PushBatch(context.Background(), []int{6, 7, 8})
	want := Stats{Pushed: 9, Popped: 4, HighWater: 6}
	if got := b.Stats(); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

// synctestRun runs f in a synctest bubble as subtest name.
func synctestRun(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	t.Run(name, func(t *testing.T) { synctest.Test(t, f) })
}

// result is what a blocking call returned: the item it popped (the first,
// for PopBatch), how many items it moved, and its error.
type result struct {
	v   int
	n   int
	err error
}

// A call makes one blocking call on b and reports its result.
type call func(ctx context.Context, b *Buffer[int]) result

func push(v int) call {
	return func(ctx context.Context, b *Buffer[int]) result {
		if err := b.Push(ctx, v); err != nil {
			return result{err: err}
		}
		return result{n: 1}
	}
}

func pushBatch(vs ...int) call {
	return func(ctx context.Context, b *Buffer[int]) result {
		n, err := b.PushBatch(ctx, vs)
		return result{n: n, err: err}
	}
}

func pop(ctx context.Context, b *Buffer[int]) result {
	v, err := b.Pop(ctx)
	if err != nil {
		return result{err: err}
	}
	return result{v: v, n: 1}
}

func popBatch(size int) call {
	return func(ctx context.Context, b *Buffer[int]) result {
		dst := make([]int, size)
		n, err := b.PopBatch(ctx, dst)
		return result{v: dst[0], n: n, err: err}
	}
}

// start runs c in a new goroutine and returns a channel that receives its
// result; inside a bubble, blocked tells whether it is still waiting.
func start(ctx context.Context, b *Buffer[int], c call) <-chan result {
	ch := make(chan result, 1)
	go func() { ch <- c(ctx, b) }()
	return ch
}

// blocked reports whether the call behind ch is still running once every
// goroutine in the bubble is idle.
func blocked(ch <-chan result) bool {
	synctest.Wait()
	return len(ch) == 0
}

// assertDrain pops everything queued in b and checks it equals want.
func assertDrain(t *testing.T, b *Buffer[int], want []int) {
	t.Helper()
	var got []int
	for v, ok := b.TryPop(); ok; v, ok = b.TryPop() {
		got = append(got, v)
	}
	if !slices.Equal(got, want) {
		t.Errorf("Buffer held %v, want %v", got, want)
	}
}

func TestPushWaitsForRoom(t *testing.T) {
	for name, c := range map[string]call{"Push": push(2), "PushBatch": pushBatch(2, 3, 4)} {
		synctestRun(t, name, func(t *testing.T) {
			b := New[int](2)
			b.TryPush(0)
			b.TryPush(1)
			done := start(context.Background(), b, c)
			if !blocked(done) {
				t.Fatalf("%s on a full Buffer returned %+v, want it to wait", name, <-done)
			}
			time.Sleep(time.Second)
			var got []int
			for blocked(done) { // make room one item at a time
				got = append(got, pop(context.Background(), b).v)
			}
			r := <-done
			if r.err != nil {
				t.Fatalf("%s = %v after room was made", name, r.err)
			}
			for v, ok := b.TryPop(); ok; v, ok = b.TryPop() {
				got = append(got, v)
			}
			if want := []int{0, 1, 2, 3, 4}[:2+r.n]; !slices.Equal(got, want) {
				t.Errorf("popped %v, want %v", got, want)
			}
			if s := b.Stats(); s.Blocked == 0 || s.BlockedTime < time.Second {
				t.Errorf("Stats() = %+v, want Blocked > 0 and BlockedTime >= 1s", s)
			}
		})
	}
}

func TestBlockedTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New[int](1)
		b.TryPush(0)
		done := start(context.Background(), b, push(1))
		time.Sleep(3 * time.Second)
		b.TryPop()
		if r := <-done; r.err != nil {
			t.Fatal(r.err)
		}
		want := Stats{Pushed: 2, Popped: 1, Blocked: 1, BlockedTime: 3 * time.Second, HighWater: 1}
		if got := b.Stats(); got != want {
			t.Errorf("Stats() = %+v, want %+v", got, want)
		}
	})
}

func TestPopWaitsForItem(t *testing.T) {
	pushes := map[string]struct {
		push  func(b *Buffer[int])
		items int
	}{
		"Push":      {func(b *Buffer[int]) { b.Push(context.Background(), 7) }, 1},
		"TryPush":   {func(b *Buffer[int]) { b.TryPush(7) }, 1},
		"PushBatch": {func(b *Buffer[int]) { b.PushBatch(context.Background(), []int{7, 8}) }, 2},
	}
	pops := map[string]struct {
		call call
		max  int // items one call takes at most
	}{
		"Pop":      {pop, 1},
		"PopBatch": {popBatch(4), 4},
	}
	for popName, p := range pops {
		for pushName, push := range pushes {
			synctestRun(t, popName+"/"+pushName, func(t *testing.T) {
				b := New[int](4)
				done := start(context.Background(), b, p.call)
				if !blocked(done) {
					t.Fatalf("%s on an empty Buffer returned %+v, want it to wait", popName, <-done)
				}
				push.push(b)
				// The parked consumer is handed the first item directly; a
				// PopBatch also takes what was queued behind it.
				wantN := min(push.items, p.max)
				if r := <-done; r.v != 7 || r.n != wantN || r.err != nil {
					t.Errorf("%s = %+v, want first item 7, %d items, nil", popName, r, wantN)
				}
				s := b.Stats()
				if s.Pushed != uint64(push.items) || s.Popped != uint64(wantN) || b.Len() != push.items-wantN {
					t.Errorf("Stats() = %+v with Len() = %d, want %d pushed, %d popped", s, b.Len(), push.items, wantN)
				}
			})
		}
	}
}

func TestCancel(t *testing.T) {
	tests := []struct {
		name   string
		queued int // items queued in a Buffer of capacity 4 before the call
		call   call
		wantN  int // items the call queued (PushBatch) before giving up
	}{
		{"Push", 4, push(100), 0},
		{"PushBatch", 2, pushBatch(100, 101, 102, 103), 2},
		{"Pop", 0, pop, 0},
		{"PopBatch", 0, popBatch(4), 0},
	}
	causes := map[string]func() (context.Context, context.CancelFunc, error){
		"cancel": func() (context.Context, context.CancelFunc, error) {
			ctx, cancel := context.WithCancel(context.Background())
			return ctx, cancel, context.Canceled
		},
		"deadline": func() (context.Context, context.CancelFunc, error) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			return ctx, cancel, context.DeadlineExceeded
		},
	}
	for _, tt := range tests {
		for cause, newCtx := range causes {
			synctestRun(t, tt.name+"/"+cause, func(t *testing.T) {
				b := New[int](4)
				var model []int
				for i := range tt.queued {
					b.TryPush(i)
					model = append(model, i)
				}
				ctx, cancel, wantErr := newCtx()
				defer cancel()
				done := start(ctx, b, tt.call)
				if !blocked(done) {
					t.Fatalf("%s returned %+v before its ctx ended, want it to wait", tt.name, <-done)
				}
				if cause == "cancel" {
					cancel()
				}
				r := <-done
				if !errors.Is(r.err, wantErr) || r.n != tt.wantN {
					t.Fatalf("%s = %+v, want %d items and %v", tt.name, r, tt.wantN, wantErr)
				}
				model = append(model, []int{100, 101, 102, 103}[:tt.wantN]...)
				// Nothing was lost or added, and the Buffer still works: a
				// cancelled call must not leave it stuck.
				assertDrain(t, b, model)
				b.Push(context.Background(), 200)
				if r := pop(context.Background(), b); r.v != 200 || r.err != nil {
					t.Errorf("Pop() after a cancelled call = %+v, want 200, nil", r)
				}
				later := start(context.Background(), b, pop)
				blocked(later)
				b.TryPush(201)
				if r := <-later; r.v != 201 || r.err != nil {
					t.Errorf("parked Pop() after a cancelled call = %+v, want 201, nil", r)
				}
			})
		}
	}
}

// TestCancelAfterClaim stages the race between a consumer's ctx ending and a
// push that has already claimed it: the push has committed to deliver, so
// the consumer must wait for the item and return it.
func TestCancelAfterClaim(t *testing.T) {
	for name, c := range map[string]call{"Pop": pop, "PopBatch": popBatch(4)} {
		synctestRun(t, name, func(t *testing.T) {
			b := New[int](4)
			ctx, cancel := context.WithCancel(context.Background())
			done := start(ctx, b, c)
			blocked(done)
			b.mu.Lock()
			k, _, ch := b.claim(1) // what a push does before it sends
			b.mu.Unlock()
			if k != 1 {
				t.Fatal("no parked consumer to claim")
			}
			cancel()
			if !blocked(done) {
				t.Fatalf("%s returned %+v after a push claimed it, want it to wait for the item", name, <-done)
			}
			ch <- delivery[int]{7, true}
			if r := <-done; r.v != 7 || r.n != 1 || r.err != nil {
				t.Errorf("%s = %+v, want item 7, 1 item, nil", name, r)
			}
			if s := b.Stats(); s.Pushed != 1 || s.Popped != 1 {
				t.Errorf("Stats() = %+v, want 1 pushed and popped", s)
			}
		})
	}
}

func TestClose(t *testing.T) {
	synctestRun(t, "drain then ErrClosed", func(t *testing.T) {
		ctx := context.Background()
		b := New[int](4)
		b.PushBatch(ctx, []int{1, 2, 3})
		b.Close()
		for name, c := range map[string]call{"Push": push(4), "PushBatch": pushBatch(4)} {
			if r := c(ctx, b); r.n != 0 || !errors.Is(r.err, ErrClosed) {
				t.Errorf("%s after Close = %+v, want 0 items, ErrClosed", name, r)
			}
		}
		if b.TryPush(4) {
			t.Error("TryPush after Close = true, want false")
		}
		if r := pop(ctx, b); r.v != 1 || r.err != nil {
			t.Errorf("Pop after Close = %+v, want 1, nil", r)
		}
		dst := make([]int, 4)
		if n, err := b.PopBatch(ctx, dst); err != nil || !slices.Equal(dst[:n], []int{2, 3}) {
			t.Errorf("PopBatch after Close = %v, %v, want [2 3], nil", dst[:n], err)
		}
		for name, c := range map[string]call{"Pop": pop, "PopBatch": popBatch(4)} {
			if r := c(ctx, b); r.n != 0 || !errors.Is(r.err, ErrClosed) {
				t.Errorf("%s on closed, drained Buffer = %+v, want 0 items, ErrClosed", name, r)
			}
		}
		if _, ok := b.TryPop(); ok {
			t.Error("TryPop on closed, drained Buffer = true, want false")
		}
		b.Close() // idempotent
	})
	parked := []struct {
		name   string
		queued []int
		calls  []call
	}{
		{"wakes parked producers", []int{1, 2}, []call{push(3), pushBatch(4, 5)}},
		{"wakes parked consumers", nil, []call{pop, popBatch(2)}},
	}
	for _, tt := range parked {
		synctestRun(t, tt.name, func(t *testing.T) {
			b := New[int](2)
			b.PushBatch(context.Background(), tt.queued)
			var done []<-chan result
			for _, c := range tt.calls {
				done = append(done, start(context.Background(), b, c))
			}
			for _, ch := range done {
				if !blocked(ch) {
					t.Fatalf("call returned %+v before Close, want it to wait", <-ch)
				}
			}
			b.Close()
			for _, ch := range done {
				if r := <-ch; r.n != 0 || !errors.Is(r.err, ErrClosed) {
					t.Errorf("parked call after Close = %+v, want 0 items, ErrClosed", r)
				}
			}
			assertDrain(t, b, tt.queued)
		})
	}
	synctestRun(t, "concurrent", func(t *testing.T) {
		b := New[int](2)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(b.Close)
		}
		wg.Wait()
		if err := b.Push(context.Background(), 1); !errors.Is(err, ErrClosed) {
			t.Errorf("Push after concurrent Closes = %v, want ErrClosed", err)
		}
	})
}

// TestSeveralParked checks the paths only several producers or consumers
// take: claims of several parked consumers at once, and wake-ups passed on
// from one parked producer to the next.
func TestSeveralParked(t *testing.T) {
	synctestRun(t, "consumers", func(t *testing.T) {
		ctx := context.Background()
		b := New[int](4)
		var pops []<-chan result
		for range 3 {
			pops = append(pops, start(ctx, b, pop))
		}
		synctest.Wait()
		if n, err := b.PushBatch(ctx, []int{1, 2, 3, 4, 5}); n != 5 || err != nil {
			t.Fatalf("PushBatch = %d, %v, want 5, nil", n, err)
		}
		var got []int
		for _, ch := range pops {
			r := <-ch
			if r.err != nil {
				t.Fatal(r.err)
			}
			got = append(got, r.v)
		}
		slices.Sort(got)
		if !slices.Equal(got, []int{1, 2, 3}) {
			t.Errorf("parked consumers got %v, want 1, 2 and 3", got)
		}
		assertDrain(t, b, []int{4, 5})
		if s := b.Stats(); s.Pushed != 5 || s.Popped != 5 {
			t.Errorf("Stats() = %+v, want 5 pushed and popped", s)
		}
	})
	synctestRun(t, "producers", func(t *testing.T) {
		ctx := context.Background()
		b := New[int](2)
		b.PushBatch(ctx, []int{0, 0})
		var pushes []<-chan result
		for i := range 3 {
			pushes = append(pushes, start(ctx, b, push(i+1)))
		}
		synctest.Wait()
		// One PopBatch frees both slots with a single wake-up; the woken
		// producer must pass it on.
		if n, err := b.PopBatch(ctx, make([]int, 2)); n != 2 || err != nil {
			t.Fatalf("PopBatch = %d, %v, want 2, nil", n, err)
		}
		synctest.Wait()
		if got := b.Len(); got != 2 {
			t.Fatalf("Len() = %d after freeing 2 slots for 3 parked producers, want 2", got)
		}
		b.PopBatch(ctx, make([]int, 2))
		for _, ch := range pushes {
			if r := <-ch; r.err != nil {
				t.Fatal(r.err)
			}
		}
	})
}

// benchItem is the element type of the benchmarks here, as in bench/.
type benchItem struct {
	S string
	N int64
}

// BenchmarkNew reports a Buffer's memory footprint as B/op: the Buffer and
// its slots, plus, with parked=true, the channel a consumer's first park
// adds (a producer's first wait for room adds a smaller one).
func BenchmarkNew(b *testing.B) {
	for _, capacity := range []int{16, 64, 4096} {
		for _, parked := range []bool{false, true} {
			b.Run(fmt.Sprintf("cap=%d/parked=%t", capacity, parked), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					r := New[benchItem](capacity)
					if parked {
						r.Pop(canceled) // parks, then gives up at once
					}
				}
			})
		}
	}
}

// BenchmarkStats measures the cost of a Stats snapshot, which a host may
// take for every session's Buffer on each metrics scrape.
func BenchmarkStats(b *testing.B) {
	r := New[benchItem](64)
	r.TryPush(benchItem{})
	b.ReportAllocs()
	for b.Loop() {
		r.Stats()
	}
}
