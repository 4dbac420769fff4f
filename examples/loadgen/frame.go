package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"unicode/utf8"
)

// This file holds the client side of the parley.v1 wire protocol (see the
// package doc of examples/chatserver/server): the frames a session sends,
// the fields it reads from the server's frames, and the message ids that let
// a session tell its own replies from anyone else's.
//
// A message id is "lg<tag>.<session>.<turn>" for turn 1, 2, ... and
// "lg<tag>.<session>.end" for the frame that ends the session, where tag is
// random per run. The session number makes every session's ids unique, so a
// reply that reaches the wrong connection is recognised as crossed.

// subprotocol is the WebSocket subprotocol of the chat server.
const subprotocol = "parley.v1"

// endTurn is the turn number parseID reports for a session's end frame.
const endTurn = -1

// maxIDNumber bounds the numbers parseID accepts, so that parsing never
// overflows.
const maxIDNumber = 1<<31 - 1

// appendID appends the id of a session's turn (or its end frame, for
// endTurn) to dst.
func appendID(dst []byte, tag string, session, turn int) []byte {
	dst = append(dst, "lg"...)
	dst = append(dst, tag...)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, int64(session), 10)
	dst = append(dst, '.')
	if turn == endTurn {
		return append(dst, "end"...)
	}
	return strconv.AppendInt(dst, int64(turn), 10)
}

// parseID is the inverse of appendID. ok is false when id is not one of
// this run's ids.
func parseID(id []byte, tag string) (session, turn int, ok bool) {
	rest, ok := bytes.CutPrefix(id, []byte("lg"))
	if !ok {
		return 0, 0, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(tag)); !ok {
		return 0, 0, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(".")); !ok {
		return 0, 0, false
	}
	sess, rest, ok := bytes.Cut(rest, []byte("."))
	if !ok {
		return 0, 0, false
	}
	if session, ok = parseNumber(sess); !ok {
		return 0, 0, false
	}
	if string(rest) == "end" {
		return session, endTurn, true
	}
	if turn, ok = parseNumber(rest); !ok || turn == 0 {
		return 0, 0, false
	}
	return session, turn, true
}

// parseNumber parses a decimal number without sign or leading zeros.
func parseNumber(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 1 && b[0] == '0' {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
		if n > maxIDNumber {
			return 0, false
		}
	}
	return n, true
}

// appendTextFrame appends a user message frame; text must already be a
// quoted JSON string.
func appendTextFrame(dst []byte, tag string, session, turn int, text []byte) []byte {
	dst = append(dst, `{"type":"text","id":"`...)
	dst = appendID(dst, tag, session, turn)
	dst = append(dst, `","text":`...)
	dst = append(dst, text...)
	return append(dst, '}')
}

// appendEndFrame appends the frame that ends a session.
func appendEndFrame(dst []byte, tag string, session int) []byte {
	dst = append(dst, `{"type":"end","id":"`...)
	dst = appendID(dst, tag, session, endTurn)
	return append(dst, `"}`...)
}

// frameType is the type of a server frame. Types this client does not know
// decode as typeUnknown.
type frameType uint8

const (
	typeUnknown frameType = iota
	typeHello
	typeReply
	typeState
	typeError
)

// UnmarshalJSON implements [json.Unmarshaler] without allocating.
func (t *frameType) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case `"hello"`:
		*t = typeHello
	case `"reply"`:
		*t = typeReply
	case `"state"`:
		*t = typeState
	case `"error"`:
		*t = typeError
	default:
		*t = typeUnknown
	}
	return nil
}

// jsonString is a JSON string field decoded into a reused buffer, so that
// decoding a frame does not allocate once the buffer has grown. null leaves
// it unset.
type jsonString struct {
	b   []byte
	set bool
}

var errNotString = errors.New("loadgen: expected a JSON string")

// UnmarshalJSON implements [json.Unmarshaler].
func (s *jsonString) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		s.reset()
		return nil
	}
	if len(b) < 2 || b[0] != '"' {
		return errNotString
	}
	inner := b[1 : len(b)-1]
	if plainASCII(inner) {
		s.b, s.set = append(s.b[:0], inner...), true
		return nil
	}
	var str string // rare: escapes and UTF-8 need the real decoder
	if err := json.Unmarshal(b, &str); err != nil {
		return err
	}
	s.b, s.set = append(s.b[:0], str...), true
	return nil
}

// plainASCII reports whether a JSON string's content is ASCII without
// escapes, and so decodes to itself.
func plainASCII(b []byte) bool {
	for _, c := range b {
		if c == '\\' || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func (s *jsonString) reset() { s.b, s.set = s.b[:0], false }

// serverFrame holds the fields of a server frame that the load generator
// reads. Fields absent from the frame are unset: ModelMS is 0 (the server
// leaves out a zero model time) and RetryAfterMS is NaN.
type serverFrame struct {
	Type         frameType  `json:"type"`
	ID           jsonString `json:"id"`
	Code         jsonString `json:"code"`
	ModelMS      float64    `json:"model_ms"`
	RetryAfterMS float64    `json:"retry_after_ms"`
}

// decode parses a frame into f, reusing f's buffers.
func (f *serverFrame) decode(b []byte) error {
	f.Type = typeUnknown
	f.ID.reset()
	f.Code.reset()
	f.ModelMS, f.RetryAfterMS = 0, math.NaN()
	return json.Unmarshal(b, f)
}

// shed reports whether an error frame's code says the server refused the
// message for now and a retry may succeed.
func (f *serverFrame) shed() bool {
	switch string(f.Code.b) {
	case "rate_limited", "overloaded", "unavailable":
		return true
	}
	return false
}
