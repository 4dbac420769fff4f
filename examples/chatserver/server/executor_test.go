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
		synctest.Wait() // its goroutine waits for a task
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
		if n := e.started.Load(); n != 5 {
			t.Errorf("%d goroutines started for 6 tasks with 1 idle, want 5", n)
		}
		close(release)
		synctest.Wait()
		// The pool's 3 goroutines are idle now: 3 tasks that block take
		// them, and start no goroutine.
		again := make(chan struct{})
		for range 3 {
			e.do(func() {
				<-again
				done.Add(1)
			})
			synctest.Wait()
		}
		if n := e.started.Load(); n != 5 {
			t.Errorf("%d goroutines started in all, want 5: the idle pool should have run the last 3 tasks", n)
		}
		close(again)
		synctest.Wait()
		if n := done.Load(); n != 9 {
			t.Errorf("%d of 9 tasks done", n)
		}
		if n := e.n.Load(); n != 3 {
			t.Errorf("pool of %d goroutines, want 3", n)
		}
		e.close()
	})
}
