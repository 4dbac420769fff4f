package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
	"unicode/utf8"
)

// Subprotocol is the WebSocket subprotocol of the chat protocol.
const Subprotocol = "parley.v1"

// Frame types.
const (
	typeText  = "text"
	typeEnd   = "end"
	typeHello = "hello"
	typeReply = "reply"
	typeState = "state"
	typeError = "error"
)

// Error codes sent in error frames.
const (
	codeBadRequest  = "bad_request"
	codeTooLarge    = "too_large"
	codeRateLimited = "rate_limited"
	codeOverloaded  = "overloaded"
	codeEnded       = "ended"
	codeUnavailable = "unavailable"
	codeInternal    = "internal"
)

// clientFrame is a frame from the client.
type clientFrame struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Text string `json:"text"`
}

// Frame is a frame from the server. Fields a frame type does not use are
// left out of its JSON.
type Frame struct {
	Type         string  `json:"type"`
	ID           string  `json:"id,omitempty"`
	Session      string  `json:"session,omitempty"`
	State        string  `json:"state,omitempty"`
	Text         string  `json:"text,omitempty"`
	Resumed      bool    `json:"resumed,omitempty"`
	Turns        int     `json:"turns,omitempty"`
	ModelMS      float64 `json:"model_ms,omitempty"`
	QueueMS      float64 `json:"queue_ms,omitempty"`
	Fallback     bool    `json:"fallback,omitempty"`
	Echo         bool    `json:"echo,omitempty"`
	Replay       bool    `json:"replay,omitempty"`
	Code         string  `json:"code,omitempty"`
	Message      string  `json:"message,omitempty"`
	RetryAfterMS int64   `json:"retry_after_ms,omitempty"`
}

// requestError is a client message the server refuses: it becomes an error
// frame, and the connection stays up.
type requestError struct {
	id         string
	code       string
	msg        string
	retryAfter time.Duration
}

func (e *requestError) Error() string { return e.code + ": " + e.msg }

func (e *requestError) frame() Frame {
	f := Frame{Type: typeError, ID: e.id, Code: e.code, Message: e.msg}
	if e.retryAfter > 0 {
		// Round up so a client that waits exactly this long is not early.
		f.RetryAfterMS = int64((e.retryAfter + time.Millisecond - 1) / time.Millisecond)
	}
	return f
}

// errorFrame returns the error frame for err: its own when err is a
// *requestError, an internal error otherwise.
func errorFrame(id string, err error) Frame {
	if re, ok := errors.AsType[*requestError](err); ok {
		if re.id == "" {
			re.id = id
		}
		return re.frame()
	}
	return Frame{Type: typeError, ID: id, Code: codeInternal, Message: "internal error"}
}

// parseClientFrame decodes and validates one client frame. maxText bounds
// the text in bytes.
func parseClientFrame(data []byte, maxText int) (clientFrame, error) {
	f, err := decodeFrame(data)
	if err != nil {
		return f, &requestError{code: codeBadRequest, msg: "malformed JSON: " + err.Error()}
	}
	if f.ID == "" {
		return f, &requestError{code: codeBadRequest, msg: "every message needs an id"}
	}
	if len(f.ID) > maxIDLen {
		return f, &requestError{id: f.ID[:maxIDLen], code: codeBadRequest, msg: fmt.Sprintf("id longer than %d bytes", maxIDLen)}
	}
	switch f.Type {
	case typeText:
		switch {
		case len(f.Text) > maxText:
			return f, &requestError{id: f.ID, code: codeTooLarge, msg: fmt.Sprintf("text is %d bytes, the limit is %d", len(f.Text), maxText)}
		case !utf8.ValidString(f.Text):
			return f, &requestError{id: f.ID, code: codeBadRequest, msg: "text is not valid UTF-8"}
		case isBlank(f.Text):
			return f, &requestError{id: f.ID, code: codeBadRequest, msg: "text is empty"}
		}
	case typeEnd:
	default:
		return f, &requestError{id: f.ID, code: codeBadRequest, msg: fmt.Sprintf("unknown message type %q", f.Type)}
	}
	return f, nil
}

// frameDecoder decodes client frames with a json.Decoder it keeps between
// frames: json.Unmarshal allocates its decoding state for every call, a
// Decoder reuses its own. The frame is decoded into f, so that it does not
// escape to the heap either.
type frameDecoder struct {
	src bytes.Reader
	dec *json.Decoder
	f   clientFrame
}

var frameDecoders = sync.Pool{New: func() any {
	d := new(frameDecoder)
	d.dec = json.NewDecoder(&d.src)
	return d
}}

// decodeFrame decodes data as json.Unmarshal would into a new clientFrame.
// A Decoder reads one value and leaves what follows it for the next, so
// the value must be followed by the end of data; else, or on any error,
// the Decoder is dropped and json.Unmarshal says what is wrong.
func decodeFrame(data []byte) (clientFrame, error) {
	d := frameDecoders.Get().(*frameDecoder)
	d.src.Reset(data)
	if d.dec.Decode(&d.f) == nil {
		if _, err := d.dec.Token(); err == io.EOF { // nothing after the value
			f := d.f
			d.f = clientFrame{}
			frameDecoders.Put(d)
			return f, nil
		}
	}
	var f clientFrame
	err := json.Unmarshal(data, &f)
	return f, err
}

// maxIDLen bounds a client message id.
const maxIDLen = 128

func isBlank(s string) bool {
	for _, r := range s {
		if r != ' ' && r != '\t' && r != '\n' && r != '\r' {
			return false
		}
	}
	return true
}

// frameEncoder encodes server frames into a buffer it keeps. A frame is
// written by the WebSocket library before Write returns, so the buffer is
// free again at once: recycled through frameEncoders, encoding a frame
// allocates nothing, where json.Marshal allocates the frame's copy as an
// interface value and the returned bytes.
type frameEncoder struct {
	frame Frame
	buf   bytes.Buffer
	enc   *json.Encoder
}

var frameEncoders = sync.Pool{New: func() any {
	e := new(frameEncoder)
	e.enc = json.NewEncoder(&e.buf)
	return e
}}

// maxPooledFrame bounds the buffer of a frameEncoder put back in the pool,
// so that one huge frame does not pin its buffer.
const maxPooledFrame = 64 << 10

// encode returns f's JSON, the same bytes as json.Marshal(f), in e's
// buffer: valid until e encodes again or is released.
func (e *frameEncoder) encode(f Frame) ([]byte, error) {
	e.frame = f
	e.buf.Reset()
	if err := e.enc.Encode(&e.frame); err != nil {
		return nil, err
	}
	data := e.buf.Bytes()
	return data[:len(data)-1], nil // Encode ends the value with a newline
}

// release lets go of the last frame's strings and returns e to the pool.
func (e *frameEncoder) release() {
	e.frame = Frame{}
	if e.buf.Cap() <= maxPooledFrame {
		frameEncoders.Put(e)
	}
}
