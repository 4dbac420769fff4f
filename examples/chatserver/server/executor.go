package server

import (
	"sync"
	"sync/atomic"
)

// executor runs the sessions' short tasks (a run of a session's worker) on
// warm goroutines. A task that finds no idle goroutine gets a new one, so a
// task that blocks (a write to a slow client) never holds up another; the
// pool only saves the cost of starting a goroutine and growing its stack
// for every task.
//
// The pool grows on demand up to most goroutines: a goroutine started for a
// task stays in the pool once the task is done. Under load, tasks are
// handed over faster than the scheduler runs them, so the goroutines they
// were handed to are all runnable and none is idle: a pool fixed at a few
// goroutines per CPU then started a new goroutine for two tasks in three,
// each growing its stack again while decoding a frame.
type executor struct {
	tasks   chan func()
	most    int32
	n       atomic.Int32 // goroutines in the pool
	started atomic.Int64 // goroutines started for tasks, pooled or not
	wg      sync.WaitGroup
}

// newExecutor starts least goroutines waiting for tasks, and lets the pool
// grow to most (or least, if that is more).
func newExecutor(least, most int) *executor {
	e := &executor{tasks: make(chan func()), most: int32(max(least, most))}
	e.n.Store(int32(least))
	for range least {
		e.wg.Go(e.serve)
	}
	return e
}

// serve runs tasks until close.
func (e *executor) serve() {
	for f := range e.tasks {
		f()
	}
}

// do runs f on an idle pooled goroutine, or on a new one, which joins the
// pool if it has room.
func (e *executor) do(f func()) {
	select {
	case e.tasks <- f:
		return
	default:
	}
	e.started.Add(1)
	if e.n.Add(1) <= e.most {
		e.wg.Go(func() {
			f()
			e.serve()
		})
		return
	}
	e.n.Add(-1)
	go f()
}

// close stops the pooled goroutines once they finish their tasks; do must
// not be called after it. Tasks running on goroutines of their own are not
// waited for: their owners (the sessions) are.
func (e *executor) close() {
	close(e.tasks)
	e.wg.Wait()
}
