package ctxstore

import "errors"

var (
	// ErrNotFound means the session has no record: it was never written, it
	// was deleted, or its cold entry expired.
	ErrNotFound = errors.New("ctxstore: record not found")

	// ErrStale means a write carried a sequence number that is not newer
	// than the one already stored: another writer got there first. The
	// writer should Get the session again and redo its change.
	ErrStale = errors.New("ctxstore: stale record")

	// ErrTooLarge means an encoded record exceeds [Config.MaxRecordBytes].
	ErrTooLarge = errors.New("ctxstore: record too large")

	// ErrCorrupt means a stored record could not be decoded. The error
	// names the key; deleting the session lets it start over.
	ErrCorrupt = errors.New("ctxstore: corrupt record")

	// ErrBadKey means a tenant or session id is unusable: empty, or a
	// tenant containing ':'.
	ErrBadKey = errors.New("ctxstore: bad key")

	// ErrBacklog means the write-behind buffer stayed full until the
	// caller's context ended: the cold tier is not keeping up (or is down)
	// and [Config.MaxPending] sessions already wait for it.
	ErrBacklog = errors.New("ctxstore: write-behind buffer full")

	// ErrClosed means the store was closed.
	ErrClosed = errors.New("ctxstore: store closed")
)
