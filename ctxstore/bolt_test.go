package ctxstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestBoltRestart(t *testing.T) {
	checkNoLeak(t)
	path := filepath.Join(t.TempDir(), "ctx.db")
	var open *Bolt
	testRestart(t, func() Cold {
		if open != nil {
			if err := open.Close(); err != nil {
				t.Fatal(err)
			}
		}
		open = openBolt(t, path)
		return open
	})
}

// counts returns how many records and expiry index entries b holds.
func (b *Bolt) counts(t *testing.T) (records, index int) {
	t.Helper()
	err := b.db.View(func(tx *bolt.Tx) error {
		records = tx.Bucket(recordsBucket).Stats().KeyN
		index = tx.Bucket(expiryBucket).Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return records, index
}

// TestBoltSweepsExpired checks, in virtual time, that Bolt keeps its own
// expiry: expired records read as missing at once and leave the file with
// later writes, while rewritten ones keep a single index entry.
func TestBoltSweepsExpired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := openBolt(t, filepath.Join(t.TempDir(), "ctx.db"))
		ctx := context.Background()
		write := func(id string, seq uint64, ttl time.Duration) {
			t.Helper()
			ws := []Write{{Key: Key{"t", id}, Seq: seq, Data: []byte(id), TTL: ttl}}
			if err := b.Write(ctx, ws); err != nil || ws[0].Err != nil {
				t.Fatalf("Write(%s) = %v, %v", id, err, ws[0].Err)
			}
		}
		for i := range 100 {
			write(fmt.Sprint("short", i), 1, time.Hour)
		}
		write("long", 1, 3*time.Hour)
		write("long", 2, 3*time.Hour) // rewritten: still one index entry
		if r, i := b.counts(t); r != 101 || i != 101 {
			t.Fatalf("records, index = %d, %d; want 101, 101", r, i)
		}
		time.Sleep(2 * time.Hour)
		if _, _, err := b.Load(ctx, Key{"t", "short7"}); !errors.Is(err, ErrNotFound) {
			t.Errorf("Load of an expired record = %v, want ErrNotFound", err)
		}
		write("trigger", 1, 3*time.Hour) // sweeps up to 1+64 expired records
		if r, i := b.counts(t); r != 37 || i != 37 {
			t.Errorf("after one write: records, index = %d, %d; want 37, 37", r, i)
		}
		write("trigger", 2, 3*time.Hour)
		if r, i := b.counts(t); r != 2 || i != 2 {
			t.Errorf("after two writes: records, index = %d, %d; want 2, 2 (long and trigger)", r, i)
		}
		if data, _, err := b.Load(ctx, Key{"t", "long"}); err != nil || string(data) != "long" {
			t.Errorf("Load(long) = %q, %v", data, err)
		}
	})
}

// indexSlots returns the expiry slot of every index entry for key.
func (b *Bolt) indexSlots(t *testing.T, key string) []time.Time {
	t.Helper()
	var slots []time.Time
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(expiryBucket).ForEach(func(k, _ []byte) error {
			if string(k[8:]) == key {
				slots = append(slots, time.Unix(0, int64(binary.BigEndian.Uint64(k))))
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return slots
}

// TestBoltIndexMovesBySlot checks that rewriting a record moves its index
// entry only when its expiry enters another slot, and that an index entry
// older than its record never sweeps the record.
func TestBoltIndexMovesBySlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := openBolt(t, filepath.Join(t.TempDir(), "ctx.db"))
		ctx := context.Background()
		k := Key{"t", "s"}
		write := func(seq uint64) {
			t.Helper()
			ws := []Write{{Key: k, Seq: seq, Data: []byte("v"), TTL: time.Hour}}
			if err := b.Write(ctx, ws); err != nil || ws[0].Err != nil {
				t.Fatalf("Write(seq %d) = %v, %v", seq, err, ws[0].Err)
			}
		}
		start := time.Now() // synctest's epoch, on a minute boundary
		write(1)
		time.Sleep(30 * time.Second)
		write(2) // same slot: the index entry stays
		if got, want := b.indexSlots(t, k.String()), []time.Time{start.Add(time.Hour)}; !slices.Equal(got, want) {
			t.Errorf("index slots after a rewrite in the same slot = %v, want %v", got, want)
		}
		time.Sleep(time.Minute)
		write(3) // next slot: the entry moves
		if got, want := b.indexSlots(t, k.String()), []time.Time{start.Add(time.Hour + time.Minute)}; !slices.Equal(got, want) {
			t.Errorf("index slots after a rewrite in the next slot = %v, want %v", got, want)
		}
		// An out-of-date entry (as a file from before slots could hold)
		// is dropped by the sweep without touching the live record.
		err := b.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(expiryBucket).Put(expiryKey(start, []byte(k.String())), nil)
		})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Minute)
		write(4)
		if _, _, err := b.Load(ctx, k); err != nil {
			t.Errorf("Load after sweeping a stale index entry = %v, want the record", err)
		}
		if r, i := b.counts(t); r != 1 || i != 1 {
			t.Errorf("records, index = %d, %d; want 1, 1", r, i)
		}
		// A delete takes the index entry with it, even with a TTL that
		// would put its expiry in the record's own slot.
		if err := b.Write(ctx, []Write{{Key: k, Seq: 5, TTL: time.Hour}}); err != nil {
			t.Fatal(err)
		}
		if r, i := b.counts(t); r != 0 || i != 0 {
			t.Errorf("after a delete: records, index = %d, %d; want 0, 0", r, i)
		}
	})
}

func TestBoltFileLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctx.db")
	openBolt(t, path)
	if b, err := OpenBolt(path); err == nil {
		b.Close()
		t.Fatal("a second OpenBolt of an open file succeeded")
	}
}

func TestBoltCorruptValue(t *testing.T) {
	b := openBolt(t, filepath.Join(t.TempDir(), "ctx.db"))
	err := b.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(recordsBucket).Put([]byte("t:short"), []byte("tiny"))
	})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = b.Load(context.Background(), Key{"t", "short"})
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("Load of a 4-byte value = %v, want ErrCorrupt", err)
	}
}
