package bench

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/Workiva/go-datastructures/queue"
	"github.com/parley-go/parley/ring"
)

// item is the element type every SPSC implementation moves.
type item struct {
	S string
	N int64
}

// spscCap is the capacity of every queue in this file.
const spscCap = 4096

// batchLen is the length of the slices given to PushBatch and PopBatch.
const batchLen = 64

// BenchmarkSPSC moves b.N items from one producer goroutine to one consumer
// goroutine through a queue of capacity spscCap; ns/op is per item.
//
// impl=article is the published naive mutex and sync.Cond design, the
// baseline to beat; impl=ring-popbatch pushes one item at a time and pops
// with PopBatch; impl=ring-batch64 uses PushBatch and PopBatch of batchLen;
// impl=workiva is github.com/Workiva/go-datastructures/queue.RingBuffer.
func BenchmarkSPSC(b *testing.B) {
	ctx := context.Background()
	b.Run("impl=chan", func(b *testing.B) {
		ch := make(chan item, spscCap)
		runSPSC(b, func(n int) {
			for i := range n {
				ch <- item{S: "x", N: int64(i)}
			}
		}, func(n int) (sum int64) {
			for range n {
				sum += (<-ch).N
			}
			return sum
		})
	})
	b.Run("impl=article", func(b *testing.B) {
		q := newArticleQueue()
		runSPSC(b, func(n int) {
			for i := range n {
				q.Push(item{S: "x", N: int64(i)})
			}
		}, func(n int) (sum int64) {
			for range n {
				sum += q.Pop().N
			}
			return sum
		})
	})
	b.Run("impl=ring", func(b *testing.B) {
		r := ring.New[item](spscCap)
		runSPSC(b, ringPusher(b, r), func(n int) (sum int64) {
			for range n {
				it, err := r.Pop(ctx)
				if err != nil {
					b.Error(err)
					return sum
				}
				sum += it.N
			}
			return sum
		})
	})
	b.Run("impl=ring-popbatch", func(b *testing.B) {
		r := ring.New[item](spscCap)
		runSPSC(b, ringPusher(b, r), ringBatchPopper(b, r))
	})
	b.Run("impl=ring-batch64", func(b *testing.B) {
		r := ring.New[item](spscCap)
		runSPSC(b, func(n int) {
			batch := make([]item, batchLen)
			for i := 0; i < n; i += batchLen {
				k := min(batchLen, n-i)
				for j := range k {
					batch[j] = item{S: "x", N: int64(i + j)}
				}
				if _, err := r.PushBatch(ctx, batch[:k]); err != nil {
					b.Error(err)
					return
				}
			}
		}, ringBatchPopper(b, r))
	})
	b.Run("impl=workiva", func(b *testing.B) {
		q := queue.NewRingBuffer(spscCap)
		runSPSC(b, func(n int) {
			for i := range n {
				if err := q.Put(item{S: "x", N: int64(i)}); err != nil {
					b.Error(err)
					return
				}
			}
		}, func(n int) (sum int64) {
			for range n {
				v, err := q.Get()
				if err != nil {
					b.Error(err)
					return sum
				}
				sum += v.(item).N
			}
			return sum
		})
	})
}

// runSPSC runs push(b.N) in the benchmark goroutine, which must push items
// with N = 0..b.N-1 in order, while pop(b.N), in a goroutine of its own,
// takes b.N items and returns the sum of their N, which is checked.
func runSPSC(b *testing.B, push func(n int), pop func(n int) int64) {
	b.ReportAllocs()
	done := make(chan int64)
	go func() { done <- pop(b.N) }()
	push(b.N)
	if got, want := <-done, int64(b.N)*int64(b.N-1)/2; got != want {
		b.Fatalf("consumer sum = %d, want %d", got, want)
	}
}

// ringPusher returns a runSPSC push function that calls r.Push.
func ringPusher(b *testing.B, r *ring.Buffer[item]) func(int) {
	return func(n int) {
		for i := range n {
			if err := r.Push(context.Background(), item{S: "x", N: int64(i)}); err != nil {
				b.Error(err)
				return
			}
		}
	}
}

// ringBatchPopper returns a runSPSC pop function that calls r.PopBatch.
func ringBatchPopper(b *testing.B, r *ring.Buffer[item]) func(int) int64 {
	return func(n int) (sum int64) {
		dst := make([]item, batchLen)
		for n > 0 {
			k, err := r.PopBatch(context.Background(), dst)
			if err != nil {
				b.Error(err)
				return sum
			}
			for _, it := range dst[:k] {
				sum += it.N
			}
			n -= k
		}
		return sum
	}
}

// BenchmarkPingPong sends one item each way between two goroutines through a
// pair of queues of capacity spscCap; ns/op is per round trip.
//
// impl=chan uses bare channel operations. The other rows go through the
// blocking API of ring.Buffer (a method call, a context and an error per
// operation): impl=chan-wrapped is a channel behind that API, which shows
// what the API itself costs; impl=ring parks its consumer as the sleeper
// (gopark and goready) in a build without the race detector, on a channel
// otherwise; impl=mutex-chan is the bare mechanism of a hand-off to a
// consumer parked on a channel (floorQueue), the floor for a Buffer built
// that way; and impl=ring-cond is ring's design parked on sync.Cond.
func BenchmarkPingPong(b *testing.B) {
	b.Run("impl=chan", func(b *testing.B) {
		ping, pong := make(chan item, spscCap), make(chan item, spscCap)
		runPingPong(b, func(it item) { ping <- it }, func() item { return <-pong },
			func() item { return <-ping }, func(it item) { pong <- it })
	})
	benchQueuePingPong(b, context.Background())
}

// BenchmarkPingPongCancel is BenchmarkPingPong with a cancellable context on
// every call, as a server passes its connection's context: a channel then
// needs a select, and a sync.Cond a context.AfterFunc for every wait.
func BenchmarkPingPongCancel(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	benchQueuePingPong(b, ctx)
}

// benchQueuePingPong runs the ping-pong sub-benchmarks of the queues that
// have ring.Buffer's blocking API (Push(ctx, v) error, Pop(ctx) (v, error)),
// passing ctx to every call. Each row spells out its calls so that they are
// direct, as a caller holding a *ring.Buffer makes them: through an
// interface, a generic type's methods cost one more call (to the wrapper
// that passes the instantiation's dictionary) than the other rows' methods.
func benchQueuePingPong(b *testing.B, ctx context.Context) {
	chanName := "chan-wrapped"
	if ctx.Done() != nil {
		chanName = "chan" // with a cancellable ctx, a select is how a channel is used
	}
	b.Run("impl="+chanName, func(b *testing.B) {
		ping, pong, c := make(chanQueue, spscCap), make(chanQueue, spscCap), queueCalls{b}
		runPingPong(b, func(it item) { c.push(ping.Push(ctx, it)) }, func() item { return c.pop(pong.Pop(ctx)) },
			func() item { return c.pop(ping.Pop(ctx)) }, func(it item) { c.push(pong.Push(ctx, it)) })
	})
	b.Run("impl=mutex-chan", func(b *testing.B) {
		ping, pong, c := newFloorQueue(spscCap), newFloorQueue(spscCap), queueCalls{b}
		runPingPong(b, func(it item) { c.push(ping.Push(ctx, it)) }, func() item { return c.pop(pong.Pop(ctx)) },
			func() item { return c.pop(ping.Pop(ctx)) }, func(it item) { c.push(pong.Push(ctx, it)) })
	})
	b.Run("impl=ring", func(b *testing.B) {
		ping, pong, c := ring.New[item](spscCap), ring.New[item](spscCap), queueCalls{b}
		runPingPong(b, func(it item) { c.push(ping.Push(ctx, it)) }, func() item { return c.pop(pong.Pop(ctx)) },
			func() item { return c.pop(ping.Pop(ctx)) }, func(it item) { c.push(pong.Push(ctx, it)) })
	})
	b.Run("impl=ring-cond", func(b *testing.B) {
		ping, pong, c := newCondRing(spscCap), newCondRing(spscCap), queueCalls{b}
		runPingPong(b, func(it item) { c.push(ping.Push(ctx, it)) }, func() item { return c.pop(pong.Pop(ctx)) },
			func() item { return c.pop(ping.Pop(ctx)) }, func(it item) { c.push(pong.Push(ctx, it)) })
	})
}

// queueCalls checks the results of the calls benchQueuePingPong makes.
type queueCalls struct{ b *testing.B }

// push reports a failed Push.
func (c queueCalls) push(err error) {
	if err != nil {
		c.b.Error(err)
	}
}

// pop returns what Pop returned, or after reporting its error an item that
// stops runPingPong's echo goroutine.
func (c queueCalls) pop(it item, err error) item {
	if err != nil {
		c.b.Error(err)
		return item{N: -1}
	}
	return it
}

// runPingPong measures round trips: the benchmark goroutine sends with ping
// and waits for the echo with pong, while a goroutine of its own receives
// with echoRecv and answers with echoSend. An item with a negative N stops
// the echo goroutine.
func runPingPong(b *testing.B, ping func(item), pong func() item, echoRecv func() item, echoSend func(item)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for it := echoRecv(); it.N >= 0; it = echoRecv() {
			echoSend(it)
		}
	}()
	b.ReportAllocs()
	var i int64
	for b.Loop() {
		ping(item{S: "x", N: i})
		if got := pong(); got.N != i {
			b.Fatalf("round trip %d returned item %d", i, got.N)
		}
		i++
	}
	ping(item{N: -1})
	<-done
}

// ringPush returns a function that calls r.Push.
func ringPush(b *testing.B, r *ring.Buffer[item]) func(item) {
	return func(it item) {
		if err := r.Push(context.Background(), it); err != nil {
			b.Error(err)
		}
	}
}

// Burst shape: burstLen items pushed back to back, then burstGap of silence,
// long enough for the consumer to park and the machine to go idle.
const (
	burstLen = 64
	burstGap = 200 * time.Microsecond
)

// BenchmarkBurst pushes b.N items in bursts of burstLen separated by
// burstGap and reports the push-to-pop latency of the items (p50-ns, p99-ns)
// and the process CPU use over the run (cpu%, 100 = one core busy); ns/op is
// per item and mostly gap. impl=ring-popbatch pops with PopBatch;
// impl=ring-cond-popbatch is the same on ring's design parked on sync.Cond.
func BenchmarkBurst(b *testing.B) {
	ctx := context.Background()
	b.Run("impl=chan", func(b *testing.B) {
		ch := make(chan item, spscCap)
		runBurst(b, func(it item) { ch <- it }, func(dst []item) int {
			dst[0] = <-ch
			return 1
		})
	})
	b.Run("impl=ring-popbatch", func(b *testing.B) {
		r := ring.New[item](spscCap)
		runBurst(b, ringPush(b, r), func(dst []item) int {
			n, err := r.PopBatch(ctx, dst)
			if err != nil {
				b.Error(err)
			}
			return n
		})
	})
	b.Run("impl=ring-cond-popbatch", func(b *testing.B) {
		r := newCondRing(spscCap)
		runBurst(b, func(it item) { _ = r.Push(ctx, it) }, func(dst []item) int {
			n, _ := r.PopBatch(ctx, dst) // Background: cannot fail
			return n
		})
	})
}

// runBurst pushes b.N items with push in bursts while a consumer goroutine
// takes them with pop, which fills the front of dst and returns the count.
// Each item carries its push time in N; the consumer stamps each pop once,
// at its return, since that is when all the items it took became available.
func runBurst(b *testing.B, push func(item), pop func(dst []item) int) {
	b.ReportAllocs()
	lat := make([]int64, b.N)
	dst := make([]item, batchLen)
	done := make(chan struct{})
	b.ResetTimer()
	t0 := time.Now()
	cpu0, cpuOK := cpuTime()
	go func() {
		defer close(done)
		for got := 0; got < len(lat); {
			k := pop(dst)
			now := int64(time.Since(t0))
			for _, it := range dst[:k] {
				lat[got] = now - it.N
				got++
			}
		}
	}()
	for i := 0; i < b.N; {
		for end := min(i+burstLen, b.N); i < end; i++ {
			push(item{S: "x", N: int64(time.Since(t0))})
		}
		time.Sleep(burstGap)
	}
	<-done
	cpu1, _ := cpuTime()
	wall := time.Since(t0)
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2]), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100]), "p99-ns")
	if cpuOK {
		b.ReportMetric(100*float64(cpu1-cpu0)/float64(wall), "cpu%")
	}
}
