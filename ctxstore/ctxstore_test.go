package ctxstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	tests := []struct {
		name        string
		in          Config
		ttl, hotTTL time.Duration
	}{
		{"zero", Config{}, 24 * time.Hour, 10 * time.Minute},
		{"hot TTL capped at 2/3 of TTL", Config{TTL: 3 * time.Minute, HotTTL: time.Hour}, 3 * time.Minute, 2 * time.Minute},
		{"short TTL caps the default hot TTL", Config{TTL: 6 * time.Minute}, 6 * time.Minute, 4 * time.Minute},
		{"explicit", Config{TTL: time.Hour, HotTTL: time.Minute}, time.Hour, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.in.withDefaults()
			if c.TTL != tt.ttl || c.HotTTL != tt.hotTTL {
				t.Errorf("TTL, HotTTL = %v, %v; want %v, %v", c.TTL, c.HotTTL, tt.ttl, tt.hotTTL)
			}
			if c.HotBytes != defaultHotBytes || c.MaxPending != defaultMaxPending || c.MaxBatch != defaultMaxBatch ||
				c.MaxRecordBytes != defaultMaxRecordBytes || c.Window.MaxTurns != defaultMaxTurns || c.Logger == nil {
				t.Errorf("withDefaults() = %+v, want the documented defaults", c)
			}
		})
	}
}

func TestPutGetDelete(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newStore(t, &Memory{}, Config{})
		ctx := context.Background()
		if _, err := s.Get(ctx, "acme", "s1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get(new session) = %v, want ErrNotFound", err)
		}
		r := fill(s.NewRecord("acme", "s1"), "v1")
		mustPut(t, s, r)
		if r.Seq() != 1 {
			t.Errorf("Seq() after Put = %d, want 1", r.Seq())
		}
		got := mustGet(t, s, "acme", "s1")
		if dump(got) != dump(r) {
			t.Errorf("Get =\n%s\nwant\n%s", dump(got), dump(r))
		}
		got.Append(Turn{Role: RoleUser, Text: "next"})
		mustPut(t, s, got)
		if g := mustGet(t, s, "acme", "s1"); g.Seq() != 2 || g.Turn(g.Len()-1).Text != "next" {
			t.Errorf("Get after a second Put = %s, want seq 2 ending in next", dump(g))
		}
		if err := s.Delete(ctx, "acme", "s1"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, "acme", "s1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get after Delete = %v, want ErrNotFound", err)
		}
		mustFlush(t, s)
		if _, err := s.Get(ctx, "acme", "s1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get after Delete and Flush = %v, want ErrNotFound", err)
		}
		// The session starts over.
		mustPut(t, s, fill(s.NewRecord("acme", "s1"), "v2"))
		mustFlush(t, s)
		if g := mustGet(t, s, "acme", "s1"); g.Seq() != 1 || g.System() != "You are a helpful assistant. v2" {
			t.Errorf("Get of the new session = %s", dump(g))
		}
	})
}

// TestStaleWriter has two writers Put versions of a session read at the
// same sequence number: while the first waits for the cold tier, the
// second's Put fails with ErrStale; once it is cold, the cold tier refuses
// the second, which OnWriteError reports, and Gets read the first.
func TestStaleWriter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cold := &testCold{Cold: &Memory{}}
		var (
			mu    sync.Mutex
			stale []string
		)
		s := newStore(t, cold, Config{OnWriteError: func(k Key, err error) {
			mu.Lock()
			defer mu.Unlock()
			if errors.Is(err, ErrStale) {
				stale = append(stale, k.String())
			}
		}})
		ctx := context.Background()
		mustPut(t, s, fill(s.NewRecord("acme", "s1"), "v1"))
		mustFlush(t, s)

		release := cold.hold()
		occupy(t, s) // so that what follows waits in the queue
		a, b := mustGet(t, s, "acme", "s1"), mustGet(t, s, "acme", "s1")
		a.SetSlot("by", "a")
		b.SetSlot("by", "b")
		mustPut(t, s, a)
		if err := s.Put(ctx, b); !errors.Is(err, ErrStale) {
			t.Fatalf("second writer's Put while the first waits = %v, want ErrStale", err)
		}
		if b.Seq() != 1 {
			t.Errorf("a refused Put moved Seq to %d, want 1", b.Seq())
		}
		if err := s.Put(ctx, s.NewRecord("acme", "s1")); !errors.Is(err, ErrStale) {
			t.Errorf("Put of a new record over a waiting seq 2 = %v, want ErrStale", err)
		}
		release()
		mustFlush(t, s)

		// Now the first writer's version is cold: the stale Put is
		// accepted, refused by the cold tier and reported.
		if err := s.Put(ctx, b); err != nil {
			t.Fatalf("stale Put after the first was written = %v, want nil (the cold tier decides)", err)
		}
		mustFlush(t, s)
		mu.Lock()
		if want := []string{"acme:s1"}; !slices.Equal(stale, want) {
			t.Errorf("OnWriteError stale reports = %v, want %v", stale, want)
		}
		mu.Unlock()
		if v, _ := mustGet(t, s, "acme", "s1").Slot("by"); v != "a" {
			t.Errorf("slot by = %q, want a (the first writer's)", v)
		}
		if st := s.Stats(); st.Stale != 1 {
			t.Errorf("stats %+v, want 1 stale", st)
		}
	})
}

func TestPutTooLarge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newStore(t, &Memory{}, Config{MaxRecordBytes: 512})
		r := fill(s.NewRecord("acme", "s1"), "v1")
		mustPut(t, s, r)
		r.SetSnapshot(make([]byte, 600))
		err := s.Put(context.Background(), r)
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "acme:s1") {
			t.Fatalf("Put of a 600-byte snapshot = %v, want ErrTooLarge naming the key", err)
		}
		if r.Seq() != 1 {
			t.Errorf("Seq() after a refused Put = %d, want 1", r.Seq())
		}
		if g := mustGet(t, s, "acme", "s1"); g.Seq() != 1 || len(g.Snapshot()) == 600 {
			t.Errorf("Get after a refused Put = %s, want the first version", dump(g))
		}
	})
}

func TestCorruptColdRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var m Memory
		m.Write(context.Background(), []Write{{Key: Key{"acme", "bad"}, Seq: 1, Data: []byte("not a record"), TTL: time.Hour}})
		s := newStore(t, &m, Config{})
		_, err := s.Get(context.Background(), "acme", "bad")
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "acme:bad") {
			t.Fatalf("Get = %v, want ErrCorrupt naming acme:bad", err)
		}
		// Deleting it lets the session start over.
		if err := s.Delete(context.Background(), "acme", "bad"); err != nil {
			t.Fatal(err)
		}
		mustPut(t, s, s.NewRecord("acme", "bad"))
		mustFlush(t, s)
		if st := s.Stats(); st.Stale != 0 || st.ColdErrors != 1 {
			t.Errorf("stats %+v, want 1 cold error (the corrupt load) and nothing stale", st)
		}
	})
}

// TestPutThenGetLosesNothing Puts many new sessions into a store whose hot
// tier can hold only a few of them, so that ristretto drops and refuses
// most Sets, and reads every one back: before the cold tier has them (from
// the write-behind buffer), and after (from the cold tier).
func TestPutThenGetLosesNothing(t *testing.T) {
	const sessions = 10000
	s := newStore(t, &Memory{}, Config{HotBytes: 32 << 10})
	ctx := context.Background()
	for i := range sessions {
		r := s.NewRecord("acme", fmt.Sprint(i))
		r.SetSlot("i", fmt.Sprint(i))
		mustPut(t, s, r)
		// Read one back at once, while it may still wait for the cold tier.
		j := i - i%7
		if v, _ := mustGet(t, s, "acme", fmt.Sprint(j)).Slot("i"); v != fmt.Sprint(j) {
			t.Fatalf("Get(%d) right after Put = slot %q", j, v)
		}
	}
	check := func(when string) {
		lost := 0
		for i := range sessions {
			r, err := s.Get(ctx, "acme", fmt.Sprint(i))
			if err != nil || r.Seq() != 1 {
				lost++
				continue
			}
			if v, _ := r.Slot("i"); v != fmt.Sprint(i) {
				lost++
			}
		}
		if lost != 0 {
			t.Errorf("%s: %d of %d sessions lost", when, lost, sessions)
		}
	}
	check("before Flush")
	mustFlush(t, s)
	check("after Flush")
	if st := s.Stats(); st.ColdLoads == 0 {
		t.Errorf("stats %+v: no cold loads, so the hot tier never dropped anything and the test proved nothing", st)
	}
}

func TestConcurrentMissesCollapse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, cold, gate := heldLoads(t)
		const readers = 20
		var wg sync.WaitGroup
		errs := make(chan error, readers)
		for range readers {
			wg.Go(func() {
				r, err := s.Get(context.Background(), "acme", "s1")
				if err == nil && r.Seq() != 1 {
					err = fmt.Errorf("seq %d", r.Seq())
				}
				errs <- err
			})
		}
		synctest.Wait() // every reader is blocked on the one load
		if got := cold.loads.Load(); got != 1 {
			t.Errorf("%d cold loads for %d concurrent misses, want 1", got, readers)
		}
		close(gate)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("Get = %v", err)
			}
		}
		if st := s.Stats(); st.Misses != readers || st.ColdLoads != 1 {
			t.Errorf("stats %+v, want %d misses and 1 cold load", st, readers)
		}
		// The hot tier (ristretto) applies a Set from its own goroutine:
		// let it, so that the next Get finds the loaded record there.
		synctest.Wait()
		mustGet(t, s, "acme", "s1")
		if got := cold.loads.Load(); got != 1 {
			t.Errorf("a Get after the load went to the cold tier again (%d loads)", got)
		}
	})
}

// When the caller doing a load gives up, the callers waiting on it load
// again instead of failing with someone else's cancellation.
func TestLoadCancelledByItsCaller(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, cold, gate := heldLoads(t)
		ctx, cancel := context.WithCancel(context.Background())
		first := make(chan error)
		go func() {
			_, err := s.Get(ctx, "acme", "s1")
			first <- err
		}()
		synctest.Wait()
		second := make(chan error)
		go func() {
			_, err := s.Get(context.Background(), "acme", "s1")
			second <- err
		}()
		synctest.Wait()
		cancel()
		if err := <-first; !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled Get = %v, want context.Canceled", err)
		}
		close(gate)
		if err := <-second; err != nil {
			t.Errorf("waiting Get = %v, want the record", err)
		}
		if got := cold.loads.Load(); got != 2 {
			t.Errorf("%d cold loads, want 2 (the cancelled one and the retry)", got)
		}
	})
}

// TestHotExpiry checks the TTL rule in virtual time: a hot entry lives at
// most 2/3 of its cold entry's remaining life, then Get goes back to the
// cold tier, which stays the truth.
func TestHotExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = 3 * time.Hour // so HotTTL is capped at 2h
		s := newStore(t, &Memory{}, Config{TTL: ttl, HotTTL: 24 * time.Hour})
		mustPut(t, s, fill(s.NewRecord("acme", "s1"), "v1"))
		mustFlush(t, s) // the cold entry expires at start+3h
		loads := func() uint64 { return s.Stats().ColdLoads }

		time.Sleep(2*time.Hour - time.Second)
		mustGet(t, s, "acme", "s1")
		if loads() != 0 {
			t.Fatalf("Get before the hot TTL went cold (%d loads)", loads())
		}
		time.Sleep(2 * time.Second) // start+2h+1s: hot entry gone
		mustGet(t, s, "acme", "s1")
		if loads() != 1 {
			t.Fatalf("Get after the hot TTL: %d cold loads, want 1", loads())
		}
		// The loaded entry may live 2/3 of the ~1h left: about 40 minutes.
		time.Sleep(39 * time.Minute)
		mustGet(t, s, "acme", "s1")
		if loads() != 1 {
			t.Fatalf("Get 39m after the load: %d cold loads, want 1", loads())
		}
		time.Sleep(2 * time.Minute)
		mustGet(t, s, "acme", "s1")
		if loads() != 2 {
			t.Fatalf("Get 41m after the load: %d cold loads, want 2", loads())
		}
		time.Sleep(20 * time.Minute) // past start+3h: the cold entry expired
		if _, err := s.Get(context.Background(), "acme", "s1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get after the cold TTL = %v, want ErrNotFound", err)
		}
	})
}

// expiringCold is a Memory that reports expiries when told to.
type expiringCold struct {
	Memory
	mu sync.Mutex
	fn func(Key)
}

func (c *expiringCold) WatchExpiry(fn func(Key)) func() {
	c.mu.Lock()
	c.fn = fn
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		c.fn = nil
		c.mu.Unlock()
	}
}

// expire removes k and reports it, as Redis does when a key expires.
func (c *expiringCold) expire(k Key) {
	c.Memory.Write(context.Background(), []Write{{Key: k}})
	c.mu.Lock()
	fn := c.fn
	c.mu.Unlock()
	fn(k)
}

func TestExpiryEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		inner := &expiringCold{}
		cold := &testCold{Cold: inner}
		s := newStore(t, cold, Config{})
		ctx := context.Background()
		mustPut(t, s, fill(s.NewRecord("acme", "gone"), "v1"))
		mustPut(t, s, fill(s.NewRecord("acme", "pending"), "v1"))
		mustFlush(t, s)
		mustGet(t, s, "acme", "gone") // hot

		inner.expire(Key{"acme", "gone"})
		if _, err := s.Get(ctx, "acme", "gone"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get after the expiry event = %v, want ErrNotFound", err)
		}

		// A session with a write on its way to the cold tier keeps it.
		release := cold.hold()
		r := mustGet(t, s, "acme", "pending")
		r.Append(Turn{Role: RoleUser, Text: "newer"})
		mustPut(t, s, r)
		synctest.Wait() // the write is in flight
		inner.expire(Key{"acme", "pending"})
		if g := mustGet(t, s, "acme", "pending"); g.Seq() != 2 {
			t.Errorf("Get of a session with a pending write after an expiry event = %s, want seq 2", dump(g))
		}
		release()
		mustFlush(t, s)
		if g := mustGet(t, s, "acme", "pending"); g.Seq() != 2 {
			t.Errorf("after Flush Get = %s, want seq 2 rewritten to the cold tier", dump(g))
		}
		if st := s.Stats(); st.ExpiryEvents != 2 {
			t.Errorf("stats %+v, want 2 expiry events", st)
		}
	})
}

// TestColdStaleBetweenStores plays two processes that both read version 1
// of a session and both write version 2: the cold tier keeps the first,
// the second learns of it through OnWriteError and then reads the winner.
func TestColdStaleBetweenStores(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var cold Memory
		var (
			mu     sync.Mutex
			errsB  []string
			report = func(k Key, err error) {
				mu.Lock()
				defer mu.Unlock()
				if errors.Is(err, ErrStale) {
					errsB = append(errsB, k.String())
				}
			}
		)
		a := newStore(t, &cold, Config{})
		b := newStore(t, &cold, Config{OnWriteError: report})
		mustPut(t, a, fill(a.NewRecord("acme", "s1"), "v1"))
		mustFlush(t, a)

		ra, rb := mustGet(t, a, "acme", "s1"), mustGet(t, b, "acme", "s1")
		ra.SetSlot("by", "a")
		rb.SetSlot("by", "b")
		mustPut(t, a, ra)
		mustFlush(t, a)
		mustPut(t, b, rb) // b cannot see a's write locally
		mustFlush(t, b)

		mu.Lock()
		if len(errsB) != 1 || errsB[0] != "acme:s1" {
			t.Errorf("OnWriteError stale reports = %v, want [acme:s1]", errsB)
		}
		mu.Unlock()
		for name, s := range map[string]*Store{"a": a, "b": b} {
			if v, _ := mustGet(t, s, "acme", "s1").Slot("by"); v != "a" {
				t.Errorf("store %s reads by=%q, want a (the cold tier's winner)", name, v)
			}
		}
		if st := b.Stats(); st.Stale != 1 {
			t.Errorf("b stats %+v, want 1 stale", st)
		}
	})
}

func TestClosedStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var m Memory
		s, err := New(&m, Config{Logger: discard})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		r := fill(s.NewRecord("acme", "s1"), "v1")
		mustPut(t, s, r)
		var wg sync.WaitGroup
		for range 3 { // Close may be called concurrently
			wg.Go(func() {
				if err := s.Close(ctx); err != nil {
					t.Errorf("Close() = %v", err)
				}
			})
		}
		wg.Wait()
		if m.Len() != 1 {
			t.Errorf("cold tier holds %d records after Close, want 1", m.Len())
		}
		if err := s.Put(ctx, r); !errors.Is(err, ErrClosed) {
			t.Errorf("Put after Close = %v, want ErrClosed", err)
		}
		if _, err := s.Get(ctx, "acme", "s1"); !errors.Is(err, ErrClosed) {
			t.Errorf("Get after Close = %v, want ErrClosed", err)
		}
		if err := s.Delete(ctx, "acme", "s1"); !errors.Is(err, ErrClosed) {
			t.Errorf("Delete after Close = %v, want ErrClosed", err)
		}
		if err := s.Flush(ctx); err != nil {
			t.Errorf("Flush after a clean Close = %v, want nil (nothing is pending)", err)
		}
		if err := s.Close(ctx); err != nil {
			t.Errorf("second Close() = %v", err)
		}
	})
}
