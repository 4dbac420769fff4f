package ctxstore

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/ristretto/v2"
)

// record1K fills r to encode to about 1 KiB, the record size the targets
// are set for: a system prompt, six turns, a snapshot and two slots.
func record1K(r *Record) *Record { return recordWith(r, 6) }

// recordWith fills r like record1K but with the given number of turns
// (each about 130 bytes encoded).
func recordWith(r *Record, turns int) *Record {
	r.SetSystem(strings.Repeat("You are a helpful shop assistant. ", 5))
	r.SetSnapshot([]byte("fsm:CHATTING:since=1732190000"))
	for i := range turns {
		role := RoleUser
		if i%2 == 1 {
			role = RoleAssistant
		}
		r.Append(Turn{Role: role, Text: fmt.Sprintf("turn %d: %s", i, strings.Repeat("lorem ipsum ", 9))})
	}
	r.SetSlot("product", "laptop-14-inch-silver")
	r.SetSlot("lang", "en")
	return r
}

func reportRecordSize(b *testing.B, s *Store) {
	b.ReportMetric(float64(len(record1K(s.NewRecord("tenant", "session-00000")).encode(1))), "bytes/record")
}

func sessionIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("session-%05d", i)
	}
	return ids
}

// benchStore returns a store on cold, closed when b ends.
func benchStore(b *testing.B, cold Cold, cfg Config) *Store {
	cfg.Logger = discard
	s, err := New(cold, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			b.Errorf("Close() = %v", err)
		}
	})
	return s
}

// BenchmarkHotGet reads 1 KiB records that are hot, beside a bare
// ristretto Get of 1 KiB values: the store adds the write-behind buffer
// check, the key check and the copy-on-write Record.
func BenchmarkHotGet(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{1, 10000} {
		ids := sessionIDs(n)
		b.Run(fmt.Sprintf("impl=store/sessions=%d", n), func(b *testing.B) {
			s := benchStore(b, &Memory{}, Config{})
			for _, id := range ids {
				mustPut(b, s, record1K(s.NewRecord("tenant", id)))
			}
			mustFlush(b, s)
			for _, id := range ids { // warm whatever ristretto dropped
				mustGet(b, s, "tenant", id)
			}
			before := s.Stats()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := s.Get(ctx, "tenant", ids[i]); err != nil {
					b.Fatal(err)
				}
				if i++; i == n {
					i = 0
				}
			}
			b.ReportMetric(float64(s.Stats().ColdLoads-before.ColdLoads)/float64(b.N), "cold-loads/op")
			reportRecordSize(b, s)
		})
		b.Run(fmt.Sprintf("impl=ristretto/sessions=%d", n), func(b *testing.B) {
			c, err := ristretto.NewCache(&ristretto.Config[string, []byte]{NumCounters: 1e6, MaxCost: 64 << 20, BufferItems: 64})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			for _, id := range ids {
				c.SetWithTTL("tenant:"+id, make([]byte, 1024), 1024, time.Hour)
			}
			c.Wait()
			keys := make([]string, n)
			for i, id := range ids {
				keys[i] = "tenant:" + id
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, ok := c.Get(keys[i]); !ok {
					b.Fatal("miss")
				}
				if i++; i == n {
					i = 0
				}
			}
		})
	}
}

// BenchmarkPut measures a Put of a 1 KiB record: encode, stale check,
// slot and enqueue for the write-behind, for sessions that are not already
// waiting for the cold tier (as in a chat, where a session Puts once per
// turn). With writebehind=parked the cold tier is held while timing and
// released (untimed) after each pass over the sessions, so ns/op is the
// Put alone; with writebehind=running it drains to a Memory tier beside
// the Puts on the same cores, and written/op < 1 shows Puts that found
// their session still waiting and replaced its record in place.
// op=get-append-put is a worker's whole turn. A bare ristretto Set of 1 KiB
// gives the scale.
func BenchmarkPut(b *testing.B) {
	ctx := context.Background()
	const n = 10000
	ids := sessionIDs(n)
	turn := Turn{Role: RoleUser, Text: strings.Repeat("lorem ipsum ", 9)}
	for _, wb := range []string{"parked", "running"} {
		for _, op := range []string{"put", "get-append-put"} {
			b.Run(fmt.Sprintf("impl=store/writebehind=%s/op=%s", wb, op), func(b *testing.B) {
				cold := &testCold{Cold: &Memory{}}
				// Six turns, as record1K has: each Append drops the oldest.
				s := benchStore(b, cold, Config{Window: Window{MaxTurns: 6}})
				recs := make([]*Record, n)
				for i, id := range ids {
					recs[i] = record1K(s.NewRecord("tenant", id))
					mustPut(b, s, recs[i])
				}
				mustFlush(b, s)
				release := func() {}
				if wb == "parked" {
					release = cold.hold()
				}
				before := s.Stats()
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					r := recs[i]
					if op == "get-append-put" {
						var err error
						if r, err = s.Get(ctx, "tenant", ids[i]); err != nil {
							b.Fatal(err)
						}
						r.Append(turn)
					}
					if err := s.Put(ctx, r); err != nil {
						b.Fatal(err)
					}
					recs[i] = r
					if i++; i == n {
						i = 0
						if wb == "parked" {
							b.StopTimer()
							release()
							mustFlush(b, s)
							release = cold.hold()
							b.StartTimer()
						}
					}
				}
				release()
				mustFlush(b, s)
				b.ReportMetric(float64(s.Stats().Written-before.Written)/float64(b.N), "written/op")
				reportRecordSize(b, s)
			})
		}
	}
	b.Run("impl=ristretto-set", func(b *testing.B) {
		c, err := ristretto.NewCache(&ristretto.Config[string, []byte]{NumCounters: 1e6, MaxCost: 64 << 20, BufferItems: 64})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		keys := make([]string, n)
		for i, id := range ids {
			keys[i] = "tenant:" + id
		}
		v := make([]byte, 1024)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			c.SetWithTTL(keys[i], v, 1024, time.Hour)
			if i++; i == n {
				i = 0
			}
		}
	})
}

// benchCold returns a fresh cold tier of the named kind for b.
func benchCold(b *testing.B, kind string) Cold {
	switch kind {
	case "memory":
		return &Memory{}
	case "bolt":
		return openBolt(b, filepath.Join(b.TempDir(), "ctx.db"))
	case "redis":
		r, _ := sharedRedis(b)
		return r
	}
	panic("unknown cold tier " + kind)
}

// BenchmarkWriteBehind measures how many sessions per second reach the
// cold tier: each op Puts a 1 KiB record of a different session (cycling
// through more sessions than the buffer holds, so nothing coalesces), and
// sessions/s counts the cold writes made between the first Put and the end
// of the final Flush.
func BenchmarkWriteBehind(b *testing.B) {
	ctx := context.Background()
	const n = 20000 // > MaxPending: a session is written before it comes round again
	ids := sessionIDs(n)
	for _, cold := range []string{"redis", "bolt"} {
		b.Run("cold="+cold, func(b *testing.B) {
			s := benchStore(b, benchCold(b, cold), Config{})
			recs := make([]*Record, n)
			for i, id := range ids {
				recs[i] = record1K(s.NewRecord("tenant", id))
			}
			before := s.Stats()
			start := time.Now()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := s.Put(ctx, recs[i]); err != nil {
					b.Fatal(err)
				}
				if i++; i == n {
					i = 0
				}
			}
			mustFlush(b, s)
			elapsed := time.Since(start)
			after := s.Stats()
			written := float64(after.Written - before.Written)
			b.ReportMetric(written/elapsed.Seconds(), "sessions/s")
			b.ReportMetric(written/float64(b.N), "written/op")
			b.ReportMetric(written/float64(after.Batches-before.Batches), "records/batch")
			reportRecordSize(b, s)
		})
	}
}

// BenchmarkColdLoad measures the first Get of a session after a restart:
// a miss that loads and decodes the record from the cold tier. Each op
// reads a session this store has not read; p99-us is over all ops.
func BenchmarkColdLoad(b *testing.B) {
	ctx := context.Background()
	const n = 5000
	ids := sessionIDs(n)
	for _, kind := range []string{"redis", "bolt"} {
		b.Run("cold="+kind, func(b *testing.B) {
			cold := benchCold(b, kind)
			w := benchStore(b, cold, Config{})
			for _, id := range ids {
				mustPut(b, w, record1K(w.NewRecord("tenant", id)))
			}
			mustFlush(b, w)
			var (
				s         *Store
				latencies []time.Duration
			)
			b.ReportAllocs()
			i := n
			for b.Loop() {
				if i == n { // every session read: restart
					b.StopTimer()
					if s != nil {
						s.Close(ctx)
					}
					s = benchStore(b, cold, Config{})
					i = 0
					b.StartTimer()
				}
				t0 := time.Now()
				if _, err := s.Get(ctx, "tenant", ids[i]); err != nil {
					b.Fatal(err)
				}
				latencies = append(latencies, time.Since(t0))
				i++
			}
			slices.Sort(latencies)
			b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds()), "p99-us")
			b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds()), "p50-us")
		})
	}
}

// BenchmarkPutThenGet is the lost-write check: each op Puts 100k new
// sessions (1 KiB records, far more than the hot tier's default budget
// holds) and then Gets every one. lost counts Gets that did not return
// exactly what was Put, and must be 0; cold-reads counts those Gets that
// had to go to the cold tier because ristretto had dropped or evicted the
// record.
func BenchmarkPutThenGet(b *testing.B) {
	ctx := context.Background()
	const n = 100000
	ids := sessionIDs(n)
	for _, kind := range []string{"bolt"} {
		b.Run("cold="+kind, func(b *testing.B) {
			s := benchStore(b, benchCold(b, kind), Config{})
			var lost, coldReads, round int
			b.ReportAllocs()
			for b.Loop() {
				round++
				tenant := fmt.Sprint("round", round)
				before := s.Stats()
				for _, id := range ids {
					r := s.NewRecord(tenant, id)
					r.SetSlot("id", id)
					mustPut(b, s, record1K(r))
				}
				for _, id := range ids {
					r, err := s.Get(ctx, tenant, id)
					if err != nil || r.Seq() != 1 {
						lost++
						continue
					}
					if v, _ := r.Slot("id"); v != id {
						lost++
					}
				}
				coldReads += int(s.Stats().Misses - before.Misses)
			}
			b.ReportMetric(float64(lost), "lost")
			b.ReportMetric(float64(coldReads)/float64(b.N), "cold-reads/op")
			if lost != 0 {
				b.Errorf("%d sessions lost", lost)
			}
		})
	}
}

// BenchmarkHeap measures the Go heap a store holds for 10k sessions, to
// size a server: every session Put, written to a Bolt file (which lives
// outside the Go heap) and read back. heap-MiB and bytes/session count
// everything the store keeps; hot is how many sessions the hot tier kept
// within the default HotBytes (the others are read from the file).
func BenchmarkHeap(b *testing.B) {
	const n = 10000
	ids := sessionIDs(n)
	for _, size := range []struct {
		name  string
		turns int
	}{{"1KiB", 6}, {"4KiB", 30}} {
		b.Run(fmt.Sprintf("sessions=%d/record=%s", n, size.name), func(b *testing.B) {
			var held, hot int
			b.ReportAllocs()
			for b.Loop() {
				cold := openBolt(b, filepath.Join(b.TempDir(), "ctx.db"))
				base := liveHeap()
				s := benchStore(b, cold, Config{})
				for _, id := range ids {
					mustPut(b, s, recordWith(s.NewRecord("tenant", id), size.turns))
				}
				mustFlush(b, s)
				before := s.Stats().ColdLoads
				for _, id := range ids {
					mustGet(b, s, "tenant", id)
				}
				hot = n - int(s.Stats().ColdLoads-before)
				held = int(liveHeap() - base)
				runtime.KeepAlive(s)
			}
			b.ReportMetric(float64(held)/(1<<20), "heap-MiB")
			b.ReportMetric(float64(held)/n, "bytes/session")
			b.ReportMetric(float64(hot), "hot")
		})
	}
}

// liveHeap returns the bytes of live heap objects after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
