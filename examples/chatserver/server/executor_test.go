package server

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
)

// TestExecutorGrowsToMax checks that tasks blocked on their goroutines do
// not hold up others, that the pool keeps at most max goroutines for later
// tasks, and that close stops them (synctest fails the test if a goroutine
// is left blocked).
func TestExecutorGrowsToMax(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newExecutor(1, 3)
		release := make(chan struct{})
		var started, done atomic.Int32
		for range 6 {
			e.do(func() {
				started.Add(1)
				<-release
				done.Add(1)
			})
		}
		synctest.Wait()
		if n := started.Load(); n != 6 {
			t.Fatalf("%d of 6 blocking tasks started", n)
		}
		if n := e.n.Load(); n != 3 {
			t.Errorf("pool of %d goroutines, want max 3", n)
		}
		close(release)
		synctest.Wait()
		for range 10 {
			e.do(func() { done.Add(1) })
			synctest.Wait()
		}
		if n := done.Load(); n != 16 {
			t.Errorf("%d of 16 tasks done", n)
		}
		if n := e.n.Load(); n != 3 {
			t.Errorf("pool of %d goroutines after idle tasks, want 3", n)
		}
		e.close()
	})
}
