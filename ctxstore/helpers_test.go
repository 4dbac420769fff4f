package ctxstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// discard is a logger for tests that do not look at the logs.
var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// logBuffer is a logger whose output a test can read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// newStore returns a store on cold, closed (and checked to close cleanly)
// when the test ends.
func newStore(t testing.TB, cold Cold, cfg Config) *Store {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = discard
	}
	s, err := New(cold, cfg)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return s
}

func mustPut(t testing.TB, s *Store, r *Record) {
	t.Helper()
	if err := s.Put(context.Background(), r); err != nil {
		t.Fatalf("Put(%s) = %v", r.Key(), err)
	}
}

func mustGet(t testing.TB, s *Store, tenant, id string) *Record {
	t.Helper()
	r, err := s.Get(context.Background(), tenant, id)
	if err != nil {
		t.Fatalf("Get(%s, %s) = %v", tenant, id, err)
	}
	return r
}

func mustFlush(t testing.TB, s *Store) {
	t.Helper()
	if err := s.Flush(context.Background()); err != nil {
		t.Fatalf("Flush() = %v", err)
	}
}

// dump renders everything a record holds, for comparisons.
func dump(r *Record) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s seq=%d snap=%q system=%q/%d tokens=%d", r.Key(), r.Seq(), r.Snapshot(), r.System(), r.Tokens()-r.data().tokens, r.Tokens())
	for t := range r.Turns() {
		fmt.Fprintf(&b, " [%s %q %d]", t.Role, t.Text, t.Tokens)
	}
	for k, v := range r.Slots() {
		fmt.Fprintf(&b, " %s=%q", k, v)
	}
	return b.String()
}

// fill gives r some of everything: a system prompt, turns, a snapshot and
// slots, with text tagged so versions can be told apart.
func fill(r *Record, tag string) *Record {
	r.SetSystem("You are a helpful assistant. " + tag)
	r.SetSnapshot([]byte("state:CHATTING:" + tag))
	r.Append(Turn{Role: RoleUser, Text: "hello " + tag})
	r.Append(Turn{Role: RoleAssistant, Text: "hi there " + tag})
	r.SetSlot("product", "p-"+tag)
	return r
}

// testCold wraps a cold tier so that tests can hold, fail and count its
// calls.
type testCold struct {
	Cold

	mu         sync.Mutex
	writeGate  chan struct{} // if set, Write waits for it to be closed
	loadGate   chan struct{} // if set, Load waits for it to be closed
	failWrites int           // fail this many more Writes
	batches    [][]Write     // every batch written successfully

	loads atomic.Int64
}

var errInjected = errors.New("injected cold failure")

func (c *testCold) Load(ctx context.Context, k Key) ([]byte, time.Time, error) {
	c.loads.Add(1)
	c.mu.Lock()
	gate := c.loadGate
	c.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, time.Time{}, ctx.Err()
		}
	}
	return c.Cold.Load(ctx, k)
}

func (c *testCold) Write(ctx context.Context, ws []Write) error {
	c.mu.Lock()
	gate := c.writeGate
	fail := c.failWrites > 0
	if fail {
		c.failWrites--
	}
	c.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail {
		return errInjected
	}
	if err := c.Cold.Write(ctx, ws); err != nil {
		return err
	}
	kept := slices.Clone(ws)
	for i := range kept {
		kept[i].Data = nil // the store reuses it
	}
	c.mu.Lock()
	c.batches = append(c.batches, kept)
	c.mu.Unlock()
	return nil
}

// heldLoads returns a store whose cold tier holds acme:s1 at seq 1 and
// whose Loads wait until gate is closed.
func heldLoads(t *testing.T) (s *Store, cold *testCold, gate chan struct{}) {
	t.Helper()
	cold = &testCold{Cold: &Memory{}}
	writer := newStore(t, cold, Config{})
	mustPut(t, writer, fill(writer.NewRecord("acme", "s1"), "v1"))
	mustFlush(t, writer)
	gate = make(chan struct{})
	cold.mu.Lock()
	cold.loadGate = gate
	cold.mu.Unlock()
	return newStore(t, cold, Config{}), cold, gate
}

// WatchExpiry passes the watch on to the wrapped tier, if it keeps one.
func (c *testCold) WatchExpiry(fn func(Key)) func() {
	if ex, ok := c.Cold.(Expirer); ok {
		return ex.WatchExpiry(fn)
	}
	return func() {}
}

// hold makes Writes wait until the returned function is called.
func (c *testCold) hold() (release func()) {
	gate := make(chan struct{})
	c.mu.Lock()
	c.writeGate = gate
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		c.writeGate = nil
		c.mu.Unlock()
		close(gate)
	}
}

// written returns the keys and sequence numbers of each batch written.
func (c *testCold) written() [][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out [][]string
	for _, b := range c.batches {
		var ks []string
		for _, w := range b {
			ks = append(ks, fmt.Sprintf("%s@%d", w.Key.ID, w.Seq))
		}
		out = append(out, ks)
	}
	return out
}

// checkNoLeak fails t if goroutines started during the test outlive it,
// for tests that run in real time (synctest bubbles check this
// themselves). It waits a little for goroutines that are exiting.
func checkNoLeak(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			t.Errorf("%d goroutines after the test, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
		}
	})
}
