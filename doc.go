// Package parley is an embeddable toolkit for conversation runtimes: the
// plumbing between many long-lived chat connections (WebSocket, gRPC
// streams, voice sessions) and a slow, expensive model backend.
//
// parley owns no main and no framework. A host imports the packages it needs
// and wires them together itself; this package holds only this overview.
//
// # Packages
//
// [github.com/parley-go/parley/ring] is a bounded single-producer,
// single-consumer queue. It decouples a connection's reader goroutine from
// the session's worker: when the worker falls behind, Push blocks, so
// backpressure reaches the connection instead of memory growing or messages
// being dropped. PopBatch drains everything queued under one lock.
//
// [github.com/parley-go/parley/fsm] is a typed dialogue state machine. A
// definition (states, events, guards, actions, idle timeouts) is built and
// validated once and shared by every session; a session is a small value the
// host owns. One timer facility holds the idle deadlines of a million
// sessions without a goroutine or runtime timer per session.
//
// [github.com/parley-go/parley/backpressure] decides what to admit. Its
// CoDel-style detector signals overload only when queueing delay has stayed
// above a target for a whole interval, so short bursts are absorbed; a gate
// adds global and per-key token buckets; a line lets the clients refused
// for overload back first come, first served, each told when its turn
// comes; a guarded call wraps the model in a circuit breaker, retries with
// jittered backoff under a retry budget, and an optional fallback answer.
//
// [github.com/parley-go/parley/batch] is a micro-batcher towards the model.
// It dispatches at once while the backend is idle and lets batches grow only
// while a batch is in flight, so a lone request waits for nothing; each
// caller gets its own result, and a caller's cancellation touches no one
// else. Callers either wait (Do) or are called back (Submit), so a host
// with ten thousand sessions waiting on the model need not park ten
// thousand goroutines.
//
// [github.com/parley-go/parley/ctxstore] keeps each session's record (state
// snapshot, bounded context window of turns, slots) in a hot in-process tier
// and writes it behind, in batches, to a cold tier: an embedded on-disk
// store on one machine, or Redis shared by many. A restarted process serves
// every session again on first touch, and no acknowledged write is lost.
//
// # Wiring
//
// A chat gateway built on parley moves each message along one path:
//
//	connection reader --> ring --> session worker --> fsm transition
//	    --> backpressure admission --> batch --> model (guarded call) --> reply
//
// with ctxstore beside the worker: the worker keeps the session's record,
// adds the user's turn to its context window before the model call and
// stores the reply after it. One worker per session consumes its ring, one
// run at a time, so a session's state has a single writer and replies
// never cross sessions; the fsm timer wheel hands idle timeouts to the same
// worker through the same ring. The programs under examples/ show this
// wiring end to end: examples/chatserver is a WebSocket chat server and
// examples/loadgen drives it with thousands of verified sessions.
package parley
