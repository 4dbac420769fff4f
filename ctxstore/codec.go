package ctxstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/bits"
	"slices"
	"sync"
)

// The encoded record, as the cold tiers store it (every integer a uvarint,
// every string or byte field its length then its bytes):
//
//	magic "pX", version 1
//	tenant, id, seq
//	snapshot
//	system text, system tokens
//	turn count, then per turn: role, text, tokens
//	slot count, then per slot in name order: name, value
//	CRC-32C of everything above, 4 bytes little-endian
const (
	codecMagic   = "pX"
	codecVersion = 1
	crcSize      = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encode returns r encoded with sequence number seq.
func (r *Record) encode(seq uint64) []byte { return r.appendEncoded(nil, seq) }

// encodedLen returns the length of r encoded with sequence number seq.
func (r *Record) encodedLen(seq uint64) int {
	d := r.data()
	n := len(codecMagic) + 1 + strLen(r.key.Tenant) + strLen(r.key.ID) + uvarintLen(seq) +
		uvarintLen(uint64(len(d.snapshot))) + len(d.snapshot) +
		strLen(d.system.Text) + uvarintLen(uint64(d.system.Tokens)) +
		uvarintLen(uint64(d.n)) + uvarintLen(uint64(len(d.slots))) + crcSize
	for _, t := range d.turns() {
		n += strLen(string(t.Role)) + strLen(t.Text) + uvarintLen(uint64(t.Tokens))
	}
	for _, s := range d.slots {
		n += strLen(s.name) + strLen(s.value)
	}
	return n
}

func strLen(s string) int { return uvarintLen(uint64(len(s))) + len(s) }

func uvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

// appendEncoded appends r, encoded with sequence number seq, to b.
func (r *Record) appendEncoded(b []byte, seq uint64) []byte {
	d := r.data()
	size := r.encodedLen(seq)
	b = slices.Grow(b, size)
	start := len(b)
	b = append(b, codecMagic...)
	b = append(b, codecVersion)
	b = appendString(b, r.key.Tenant)
	b = appendString(b, r.key.ID)
	b = binary.AppendUvarint(b, seq)
	b = binary.AppendUvarint(b, uint64(len(d.snapshot)))
	b = append(b, d.snapshot...)
	b = appendString(b, d.system.Text)
	b = binary.AppendUvarint(b, uint64(d.system.Tokens))
	b = binary.AppendUvarint(b, uint64(d.n))
	for _, t := range d.turns() {
		b = appendString(b, string(t.Role))
		b = appendString(b, t.Text)
		b = binary.AppendUvarint(b, uint64(t.Tokens))
	}
	b = binary.AppendUvarint(b, uint64(len(d.slots)))
	for _, s := range d.slots {
		b = appendString(b, s.name)
		b = appendString(b, s.value)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// encBuffers recycles the buffers records are encoded into, from Put until
// the cold tier has the record, sparing the allocator a record-sized buffer
// per Put.
var encBuffers = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBuffer bounds the buffers kept for reuse, so that one huge
// record does not pin its buffer.
const maxPooledBuffer = 64 << 10

// releaseBuffer returns a buffer taken from encBuffers once nothing refers
// to its contents any more.
func releaseBuffer(p *[]byte, b []byte) {
	if cap(b) <= maxPooledBuffer {
		*p = b[:0]
		encBuffers.Put(p)
	}
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decode decodes a record stored under k, fitting its window to w. A
// record that does not decode, or that names another key, gets an error
// wrapping ErrCorrupt that names k.
func decode(k Key, data []byte, w *Window) (*Record, error) {
	r, err := decodeRecord(data, w)
	if err == nil && r.key != k {
		err = fmt.Errorf("stored under the wrong key (record names %s)", r.key)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: key %s: %w", ErrCorrupt, k, err)
	}
	return r, nil
}

var errBadVarint = errors.New("truncated or overlong number")

func decodeRecord(data []byte, w *Window) (*Record, error) {
	if len(data) < len(codecMagic)+1+crcSize || string(data[:len(codecMagic)]) != codecMagic {
		return nil, errors.New("not an encoded record")
	}
	if v := data[len(codecMagic)]; v != codecVersion {
		return nil, fmt.Errorf("unknown version %d", v)
	}
	body := data[:len(data)-crcSize]
	if got, want := crc32.Checksum(body, castagnoli), binary.LittleEndian.Uint32(data[len(body):]); got != want {
		return nil, fmt.Errorf("checksum %08x, want %08x", got, want)
	}
	// One string holds every text field; the fields are substrings of it.
	dec := decoder{s: string(body[len(codecMagic)+1:])}
	r := &Record{win: w, owned: true, d: &recData{ownSlots: true}}
	r.key.Tenant = dec.str()
	r.key.ID = dec.str()
	r.seq = dec.uvarint()
	if snap := dec.str(); snap != "" {
		r.d.snapshot = []byte(snap)
	}
	r.d.system = Turn{Role: RoleSystem, Text: dec.str(), Tokens: dec.count()}
	// Each turn takes at least 3 bytes, which bounds what a corrupt count
	// can make us allocate.
	n := dec.length(3)
	if n > 0 {
		log := &turnLog{t: make([]Turn, n)}
		for i := range log.t {
			t := Turn{Role: Role(dec.str()), Text: dec.str(), Tokens: dec.count()}
			log.t[i] = t
			r.d.tokens += t.Tokens
		}
		log.claimed.Store(int64(n))
		r.d.log, r.d.n = log, n
	}
	if ns := dec.length(2); ns > 0 {
		r.d.slots = make([]kv, 0, ns)
		for range ns {
			s := kv{name: dec.str(), value: dec.str()}
			if n := len(r.d.slots); n > 0 && r.d.slots[n-1].name >= s.name && dec.err == nil {
				dec.err = fmt.Errorf("slot %q out of order", s.name)
			}
			r.d.slots = append(r.d.slots, s)
		}
	}
	if dec.err == nil && dec.off != len(dec.s) {
		dec.err = fmt.Errorf("%d bytes after the record", len(dec.s)-dec.off)
	}
	if dec.err != nil {
		return nil, dec.err
	}
	r.d.trim(w)
	return r, nil
}

// decoder reads the fields of an encoded record. After the first error
// every read returns a zero value and err keeps that error.
type decoder struct {
	s   string
	off int
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	// binary.Uvarint, reading the string in place.
	var v uint64
	for i, shift := 0, uint(0); d.off+i < len(d.s) && i < binary.MaxVarintLen64; i, shift = i+1, shift+7 {
		b := d.s[d.off+i]
		if b < 0x80 {
			if i == binary.MaxVarintLen64-1 && b > 1 {
				break
			}
			d.off += i + 1
			return v | uint64(b)<<shift
		}
		v |= uint64(b&0x7f) << shift
	}
	d.err = errBadVarint
	return 0
}

// length reads a count of items that each take at least minSize bytes.
func (d *decoder) length(minSize int) int {
	v := d.uvarint()
	if v > uint64(len(d.s)-d.off)/uint64(minSize) {
		if d.err == nil {
			d.err = fmt.Errorf("count %d exceeds the record", v)
		}
		return 0
	}
	return int(v)
}

// count reads a token count.
func (d *decoder) count() int {
	v := d.uvarint()
	if v > math.MaxInt32 {
		if d.err == nil {
			d.err = fmt.Errorf("token count %d out of range", v)
		}
		return 0
	}
	return int(v)
}

func (d *decoder) str() string {
	n := d.length(1)
	if d.err != nil {
		return ""
	}
	s := d.s[d.off : d.off+n]
	d.off += n
	return s
}
