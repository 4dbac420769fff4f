// Package fsm is a typed state machine for dialogues, built to run a
// million live sessions in one process: a session is a small value, not a
// goroutine, and one timer wheel holds every session's idle deadline.
//
// # Definitions
//
// A [Spec] declares the states, events, transitions, guards, actions and
// per-state timeouts of a machine. States and events are the host's own
// integer types with a String method ([Enum]). [New] validates a spec once,
// reporting every problem by state and event, and returns an immutable
// [Definition] that all sessions share; firing an event is a table lookup.
// [NewDialogue] returns the reference dialogue, ready to use:
//
//	HELLO --text--> CHATTING --timeout (30s)--> PAUSE --timeout (5m)--> END
//	CHATTING --text--> CHATTING, PAUSE --text--> CHATTING, any --close--> END
//
// # Sessions
//
// [Definition.NewSession] returns a [Session]: the state, a sequence number
// and the deadline of the state's timeout, in 24 bytes. The host keeps it
// wherever it keeps the conversation, and one goroutine at a time (the
// session's owner) calls its methods. [Session.Fire] offers an event at a
// given time and returns the [Transition] taken, or a *[TransitionError]
// naming the state and event, leaving the session unchanged.
//
// Guards and actions run synchronously on the owner's goroutine inside
// Fire. An action that wants to fire another event calls [Step.Fire]: the
// event is queued and runs once the current transition has completed, before
// Fire returns (run to completion). Calling the session's Fire from its own
// action is an error ([ErrReentrant]), never a deadlock.
//
// # Timeouts
//
// A state's timeout is armed when the session enters it, re-armed by every
// event the session accepts, and cleared when it leaves;
// [Session.Deadline] says when it is due. A [Wheel] keeps the deadlines of
// all sessions and calls back, on its own goroutine, when one is due. That
// goroutine is not the session's owner, and by the time the owner sees an
// expiry, activity may have moved the deadline. The flow is therefore:
//
//  1. After creating or restoring a session and after every Fire or Expire,
//     the owner arms the session's wheel entry with its deadline:
//     wheel.Arm(entry, sess.Deadline()).
//  2. The wheel calls its callback with an [Expiry]: the session's key and
//     the Time the deadline came due. The callback hands the expiry to the
//     owner, typically through the same queue that carries the session's
//     messages, so that the owner sees events and expiries in one order.
//  3. The owner calls sess.Expire(x.Time). If the session's deadline is
//     still at or before x.Time, the timeout fires and Expire returns the
//     transition (CHATTING to PAUSE). If a message re-armed the deadline
//     after the wheel took the expiry, or the state changed, Expire returns
//     [ErrNotDue] and changes nothing: the expiry was stale. Either way the
//     owner arms again (step 1), which for a stale expiry is a no-op.
//
// Whether an expiry is stale depends only on the session and x.Time, so
// the outcome is the same however late the expiry arrives, and a deadline
// fires at most once. In code, in the owner's loop:
//
//	case x := <-expiries:
//		tr, err := c.sess.Expire(x.Time)
//		wheel.Arm(c.entry, c.sess.Deadline())
//		if errors.Is(err, fsm.ErrNotDue) {
//			break // stale: a message moved the deadline
//		}
//		c.send(tr.To.String()) // "PAUSE"
//
// # Snapshots
//
// [Session.AppendBinary] encodes a session in at most 25 bytes, carrying the
// definition's [Definition.Fingerprint]; [Definition.Restore] decodes it and
// rejects bytes that are malformed ([ErrSnapshot]) or come from a
// definition with other states ([ErrIncompatible]). Timeout durations,
// guards, actions and transitions are not part of the fingerprint, so
// tuning them keeps stored sessions readable.
//
// # Diagrams
//
// [Definition.Mermaid] and [Definition.DOT] draw a definition, with its
// timeouts and guard names, for documentation and review.
package fsm
