package ctxstore

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
	"testing"
)

// reseal replaces the checksum of an encoded record after a test edited it.
func reseal(enc []byte) []byte {
	body := enc[:len(enc)-crcSize]
	return binary.LittleEndian.AppendUint32(body[:len(body):len(body)], crc32.Checksum(body, castagnoli))
}

func TestEncodeRoundTrip(t *testing.T) {
	k := Key{"acme", "session-1"}
	tests := map[string]*Record{
		"empty": {key: k},
		"full":  fill(&Record{key: k}, "v1"),
		"unicode and empty strings": func() *Record {
			r := &Record{key: k}
			r.Append(Turn{Role: "", Text: ""})
			r.Append(Turn{Role: RoleUser, Text: "héllo, 世界", Tokens: 7})
			r.SetSlot("", "")
			return r
		}(),
	}
	for name, r := range tests {
		t.Run(name, func(t *testing.T) {
			enc := r.encode(42)
			if n := r.encodedLen(42); n != len(enc) {
				t.Errorf("encodedLen = %d, len(encode) = %d", n, len(enc))
			}
			got, err := decode(k, enc, &defaultWindow)
			if err != nil {
				t.Fatalf("decode(encode(r)) = %v", err)
			}
			r.seq = 42
			if g, w := dump(got), dump(r); g != w {
				t.Errorf("decode(encode(r)) =\n%s\nwant\n%s", g, w)
			}
			if again := got.encode(42); string(again) != string(enc) {
				t.Errorf("encode(decode(enc)) differs from enc:\n%q\n%q", again, enc)
			}
		})
	}
}

func TestDecodeTrimsToTheStoresWindow(t *testing.T) {
	k := Key{"t", "s"}
	r := &Record{key: k}
	for i := range 10 {
		r.Append(Turn{Role: RoleUser, Text: strings.Repeat("x", i+1), Tokens: 1})
	}
	small := Window{MaxTurns: 4}.withDefaults()
	got, err := decode(k, r.encode(1), &small)
	if err != nil {
		t.Fatalf("decode = %v", err)
	}
	if got.Len() != 4 || got.Turn(0).Text != "xxxxxxx" {
		t.Errorf("decoded window = %q, want the last 4 turns", texts(got))
	}
}

func TestDecodeCorrupt(t *testing.T) {
	k := Key{"acme", "s-7"}
	good := fill(&Record{key: k}, "v").encode(3)
	edit := func(f func(b []byte) []byte) []byte {
		return f(append([]byte(nil), good...))
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "not an encoded record"},
		{"bad magic", edit(func(b []byte) []byte { b[0] = 'q'; return b }), "not an encoded record"},
		{"unknown version", edit(func(b []byte) []byte { b[2] = 9; return b }), "unknown version 9"},
		{"flipped bit", edit(func(b []byte) []byte { b[len(b)/2] ^= 1; return b }), "checksum"},
		{"truncated", good[:len(good)-7], "checksum"},
		{"truncated, resealed", reseal(edit(func(b []byte) []byte { return append(b[:20], 0, 0, 0, 0) })), "record"},
		{"trailing bytes", reseal(edit(func(b []byte) []byte { return append(b[:len(b)-crcSize], 0, 0, 0, 0, 0) })), "bytes after the record"},
		{"wrong key", (&Record{key: Key{"other", "s-7"}}).encode(1), "wrong key (record names other:s-7)"},
		{"huge turn count", reseal(edit(func(b []byte) []byte {
			hdr := len(codecMagic) + 1
			b = b[:hdr]
			for _, s := range []string{"acme", "s-7"} {
				b = appendString(b, s)
			}
			b = binary.AppendUvarint(b, 1)       // seq
			b = appendString(b, "")              // snapshot
			b = appendString(b, "")              // system
			b = binary.AppendUvarint(b, 0)       // system tokens
			b = binary.AppendUvarint(b, 1<<40)   // turns
			return append(b, make([]byte, 8)...) // room for a checksum
		})), "count 1099511627776 exceeds the record"},
		{"overlong varint", reseal(edit(func(b []byte) []byte {
			hdr := len(codecMagic) + 1
			b = append(b[:hdr], 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)
			return append(b, 0, 0, 0, 0)
		})), "overlong"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := decode(k, tt.data, &defaultWindow)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decode = %v, %v; want ErrCorrupt", r, err)
			}
			if msg := err.Error(); !strings.Contains(msg, "acme:s-7") || !strings.Contains(msg, tt.want) {
				t.Errorf("decode error %q, want it to name key acme:s-7 and say %q", msg, tt.want)
			}
		})
	}
}
