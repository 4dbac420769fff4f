package server

import "sync"

// executor runs the sessions' short tasks (a run of a session's worker) on
// warm goroutines. A task that finds no idle goroutine gets a new one, so a
// task that blocks (a write to a slow client) never holds up another; the
// pool only saves the cost of starting a goroutine and growing its stack
// for every turn.
type executor struct {
	tasks chan func()
	wg    sync.WaitGroup
}

// newExecutor starts n goroutines waiting for tasks.
func newExecutor(n int) *executor {
	e := &executor{tasks: make(chan func())}
	for range n {
		e.wg.Go(func() {
			for f := range e.tasks {
				f()
			}
		})
	}
	return e
}

// do runs f on an idle pooled goroutine, or on a new one.
func (e *executor) do(f func()) {
	select {
	case e.tasks <- f:
	default:
		go f()
	}
}

// close stops the pooled goroutines once they finish their tasks; do must
// not be called after it. Tasks running on goroutines of their own are not
// waited for: their owners (the sessions) are.
func (e *executor) close() {
	close(e.tasks)
	e.wg.Wait()
}
