package server

import (
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-go/parley/backpressure"
	"github.com/parley-go/parley/ctxstore"
)

func TestPlaces(t *testing.T) {
	a, b := ctxstore.Key{Tenant: "t", ID: "a"}, ctxstore.Key{Tenant: "t", ID: "b"}
	t0 := time.Unix(1000, 0)
	var p places
	p.keep(a, 0, t0)
	if p.len() != 0 {
		t.Errorf("keeping no ticket holds %d, want 0", p.len())
	}
	p.keep(a, 7, t0)
	if got := p.take(a, t0.Add(placeKeep-time.Nanosecond)); got != 7 {
		t.Errorf("take just within placeKeep = %d, want 7", got)
	}
	if got := p.take(a, t0); got != 0 {
		t.Errorf("second take = %d, want 0 (taken)", got)
	}
	p.keep(a, 8, t0)
	if got := p.take(a, t0.Add(placeKeep)); got != 0 || p.len() != 0 {
		t.Errorf("take after placeKeep = %d with %d held, want 0 with 0", got, p.len())
	}
	// A session that never comes back is dropped by a later keep.
	p.keep(a, 9, t0)
	p.keep(b, 10, t0.Add(placeKeep/2))
	if p.len() != 2 {
		t.Errorf("held %d, want 2", p.len())
	}
	p.keep(b, 11, t0.Add(2*placeKeep))
	if p.len() != 1 {
		t.Errorf("held %d after a keep two placeKeeps on, want 1 (a dropped)", p.len())
	}
	if got := p.take(b, t0.Add(2*placeKeep)); got != 11 {
		t.Errorf("take b = %d, want its newer ticket 11", got)
	}
}

// busyModel makes the server's model look stuck for a second with a long
// queue, so that admit refuses every message by its backstop and the
// message's session takes a ticket in the wait line; or ends that.
func busyModel(t *testing.T, s *Server, on bool) {
	t.Helper()
	if on {
		s.lastDispatch.Store(time.Now().Add(-time.Second).UnixNano())
		s.queued.Store(1000)
		s.inFlight.Store(int64(s.cfg.Batch.MaxInFlight))
		t.Cleanup(func() { s.queued.Store(0); s.inFlight.Store(0) })
		return
	}
	s.queued.Store(0)
	s.inFlight.Store(0)
}

func placeEnv(t *testing.T) *testEnv {
	return newEnv(t, func(c *Config) {
		c.AdmitTarget, c.AdmitInterval = 100*time.Millisecond, 500*time.Millisecond
	})
}

// shedOnce sends a message that the busy server refuses: the session takes
// the line's first ticket.
func shedOnce(t *testing.T, s *Server, c *client) {
	t.Helper()
	busyModel(t, s, true)
	if f := c.ask("m1", "wait for me"); f.Type != typeError || f.Code != codeOverloaded {
		t.Fatalf("message to a busy model got %+v, want overloaded", f)
	}
}

// sessionTicket returns the ticket of the live session k (zero if none is
// live), set when it attached (its worker has admitted nothing since), and
// how many tickets the server keeps for sessions that left.
func sessionTicket(s *Server, k ctxstore.Key) (backpressure.Ticket, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var t backpressure.Ticket
	if ss := s.sessions[k]; ss != nil {
		t = ss.ticket
	}
	return t, s.places.len()
}

// TestPlaceKeptAcrossReconnect: a session shed for overload whose client
// reconnects keeps its place in the wait line instead of going to the back.
func TestPlaceKeptAcrossReconnect(t *testing.T) {
	e := placeEnv(t)
	s := e.srv
	c, h := e.hello(t, "")
	key := ctxstore.Key{Tenant: "default", ID: h.Session}
	shedOnce(t, s, c)
	c.conn.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "the session's ticket (1) kept after its connection closed", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.places.held[key].ticket == 1
	})
	c2, h2 := e.hello(t, "session="+h.Session)
	if !h2.Resumed {
		t.Fatalf("hello on reconnect = %+v, want the session resumed", h2)
	}
	if got, held := sessionTicket(s, key); got != 1 || held != 0 {
		t.Errorf("resumed session holds ticket %d with %d kept, want 1 with 0", got, held)
	}
	// Admitted, the session gives its ticket back: nothing is kept when
	// it leaves again.
	busyModel(t, s, false)
	if f := c2.ask("m2", "now?"); f.Type != typeReply {
		t.Fatalf("message once the model is free got %+v, want a reply", f)
	}
	c2.conn.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "no live session after its connection closed", func() bool { return s.liveSessions() == 0 })
	if _, held := sessionTicket(s, key); held != 0 {
		t.Errorf("%d tickets kept after an admitted session left, want 0", held)
	}
}

// TestPlaceMovesOnTakeover: a connection that takes a live session over
// takes its place in the wait line too.
func TestPlaceMovesOnTakeover(t *testing.T) {
	e := placeEnv(t)
	s := e.srv
	c, h := e.hello(t, "")
	shedOnce(t, s, c)
	e.hello(t, "session="+h.Session)
	if code, _ := c.closeStatus(); code != statusReplaced {
		t.Errorf("first connection closed with %v, want %v", code, statusReplaced)
	}
	if got, held := sessionTicket(s, ctxstore.Key{Tenant: "default", ID: h.Session}); got != 1 || held != 0 {
		t.Errorf("session taken over holds ticket %d with %d kept, want 1 with 0", got, held)
	}
}

// TestEndedSessionGivesUpItsPlace: a session that ends while waiting its
// turn keeps no ticket, and a hello for its id opens a new session at the
// back of the line.
func TestEndedSessionGivesUpItsPlace(t *testing.T) {
	e := placeEnv(t)
	s := e.srv
	c, h := e.hello(t, "")
	shedOnce(t, s, c)
	c.send(clientFrame{Type: typeEnd, ID: "m2"})
	if f := c.read(); f.Type != typeState || f.State != "END" {
		t.Fatalf("after end, got %+v, want state END", f)
	}
	c.closeStatus()
	waitFor(t, "no live session after it ended", func() bool { return s.liveSessions() == 0 })
	if _, held := sessionTicket(s, ctxstore.Key{Tenant: "default", ID: h.Session}); held != 0 {
		t.Errorf("%d tickets kept after the session ended, want 0", held)
	}
	_, h2 := e.hello(t, "session="+h.Session)
	if got, held := sessionTicket(s, ctxstore.Key{Tenant: "default", ID: h2.Session}); h2.Resumed || got != 0 || held != 0 {
		t.Errorf("hello after END: resumed %v, ticket %d with %d kept; want a new session with ticket 0 and none kept", h2.Resumed, got, held)
	}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s, still not: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
