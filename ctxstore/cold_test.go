package ctxstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testColdTier checks that c follows the rules of [Cold]. Keys use tenant,
// which the caller makes unique to the test.
func testColdTier(t *testing.T, c Cold, tenant string) {
	ctx := context.Background()
	const ttl = time.Hour
	k := Key{tenant, "s1"}
	write := func(t *testing.T, ws ...Write) []Write {
		t.Helper()
		for i := range ws {
			ws[i].Err = errors.New("not cleared") // Write must set every Err
			if ws[i].TTL == 0 {
				ws[i].TTL = ttl
			}
		}
		if err := c.Write(ctx, ws); err != nil {
			t.Fatalf("Write = %v", err)
		}
		return ws
	}
	wantLoad := func(t *testing.T, k Key, want string) {
		t.Helper()
		data, expires, err := c.Load(ctx, k)
		if want == "" {
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("Load(%s) = %q, %v; want ErrNotFound", k, data, err)
			}
			return
		}
		if err != nil || string(data) != want {
			t.Fatalf("Load(%s) = %q, %v; want %q", k, data, err, want)
		}
		if left := time.Until(expires); left <= 0 || left > ttl+time.Second {
			t.Errorf("Load(%s) expires in %v, want within (0, %v]", k, left, ttl)
		}
	}
	wantErrs := func(t *testing.T, ws []Write, want ...error) {
		t.Helper()
		for i, w := range ws {
			if !errors.Is(w.Err, want[i]) || (want[i] == nil) != (w.Err == nil) {
				t.Errorf("write %d (%s seq %d): Err = %v, want %v", i, w.Key, w.Seq, w.Err, want[i])
			}
		}
	}

	t.Run("missing", func(t *testing.T) { wantLoad(t, k, "") })
	t.Run("sequence moves forward only", func(t *testing.T) {
		wantErrs(t, write(t, Write{Key: k, Seq: 1, Data: []byte("one")}), nil)
		wantLoad(t, k, "one")
		wantErrs(t, write(t, Write{Key: k, Seq: 1, Data: []byte("one")}), nil) // a retry
		wantErrs(t, write(t, Write{Key: k, Seq: 1, Data: []byte("uno")}), ErrStale)
		wantErrs(t, write(t, Write{Key: k, Seq: 0, Data: []byte("zero")}), ErrStale)
		wantLoad(t, k, "one")
		wantErrs(t, write(t, Write{Key: k, Seq: 10, Data: []byte("ten")}), nil)
		wantErrs(t, write(t, Write{Key: k, Seq: 9, Data: []byte("nine")}), ErrStale)
		wantLoad(t, k, "ten")
	})
	t.Run("batch results are per write", func(t *testing.T) {
		ws := write(t,
			Write{Key: Key{tenant, "b1"}, Seq: 1, Data: []byte("b1")},
			Write{Key: k, Seq: 2, Data: []byte("stale")},
			Write{Key: Key{tenant, "b2"}, Seq: 1, Data: []byte("b2")},
		)
		wantErrs(t, ws, nil, ErrStale, nil)
		wantLoad(t, Key{tenant, "b1"}, "b1")
		wantLoad(t, Key{tenant, "b2"}, "b2")
	})
	t.Run("batches leave earlier batches as they were", func(t *testing.T) {
		// Writes from several goroutines at once, keys and values of
		// varied lengths: a tier that reused what it stored, or stored
		// what the caller may reuse, would mix them up.
		const batches, size = 8, 40
		key := func(b, i int) Key { return Key{tenant, fmt.Sprintf("batch%d-%0*d", b, 1+i%5, i)} }
		val := func(b, i int) string { return fmt.Sprintf("%d.%d:%s", b, i, strings.Repeat("x", (b*size+i)*37%1500)) }
		var wg sync.WaitGroup
		for b := range batches {
			wg.Go(func() {
				ws := make([]Write, size)
				for i := range ws {
					ws[i] = Write{Key: key(b, i), Seq: 1, Data: []byte(val(b, i)), TTL: ttl}
				}
				if err := c.Write(ctx, ws); err != nil {
					t.Errorf("Write batch %d = %v", b, err)
				}
				for i := range ws {
					ws[i].Data = []byte(strings.Repeat("?", len(ws[i].Data))) // the caller reuses its buffers
				}
			})
		}
		wg.Wait()
		for b := range batches {
			for i := range size {
				wantLoad(t, key(b, i), val(b, i))
			}
		}
	})
	t.Run("tenants do not meet", func(t *testing.T) {
		other := Key{tenant + "-other", k.ID}
		wantLoad(t, other, "")
		wantErrs(t, write(t, Write{Key: other, Seq: 1, Data: []byte("theirs")}), nil)
		wantLoad(t, other, "theirs")
		wantLoad(t, k, "ten")
	})
	t.Run("delete ignores the sequence and starts over", func(t *testing.T) {
		wantErrs(t, write(t, Write{Key: k, Seq: 0}), nil)
		wantLoad(t, k, "")
		wantErrs(t, write(t, Write{Key: k, Seq: 1, Data: []byte("again")}), nil)
		wantLoad(t, k, "again")
	})
	t.Run("expired records are gone", func(t *testing.T) {
		e := Key{tenant, "expiring"}
		wantErrs(t, write(t, Write{Key: e, Seq: 5, Data: []byte("short"), TTL: time.Millisecond}), nil)
		time.Sleep(20 * time.Millisecond)
		wantLoad(t, e, "")
		// An expired record refuses nothing: a fresh session may start at 1.
		wantErrs(t, write(t, Write{Key: e, Seq: 1, Data: []byte("fresh")}), nil)
		wantLoad(t, e, "fresh")
	})
}

func TestMemoryCold(t *testing.T) {
	testColdTier(t, &Memory{}, "t")
}

func TestBoltCold(t *testing.T) {
	b := openBolt(t, filepath.Join(t.TempDir(), "ctx.db"))
	testColdTier(t, b, "t")
}

// openBolt opens a bbolt file closed when the test ends.
func openBolt(t testing.TB, path string) *Bolt {
	t.Helper()
	b, err := OpenBolt(path)
	if err != nil {
		t.Fatalf("OpenBolt(%s) = %v", path, err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Bolt.Close() = %v", err)
		}
	})
	return b
}

// Every cold tier gives the store the same guarantees; this runs the
// store-level tenant test against each.
func testTenantIsolation(t *testing.T, s *Store, tenant string) {
	ctx := context.Background()
	a, b := tenant+"-a", tenant+"-b"
	mustPut(t, s, fill(s.NewRecord(a, "same-id"), "A"))
	if _, err := s.Get(ctx, b, "same-id"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(tenant b) before b wrote = %v, want ErrNotFound", err)
	}
	// Tenant b's first write of the same id is its own record, not a stale
	// write over a's.
	mustPut(t, s, fill(s.NewRecord(b, "same-id"), "B"))
	mustFlush(t, s)
	for tn, want := range map[string]string{a: "A", b: "B"} {
		if got, _ := mustGet(t, s, tn, "same-id").Slot("product"); got != "p-"+want {
			t.Errorf("tenant %s reads product %q, want p-%s", tn, got, want)
		}
	}
	if err := s.Delete(ctx, a, "same-id"); err != nil {
		t.Fatal(err)
	}
	mustFlush(t, s)
	if got, _ := mustGet(t, s, b, "same-id").Slot("product"); got != "p-B" {
		t.Errorf("after tenant a deleted its record tenant b reads %q, want p-B", got)
	}
	// A tenant with ':' could forge another tenant's key, so it is refused.
	for _, bad := range []Key{{a + ":x", "y"}, {"", "id"}, {a, ""}} {
		if err := s.Put(ctx, s.NewRecord(bad.Tenant, bad.ID)); !errors.Is(err, ErrBadKey) {
			t.Errorf("Put(%q, %q) = %v, want ErrBadKey", bad.Tenant, bad.ID, err)
		}
		if _, err := s.Get(ctx, bad.Tenant, bad.ID); !errors.Is(err, ErrBadKey) {
			t.Errorf("Get(%q, %q) = %v, want ErrBadKey", bad.Tenant, bad.ID, err)
		}
		if err := s.Delete(ctx, bad.Tenant, bad.ID); !errors.Is(err, ErrBadKey) {
			t.Errorf("Delete(%q, %q) = %v, want ErrBadKey", bad.Tenant, bad.ID, err)
		}
	}
}

func TestTenantIsolation(t *testing.T) {
	t.Run("cold=memory", func(t *testing.T) {
		testTenantIsolation(t, newStore(t, &Memory{}, Config{}), "t")
	})
	t.Run("cold=bolt", func(t *testing.T) {
		testTenantIsolation(t, newStore(t, openBolt(t, filepath.Join(t.TempDir(), "ctx.db")), Config{}), "t")
	})
	t.Run("cold=redis", func(t *testing.T) {
		r, _ := sharedRedis(t)
		testTenantIsolation(t, newStore(t, r, Config{}), uniqueTenant(t))
	})
}

// uniqueTenant returns a tenant name no other test run uses.
func uniqueTenant(t testing.TB) string {
	return fmt.Sprintf("test%d", time.Now().UnixNano())
}
