package server

import (
	"bytes"
	"encoding/json"
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
