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

// TestKickAllocatesNothing checks that kick, which the reader calls after
// every message, allocates nothing when an idle pooled goroutine takes the
// run: an allocation while the collector marks would have the reader
// assist it first (see kick).
func TestKickAllocatesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &Server{cfg: Config{QueueSize: 4}, exec: newExecutor(1, 1)}
		defer s.exec.close()
		ss := s.newSession(nil)
		ss.running.Store(false) // as start does
		synctest.Wait()
		allocs := testing.AllocsPerRun(100, func() {
			ss.kick()
			synctest.Wait() // the run finds nothing to do and goes idle
		})
		if allocs != 0 {
			t.Errorf("kick allocated %v times per call, want 0", allocs)
		}
		if n := s.exec.started.Load(); n != 0 {
			t.Errorf("kick started %d goroutines, want the idle one to take every run", n)
		}
	})
}
