package bench

import "testing"

// item is the element type every SPSC implementation moves.
type item struct {
	S string
	N int64
}

// spscCap is the capacity of every queue in BenchmarkSPSC.
const spscCap = 4096

// BenchmarkSPSC moves b.N items from one producer goroutine to one consumer
// goroutine through a queue of capacity spscCap; ns/op is per item.
func BenchmarkSPSC(b *testing.B) {
	b.Run("impl=chan", func(b *testing.B) {
		b.ReportAllocs()
		ch := make(chan item, spscCap)
		done := make(chan int64)
		go func() {
			var sum int64
			for it := range ch {
				sum += it.N
			}
			done <- sum
		}()
		for i := range b.N {
			ch <- item{S: "x", N: int64(i)}
		}
		close(ch)
		if got, want := <-done, int64(b.N)*int64(b.N-1)/2; got != want {
			b.Fatalf("consumer sum = %d, want %d", got, want)
		}
	})
}
