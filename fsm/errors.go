package fsm

import (
	"errors"
	"fmt"
)

var (
	// ErrDefinition is wrapped by every error New reports about a Spec.
	ErrDefinition = errors.New("fsm: invalid definition")

	// ErrNoTransition is wrapped by a [TransitionError] when the session's
	// state has no transition for the event, or every guard rejected it.
	ErrNoTransition = errors.New("fsm: no transition")

	// ErrTerminal is wrapped by a [TransitionError] when the session is in
	// a terminal state (one with no outgoing transitions).
	ErrTerminal = errors.New("fsm: session is in a terminal state")

	// ErrNotDue is returned by [Session.Expire] when the session has no
	// deadline or its deadline is after the expiry's time: the expiry is
	// stale (activity re-armed the deadline, or the state changed) and the
	// session is unchanged.
	ErrNotDue = errors.New("fsm: timeout not due")

	// ErrReentrant is returned when Fire or Expire is called on a session
	// from inside one of its own guards or actions. Actions queue follow-up
	// events with [Step.Fire] instead.
	ErrReentrant = errors.New("fsm: Fire called from the session's own action; use Step.Fire")

	// ErrRunaway is returned when one Fire runs more than 64 queued events,
	// which means actions keep queueing events in a cycle. The transitions
	// taken so far stand; the rest of the queue is dropped.
	ErrRunaway = errors.New("fsm: too many queued events in one run")

	// ErrZeroSession is returned by the methods of a zero [Session], which
	// belongs to no definition.
	ErrZeroSession = errors.New("fsm: zero Session (use Definition.NewSession)")

	// ErrSnapshot is wrapped by the errors [Definition.Restore] returns for
	// bytes that are not a well-formed snapshot.
	ErrSnapshot = errors.New("fsm: invalid snapshot")

	// ErrIncompatible is wrapped by the error [Definition.Restore] returns
	// for a well-formed snapshot taken under a definition with a different
	// fingerprint.
	ErrIncompatible = errors.New("fsm: snapshot from an incompatible definition")
)

// TransitionError reports an event that no transition accepted. It wraps
// [ErrTerminal] if State is terminal and [ErrNoTransition] otherwise, so
// callers that do not need the fields can use errors.Is.
type TransitionError[S, E Enum] struct {
	State    S    // the session's state, unchanged by the event
	Event    E    // the rejected event
	Terminal bool // State has no outgoing transitions
	Guarded  bool // transitions exist, but every guard rejected the event
	Queued   bool // the event was queued by an action with Step.Fire
}

// Error implements error.
func (e *TransitionError[S, E]) Error() string {
	var what string
	switch {
	case e.Terminal:
		what = fmt.Sprintf("fsm: %s is terminal: cannot fire %s", e.State, e.Event)
	case e.Guarded:
		what = fmt.Sprintf("fsm: every guard rejected %s in %s", e.Event, e.State)
	default:
		what = fmt.Sprintf("fsm: no transition from %s on %s", e.State, e.Event)
	}
	if e.Queued {
		what += " (queued by an action)"
	}
	return what
}

// Unwrap returns [ErrTerminal] or [ErrNoTransition].
func (e *TransitionError[S, E]) Unwrap() error {
	if e.Terminal {
		return ErrTerminal
	}
	return ErrNoTransition
}
