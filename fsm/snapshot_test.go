package fsm_test

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/parley-go/parley/fsm"
)

func TestSnapshotRoundTrip(t *testing.T) {
	d := mustDialogue(t, fsm.DialogueConfig{})
	busy := d.NewSession(t0)
	for i := range 70000 {
		busy.Fire(fsm.Text, t0.Add(time.Duration(i)*time.Millisecond))
	}
	ended := d.NewSession(t0)
	ended.Fire(fsm.Close, t0)
	paused := d.NewSession(t0)
	paused.Fire(fsm.Text, t0)
	paused.Expire(paused.Deadline())

	tests := []struct {
		name string
		s    fsm.Session[fsm.DialogueState, fsm.DialogueEvent]
		size int
	}{
		{"new", d.NewSession(t0), 12},
		{"paused", paused, 20},
		{"busy", busy, 22},
		{"ended", ended, 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.s.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != tt.size {
				t.Errorf("snapshot is %d bytes, want %d", len(b), tt.size)
			}
			got, err := d.Restore(b)
			if err != nil {
				t.Fatalf("Restore(%x): %v", b, err)
			}
			if got != tt.s {
				t.Errorf("Restore(%x) = %+v, want %+v", b, got, tt.s)
			}
			// The restored session goes on where the original left off.
			want := tt.s
			tr1, err1 := got.Fire(fsm.Text, t0.Add(time.Hour))
			tr2, err2 := want.Fire(fsm.Text, t0.Add(time.Hour))
			if tr1 != tr2 || (err1 == nil) != (err2 == nil) || got != want {
				t.Errorf("restored session diverges: %v, %v vs %v, %v", tr1, err1, tr2, err2)
			}
		})
	}
}

// TestSnapshotFormat pins the encoding, fingerprint included, so that a
// change that would strand stored sessions fails here first.
func TestSnapshotFormat(t *testing.T) {
	d := mustDialogue(t, fsm.DialogueConfig{})
	s := d.NewSession(t0)
	s.Fire(fsm.Text, t0)
	b, err := s.AppendBinary([]byte("prefix"))
	if err != nil {
		t.Fatal(err)
	}
	const want = "01" + "273320d8e50aeb84" + "01" + "01" + "80b0b9a5b083d6a830"
	if got := hex.EncodeToString(b[len("prefix"):]); string(b[:6]) != "prefix" || got != want {
		t.Errorf("AppendBinary = %q+%s, want prefix+%s", b[:6], got, want)
	}
}

func TestSnapshotIncompatible(t *testing.T) {
	d := mustDialogue(t, fsm.DialogueConfig{})
	s := d.NewSession(t0)
	s.Fire(fsm.Text, t0)
	b, _ := s.MarshalBinary()

	// Other durations: same fingerprint, restorable.
	retuned := mustDialogue(t, fsm.DialogueConfig{ChattingIdle: time.Minute, PauseIdle: time.Hour})
	if got, err := retuned.Restore(b); err != nil || got.State() != fsm.Chatting || !got.Deadline().Equal(s.Deadline()) {
		t.Errorf("Restore under other durations = %v, %v; want CHATTING at the old deadline", got.State(), err)
	}

	renamed := func(name string) spec {
		return spec{Name: name, States: []state{{State: 0}, {State: 1, Timeout: time.Second, TimeoutEvent: 2}, {State: 2}, {State: 3}},
			Transitions: []trans{{From: 0, Event: 0, To: 1}, {From: 1, Event: 2, To: 2}, {From: 2, Event: 0, To: 3}}}
	}
	other := []spec{
		renamed("dialogue"), // same name and values, other state names
		renamed("other"),
	}
	noTimeout := renamed("m")
	noTimeout.States[1].Timeout = 0
	for _, sp := range append(other, noTimeout) {
		od := mustNew(t, sp)
		_, err := od.Restore(b)
		if !errors.Is(err, fsm.ErrIncompatible) || !strings.Contains(err.Error(), sp.Name) {
			t.Errorf("Restore into %q = %v, want ErrIncompatible naming it", sp.Name, err)
		}
	}
	if a, b := mustNew(t, renamed("m")).Fingerprint(), mustNew(t, noTimeout).Fingerprint(); a == b {
		t.Errorf("fingerprint ignores which states time out: %x", a)
	}
}

func TestRestoreMalformed(t *testing.T) {
	d := mustDialogue(t, fsm.DialogueConfig{})
	fp := hex.EncodeToString(func() []byte { s := d.NewSession(t0); b, _ := s.MarshalBinary(); return b[1:9] }())
	tests := []struct {
		name, hex, want string
	}{
		{"empty", "", "0 bytes, want at least 12"},
		{"short", "01" + fp + "00", "10 bytes, want at least 12"},
		{"version", "02" + fp + "000000", "format version 2, want 1"},
		{"undeclared state", "01" + fp + "040000", "state 4 is not declared"},
		{"truncated seq", "01" + fp + "008080", "bad sequence number"},
		{"seq beyond 32 bits", "01" + fp + "00808080801000", "bad sequence number"},
		{"non-canonical seq", "01" + fp + "00800000", "bad sequence number"},
		{"truncated deadline", "01" + fp + "000180", "bad deadline"},
		{"non-canonical deadline", "01" + fp + "00018000", "bad deadline"},
		{"trailing bytes", "01" + fp + "00010000", "1 trailing bytes"},
		{"HELLO with a deadline", "01" + fp + "000102", "state HELLO with deadline 1"},
		{"CHATTING without one", "01" + fp + "010100", "state CHATTING with deadline 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := hex.DecodeString(tt.hex)
			if err != nil {
				t.Fatal(err)
			}
			s, err := d.Restore(b)
			if !errors.Is(err, fsm.ErrSnapshot) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Restore(%s) = %+v, %v; want ErrSnapshot with %q", tt.hex, s, err, tt.want)
			}
			if s != (fsm.Session[fsm.DialogueState, fsm.DialogueEvent]{}) {
				t.Errorf("Restore(%s) returned a non-zero session %+v with its error", tt.hex, s)
			}
		})
	}
}
