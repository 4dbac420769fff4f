package fsm

import (
	"encoding/binary"
	"fmt"
)

// A snapshot is, in order:
//
//	1 byte    format version (1)
//	8 bytes   the definition's fingerprint, little endian
//	1 byte    state
//	uvarint   sequence number
//	varint    deadline in Unix nanoseconds, 0 for none
//
// A new session without a deadline takes 12 bytes; a deadline in this
// century adds 8, and the sequence number up to 4 more (25 at most).
const (
	snapshotVersion = 1
	snapshotHeader  = 1 + 8 + 1 // version, fingerprint, state
	minSnapshot     = snapshotHeader + 2
	maxSnapshot     = snapshotHeader + binary.MaxVarintLen32 + binary.MaxVarintLen64
)

// AppendBinary appends the session's snapshot to b: a compact binary form
// (at most 25 bytes) that carries the definition's fingerprint, for
// [Definition.Restore]. It implements encoding.BinaryAppender and fails
// only for the zero Session.
func (s *Session[S, E]) AppendBinary(b []byte) ([]byte, error) {
	if s.def == nil {
		return b, ErrZeroSession
	}
	b = append(b, snapshotVersion)
	b = binary.LittleEndian.AppendUint64(b, s.def.fingerprint)
	b = append(b, s.state)
	b = binary.AppendUvarint(b, uint64(s.seq))
	return binary.AppendVarint(b, s.deadline), nil
}

// MarshalBinary returns the session's snapshot; see [Session.AppendBinary].
func (s *Session[S, E]) MarshalBinary() ([]byte, error) {
	return s.AppendBinary(make([]byte, 0, maxSnapshot))
}

// Restore decodes a snapshot made by [Session.AppendBinary] into a session
// of d. Bytes that are not a well-formed, canonical snapshot give an error
// wrapping [ErrSnapshot]; a snapshot from a definition with another
// fingerprint gives one wrapping [ErrIncompatible]. Restore never panics
// and never returns a session d could not have produced: the state is
// declared, and it has a deadline exactly if it declares a timeout.
func (d *Definition[S, E]) Restore(data []byte) (Session[S, E], error) {
	if len(data) < minSnapshot {
		return Session[S, E]{}, fmt.Errorf("%w: %d bytes, want at least %d", ErrSnapshot, len(data), minSnapshot)
	}
	if data[0] != snapshotVersion {
		return Session[S, E]{}, fmt.Errorf("%w: format version %d, want %d", ErrSnapshot, data[0], snapshotVersion)
	}
	if fp := binary.LittleEndian.Uint64(data[1:]); fp != d.fingerprint {
		return Session[S, E]{}, fmt.Errorf("%w: fingerprint %016x, want %016x (%q)", ErrIncompatible, fp, d.fingerprint, d.name)
	}
	st := data[9]
	if int(st) >= len(d.states) || !d.states[st].declared {
		return Session[S, E]{}, fmt.Errorf("%w: state %d is not declared in %q", ErrSnapshot, st, d.name)
	}
	rest := data[snapshotHeader:]
	seq, n := binary.Uvarint(rest)
	if n <= 0 || seq > 1<<32-1 || n != uvarintLen(seq) {
		return Session[S, E]{}, fmt.Errorf("%w: bad sequence number", ErrSnapshot)
	}
	rest = rest[n:]
	deadline, n := binary.Varint(rest)
	if n <= 0 || n != varintLen(deadline) {
		return Session[S, E]{}, fmt.Errorf("%w: bad deadline", ErrSnapshot)
	}
	if len(rest) != n {
		return Session[S, E]{}, fmt.Errorf("%w: %d trailing bytes", ErrSnapshot, len(rest)-n)
	}
	if hasTimeout := d.states[st].timeout > 0; hasTimeout != (deadline != 0) {
		return Session[S, E]{}, fmt.Errorf("%w: state %s with deadline %d", ErrSnapshot, S(st), deadline)
	}
	return Session[S, E]{def: d, deadline: deadline, seq: uint32(seq), state: st}, nil
}

// uvarintLen and varintLen give the canonical (shortest) encoded lengths,
// so that Restore accepts exactly the bytes AppendBinary produces.
func uvarintLen(x uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], x)
}

func varintLen(x int64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutVarint(b[:], x)
}
