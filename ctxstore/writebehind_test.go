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

// sortBatches sorts batches as written() lists them, for comparisons that
// ignore the order of batches.
func sortBatches(bs [][]string) [][]string {
	bs = slices.Clone(bs)
	slices.SortFunc(bs, func(a, b []string) int { return slices.Compare(a, b) })
	return bs
}

// occupy Puts one filler record per batch the write-behind goroutine may
// have in flight, while the cold tier is held, so that what is Put next
// waits in the queue. It returns the fillers' names as written() shows
// them, one batch each.
func occupy(t *testing.T, s *Store) [][]string {
	t.Helper()
	var batches [][]string
	for i := range inflightBatches {
		id := fmt.Sprint("filler", i)
		mustPut(t, s, s.NewRecord("acme", id))
		synctest.Wait() // taken and handed to the (held) writer
		batches = append(batches, []string{id + "@1"})
	}
	return batches
}

// TestWriteBehindBatchesAndCoalesces holds the cold tier while one batch
// is in flight: what arrives meanwhile forms the next batches, at most
// MaxBatch records each, and repeated Puts of a waiting session leave one
// write of its newest version.
func TestWriteBehindBatchesAndCoalesces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cold := &testCold{Cold: &Memory{}}
		s := newStore(t, cold, Config{MaxBatch: 4})
		release := cold.hold()
		fillers := occupy(t, s)

		hot := s.NewRecord("acme", "hot")
		for range 5 {
			hot.Append(Turn{Role: RoleUser, Text: "again"})
			mustPut(t, s, hot)
		}
		for i := range 6 {
			mustPut(t, s, s.NewRecord("acme", fmt.Sprint("k", i)))
		}
		if got, want := s.Stats().Pending, inflightBatches+7; got != want {
			t.Errorf("Pending = %d, want %d sessions", got, want)
		}
		release()
		mustFlush(t, s)
		want := append(fillers,
			[]string{"hot@5", "k0@1", "k1@1", "k2@1"},
			[]string{"k3@1", "k4@1", "k5@1"},
		)
		// Batches in flight together are written concurrently, in any order.
		if got := cold.written(); !slices.EqualFunc(sortBatches(got), sortBatches(want), slices.Equal) {
			t.Errorf("batches written = %v, want %v in any order", got, want)
		}
		if st := s.Stats(); st.Batches != uint64(len(want)) || st.Written != uint64(inflightBatches+7) || st.Pending != 0 {
			t.Errorf("stats %+v, want %d batches, %d written, none pending", st, len(want), inflightBatches+7)
		}
	})
}

// A Put that arrives while its session's previous version is being
// written is queued again, not folded into the write in flight.
func TestPutDuringItsWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cold := &testCold{Cold: &Memory{}}
		s := newStore(t, cold, Config{})
		release := cold.hold()
		r := s.NewRecord("acme", "s1")
		mustPut(t, s, r)
		synctest.Wait()
		r.SetSlot("v", "2")
		mustPut(t, s, r)
		release()
		mustFlush(t, s)
		if got, want := cold.written(), [][]string{{"s1@1"}, {"s1@2"}}; !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("batches = %v, want %v", got, want)
		}
		if v, _ := mustGet(t, s, "acme", "s1").Slot("v"); v != "2" {
			t.Errorf("slot v = %q, want 2", v)
		}
	})
}

func TestDeleteThenPutInOneBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cold := &testCold{Cold: &Memory{}}
		s := newStore(t, cold, Config{})
		old := s.NewRecord("acme", "s1")
		for range 3 {
			mustPut(t, s, old) // seq 3 in the cold tier
		}
		mustFlush(t, s)
		release := cold.hold()
		occupy(t, s)
		ctx := context.Background()
		if err := s.Delete(ctx, "acme", "s1"); err != nil {
			t.Fatal(err)
		}
		fresh := fill(s.NewRecord("acme", "s1"), "fresh")
		mustPut(t, s, fresh) // seq 1, after the Delete
		release()
		mustFlush(t, s)
		got := cold.written()
		i := slices.IndexFunc(got, func(b []string) bool { return slices.Contains(b, "s1@0") })
		if want := []string{"s1@0", "s1@1"}; i < 0 || !slices.Equal(got[i], want) {
			t.Errorf("batches = %v, want one of them %v (the delete, then the new record)", got, want)
		}
		if st := s.Stats(); st.Stale != 0 {
			t.Errorf("stats %+v: the new record was refused", st)
		}
		s2 := newStore(t, cold, Config{})
		if g := mustGet(t, s2, "acme", "s1"); dump(g) != dump(fresh) {
			t.Errorf("cold tier holds %s, want %s", dump(g), dump(fresh))
		}
	})
}

// TestBackpressure fills the write-behind buffer while the cold tier is
// held: a Put of a new session waits for room (and gives up with
// ErrBacklog when its context ends), a Put of a waiting session does not.
func TestBackpressure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cold := &testCold{Cold: &Memory{}}
		s := newStore(t, cold, Config{MaxPending: 3})
		release := cold.hold()
		occupy(t, s)
		for i := range 3 - inflightBatches {
			mustPut(t, s, s.NewRecord("acme", fmt.Sprint(i)))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := s.Put(ctx, s.NewRecord("acme", "late"))
		if !errors.Is(err, ErrBacklog) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Put into a full buffer = %v, want ErrBacklog and DeadlineExceeded", err)
		}
		if _, err := s.Get(context.Background(), "acme", "late"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get of the refused Put = %v, want ErrNotFound", err)
		}
		// Coalescing takes no room.
		r := mustGet(t, s, "acme", "0")
		r.SetSlot("x", "y")
		mustPut(t, s, r)

		done := make(chan error)
		go func() { done <- s.Put(context.Background(), s.NewRecord("acme", "waits")) }()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Put into a full buffer returned %v without waiting", err)
		default:
		}
		release()
		if err := <-done; err != nil {
			t.Fatalf("waiting Put = %v after room was made", err)
		}
		mustFlush(t, s)
		if st := s.Stats(); st.Pending != 0 || st.Written != 4 {
			t.Errorf("stats %+v, want 4 written (3 sessions and the one that waited), none pending", st)
		}
	})
}

// TestRetryWithBackoff fails the cold tier a few times: the write-behind
// retries with growing waits (in virtual time), logs the outage once and
// the recovery once, and the write arrives.
func TestRetryWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cold := &testCold{Cold: &Memory{}, failWrites: 8}
		var logs logBuffer
		s := newStore(t, cold, Config{Logger: logs.logger()})
		start := time.Now()
		mustPut(t, s, fill(s.NewRecord("acme", "s1"), "v1"))
		mustGet(t, s, "acme", "s1") // served while the cold tier fails
		mustFlush(t, s)
		// Waits: 20ms, 40, 80, 160, 320, 640, 1s, 1s; each at least half.
		elapsed := time.Since(start)
		if lo, hi := 1630*time.Millisecond, 3260*time.Millisecond; elapsed < lo || elapsed > hi {
			t.Errorf("8 retries took %v of virtual time, want within [%v, %v]", elapsed, lo, hi)
		}
		if st := s.Stats(); st.ColdErrors != 8 || st.Written != 1 {
			t.Errorf("stats %+v, want 8 cold errors and 1 written", st)
		}
		out := logs.String()
		if strings.Count(out, "cold write failed") != 1 || strings.Count(out, "recovered") != 1 {
			t.Errorf("logs = %q, want one failure and one recovery line", out)
		}
	})
}

// TestCloseGivesUp closes a store whose cold tier never comes back: Close
// returns when its context ends, says how many writes it could not make,
// and reports each one.
func TestCloseGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cold := &testCold{Cold: &Memory{}, failWrites: 1 << 30}
		var (
			mu   sync.Mutex
			lost []string
		)
		s, err := New(cold, Config{Logger: discard, OnWriteError: func(k Key, err error) {
			mu.Lock()
			defer mu.Unlock()
			if errors.Is(err, context.DeadlineExceeded) {
				lost = append(lost, k.ID)
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"a", "b", "c"} {
			mustPut(t, s, s.NewRecord("acme", id))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		fctx, fcancel := context.WithTimeout(context.Background(), time.Second)
		defer fcancel()
		if err := s.Flush(fctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Flush = %v, want DeadlineExceeded", err)
		}
		err = s.Close(ctx)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "3 acknowledged writes") {
			t.Errorf("Close = %v, want DeadlineExceeded and a count of 3", err)
		}
		slices.Sort(lost)
		if !slices.Equal(lost, []string{"a", "b", "c"}) {
			t.Errorf("OnWriteError reported %v, want [a b c]", lost)
		}
		if err2 := s.Close(context.Background()); err2 == nil || err2.Error() != err.Error() {
			t.Errorf("second Close = %v, want the first's %v", err2, err)
		}
		if err := s.Flush(context.Background()); !errors.Is(err, ErrClosed) {
			t.Errorf("Flush after Close gave up = %v, want ErrClosed", err)
		}
	})
}

// TestFlushWaitsOnlyForEarlierWrites keeps Putting while a Flush waits:
// the Flush returns once the writes acknowledged before it are cold.
func TestFlushWaitsOnlyForEarlierWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cold := &testCold{Cold: &Memory{}}
		s := newStore(t, cold, Config{MaxBatch: 2})
		release := cold.hold()
		for i := range 4 {
			mustPut(t, s, s.NewRecord("acme", fmt.Sprint("before", i)))
		}
		flushed := make(chan error)
		go func() { flushed <- s.Flush(context.Background()) }()
		synctest.Wait()
		for i := range 4 {
			mustPut(t, s, s.NewRecord("acme", fmt.Sprint("after", i)))
		}
		release()
		if err := <-flushed; err != nil {
			t.Fatal(err)
		}
		for i := range 4 {
			if _, _, err := cold.Cold.Load(context.Background(), Key{"acme", fmt.Sprint("before", i)}); err != nil {
				t.Errorf("Flush returned before before%d was cold: %v", i, err)
			}
		}
	})
}

// TestLinger checks, in virtual time, that a Linger spaces cold writes
// apart so that repeated Puts of a session coalesce, and that Flush and
// Close cut the wait short.
func TestLinger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cold := &testCold{Cold: &Memory{}}
		s, err := New(cold, Config{Linger: time.Second, Logger: discard})
		if err != nil {
			t.Fatal(err)
		}
		r := s.NewRecord("acme", "chatty")
		mustPut(t, s, r) // the first write goes at once
		synctest.Wait()
		for range 5 {
			time.Sleep(100 * time.Millisecond)
			r.Append(Turn{Role: RoleUser, Text: "more"})
			mustPut(t, s, r)
		}
		synctest.Wait()
		if got := cold.written(); len(got) != 1 {
			t.Fatalf("after 0.5 s of Puts, batches written = %v, want only the first", got)
		}
		time.Sleep(500 * time.Millisecond) // the Linger since the first write ends
		synctest.Wait()
		if got, want := cold.written(), [][]string{{"chatty@1"}, {"chatty@6"}}; !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("batches written = %v, want %v: one write of the newest version", got, want)
		}

		// A Flush does not wait out the Linger.
		r.Append(Turn{Role: RoleUser, Text: "again"})
		mustPut(t, s, r)
		start := time.Now()
		mustFlush(t, s)
		if d := time.Since(start); d != 0 {
			t.Errorf("Flush took %v of virtual time, want none", d)
		}
		// Nor does Close.
		r.Append(Turn{Role: RoleUser, Text: "last"})
		mustPut(t, s, r)
		start = time.Now()
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("Close took %v of virtual time, want none", d)
		}
		if got := cold.written(); len(got) != 4 || got[3][0] != "chatty@8" {
			t.Errorf("batches written = %v, want 4, the last with chatty@8", got)
		}
	})
}

// TestHotLetsGoOfOlderVersions writes a version while a newer one waits:
// the hot tier lets go of its older copy (a Get reads the waiting version
// first, so the copy would only hold memory) and takes the newer version
// once that is written.
func TestHotLetsGoOfOlderVersions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cold := &testCold{Cold: &Memory{}}
		s := newStore(t, cold, Config{})
		r := s.NewRecord("acme", "s1")
		h := s.hash(r.Key())
		hotSeq := func() uint64 {
			s.hot.Wait()
			if e, ok := s.hot.Get(h); ok {
				return e.rec.Seq()
			}
			return 0
		}
		mustPut(t, s, r)
		mustFlush(t, s)
		if got := hotSeq(); got != 1 {
			t.Fatalf("hot tier holds seq %d after the first write, want 1", got)
		}
		release := cold.hold()
		r.SetSlot("v", "2")
		mustPut(t, s, r) // taken and held
		synctest.Wait()
		r.SetSlot("v", "3")
		mustPut(t, s, r) // waits for seq 2 to be written
		release()
		release = cold.hold() // seq 2 goes through, seq 3 is held
		synctest.Wait()
		if got := hotSeq(); got != 0 {
			t.Errorf("hot tier holds seq %d while seq 3 waits, want nothing", got)
		}
		if v, _ := mustGet(t, s, "acme", "s1").Slot("v"); v != "3" {
			t.Errorf("slot v = %q, want 3", v)
		}
		release()
		mustFlush(t, s)
		if got := hotSeq(); got != 3 {
			t.Errorf("hot tier holds seq %d once seq 3 is written, want 3", got)
		}
		if got, want := cold.written(), [][]string{{"s1@1"}, {"s1@2"}, {"s1@3"}}; !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("batches = %v, want %v", got, want)
		}
	})
}
