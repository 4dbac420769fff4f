package ctxstore

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
	"strings"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the decoder, as they are and with a
// valid checksum appended (so that mutations reach past the checksum): it
// must never panic, and whatever it accepts must encode back to a record
// that decodes to the same thing.
func FuzzDecode(f *testing.F) {
	k := Key{"acme", "s"}
	body := func(enc []byte) []byte { return enc[:len(enc)-crcSize] }
	f.Add(body(fill(&Record{key: k}, "seed").encode(7)))
	f.Add(body((&Record{key: k}).encode(0)))
	long := &Record{key: k}
	for i := range 40 {
		long.Append(Turn{Role: RoleAssistant, Text: strings.Repeat("y", i%5), Tokens: i})
	}
	f.Add(body(long.encode(1 << 62)))
	f.Add([]byte("pX\x01"))
	f.Add([]byte{})
	win := Window{MaxTurns: 16, MaxTokens: 300}.withDefaults()
	f.Fuzz(func(t *testing.T, data []byte) {
		sealed := binary.LittleEndian.AppendUint32(slices.Clip(data), crc32.Checksum(data, castagnoli))
		for _, in := range [][]byte{data, sealed} {
			r, err := decodeRecord(in, &win)
			if err != nil {
				continue
			}
			enc := r.encode(r.seq)
			if n := r.encodedLen(r.seq); n != len(enc) {
				t.Fatalf("encodedLen = %d, len(encode) = %d", n, len(enc))
			}
			again, err := decodeRecord(enc, &win)
			if err != nil {
				t.Fatalf("re-decoding an accepted record: %v", err)
			}
			if g, w := dump(again), dump(r); g != w {
				t.Fatalf("round trip changed the record:\n got %s\nwant %s", g, w)
			}
		}
	})
}

// FuzzWindow applies random appends and system prompts to a record and
// checks its window against a plain slice model of the trimming rule.
func FuzzWindow(f *testing.F) {
	f.Add(uint8(3), uint8(10), []byte{1, 2, 3, 4, 0x85, 9, 0, 60})
	f.Add(uint8(1), uint8(1), []byte{5, 5, 5})
	f.Add(uint8(8), uint8(255), []byte{0x9f, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
	f.Fuzz(func(t *testing.T, maxTurns, maxTokens uint8, ops []byte) {
		win := Window{
			MaxTurns:  int(maxTurns),
			MaxTokens: int(maxTokens),
			Count:     func(text string) int { return len(text) },
		}.withDefaults()
		r := &Record{win: &win}
		var model []Turn
		system := 0
		for i, op := range ops {
			if op&0x80 != 0 {
				system = int(op & 0x1f)
				r.SetSystem(strings.Repeat("s", system))
			} else {
				tk := int(op & 0x3f)
				text := fmt.Sprint(i)
				r.Append(Turn{Role: RoleUser, Text: text, Tokens: tk})
				if tk == 0 {
					tk = len(text)
				}
				model = append(model, Turn{Role: RoleUser, Text: text, Tokens: tk})
			}
			for sum := sumTokens(model); len(model) > win.MaxTurns || len(model) > 1 && system+sum > win.MaxTokens; sum = sumTokens(model) {
				model = model[1:]
			}
			got := slices.Collect(r.Turns())
			if !slices.Equal(got, model) {
				t.Fatalf("after op %d: window %v, want %v", i, got, model)
			}
			if r.Tokens() != system+sumTokens(model) {
				t.Fatalf("after op %d: Tokens() = %d, want %d", i, r.Tokens(), system+sumTokens(model))
			}
		}
		k := Key{"t", "s"}
		r.key = k
		back, err := decode(k, r.encode(1), &win)
		if err != nil || !slices.Equal(slices.Collect(back.Turns()), model) {
			t.Fatalf("round trip = %v, %v; want %v", back, err, model)
		}
	})
}

func sumTokens(ts []Turn) int {
	n := 0
	for _, t := range ts {
		n += t.Tokens
	}
	return n
}
