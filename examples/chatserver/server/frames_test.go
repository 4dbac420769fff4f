package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestFrameEncoderMatchesMarshal checks that a pooled encoder writes the
// bytes json.Marshal does, frame after frame, including text that JSON
// escapes and a frame too big to go back to the pool.
func TestFrameEncoderMatchesMarshal(t *testing.T) {
	frames := []Frame{
		{Type: typeReply, ID: "a.1", Text: "<b>fits</b> & \"quotes\"\n\u2028", Turns: 3, ModelMS: 512.25, QueueMS: 0.5},
		{Type: typeError, ID: "a.2", Code: codeBadRequest, Message: "text is empty"},
		{Type: typeState, State: "PAUSE"},
		{Type: typeReply, ID: "a.3", Text: strings.Repeat("long ", maxPooledFrame/4)},
		{Type: typeHello, Session: "s", State: "HELLO", Resumed: true},
	}
	for _, f := range frames {
		want, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		e := frameEncoders.Get().(*frameEncoder)
		got, err := e.encode(f)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("encode(%+.40v) = %.80q, %v; want %.80q", f, got, err, want)
		}
		e.release()
	}
}

func BenchmarkEncodeFrame(b *testing.B) {
	f := Frame{Type: typeReply, ID: "lg2ffa.1234.17", Text: "Here is what I found about the products we talked about: the small plan fits best.", Turns: 17, ModelMS: 512.345, QueueMS: 1.234}
	b.Run("impl=marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(f); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=pooled", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e := frameEncoders.Get().(*frameEncoder)
			if _, err := e.encode(f); err != nil {
				b.Fatal(err)
			}
			e.release()
		}
	})
}

// decodeCases are client frames, good and bad, for decodeFrame's tests.
var decodeCases = []string{
	`{"type":"text","id":"a.1","text":"hello"}`,
	` {"type":"end","id":"a.2"} ` + "\n\t",
	`{"type":"text","id":"a.3","text":"esc \" \\ \u00e9 \ud83d\ude00","extra":[1,{"x":null}]}`,
	`{"TYPE":"text","Id":"a.4","text":"keys match as json.Unmarshal matches them"}`,
	`{"type":"text","id":"a.5","text":"dup","text":"last wins"}`,
	`{"type":"text","id":"a.6","text":"invalid UTF-8 ` + "\xff" + `"}`,
	`{"type":"text","id":"a.7"} {"type":"text","id":"a.8"}`,
	`{"type":"text","id":"a.9"}}`,
	`{"type":"text","id":"a.10"} x`,
	`{"type":5,"id":"a.11","text":"wrong type"}`,
	`{"type":"text","id":["a.12"],"text":"wrong type, then more fields"}`,
	`{"type":"text",`,
	``,
	`   `,
	`null`,
	`[]`,
	`"text"`,
	`{"type":"text","id":"a.13","text":"after every failure above"}`,
}

// TestDecodeFrameMatchesUnmarshal checks that decodeFrame gives what
// json.Unmarshal gives, error or value, frame after frame, so that a frame
// (a bad one, say) leaves nothing behind for the next.
func TestDecodeFrameMatchesUnmarshal(t *testing.T) {
	for range 3 {
		for _, in := range decodeCases {
			var want clientFrame
			wantErr := json.Unmarshal([]byte(in), &want)
			got, gotErr := decodeFrame([]byte(in))
			if got != want || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
				t.Errorf("decodeFrame(%q) = %+v, %v; json.Unmarshal: %+v, %v", in, got, gotErr, want, wantErr)
			}
		}
	}
}

func FuzzDecodeFrame(f *testing.F) {
	for _, in := range decodeCases {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var want clientFrame
		wantErr := json.Unmarshal(in, &want)
		got, gotErr := decodeFrame(in)
		if got != want || (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("decodeFrame(%q) = %+v, %v; json.Unmarshal: %+v, %v", in, got, gotErr, want, wantErr)
		}
		// The next frame decodes as if it were the first.
		next := []byte(`{"type":"text","id":"n","text":"next"}`)
		if got, err := decodeFrame(next); err != nil || got != (clientFrame{Type: "text", ID: "n", Text: "next"}) {
			t.Fatalf("after %q: decodeFrame(%s) = %+v, %v", in, next, got, err)
		}
	})
}

func BenchmarkDecodeFrame(b *testing.B) {
	in := []byte(`{"type":"text","id":"lg2ffa.1234.17","text":"What does the small plan include, and can I change it later?"}`)
	b.Run("impl=unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var f clientFrame
			if err := json.Unmarshal(in, &f); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=pooled", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeFrame(in); err != nil {
				b.Fatal(err)
			}
		}
	})
}
