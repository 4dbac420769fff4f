package server

import (
	"context"
	"sync"
	"time"
)

// deadlines hands out contexts that end about timeout from now, for calls
// made by the thousand each second: one context (and one timer) serves every
// call for a second, so each call's deadline lies between timeout minus a
// second and timeout. A context is never cancelled early; it ends at its
// deadline. The zero value with timeout set is ready to use; it is safe for
// concurrent use.
type deadlines struct {
	timeout time.Duration

	mu     sync.Mutex
	ctx    context.Context
	cancel context.CancelFunc // released by the deadline itself
	until  time.Time          // hand out ctx until then
}

// deadlineReuse is how long one context is handed out.
const deadlineReuse = time.Second

// get returns a context that ends between timeout-deadlineReuse and
// timeout after now.
func (d *deadlines) get(now time.Time) context.Context {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ctx == nil || !now.Before(d.until) {
		d.ctx, d.cancel = context.WithDeadline(context.Background(), now.Add(d.timeout))
		d.until = now.Add(min(deadlineReuse, d.timeout))
	}
	return d.ctx
}
