package ctxstore

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"
)

// Key names one session's record: the tenant it belongs to and the
// session's id within that tenant. Records of different tenants never share
// a key, in any tier.
//
// The zero Key is invalid; a valid key has a non-empty Tenant without ':'
// and a non-empty ID.
type Key struct {
	Tenant string
	ID     string
}

// String returns the key as "tenant:id", the form the cold tiers store.
func (k Key) String() string { return k.Tenant + ":" + k.ID }

// check reports ErrBadKey for keys that could collide with another tenant's.
func (k Key) check() error {
	if k.Tenant == "" || k.ID == "" || strings.IndexByte(k.Tenant, ':') >= 0 {
		return fmt.Errorf("%w: tenant %q, id %q", ErrBadKey, k.Tenant, k.ID)
	}
	return nil
}

// parseKey is the inverse of Key.String.
func parseKey(s string) (Key, bool) {
	tenant, id, ok := strings.Cut(s, ":")
	k := Key{Tenant: tenant, ID: id}
	return k, ok && k.check() == nil
}

// Cold is the durable tier behind a [Store]. The package provides three:
// [Memory] for tests, [Bolt] for a single machine and [Redis] for a fleet.
// A host may bring its own; it must be safe for concurrent use, because the
// store's write-behind goroutine calls Write while callers' Gets call Load.
type Cold interface {
	// Load returns the encoded record stored under k and when it expires
	// (the zero time if it never does), or an error wrapping ErrNotFound
	// when there is none or it has expired. The returned bytes belong to
	// the caller.
	Load(ctx context.Context, k Key) (data []byte, expires time.Time, err error)

	// Write applies a batch of writes, in order (a batch may delete a key
	// and then write it again). A write with Data stores Data and
	// Seq under Key, expiring TTL from now, but only if Seq is newer than
	// the stored sequence, or equal to it with identical Data (a retry of a
	// write already applied); otherwise it sets the write's Err to
	// ErrStale and leaves the stored record alone. A write with nil Data
	// deletes the key whatever its sequence.
	//
	// Write returns an error when it cannot tell that every write was
	// applied or refused; the store then retries the whole batch later,
	// which the rules above make harmless. On a nil return every Err is
	// nil or ErrStale. Write must not keep Data after it returns: the
	// store reuses the memory.
	Write(ctx context.Context, ws []Write) error
}

// Expirer is implemented by cold tiers that can report keys as they expire
// ([Redis] does, through keyspace notifications). A [Store] whose cold tier
// implements it drops a hot entry as soon as its cold entry expires, instead
// of waiting for the hot entry's own, shorter TTL.
type Expirer interface {
	// WatchExpiry starts calling fn for each key the cold tier expires,
	// from a goroutine of its own, and returns a function that stops the
	// watch and waits for that goroutine to exit. Events may be late or
	// lost (while disconnected, say); fn must not block for long.
	WatchExpiry(fn func(Key)) (stop func())
}

// Write is one record write (or delete) in a batch passed to [Cold.Write].
// The zero Write deletes the zero (invalid) key.
type Write struct {
	Key  Key
	Seq  uint64        // the record's sequence number; only moves forward
	Data []byte        // the encoded record; nil deletes Key
	TTL  time.Duration // how long the cold entry lives from now
	Err  error         // set by Cold.Write: nil, or ErrStale if refused
}

// refuses reports whether a stored record (curSeq, curData) refuses write w
// by the rule in [Cold.Write]. Cold tiers call it with the live stored
// record only (none when missing or expired).
func refuses(curSeq uint64, curData []byte, w *Write) bool {
	return curSeq > w.Seq || curSeq == w.Seq && !bytes.Equal(curData, w.Data)
}
