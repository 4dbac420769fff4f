package server

import (
	"context"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-go/parley/ctxstore"
)

// gatedCold is an in-memory cold tier whose Loads wait for release, so a
// test can act while a connection is opening its session.
type gatedCold struct {
	*ctxstore.Memory
	loading chan struct{} // a Load has started and waits
	release chan struct{} // closed to let every Load go on
}

func newGatedCold() *gatedCold {
	return &gatedCold{Memory: &ctxstore.Memory{}, loading: make(chan struct{}, 16), release: make(chan struct{})}
}

func (c *gatedCold) Load(ctx context.Context, k ctxstore.Key) ([]byte, time.Time, error) {
	c.loading <- struct{}{}
	<-c.release
	return c.Memory.Load(ctx, k)
}

// opened is what helloAsync delivers: the connection and its first frame.
type opened struct {
	c *client
	f Frame
}

// helloAsync dials with query in a goroutine and delivers the connection
// and its first frame (zero if there was none) on the returned channel.
func (e *testEnv) helloAsync(t *testing.T, query string) <-chan opened {
	t.Helper()
	out := make(chan opened, 1)
	go func() {
		conn, err := e.dialErr(query)
		if err != nil {
			t.Errorf("dial %q: %v", query, err)
			out <- opened{}
			return
		}
		t.Cleanup(func() { conn.CloseNow() })
		c := &client{t: t, conn: conn}
		f, err := c.readErr()
		if err != nil {
			t.Errorf("%q: first read: %v", query, err)
		}
		out <- opened{c, f}
	}()
	return out
}

// registered waits until a session with id is registered and returns it.
func (s *Server) registered(t *testing.T, id string) *session {
	t.Helper()
	for range 500 {
		s.mu.Lock()
		ss := s.sessions[ctxstore.Key{Tenant: "default", ID: id}]
		s.mu.Unlock()
		if ss != nil {
			return ss
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("session %s never registered", id)
	return nil
}

// TestDrainWhileOpening shuts the server down while a connection is still
// reading its session's record: the session is registered, so the drain
// shuts it, but its worker must not run on a half-built session. The
// connection gets its hello and then the drain's going-away close.
func TestDrainWhileOpening(t *testing.T) {
	cold := newGatedCold()
	sim := newSim(t, SimConfig{Seed: 1})
	// Another node stores the session, so that this one resumes it.
	other := newEnvWith(t, cold.Memory, sim, nil)
	c, h := other.hello(t, "")
	c.ask("m1", "remember me")
	c.conn.Close(websocket.StatusNormalClosure, "")
	other.stop(t)
	id := h.Session

	e := newEnvWith(t, cold, sim, nil)
	hello := e.helloAsync(t, "session="+id)
	<-cold.loading
	ss := e.srv.registered(t, id)

	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped <- e.srv.Shutdown(ctx)
	}()
	for !ss.closing.Load() {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // room for a wrongly started run
	close(cold.release)

	o := <-hello
	if o.f.Type != typeHello || !o.f.Resumed || o.f.Turns != 2 {
		t.Fatalf("first frame = %+v, want a hello resuming 2 turns", o.f)
	}
	if code, _ := o.c.closeStatus(); code != websocket.StatusGoingAway {
		t.Errorf("close status %v, want going away", code)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
}

// TestTakeoverWhileOpening resumes one session id on two connections at
// once, while the first is still reading the (missing) record: the second
// must wait for the first to let go of the id, not run the first's worker
// on a half-built session, and both must get a hello.
func TestTakeoverWhileOpening(t *testing.T) {
	cold := newGatedCold()
	sim := newSim(t, SimConfig{Seed: 1})
	e := newEnvWith(t, cold, sim, nil)
	first := e.helloAsync(t, "session=twice")
	<-cold.loading
	ss := e.srv.registered(t, "twice")
	second := e.helloAsync(t, "session=twice")
	for !ss.closing.Load() { // the second connection asked the first to let go
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // room for a wrongly started run
	close(cold.release)

	for i, ch := range []<-chan opened{first, second} {
		select {
		case o := <-ch:
			if o.f.Type != typeHello || o.f.Resumed {
				t.Errorf("connection %d: first frame = %+v, want a fresh hello", i, o.f)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("connection %d: no hello", i)
		}
	}
}
