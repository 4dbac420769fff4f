package main

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestID(t *testing.T) {
	tests := []struct {
		session, turn int
		want          string
	}{
		{0, 1, "lgab1.0.1"},
		{9999, 20, "lgab1.9999.20"},
		{3, endTurn, "lgab1.3.end"},
	}
	for _, tt := range tests {
		id := appendID(nil, "ab1", tt.session, tt.turn)
		if string(id) != tt.want {
			t.Errorf("appendID(ab1, %d, %d) = %s, want %s", tt.session, tt.turn, id, tt.want)
		}
		s, turn, ok := parseID(id, "ab1")
		if !ok || s != tt.session || turn != tt.turn {
			t.Errorf("parseID(%s) = %d, %d, %v; want %d, %d, true", id, s, turn, ok, tt.session, tt.turn)
		}
	}
}

func TestParseIDRejects(t *testing.T) {
	for _, id := range []string{
		"", "m1", "lg", "lgab1", "lgab1.", "lgab1.1", "lgab1.1.", "lgab2.1.1", "lgab1x.1.1", "xlgab1.1.1",
		"lgab1.-1.1", "lgab1.1.-1", "lgab1.1.0", "lgab1.01.1", "lgab1.1.01", "lgab1.1.1.1", "lgab1.1.end2",
		"lgab1.1.99999999999999999999", "lgab1.1. 1", "lgab1..1",
	} {
		if s, turn, ok := parseID([]byte(id), "ab1"); ok {
			t.Errorf("parseID(%q) = %d, %d, true; want not ok", id, s, turn)
		}
	}
}

func TestFramesAreJSON(t *testing.T) {
	text, _ := json.Marshal("a \"quoted\" <text> – ünïcode\n")
	var m map[string]string
	if err := json.Unmarshal(appendTextFrame(nil, "t", 4, 7, text), &m); err != nil {
		t.Fatal(err)
	}
	if m["type"] != "text" || m["id"] != "lgt.4.7" || m["text"] != "a \"quoted\" <text> – ünïcode\n" {
		t.Errorf("text frame decodes as %q", m)
	}
	clear(m)
	if err := json.Unmarshal(appendEndFrame(nil, "t", 4), &m); err != nil {
		t.Fatal(err)
	}
	if m["type"] != "end" || m["id"] != "lgt.4.end" || len(m) != 2 {
		t.Errorf("end frame decodes as %q", m)
	}
}

func TestDecode(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name       string
		in         string
		typ        frameType
		id, code   string
		model, ret float64
		err        bool
	}{
		{"reply", `{"type":"reply","id":"m1","text":"hi","state":"CHATTING","model_ms":503.2,"queue_ms":1.4,"fallback":false,"echo":false,"replay":false}`,
			typeReply, "m1", "", 503.2, nan, false},
		{"reply without model_ms", `{"type":"reply","id":"m1","text":"hi"}`, typeReply, "m1", "", 0, nan, false},
		{"error", `{"type":"error","id":"m2","code":"overloaded","message":"busy","retry_after_ms":250}`,
			typeError, "m2", "overloaded", 0, 250, false},
		{"hello", `{"type":"hello","session":"3f2a","state":"HELLO","resumed":false,"turns":0}`, typeHello, "", "", 0, nan, false},
		{"state", `{"type":"state","state":"PAUSE"}`, typeState, "", "", 0, nan, false},
		{"unknown type", `{"type":"typing","id":"m1"}`, typeUnknown, "m1", "", 0, nan, false},
		{"escaped id", `{"type":"reply","id":"m\u0031\"x"}`, typeReply, `m1"x`, "", 0, nan, false},
		{"invalid UTF-8 id", "{\"type\":\"reply\",\"id\":\"m\xdb\"}", typeReply, "m\uFFFD", "", 0, nan, false},
		{"null id", `{"type":"reply","id":null}`, typeReply, "", "", 0, nan, false},
		{"number id", `{"type":"reply","id":1}`, typeReply, "", "", 0, nan, true},
		{"not JSON", `{"type":"reply",`, typeUnknown, "", "", 0, nan, true},
	}
	var f serverFrame
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// decode into the same frame each time: nothing may carry over
			err := f.decode([]byte(tt.in))
			if (err != nil) != tt.err {
				t.Fatalf("decode(%s) = %v, want error %v", tt.in, err, tt.err)
			}
			if err != nil {
				return
			}
			if f.Type != tt.typ || string(f.ID.b) != tt.id || string(f.Code.b) != tt.code || f.ModelMS != tt.model ||
				!(f.RetryAfterMS == tt.ret || math.IsNaN(f.RetryAfterMS) && math.IsNaN(tt.ret)) {
				t.Errorf("decode(%s) = %d %q %q %v %v, want %d %q %q %v %v", tt.in,
					f.Type, f.ID.b, f.Code.b, f.ModelMS, f.RetryAfterMS, tt.typ, tt.id, tt.code, tt.model, tt.ret)
			}
		})
	}
}

func TestShed(t *testing.T) {
	for code, want := range map[string]bool{
		"rate_limited": true, "overloaded": true, "unavailable": true,
		"bad_request": false, "too_large": false, "ended": false, "internal": false, "": false,
	} {
		var f serverFrame
		if err := f.decode([]byte(`{"type":"error","id":"m1","code":"` + code + `"}`)); err != nil {
			t.Fatal(err)
		}
		if got := f.shed(); got != want {
			t.Errorf("shed() for code %q = %v, want %v", code, got, want)
		}
	}
}

// FuzzDecode checks the allocation-free decoder against encoding/json's
// generic decoding of the same frame.
func FuzzDecode(f *testing.F) {
	f.Add(`{"type":"reply","id":"lgab.1.2","model_ms":500.5}`)
	f.Add(`{"type":"error","id":"m\u00e9","code":"overloaded","retry_after_ms":12}`)
	f.Add(`{"type":"hello","id":null}`)
	f.Add(`{"Type":"REPLY","ID":"x"}`)
	f.Fuzz(func(t *testing.T, in string) {
		var fr serverFrame
		err := fr.decode([]byte(in))
		var ref struct {
			Type         any     `json:"type"`
			ID           *string `json:"id"`
			Code         *string `json:"code"`
			ModelMS      float64 `json:"model_ms"`
			RetryAfterMS *float64
		}
		refErr := json.Unmarshal([]byte(in), &ref)
		if refErr != nil {
			if err == nil && !strings.Contains(refErr.Error(), "cannot unmarshal") {
				t.Fatalf("decode(%q) succeeded, encoding/json says %v", in, refErr)
			}
			return
		}
		if err != nil {
			t.Fatalf("decode(%q) = %v, encoding/json decodes it", in, err)
		}
		if ref.ID != nil && string(fr.ID.b) != *ref.ID || ref.ID == nil && fr.ID.set {
			t.Errorf("decode(%q) id = %q, want %v", in, fr.ID.b, ref.ID)
		}
		if ref.Code != nil && string(fr.Code.b) != *ref.Code {
			t.Errorf("decode(%q) code = %q, want %q", in, fr.Code.b, *ref.Code)
		}
		if fr.ModelMS != ref.ModelMS {
			t.Errorf("decode(%q) model_ms = %v, want %v", in, fr.ModelMS, ref.ModelMS)
		}
		if s, ok := ref.Type.(string); ok && fr.Type != typeUnknown {
			if name := [...]string{"", "hello", "reply", "state", "error"}[fr.Type]; name != s {
				t.Errorf("decode(%q) type = %s, want %s", in, name, s)
			}
		}
	})
}

func FuzzParseID(f *testing.F) {
	f.Add("lgab.1.2", 5, 7)
	f.Add("lgab.1.end", 0, -1)
	f.Fuzz(func(t *testing.T, id string, session, turn int) {
		parseID([]byte(id), "ab") // must not panic
		if session < 0 || session > maxIDNumber || (turn < 1 || turn > maxIDNumber) && turn != endTurn {
			return
		}
		s, tn, ok := parseID(appendID(nil, "ab", session, turn), "ab")
		if !ok || s != session || tn != turn {
			t.Errorf("parseID(appendID(%d, %d)) = %d, %d, %v", session, turn, s, tn, ok)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	in := []byte(`{"type":"reply","id":"lgab12.9999.17","text":"Here is an answer about the products we discussed.","state":"CHATTING","model_ms":503.2,"queue_ms":1.4,"fallback":false,"echo":false,"replay":false}`)
	var f serverFrame
	b.ReportAllocs()
	for b.Loop() {
		if err := f.decode(in); err != nil || f.Type != typeReply {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	text, _ := json.Marshal(defaultText)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = appendTextFrame(buf[:0], "ab12", 9999, 17, text)
	}
}
