package fsm

import (
	"strconv"
	"time"
)

// DialogueState is a state of the reference dialogue. Its String is the
// name clients see: "HELLO", "CHATTING", "PAUSE", "END".
type DialogueState uint8

// The states of the reference dialogue.
const (
	Hello    DialogueState = iota // waiting for the first message
	Chatting                      // messages flowing
	Pause                         // no message for DialogueConfig.ChattingIdle
	End                           // closed by the user or the system; terminal
)

var dialogueStates = [...]string{"HELLO", "CHATTING", "PAUSE", "END"}

// String returns the state's name, such as "CHATTING".
func (s DialogueState) String() string {
	if int(s) < len(dialogueStates) {
		return dialogueStates[s]
	}
	return "DialogueState(" + strconv.Itoa(int(s)) + ")"
}

// DialogueEvent is an event of the reference dialogue.
type DialogueEvent uint8

// The events of the reference dialogue.
const (
	Text    DialogueEvent = iota // a user message
	Timeout                      // the state's idle timeout
	Close                        // the user or the system ends the session
)

var dialogueEvents = [...]string{"text", "timeout", "close"}

// String returns the event's name, such as "text".
func (e DialogueEvent) String() string {
	if int(e) < len(dialogueEvents) {
		return dialogueEvents[e]
	}
	return "DialogueEvent(" + strconv.Itoa(int(e)) + ")"
}

// DialogueConfig sets the idle durations of the reference dialogue. The
// zero value gives the defaults.
type DialogueConfig struct {
	// ChattingIdle is how long CHATTING waits for a message before moving
	// to PAUSE. Zero means 30s.
	ChattingIdle time.Duration

	// PauseIdle is how long PAUSE waits for a message before ending the
	// session. Zero means 5m.
	PauseIdle time.Duration
}

// NewDialogue returns the reference dialogue, named "dialogue":
//
//	HELLO    --text-->    CHATTING
//	CHATTING --text-->    CHATTING  (internal: re-arms the idle timeout)
//	CHATTING --timeout--> PAUSE     (after ChattingIdle)
//	PAUSE    --text-->    CHATTING
//	PAUSE    --timeout--> END       (after PauseIdle)
//	HELLO, CHATTING, PAUSE --close--> END
//
// HELLO has no timeout and END is terminal. It has no guards or actions: a
// host reacts to the [Transition] that Fire and Expire return. The
// durations are not part of the fingerprint, so changing them keeps
// snapshots readable. NewDialogue reports an error only for a negative
// duration.
func NewDialogue(cfg DialogueConfig) (*Definition[DialogueState, DialogueEvent], error) {
	if cfg.ChattingIdle == 0 {
		cfg.ChattingIdle = 30 * time.Second
	}
	if cfg.PauseIdle == 0 {
		cfg.PauseIdle = 5 * time.Minute
	}
	type ts = TransitionSpec[DialogueState, DialogueEvent]
	return New(Spec[DialogueState, DialogueEvent]{
		Name:    "dialogue",
		Initial: Hello,
		States: []StateSpec[DialogueState, DialogueEvent]{
			{State: Hello},
			{State: Chatting, Timeout: cfg.ChattingIdle, TimeoutEvent: Timeout},
			{State: Pause, Timeout: cfg.PauseIdle, TimeoutEvent: Timeout},
			{State: End},
		},
		Transitions: []ts{
			{From: Hello, Event: Text, To: Chatting},
			{From: Hello, Event: Close, To: End},
			{From: Chatting, Event: Text, To: Chatting, Internal: true},
			{From: Chatting, Event: Timeout, To: Pause},
			{From: Chatting, Event: Close, To: End},
			{From: Pause, Event: Text, To: Chatting},
			{From: Pause, Event: Timeout, To: End},
			{From: Pause, Event: Close, To: End},
		},
	})
}
