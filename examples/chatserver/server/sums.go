package server

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"

	"github.com/parley-go/parley/ctxstore"
)

// windowSums keeps the xxHash of the system prompt and of each turn in a
// session's context window, so that the prompt hash logged with every turn
// reads 8 bytes per turn instead of the window's whole text (hashing the
// text cost about 5% of the server's CPU under load: most of it is out of
// the processor's caches). The hash equals [promptHash] of the prompt built
// from the window.
//
// It follows one record, every turn appended to which must be passed to
// add; given another record (a merge replaces the session's), or one whose
// newest turn is not the one it last saw, it rebuilds its sums from the
// record's turns.
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
	w.turns = append(w.turns, turnSum(t))
	// Sums of turns that left the window go eight at a time, so that
	// trimming costs little per turn and a session holds few sums.
	if n := rec.Len(); len(w.turns) > n+8 {
		w.turns = append(w.turns[:0], w.turns[len(w.turns)-n:]...)
	}
}

// sum returns the hash of the prompt built from rec's window: see
// [promptHash].
func (w *windowSums) sum(rec *ctxstore.Record) uint64 {
	n := rec.Len()
	if w.rec != rec || len(w.turns) < n ||
		n > 0 && w.turns[len(w.turns)-1] != turnSum(rec.Turn(n-1)) {
		w.rebuild(rec)
	}
	d := xxhash.New()
	writeSum(d, w.system)
	for _, s := range w.turns[len(w.turns)-n:] {
		writeSum(d, s)
	}
	return d.Sum64()
}

// rebuild makes w follow rec, from its turns.
func (w *windowSums) rebuild(rec *ctxstore.Record) {
	w.rec = rec
	w.system = messageSum(string(ctxstore.RoleSystem), rec.System())
	w.turns = w.turns[:0]
	for t := range rec.Turns() {
		w.turns = append(w.turns, turnSum(t))
	}
}

// promptHash is the hash the turn log line gives for a prompt: the xxHash
// of the xxHashes (little-endian) of its messages, each over the role, a
// zero byte and the text. A log reader can compute it from a sampled
// prompt; the server keeps the messages' hashes (windowSums).
func promptHash(prompt []Message) uint64 {
	d := xxhash.New()
	for _, m := range prompt {
		writeSum(d, messageSum(m.Role, m.Content))
	}
	return d.Sum64()
}

func turnSum(t ctxstore.Turn) uint64 { return messageSum(string(t.Role), t.Text) }

// messageSum is the xxHash of a message's role and text.
func messageSum(role, text string) uint64 {
	var d xxhash.Digest
	d.Reset()
	d.WriteString(role)
	d.WriteString("\x00")
	d.WriteString(text)
	return d.Sum64()
}

func writeSum(d *xxhash.Digest, s uint64) {
	var b [8]byte
	d.Write(binary.LittleEndian.AppendUint64(b[:0], s))
}
