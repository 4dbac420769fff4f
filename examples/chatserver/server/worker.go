package server

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-go/parley/backpressure"
	"github.com/parley-go/parley/ctxstore"
	"github.com/parley-go/parley/fsm"
)

// kick makes sure a run of the session's worker will see the ring's items:
// it starts one unless one exists. Whoever adds work (the reader, the
// wheel, shut) kicks after adding it.
//
// kick allocates nothing, so neither does the reader's loop. A goroutine
// that allocates while the collector marks must first help it mark, in
// chunks of some 64 KB of heap however little it allocates, and its
// credit is cleared every cycle: with 10k readers each allocating 16
// bytes per message, a CPU profile of a load run charged 0.30 s of the
// collector's 0.48 s of assists to kick, each assist holding up its
// session's message.
func (ss *session) kick() {
	if ss.running.CompareAndSwap(false, true) {
		ss.srv.exec.do(ss.runFn)
	}
}

// run is one run of the session's worker: it answers the ring's items in
// order until the ring is empty, or until it hands a prompt to the model,
// whose answer continues the work in a new run (see resume). The worker is
// thus never parked while the model works.
func (ss *session) run() {
	for {
		if ss.over {
			return // finished; running stays set so no run starts again
		}
		if it, ok := ss.in.TryPop(); ok {
			if ss.handle(&it) {
				return // a model call is under way; resume continues
			}
			continue
		}
		if at := ss.pendingExpiry.Swap(0); at != 0 {
			ss.expire(time.Unix(0, at))
			continue
		}
		if ss.closing.Load() || ss.ended {
			// shut closes the ring before it sets closing, so once closing
			// is seen nothing more arrives; but a message pushed between
			// the empty TryPop above and the close was accepted, and is
			// answered, not refused.
			if !ss.ended && ss.in.Len() > 0 {
				continue
			}
			ss.finish()
			return
		}
		// Going idle: work added after the empty TryPop kicks, but its
		// kick may have seen running still set, so look once more.
		ss.running.Store(false)
		if ss.in.Len() == 0 && ss.pendingExpiry.Load() == 0 && !ss.closing.Load() {
			return
		}
		if !ss.running.CompareAndSwap(false, true) {
			return // another kick started a run
		}
	}
}

// finish stores the session and closes the connection, once the worker has
// answered everything it accepted.
func (ss *session) finish() {
	ss.over = true
	srv := ss.srv
	srv.wheel.Remove(ss.entry)
	srv.metrics.stateLeave(ss.dlg.State())
	if !ss.ended {
		ss.rec.SetSlot(dedupSlot, ss.answers.save())
		ss.save()
	}
	close(ss.stored)
	srv.mu.Lock()
	draining := srv.draining
	srv.mu.Unlock()
	switch {
	case ss.ended:
		// close already said goodbye.
	case ss.replaced.Load():
		ss.conn.Close(statusReplaced, "session resumed on another connection")
	case draining:
		ss.conn.Close(websocket.StatusGoingAway, "server is shutting down")
	default:
		ss.conn.CloseNow()
	}
	// Anything the reader pushed after the session ended is refused, not
	// silently dropped.
	for {
		it, ok := ss.in.TryPop()
		if !ok {
			break
		}
		if !it.expiry {
			f, _ := it.frame(ss.srv.cfg.MaxTextBytes)
			ss.write(errorFrame(f.ID, &requestError{code: codeEnded, msg: "the session has ended"}))
		}
	}
	close(ss.done)
}

// handle answers one item of the ring. It reports whether it handed a
// prompt to the model, which then continues the worker's run.
func (ss *session) handle(it *inbound) (waiting bool) {
	if it.expiry {
		if !ss.ended {
			ss.expire(it.at)
		}
		return false
	}
	f, err := it.frame(ss.srv.cfg.MaxTextBytes)
	switch {
	case it.binary:
		err = &requestError{code: codeBadRequest, msg: "frames must be JSON text"}
	case err == nil && ss.ended:
		err = &requestError{id: f.ID, code: codeEnded, msg: "the session has ended"}
	}
	switch {
	case err != nil:
		ss.srv.metrics.badRequests.Inc()
		ss.write(errorFrame(f.ID, err))
	case f.Type == typeEnd:
		ss.end(f.ID, "session ended by the user")
	default:
		return ss.turn(it.at, f)
	}
	return false
}

// expire applies a timeout that came due at at, unless activity made it
// stale, and tells the client about the new state.
func (ss *session) expire(at time.Time) {
	tr, err := ss.dlg.Expire(at)
	ss.srv.wheel.Arm(ss.entry, ss.dlg.Deadline())
	if err != nil {
		return // stale: a message moved the deadline
	}
	ss.srv.metrics.transition(tr.From, tr.To)
	if tr.To == fsm.End {
		ss.close("session ended after being idle")
		return
	}
	ss.write(Frame{Type: typeState, State: tr.To.String()})
}

// end ends the session at the user's request.
func (ss *session) end(id, reason string) {
	tr, err := ss.dlg.Fire(fsm.Close, time.Now())
	if err != nil {
		ss.write(errorFrame(id, &requestError{code: codeEnded, msg: "the session has already ended"}))
		return
	}
	ss.srv.metrics.transition(tr.From, tr.To)
	ss.close(reason)
}

// close ends the session: its record is deleted, the client gets a final
// state frame and a normal close with reason.
func (ss *session) close(reason string) {
	ss.ended = true
	ss.srv.wheel.Arm(ss.entry, time.Time{})
	if err := ss.srv.store.Delete(ss.srv.storeCtx.get(time.Now()), ss.key.Tenant, ss.key.ID); err != nil {
		ss.logf(slog.LevelError, "deleting ended session", "err", err)
	}
	ss.write(Frame{Type: typeState, State: fsm.End.String()})
	ss.conn.Close(websocket.StatusNormalClosure, reason)
}

// turn starts answering one user message: state machine, admission,
// context window, then the prompt goes to the model through the batcher.
// It reports whether it did; the answer then arrives in resume.
func (ss *session) turn(arrival time.Time, f clientFrame) (waiting bool) {
	srv := ss.srv
	id, text := f.ID, f.Text
	if a, ok := ss.answers.get(id); ok {
		ss.replay(a)
		return false
	}
	now := time.Now()
	tr, err := ss.dlg.Fire(fsm.Text, now)
	srv.wheel.Arm(ss.entry, ss.dlg.Deadline())
	if err != nil {
		ss.write(errorFrame(id, &requestError{code: codeEnded, msg: "the session has ended"}))
		return false
	}
	srv.metrics.transition(tr.From, tr.To)
	if err := srv.admit(ss.key.ID, &ss.ticket, now); err != nil {
		ss.write(errorFrame(id, err))
		return false
	}
	ss.appendTurn(ctxstore.RoleUser, text)
	req := &ss.req // the previous turn is over: reuse it
	req.arrival, req.id, req.text = arrival, id, text
	req.prompt = ss.prompt(req.prompt[:0])
	req.promptHash = ss.sums.sum(ss.rec) // the window is the prompt's now
	req.regenerated, req.queued = false, 0
	if err := srv.submit(req); err != nil {
		ss.logf(slog.LevelError, "model call refused", "id", id, "err", err)
		ss.write(errorFrame(id, &requestError{code: codeUnavailable, msg: "the model queue is full", retryAfter: time.Second}))
		return false
	}
	return true
}

// resume finishes a turn with the model's answer and carries on with the
// session's work: it is the worker's next run.
func (ss *session) resume(req *modelReq) {
	srv := ss.srv
	a, err := req.ans, req.err
	req.ans, req.err = answer{}, nil
	if err == nil && echoOverlap(req.text, a.Text) >= srv.cfg.EchoThreshold {
		srv.metrics.echoes.Inc()
		if srv.cfg.EchoRegenerate && !req.regenerated {
			req.regenerated, req.queued = true, a.Queue
			if srv.submit(req) == nil {
				return // the second answer resumes again
			}
		}
		a.echo = true
	}
	if err != nil {
		// Only a server shutting down gets here: model failures are
		// answered by the fallback.
		ss.logf(slog.LevelError, "model call", "id", req.id, "err", err)
		ss.write(errorFrame(req.id, &requestError{code: codeUnavailable, msg: "the model call failed", retryAfter: time.Second}))
	} else {
		a.Queue += req.queued
		ss.reply(req, a)
	}
	ss.run()
}

// reply stores the answer in the session's context and sends it.
func (ss *session) reply(req *modelReq, a answer) {
	ss.appendTurn(ctxstore.RoleAssistant, a.Text)
	ss.save()
	ans := answered{
		ID:       req.id,
		Turn:     ss.turns - 1,
		ModelUS:  a.Service.Microseconds(),
		QueueUS:  a.Queue.Microseconds(),
		Fallback: a.fallback,
		Echo:     a.echo,
	}
	ss.answers.put(ans)
	// Counted before the write: a client that has its reply and then
	// reads /metrics finds its turn there.
	ss.srv.metrics.turnDone(a, time.Since(req.arrival).Seconds())
	ss.write(ss.replyFrame(ans, a.Text, false))
	ss.logTurn(req, a)
}

// replay answers a repeated message id from the dedup window, if its reply
// is still in the context window; otherwise the id is forgotten and the
// message is answered as new.
func (ss *session) replay(a answered) {
	ss.srv.metrics.replays.Inc()
	i := ss.rec.Len() - int(ss.turns-a.Turn)
	if i < 0 || i >= ss.rec.Len() {
		ss.write(errorFrame(a.ID, &requestError{code: codeBadRequest, msg: "id " + a.ID + " was already answered, and the answer has left the context window"}))
		return
	}
	ss.write(ss.replyFrame(a, ss.rec.Turn(i).Text, true))
}

func (ss *session) replyFrame(a answered, text string, replay bool) Frame {
	return Frame{
		Type:     typeReply,
		ID:       a.ID,
		Text:     text,
		State:    ss.dlg.State().String(),
		ModelMS:  float64(a.ModelUS) / 1e3,
		QueueMS:  float64(a.QueueUS) / 1e3,
		Fallback: a.Fallback,
		Echo:     a.Echo,
		Replay:   replay,
	}
}

// appendTurn adds a turn to the session's context window.
func (ss *session) appendTurn(role ctxstore.Role, text string) {
	t := ctxstore.Turn{Role: role, Text: text}
	ss.rec.Append(t)
	ss.sums.add(ss.rec, t)
	ss.turns++
	ss.sinceRead++
}

// overlap returns the length of the longest prefix of turns that stands,
// in order, somewhere in r's window, and where in the window it starts.
func overlap(r *ctxstore.Record, turns []ctxstore.Turn) (k, at int) {
	for k := len(turns); k > 0; k-- {
		for start := 0; start+k <= r.Len(); start++ {
			match := true
			for j := range k {
				if t := r.Turn(start + j); t.Role != turns[j].Role || t.Text != turns[j].Text {
					match = false
					break
				}
			}
			if match {
				return k, start
			}
		}
	}
	return 0, 0
}

// prompt appends the model's input, built from the session's context
// window, to p.
func (ss *session) prompt(p []Message) []Message {
	if n := len(p) + 1 + ss.rec.Len(); cap(p) < n {
		// A session keeps the buffer for its whole life (10k sessions, 10k
		// buffers), where append's doubling would leave up to half of it
		// unused; but a buffer just the window's size was outgrown on
		// every turn while the window filled. Half as much again grows it
		// four times on the way to a window of 16 turns.
		p = append(make([]Message, 0, n+n/2), p...)
	}
	p = append(p, Message{Role: string(ctxstore.RoleSystem), Content: ss.rec.System()})
	for t := range ss.rec.Turns() {
		p = append(p, Message{Role: string(t.Role), Content: t.Text})
	}
	return p
}

// save stores the session's record with the dialogue's snapshot.
func (ss *session) save() {
	// The record keeps a copy: the snapshot (25 bytes at most) is built on
	// the stack, not grown on the heap from nothing.
	var buf [32]byte
	snap, err := ss.dlg.AppendBinary(buf[:0])
	if err != nil {
		ss.logf(slog.LevelError, "dialogue snapshot", "err", err)
		return
	}
	ss.rec.SetSnapshot(snap)
	ss.rec.SetSlot(turnsSlot, strconv.FormatInt(ss.turns, 10))
	ctx := ss.srv.storeCtx.get(time.Now())
	if ss.outdated.Swap(false) {
		err = ctxstore.ErrStale // the cold tier refused an earlier write
	} else {
		err = ss.srv.store.Put(ctx, ss.rec)
	}
	if errors.Is(err, ctxstore.ErrStale) {
		// Another writer stored the session since this connection read it
		// (two nodes serving one session). Keep both: take the newer
		// record and add the turns this connection added on top of it.
		ss.logf(slog.LevelWarn, "session was written elsewhere; merging this connection's turns into the newer record", "turns", ss.sinceRead)
		err = ss.merge(ctx, snap)
	}
	if err != nil {
		ss.srv.metrics.storeErrors.Inc()
		ss.logf(slog.LevelError, "storing session", "err", err)
	}
}

// merge replaces the session's record with the store's newer one plus the
// turns this connection added since it read the record, and stores it.
func (ss *session) merge(ctx context.Context, snap []byte) error {
	cur, err := ss.srv.store.Get(ctx, ss.key.Tenant, ss.key.ID)
	if err != nil {
		return err
	}
	ours := make([]ctxstore.Turn, 0, ss.sinceRead)
	for i := max(0, ss.rec.Len()-ss.sinceRead); i < ss.rec.Len(); i++ {
		ours = append(ours, ss.rec.Turn(i))
	}
	first := ss.turns - int64(len(ours)) // the number of ours[0]
	// Turns of ours that reached the cold tier before the other writer
	// read the session are in cur already.
	k, at := overlap(cur, ours)
	// The merged record numbers its turns as the other writer did, ours
	// on top, and the answers a repeated id replays must point at the
	// same turns under the new numbers (see replay).
	n := turnsEver(cur)
	base := n - int64(cur.Len()) // the number of cur's first turn
	ss.answers.renumber(func(turn int64) (int64, bool) {
		switch j := turn - first; {
		case j < 0:
			return 0, false // older than what this connection read: not placed
		case j < int64(k):
			return base + int64(at) + j, true // cur had it already
		default:
			return n + j - int64(k), true // appended below
		}
	})
	for _, t := range ours[k:] {
		cur.Append(t)
	}
	ss.turns = n + int64(len(ours)-k)
	cur.SetSnapshot(snap)
	cur.SetSlot(turnsSlot, strconv.FormatInt(ss.turns, 10))
	ss.rec, ss.sinceRead = cur, 0
	return ss.srv.store.Put(ctx, ss.rec)
}

// logTurn logs a finished turn: the full prompt for one turn in
// PromptSample, the prompt's hash otherwise. It runs for every turn, so it
// hands the record to the handler itself with a program counter found
// once: Logger's methods would walk the stack for it on every line, a
// tenth of the line's cost.
func (ss *session) logTurn(req *modelReq, a answer) {
	h := ss.srv.log.Handler()
	ctx := context.Background()
	if !h.Enabled(ctx, slog.LevelInfo) {
		return
	}
	pc := logTurnPC.Load()
	if pc == 0 {
		var pcs [1]uintptr
		runtime.Callers(1, pcs[:]) // this line, for a handler's source
		pc = pcs[0]
		logTurnPC.Store(pc)
	}
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "turn", pc)
	last := slog.Uint64("context_hash", req.promptHash)
	if ss.srv.sample() {
		last = slog.Any("prompt", req.prompt)
	}
	r.AddAttrs(
		slog.String("session", ss.key.String()),
		slog.String("id", req.id),
		slog.String("state", ss.dlg.State().String()),
		slog.Float64("model_ms", ms(a.Service)),
		slog.Bool("fallback", a.fallback),
		last,
	)
	_ = h.Handle(ctx, r) // as Logger does: a log line that fails is dropped
}

// logTurnPC is the program counter logTurn's records carry.
var logTurnPC atomic.Uintptr

// admit decides whether a session's message may go to the model now;
// ticket is the session's place in the wait line.
//
// The gate's CoDel detector is fed the queueing delay for shared capacity
// that a message admitted now should expect (see expectedWait), and sheds
// while that delay has stood above target for an interval. CoDel lets a
// burst through for up to an interval, by design; when a message would
// wait longer than AdmitMaxWait, as under a flood of retries, admit
// refuses it at once (a backstop), so that served turns never wait much
// longer than that.
//
// Sessions shed for overload wait their turn in a line (backpressure.Line):
// while some wait, a message of another session goes to the back, unless
// nothing is queued for the model at all. Each overload refusal's
// retry-after is the later of the line's estimate and the usual hint.
//
// The time a message waited in its own session's ring is left out: it
// waited behind its own session's previous turn, which says nothing about
// the server's load.
func (s *Server) admit(key string, ticket *backpressure.Ticket, now time.Time) error {
	wait := s.expectedWait(now)
	if wait > s.cfg.AdmitMaxWait {
		return s.shedOverloaded("the model queue is too long", s.cfg.AdmitInterval, s.line.Refused(ticket, now))
	}
	if ok, eta := s.line.Pass(ticket, wait, now); !ok {
		return s.shedOverloaded("others were refused before and wait their turn", s.cfg.AdmitTarget, eta)
	}
	err := s.gate.AdmitAt(key, wait, now)
	if err == nil {
		s.line.Admitted(ticket, wait, now)
		return nil
	}
	rej, ok := errors.AsType[*backpressure.Rejection](err)
	if !ok {
		return err
	}
	if errors.Is(rej, backpressure.ErrOverloaded) {
		return s.shedOverloaded(rej.Error(), rej.RetryAfter, s.line.Refused(ticket, now))
	}
	s.metrics.shed.WithLabelValues(codeRateLimited).Inc()
	return &requestError{code: codeRateLimited, msg: rej.Error(), retryAfter: rej.RetryAfter}
}

// shedOverloaded refuses a message because the model is overloaded. The
// retry-after hint is the line's estimate eta, or base spread over
// [base, 2 base) when that is later, so that clients shed together do not
// all come back together.
func (s *Server) shedOverloaded(msg string, base, eta time.Duration) error {
	s.metrics.shed.WithLabelValues(codeOverloaded).Inc()
	return &requestError{code: codeOverloaded, msg: msg, retryAfter: max(jitter(base), eta)}
}

// expectedWait estimates how long a prompt handed to the batcher at now
// would wait for the model: zero when nothing waits (which tells the
// detector any standing queue is gone), otherwise the wait of the last
// prompt dispatched. While every model call slot is busy, the queue waits
// for capacity, and the estimate is also at least the time since the last
// dispatch (the model is stuck while work piles up) and the time the
// model's calls take to work through the queue (a flood just arrived):
// with every slot busy, a slot comes free every callTime / MaxInFlight on
// average and takes up to MaxSize prompts.
//
// That last term is the model's capacity, measured from how long its calls
// take, not from how many prompts went out lately: on a quiet server the
// recent dispatches count the demand, and one prompt queued behind a busy
// slot would read as a wait of a second.
func (s *Server) expectedWait(now time.Time) time.Duration {
	q := s.queued.Load()
	if q <= 0 {
		return 0
	}
	wait := time.Duration(s.headWait.Load())
	slots := int64(s.cfg.Batch.MaxInFlight)
	if s.inFlight.Load() < slots {
		return wait // a free slot takes the queue at once
	}
	wait = max(wait, time.Duration(now.UnixNano()-s.lastDispatch.Load()))
	if call := s.callTime.Load(); call > 0 {
		size := int64(s.cfg.Batch.MaxSize)
		rounds := (q + size - 1) / size
		wait = max(wait, time.Duration(rounds*call/slots))
	}
	return wait
}

// noteCallTime folds the duration of a successful model call, from
// dispatch to answer, into callTime: a moving average over about the last
// 16 calls. One call counts as at most four times the average, so that a
// single straggler does not make the queue look long for the next dozens
// of calls (a model that is stuck shows in the time since the last
// dispatch instead).
func (s *Server) noteCallTime(d time.Duration) {
	for {
		old := s.callTime.Load()
		next := int64(d)
		if old > 0 {
			next = old + (min(int64(d), 4*old)-old)/16
		}
		if s.callTime.CompareAndSwap(old, max(next, 1)) {
			return
		}
	}
}

// jitter spreads a retry-after hint over [d, 2d), so that clients shed
// together do not all come back together.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d + rand.N(d)
}

// ms converts d to fractional milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
