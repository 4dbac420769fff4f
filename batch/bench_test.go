package batch_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/parley-go/parley/batch"
)

// noop is a batch function that costs nothing: the per-item cost measured
// with it is the batcher's own overhead.
func noop(_ context.Context, reqs []int) ([]int, error) { return reqs, nil }

// BenchmarkDo measures the batcher's overhead per request (ns/op, allocs/op
// are per Do call) with a batch function that does nothing, for one caller
// in a loop and for many concurrent callers, with callers' contexts that
// cannot end (ctx=background) and that can (ctx=cancel, so Do also watches
// ctx.Done). impl=chan is the hand-off a host would write without a
// batcher: each request goes to one worker goroutine over a channel and the
// answer comes back on a channel of its own.
func BenchmarkDo(b *testing.B) {
	for _, callers := range []int{1, 16, 256} {
		for _, ctxKind := range []string{"background", "cancel"} {
			name := fmt.Sprintf("impl=batch/ctx=%s/callers=%d", ctxKind, callers)
			b.Run(name, func(b *testing.B) {
				ctx := context.Background()
				if ctxKind == "cancel" {
					var cancel context.CancelFunc
					ctx, cancel = context.WithCancel(ctx)
					defer cancel()
				}
				bt, err := batch.New(noop, batch.Config{MaxSize: 8})
				if err != nil {
					b.Fatal(err)
				}
				do := func(i int) {
					if resp, err := bt.Do(ctx, i); resp != i || err != nil {
						b.Fatalf("Do(%d) = %d, %v; want %d, nil", i, resp, err, i)
					}
				}
				runCallers(b, callers, do)
				bt.Close()
				s := bt.Stats()
				b.ReportMetric(float64(s.Items)/float64(s.Batches), "items/batch")
			})
		}
		b.Run(fmt.Sprintf("impl=chan/callers=%d", callers), func(b *testing.B) {
			type request struct {
				n     int
				reply chan int
			}
			requests := make(chan request)
			done := make(chan struct{})
			go func() {
				defer close(done)
				one := make([]int, 1)
				for r := range requests {
					one[0] = r.n
					resps, _ := noop(context.Background(), one)
					r.reply <- resps[0]
				}
			}()
			do := func(i int) {
				r := request{i, make(chan int, 1)}
				requests <- r
				if got := <-r.reply; got != i {
					b.Fatalf("reply = %d, want %d", got, i)
				}
			}
			runCallers(b, callers, do)
			close(requests)
			<-done
		})
	}
}

// runCallers calls do b.N times in all, from one goroutine with b.Loop when
// callers is 1, else from callers goroutines (rounded up to a multiple of
// GOMAXPROCS) with b.RunParallel.
func runCallers(b *testing.B, callers int, do func(i int)) {
	b.ReportAllocs()
	if callers == 1 {
		i := 0
		for b.Loop() {
			do(i)
			i++
		}
		return
	}
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((callers + procs - 1) / procs)
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			do(i)
		}
	})
}
