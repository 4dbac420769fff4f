// Package server is the example chat server's engine: a WebSocket chat
// gateway wired from every parley package the way a host would wire them.
// The program in the parent directory (go run ./examples/chatserver) parses
// flags and runs it; tests and the load generator embed it directly.
//
// # Wiring
//
// Each connection has a reader goroutine and a worker, joined by a
// [ring.Buffer]:
//
//	reader --ring--> worker: fsm transition -> context window (ctxstore)
//	    -> admission (backpressure) -> batch -> guarded model call -> reply
//
// The worker is the session's only writer of state and of data frames, so
// a session's replies are ordered and never cross sessions. It is a run of
// work rather than a parked goroutine: a run starts when a message (or an
// idle timeout) arrives, hands the prompt to the batcher with
// [batch.Batcher.Submit] and ends; the model's answer starts the next run,
// which replies and carries on with the ring. While the model works, a
// session holds only its reader goroutine, parked on a shallow stack. Idle
// timeouts come from one shared [fsm.Wheel], not a timer per session.
//
// # Protocol
//
// Clients connect to /ws with the WebSocket subprotocol "parley.v1"; a
// connection that does not negotiate it is closed with status 1002. Query
// parameters: session=ID resumes an earlier session (its context and state,
// from the context store, on this node or any other sharing the cold tier);
// tenant=NAME picks the tenant namespace (default "default"). Every frame
// is a JSON text message.
//
// Client to server:
//
//	{"type":"text","id":"m1","text":"hello"}   a user message; id is required
//	{"type":"end","id":"m9"}                   the user ends the session
//
// Server to client:
//
//	{"type":"hello","session":"3f2a...","state":"HELLO","resumed":false,"turns":0}
//	    first frame on every connection; keep session to resume later
//	{"type":"reply","id":"m1","text":"...","state":"CHATTING","model_ms":503.2,
//	 "queue_ms":1.4,"fallback":false,"echo":false,"replay":false}
//	    the answer to message m1. model_ms is the model's own time for this
//	    turn, queue_ms the time the message waited in the server before the
//	    model started on it. fallback marks a stand-in answer given while the
//	    model backend is failing; echo marks a reply flagged as repeating the
//	    user's words; replay marks a cached answer to a repeated id.
//	{"type":"state","state":"PAUSE"}
//	    the session changed state without a message (idle timeout)
//	{"type":"error","id":"m1","code":"overloaded","message":"...","retry_after_ms":250}
//	    message m1 was not answered; retry_after_ms, when present, says when
//	    a retry may succeed
//
// Error codes: bad_request (malformed JSON, unknown type, missing id, empty
// text), too_large (text over the limit), rate_limited and overloaded
// (admission refused; retry_after_ms set), ended (the session has ended),
// unavailable (the server is draining; retry_after_ms set), internal. After
// an error frame the connection stays up. A frame larger than the frame
// limit closes the connection with status 1009.
//
// Overload: while the model cannot keep up, sessions refused as overloaded
// are let in first come, first served. A session refused takes a place in
// a wait line, which it keeps across retries and across reconnects to the
// same server: a connection that takes the session over keeps its place,
// and so does one that resumes it within a minute of the last connection
// going away (later, or on another server, it starts at the back). A
// session that ends gives its place up. While others wait, a new
// message of any other session is refused too and goes to the back
// (unless nothing at all is queued for the model).
// retry_after_ms is when the session's place will be called, at the rate
// messages were admitted lately, up to about ten admission intervals (a
// client further back is told again then). A client that retries earlier
// is refused again, without losing its place; one that waits longer finds
// its place called and gets in as soon as the model has room. Once the
// model keeps up again, places are called faster than that rate until the
// line is empty.
//
// Idempotency: the server remembers the last ids it answered in each
// session (8 by default, kept with the session's context, so they survive
// reconnects and restarts). A repeated id is answered from that memory,
// marked replay, without calling the model again, as long as the reply is
// still in the session's context window. Errors are not remembered: a
// message refused with an error may be sent again with the same id.
//
// Liveness: the server pings every heartbeat interval (25 s by default) and
// drops a connection that misses two pongs in a row. A session idle in
// CHATTING moves to PAUSE (30 s by default) and is told so with a state
// frame; idle in PAUSE it moves to END, and the server closes the
// connection with status 1000 and the reason. On shutdown the server stops
// accepting, answers every message it accepted, stores every session, and
// closes connections with status 1001.
package server
