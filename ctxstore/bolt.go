package ctxstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bolt is the embedded on-disk [Cold] tier for a single machine, a bbolt
// file. Each [Bolt.Write] batch is one transaction, committed with fsync
// before Write returns.
//
// Bolt keeps expiry itself: Load treats an expired record as missing, and
// every Write transaction also deletes a bounded number of expired records
// (oldest expiry first, through an index), so the file does not grow with
// sessions that have gone. It does not shrink either: bbolt reuses the
// pages that deleted records free but keeps the file at its largest size,
// which the bbolt command's compact gives back while the file is closed.
// Bolt starts no goroutines.
//
// The zero Bolt is invalid; use [OpenBolt]. A Bolt is safe for concurrent
// use by multiple goroutines.
type Bolt struct {
	db *bolt.DB

	// mu makes Writes take turns (bbolt runs one write transaction at a
	// time anyway), so that they can reuse one buffer, buf, for their keys
	// and values: bbolt holds on to what Put is given until the
	// transaction commits, and a fresh copy of each was 45 of the 478 MB
	// a chat server allocated in 10 s of a load run (heap profile).
	mu  sync.Mutex
	buf []byte
}

// maxKeptBuffer is the largest Write buffer a Bolt keeps for the next
// Write; a larger one, left by an unusually large batch, goes to the
// collector.
const maxKeptBuffer = 4 << 20

// The file holds two buckets. records maps "tenant:id" to an 8-byte
// big-endian sequence number, an 8-byte big-endian expiry (Unix
// nanoseconds) and the encoded record; expiry holds one empty value per
// record under the start of its expiry's slot (expirySlot wide) followed by
// its key, so the oldest sort first. Slots, rather than exact expiries,
// mean that a session written every second moves its index entry once a
// minute instead of on every write: a third of the B-tree updates (a
// write within the slot leaves the entry as it is).
var (
	recordsBucket = []byte("records")
	expiryBucket  = []byte("expiry")
)

const (
	boltHeader = 16
	// expirySlot is the granularity of the expiry index. A record is swept
	// once its whole slot has passed, so up to expirySlot after it expired
	// (Load stops returning it at once).
	expirySlot = time.Minute
	// boltSweep is how many expired records a Write deletes beyond its
	// own batch size.
	boltSweep = 64
	// boltLockTimeout bounds how long OpenBolt waits for another process
	// to release the file.
	boltLockTimeout = time.Second
	// boltPageSize is the page size of a new file (an existing file keeps
	// its own). A chat session's record is a kilobyte or two, and bbolt
	// splits no leaf of four entries or fewer, so 4 KiB leaves of three or
	// four records kept spilling onto two pages, each a fresh buffer where
	// a single page comes from bbolt's pool.
	boltPageSize = 8 << 10
)

// OpenBolt opens (creating if needed) the bbolt file at path. Only one
// process may have a file open; OpenBolt fails after a second if another
// holds it.
func OpenBolt(path string) (*Bolt, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        boltLockTimeout,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		PageSize:       boltPageSize,
	})
	if err != nil {
		return nil, fmt.Errorf("ctxstore: open bolt %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{recordsBucket, expiryBucket} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("ctxstore: open bolt %s: %w", path, err)
	}
	return &Bolt{db: db}, nil
}

// Close closes the file. Close the [Store] that uses b first.
func (b *Bolt) Close() error { return b.db.Close() }

// Load implements [Cold.Load].
func (b *Bolt) Load(ctx context.Context, k Key) ([]byte, time.Time, error) {
	var (
		data    []byte
		expires time.Time
	)
	err := b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(recordsBucket).Get([]byte(k.String()))
		if v == nil {
			return nil
		}
		if len(v) < boltHeader {
			return fmt.Errorf("%w: key %s: %d-byte bolt value", ErrCorrupt, k, len(v))
		}
		if expires = boltExpiry(v); time.Now().Before(expires) {
			data = bytes.Clone(v[boltHeader:]) // v lives only as long as tx
		}
		return nil
	})
	if err != nil {
		return nil, time.Time{}, err
	}
	if data == nil {
		return nil, time.Time{}, fmt.Errorf("%w: %s", ErrNotFound, k)
	}
	return data, expires, nil
}

// Write implements [Cold.Write]: the whole batch is one transaction.
func (b *Bolt) Write(ctx context.Context, ws []Write) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	size := 0
	for i := range ws {
		size += len(ws[i].Key.Tenant) + 1 + len(ws[i].Key.ID) + boltHeader + len(ws[i].Data)
	}
	// Every key and value goes into buf, which is never regrown on the
	// way: each slice handed to bbolt stays valid until the commit.
	buf := b.buf[:0]
	if cap(buf) < size {
		buf = make([]byte, 0, size)
	}
	order := make([]int, len(ws))
	keys := make([][]byte, len(ws))
	for i := range ws {
		n := len(buf)
		buf = appendKey(buf, ws[i].Key)
		order[i], keys[i] = i, buf[n:len(buf):len(buf)]
	}
	defer func() {
		if cap(buf) <= maxKeptBuffer {
			b.buf = buf[:0]
		} else {
			b.buf = nil
		}
	}()
	now := time.Now()
	// Apply the writes in key order (a key's writes keep theirs): B+tree
	// pages are then visited once each instead of at random.
	slices.SortStableFunc(order, func(a, b int) int { return bytes.Compare(keys[a], keys[b]) })
	return b.db.Update(func(tx *bolt.Tx) error {
		recs, exp := tx.Bucket(recordsBucket), tx.Bucket(expiryBucket)
		for _, i := range order {
			w, key := &ws[i], keys[i]
			w.Err = nil
			expires := now.Add(w.TTL)
			// indexed: the index entry the record needs is already there.
			// A session rewritten within its expiry slot, as a live
			// conversation is turn after turn, leaves the index alone.
			indexed := false
			if cur := recs.Get(key); len(cur) >= boltHeader {
				old := boltExpiry(cur)
				if now.Before(old) && w.Data != nil &&
					refuses(binary.BigEndian.Uint64(cur), cur[boltHeader:], w) {
					w.Err = ErrStale
					continue
				}
				indexed = w.Data != nil && slotOf(old) == slotOf(expires)
				if !indexed {
					if err := exp.Delete(expiryKey(old, key)); err != nil {
						return err
					}
				}
			}
			if w.Data == nil {
				if err := recs.Delete(key); err != nil {
					return err
				}
				continue
			}
			n := len(buf)
			buf = binary.BigEndian.AppendUint64(buf, w.Seq)
			buf = binary.BigEndian.AppendUint64(buf, uint64(expires.UnixNano()))
			buf = append(buf, w.Data...)
			if err := recs.Put(key, buf[n:len(buf):len(buf)]); err != nil {
				return err
			}
			if !indexed {
				if err := exp.Put(expiryKey(expires, key), nil); err != nil {
					return err
				}
			}
		}
		return sweep(recs, exp, now, len(ws)+boltSweep)
	})
}

// appendKey appends the file's key for k, "tenant:id" (k.String()), to b.
func appendKey(b []byte, k Key) []byte {
	b = append(b, k.Tenant...)
	b = append(b, ':')
	return append(b, k.ID...)
}

// sweep deletes up to limit records whose expiry slot has passed by now,
// oldest first. An out-of-date index entry (as a file written before slots
// may hold) is dropped, and the live record it points to is kept.
func sweep(recs, exp *bolt.Bucket, now time.Time, limit int) error {
	var gone [][]byte
	c := exp.Cursor()
	for k, _ := c.First(); k != nil && len(gone) < limit; k, _ = c.Next() {
		if len(k) < 8 || int64(binary.BigEndian.Uint64(k))+int64(expirySlot) > now.UnixNano() {
			break
		}
		gone = append(gone, bytes.Clone(k))
	}
	// Delete after the scan: deleting under a bbolt cursor skips entries.
	for _, k := range gone {
		if err := exp.Delete(k); err != nil {
			return err
		}
		if v := recs.Get(k[8:]); len(v) >= boltHeader && now.Before(boltExpiry(v)) {
			continue
		}
		if err := recs.Delete(k[8:]); err != nil {
			return err
		}
	}
	return nil
}

func boltExpiry(v []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(v[8:])))
}

// slotOf returns the start of t's expiry slot, in Unix nanoseconds.
func slotOf(t time.Time) int64 {
	ns := t.UnixNano()
	return ns - ns%int64(expirySlot)
}

func expiryKey(t time.Time, key []byte) []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(key)), uint64(slotOf(t))), key...)
}
