package server

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"

	"github.com/parley-go/parley/ctxstore"
)

// windowSums keeps the xxHash of the system prompt and of each turn in a
// session's context window, so that the context hash logged with every
// turn reads 8 bytes per turn instead of the window's whole text, which by
// the time the answer comes back has left the processor's caches (hashing
// the text cost about 5% of the server's CPU under load).
//
// It follows one record, every turn appended to which must be passed to
// add; given another record (a merge replaces the session's), it rebuilds
// its sums from that record's turns.
type windowSums struct {
	rec    *ctxstore.Record // the record the sums follow
	system uint64
	turns  []uint64 // of the latest turns appended to rec, oldest first
}

// add notes turn t, just appended to rec.
func (w *windowSums) add(rec *ctxstore.Record, t ctxstore.Turn) {
	if w.rec != rec {
		return // sum rebuilds
	}
	w.turns = append(w.turns, turnSum(string(t.Role), t.Text))
	// Sums of turns that left the window go eight at a time, so that
	// trimming costs little per turn and a session holds few sums.
	if n := rec.Len(); len(w.turns) > n+8 {
		w.turns = append(w.turns[:0], w.turns[len(w.turns)-n:]...)
	}
}

// sum returns the context hash of rec: the xxHash of the sums of its
// system prompt and of its window's turns, in order.
func (w *windowSums) sum(rec *ctxstore.Record) uint64 {
	n := rec.Len()
	if w.rec != rec || len(w.turns) < n {
		w.rebuild(rec)
	}
	var d xxhash.Digest
	d.Reset()
	var b [8]byte
	d.Write(binary.LittleEndian.AppendUint64(b[:0], w.system))
	for _, s := range w.turns[len(w.turns)-n:] {
		d.Write(binary.LittleEndian.AppendUint64(b[:0], s))
	}
	return d.Sum64()
}

// rebuild makes w follow rec, from its turns.
func (w *windowSums) rebuild(rec *ctxstore.Record) {
	w.rec = rec
	w.system = turnSum(string(ctxstore.RoleSystem), rec.System())
	w.turns = w.turns[:0]
	for t := range rec.Turns() {
		w.turns = append(w.turns, turnSum(string(t.Role), t.Text))
	}
}

// turnSum is the xxHash of a message's role and text.
func turnSum(role, text string) uint64 {
	var d xxhash.Digest
	d.Reset()
	d.WriteString(role)
	d.WriteString("\x00")
	d.WriteString(text)
	return d.Sum64()
}
