package bench

import "context"

// chanQueue is a buffered channel behind ring.Buffer's blocking API, so that
// BenchmarkPingPong can tell what that API costs (a method call, a context
// and an error per operation) from what the ring's mechanism costs.
type chanQueue chan item

func (q chanQueue) Push(ctx context.Context, v item) error {
	done := ctx.Done()
	if done == nil {
		q <- v
		return nil
	}
	select {
	case q <- v:
		return nil
	case <-done:
		return ctx.Err()
	}
}

func (q chanQueue) Pop(ctx context.Context) (item, error) {
	done := ctx.Done()
	if done == nil {
		return <-q, nil
	}
	select {
	case v := <-q:
		return v, nil
	case <-done:
		return item{}, ctx.Err()
	}
}
