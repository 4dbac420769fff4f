package fsm

import "time"

// maxQueued is how many events the actions of one Fire may queue before the
// run is cut short with ErrRunaway.
const maxQueued = 64

// flags of a Session.
const busy = 1 // a guard or action of this session is running

// Transition reports what an accepted event did: the session moved from
// From to To (equal for a self or internal transition) on Event.
type Transition[S, E Enum] struct {
	From  S
	To    S
	Event E
}

// Session is one conversation's position in a [Definition]: its state, a
// sequence number that counts accepted events, and the deadline of the
// state's timeout. It is a 24-byte value the host owns and may store
// anywhere (a struct field, a slice element); it starts no goroutine and no
// timer. Copying a Session copies the conversation's position.
//
// A Session is not safe for concurrent use: one goroutine at a time, the
// session's owner, calls its methods. The zero Session belongs to no
// definition; Fire and Expire return [ErrZeroSession] and State returns the
// zero state. Use [Definition.NewSession] or [Definition.Restore].
type Session[S, E Enum] struct {
	def      *Definition[S, E]
	deadline int64 // Unix ns; 0 for none
	seq      uint32
	state    uint8
	flags    uint8
}

// NewSession returns a session in the definition's initial state whose
// timeout, if the initial state declares one, is armed relative to now.
// The initial state's OnEntry does not run.
func (d *Definition[S, E]) NewSession(now time.Time) Session[S, E] {
	s := Session[S, E]{def: d, state: d.initial}
	if t := d.states[d.initial].timeout; t > 0 {
		s.deadline = now.UnixNano() + t
	}
	return s
}

// Definition returns the session's definition, nil for the zero Session.
func (s *Session[S, E]) Definition() *Definition[S, E] { return s.def }

// State returns the session's current state.
func (s *Session[S, E]) State() S { return S(s.state) }

// Seq returns the number of events the session has accepted, including
// those accepted before a snapshot it was restored from. It wraps at 2^32.
func (s *Session[S, E]) Seq() uint32 { return s.seq }

// Deadline returns when the current state's timeout is due, or the zero
// time if the state declares none. Every accepted event re-arms it; hosts
// hand it to [Wheel.Arm] after each Fire or Expire.
func (s *Session[S, E]) Deadline() time.Time {
	if s.deadline == 0 {
		return time.Time{}
	}
	return time.Unix(0, s.deadline)
}

// Terminal reports whether the session's state has no outgoing transitions,
// so no event will ever be accepted again.
func (s *Session[S, E]) Terminal() bool {
	return s.def != nil && s.def.states[s.state].terminal
}

// Fire offers event e to the session at time now. If a transition accepts
// it, Fire runs the transition's guard and actions, moves the session,
// increments its sequence number, re-arms the deadline relative to now
// (or clears it if the new state declares no timeout) and returns the
// transition. Otherwise the session is unchanged and the error is a
// *[TransitionError] naming the state and event (wrapping [ErrTerminal] in
// a terminal state, [ErrNoTransition] otherwise).
//
// Events that actions queue with [Step.Fire] run after the transition
// completes and before Fire returns, in order (run to completion). Fire
// still returns the transition e took; if a queued event was rejected, the
// error is the first such *TransitionError, with Queued set, and the
// transitions that were taken stand.
//
// Fire runs guards and actions on the calling goroutine. Called from one of
// this session's own guards or actions, it returns [ErrReentrant].
func (s *Session[S, E]) Fire(e E, now time.Time) (Transition[S, E], error) {
	// The fast path: one unguarded transition with no action to run.
	if d := s.def; d != nil && s.flags == 0 {
		if c := d.cell(s.state, e); c.plain {
			from, r := s.state, &d.rules[c.first]
			s.apply(r, now.UnixNano())
			return Transition[S, E]{From: S(from), To: S(r.to), Event: e}, nil
		}
	}
	return s.fire(e, now.UnixNano(), nil)
}

// FireWith is [Session.Fire] with an argument that guards and actions see
// as [Step.Arg], such as the connection the event came from.
func (s *Session[S, E]) FireWith(e E, now time.Time, arg any) (Transition[S, E], error) {
	return s.fire(e, now.UnixNano(), arg)
}

// Expire fires the current state's timeout event if the session's deadline
// is at or before now, which is normally the [Expiry.Time] a [Wheel]
// delivered. The transition happens at the deadline itself, so the next
// deadline is relative to it, not to when the owner got round to Expire.
//
// If the session has no deadline, or its deadline is after now, Expire
// changes nothing and returns [ErrNotDue]: the expiry is stale, because
// an event re-armed or cleared the deadline after the wheel had taken the
// expiry for delivery. The outcome depends only on the session and now, so
// a late or duplicated delivery is rejected the same way every time, and
// a timeout fires at most once per deadline.
func (s *Session[S, E]) Expire(now time.Time) (Transition[S, E], error) {
	return s.expire(now, nil)
}

// ExpireWith is [Session.Expire] with an argument that guards and actions
// see as [Step.Arg].
func (s *Session[S, E]) ExpireWith(now time.Time, arg any) (Transition[S, E], error) {
	return s.expire(now, arg)
}

func (s *Session[S, E]) expire(now time.Time, arg any) (Transition[S, E], error) {
	switch {
	case s.def == nil:
		return Transition[S, E]{}, ErrZeroSession
	case s.flags&busy != 0:
		return Transition[S, E]{}, ErrReentrant
	case s.deadline == 0 || s.deadline > now.UnixNano():
		return Transition[S, E]{}, ErrNotDue
	}
	// New validated that the timeout event has an unguarded transition, so
	// this cannot be rejected and a due deadline never lingers.
	return s.fire(s.def.states[s.state].timeoutEvent, s.deadline, arg)
}

// apply moves the session along r at now (Unix ns).
func (s *Session[S, E]) apply(r *rule[S, E], now int64) {
	s.state = r.to
	s.seq++
	s.deadline = 0
	if r.idle > 0 {
		s.deadline = now + r.idle
	}
}

// fire is Fire's general path: zero and busy sessions, guards, actions and
// the queue of events actions fire.
func (s *Session[S, E]) fire(e E, now int64, arg any) (Transition[S, E], error) {
	d := s.def
	if d == nil {
		return Transition[S, E]{}, ErrZeroSession
	}
	if s.flags&busy != 0 {
		return Transition[S, E]{}, ErrReentrant
	}
	c := d.cell(s.state, e)
	if c.plain {
		from, r := s.state, &d.rules[c.first]
		s.apply(r, now)
		return Transition[S, E]{From: S(from), To: S(r.to), Event: e}, nil
	}
	if c.n == 0 {
		return Transition[S, E]{}, d.reject(s.state, e, false, false)
	}

	st, _ := d.steps.Get().(*Step[S, E])
	if st == nil {
		st = new(Step[S, E])
	}
	st.session, st.Arg, st.now = s, arg, now
	s.flags |= busy
	defer func() {
		s.flags &^= busy
		*st = Step[S, E]{queue: st.queue[:0]}
		d.steps.Put(st)
	}()

	tr, err := s.step(st, e, false)
	if err != nil {
		return tr, err
	}
	var qerr error
	for i := 0; i < len(st.queue); i++ {
		if i == maxQueued {
			return tr, ErrRunaway
		}
		if _, err := s.step(st, st.queue[i], true); err != nil && qerr == nil {
			qerr = err
		}
	}
	return tr, qerr
}

// step takes the first transition for e whose guard passes, running the
// actions around it.
func (s *Session[S, E]) step(st *Step[S, E], e E, queued bool) (Transition[S, E], error) {
	d := s.def
	from := s.state
	c := d.cell(from, e)
	mark := len(st.queue)
	for i := range int(c.n) {
		r := &d.rules[int(c.first)+i]
		tr := Transition[S, E]{From: S(from), To: S(r.to), Event: e}
		st.Transition = tr
		if r.guard != nil && !r.guard(st) {
			st.queue = st.queue[:mark]
			continue
		}
		if exit := d.states[from].onExit; !r.internal && exit != nil {
			exit(st)
		}
		if r.action != nil {
			r.action(st)
		}
		s.apply(r, st.now)
		if entry := d.states[r.to].onEntry; !r.internal && entry != nil {
			entry(st)
		}
		return tr, nil
	}
	return Transition[S, E]{}, d.reject(from, e, c.n > 0, queued)
}

func (d *Definition[S, E]) reject(s uint8, e E, guarded, queued bool) error {
	return &TransitionError[S, E]{
		State:    S(s),
		Event:    e,
		Terminal: d.states[s].terminal,
		Guarded:  guarded,
		Queued:   queued,
	}
}

// Step is what a guard or action sees of the transition it belongs to. It
// is valid only during the call; the package reuses it afterwards.
type Step[S, E Enum] struct {
	// Transition is the transition being taken, or, in a guard, the one
	// being considered.
	Transition[S, E]

	// Arg is the argument given to FireWith or ExpireWith, nil otherwise.
	Arg any

	session *Session[S, E]
	now     int64
	queue   []E
}

// Session returns the session the step belongs to. Its State is From until
// the transition is applied, so To in OnEntry. Fire and Expire on it return
// [ErrReentrant]; use [Step.Fire].
func (st *Step[S, E]) Session() *Session[S, E] { return st.session }

// Now returns the time of the event: the now given to Fire, or the
// deadline for a timeout.
func (st *Step[S, E]) Now() time.Time { return time.Unix(0, st.now) }

// Fire queues e to be fired on the session after the current transition
// completes, at the same time as the current event. Queued events run in
// order before the outer Fire returns.
func (st *Step[S, E]) Fire(e E) { st.queue = append(st.queue, e) }
