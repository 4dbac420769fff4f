package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// fs and fe are the fuzzed machines' states and events.
type (
	fs uint8
	fe uint8
)

func (s fs) String() string { return fmt.Sprintf("s%d", uint8(s)) }
func (e fe) String() string { return fmt.Sprintf("e%d", uint8(e)) }

// byteReader hands out the fuzzer's bytes, then zeros.
type byteReader []byte

func (r *byteReader) next() byte {
	if len(*r) == 0 {
		return 0
	}
	b := (*r)[0]
	*r = (*r)[1:]
	return b
}

// effect is what a generated action does: nothing, log, or log and queue
// an event.
type effect struct {
	kind  byte // 0 none, 1 log, 2 log and queue
	queue fe
}

// modelState and modelTrans mirror StateSpec and TransitionSpec for the
// reference model, with guards and actions as data.
type modelState struct {
	timeout     int64 // ns
	event       fe
	entry, exit effect
}

type modelTrans struct {
	from  fs
	event fe
	to    fs
	inter bool
	guard string // "", "even", "odd" or "never": the session's sequence number parity
	act   effect
}

// machineModel is the reference: a list of transitions searched linearly.
type machineModel struct {
	states []modelState
	trans  []modelTrans
	events int

	state    fs
	seq      uint32
	deadline int64
	log      []string
}

// genMachine builds a random machine from r: the model, and the Spec whose
// actions append to log.
func genMachine(r *byteReader, log *[]string) (*machineModel, Spec[fs, fe]) {
	m := &machineModel{events: 1 + int(r.next()%4)}
	ns := 1 + int(r.next()%5)
	genEffect := func() effect {
		b := r.next()
		return effect{kind: b % 3, queue: fe(int(b/3) % (m.events + 1))}
	}
	for range ns {
		st := modelState{}
		if b := r.next(); b%3 == 0 {
			st.timeout = int64(1+b/3%4) * int64(time.Second)
			st.event = fe(int(b/12) % m.events)
		}
		st.entry, st.exit = genEffect(), genEffect()
		m.states = append(m.states, st)
	}
	for range int(r.next() % 12) {
		t := modelTrans{from: fs(int(r.next()) % ns), event: fe(int(r.next()) % m.events), to: fs(int(r.next()) % ns)}
		flags := r.next()
		if flags&1 == 1 {
			t.to, t.inter = t.from, true
		}
		t.guard = [...]string{"", "even", "odd", "never"}[flags>>1&3]
		t.act = genEffect()
		m.trans = append(m.trans, t)
	}

	action := func(name string, e effect) Action[fs, fe] {
		if e.kind == 0 {
			return nil
		}
		return func(x *Step[fs, fe]) {
			*log = append(*log, fmt.Sprintf("%s %s->%s seq %d", name, x.From, x.To, x.Session().Seq()))
			if e.kind == 2 {
				x.Fire(e.queue)
			}
		}
	}
	sp := Spec[fs, fe]{Name: "fuzz"}
	for i, st := range m.states {
		sp.States = append(sp.States, StateSpec[fs, fe]{
			State: fs(i), Timeout: time.Duration(st.timeout), TimeoutEvent: st.event,
			OnEntry: action(fmt.Sprint("enter", i), st.entry), OnExit: action(fmt.Sprint("exit", i), st.exit),
		})
	}
	for i, t := range m.trans {
		ts := TransitionSpec[fs, fe]{From: t.from, Event: t.event, To: t.to, Internal: t.inter,
			Action: action(fmt.Sprint("act", i), t.act)}
		if t.guard != "" {
			ts.Guard, ts.GuardName = func(x *Step[fs, fe]) bool { return guardPasses(t.guard, x.Session().Seq()) }, t.guard
		}
		sp.Transitions = append(sp.Transitions, ts)
	}
	return m, sp
}

func guardPasses(guard string, seq uint32) bool {
	switch guard {
	case "even":
		return seq%2 == 0
	case "odd":
		return seq%2 == 1
	case "never":
		return false
	}
	return true
}

// valid reports whether New should accept the model's machine.
func (m *machineModel) valid() bool {
	for i, a := range m.trans {
		for _, b := range m.trans[i+1:] {
			if a.from == b.from && a.event == b.event && a.guard == b.guard {
				return false // duplicate or ambiguous
			}
		}
	}
	for s, st := range m.states {
		if st.timeout == 0 {
			continue
		}
		if !slices.ContainsFunc(m.trans, func(t modelTrans) bool {
			return t.from == fs(s) && t.event == st.event && t.guard == ""
		}) {
			return false // terminal, or no unguarded transition on the timeout event
		}
	}
	seen := map[fs]bool{0: true}
	for grew := true; grew; {
		grew = false
		for _, t := range m.trans {
			if seen[t.from] && !seen[t.to] {
				seen[t.to], grew = true, true
			}
		}
	}
	return len(seen) == len(m.states)
}

// candidates returns the transitions for e in the current state, in the
// order Fire tries them.
func (m *machineModel) candidates(e fe) []modelTrans {
	var guarded, plain []modelTrans
	for _, t := range m.trans {
		if t.from == m.state && t.event == e {
			if t.guard != "" {
				guarded = append(guarded, t)
			} else {
				plain = append(plain, t)
			}
		}
	}
	return append(guarded, plain...)
}

// step is Session.step, spelled out.
func (m *machineModel) step(e fe, now int64, queued bool, queue *[]fe) (Transition[fs, fe], error) {
	cands := m.candidates(e)
	for _, t := range cands {
		if !guardPasses(t.guard, m.seq) {
			continue
		}
		run := func(name string, ef effect) {
			if ef.kind != 0 {
				m.log = append(m.log, fmt.Sprintf("%s %s->%s seq %d", name, t.from, t.to, m.seq))
			}
			if ef.kind == 2 {
				*queue = append(*queue, ef.queue)
			}
		}
		if !t.inter {
			run(fmt.Sprint("exit", int(t.from)), m.states[t.from].exit)
		}
		run(fmt.Sprint("act", slices.Index(m.trans, t)), t.act)
		m.state, m.seq, m.deadline = t.to, m.seq+1, 0
		if d := m.states[t.to].timeout; d > 0 {
			m.deadline = now + d
		}
		if !t.inter {
			run(fmt.Sprint("enter", int(t.to)), m.states[t.to].entry)
		}
		return Transition[fs, fe]{From: t.from, To: t.to, Event: e}, nil
	}
	terminal := !slices.ContainsFunc(m.trans, func(t modelTrans) bool { return t.from == m.state })
	return Transition[fs, fe]{}, &TransitionError[fs, fe]{State: m.state, Event: e, Terminal: terminal, Guarded: len(cands) > 0, Queued: queued}
}

func (m *machineModel) fire(e fe, now int64) (Transition[fs, fe], error) {
	var queue []fe
	tr, err := m.step(e, now, false, &queue)
	if err != nil {
		return tr, err
	}
	var qerr error
	for i := 0; i < len(queue); i++ {
		if i == maxQueued {
			return tr, ErrRunaway
		}
		if _, err := m.step(queue[i], now, true, &queue); err != nil && qerr == nil {
			qerr = err
		}
	}
	return tr, qerr
}

func (m *machineModel) expire(now int64) (Transition[fs, fe], error) {
	if m.deadline == 0 || m.deadline > now {
		return Transition[fs, fe]{}, ErrNotDue
	}
	return m.fire(m.states[m.state].event, m.deadline)
}

func sameError(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	ta, oka := errors.AsType[*TransitionError[fs, fe]](a)
	tb, okb := errors.AsType[*TransitionError[fs, fe]](b)
	if oka || okb {
		return oka && okb && *ta == *tb
	}
	return errors.Is(a, b)
}

func FuzzMachine(f *testing.F) {
	f.Add([]byte{})
	// Two states that time out into each other, with guards and queueing
	// actions, then fires, expiries and snapshots.
	f.Add([]byte{3, 2, 0, 0, 0, 12, 1, 2, 6,
		0, 0, 1, 0, 1, 1, 0, 2, 1, 1, 0, 2, 1, 0, 1, 4, 2, 0, 0, 0, 8,
		1, 0, 1, 2, 1, 2, 0, 1, 0, 2, 1, 30, 3, 0, 0, 2, 10, 0, 1, 1, 2, 1, 200})
	f.Add([]byte{0, 2, 0, 2, 0, 3, 0, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 1, 1, 0, 2, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := byteReader(data)
		var log []string
		m, sp := genMachine(&r, &log)
		d, err := New(sp)
		if (err == nil) != m.valid() {
			t.Fatalf("New = %v; the model says valid = %v", err, m.valid())
		}
		if err != nil {
			if !errors.Is(err, ErrDefinition) {
				t.Fatalf("New error %v does not wrap ErrDefinition", err)
			}
			return
		}
		start := int64(1e18)
		now := start
		s := d.NewSession(time.Unix(0, now))
		m.deadline = 0
		if to := m.states[0].timeout; to > 0 {
			m.deadline = now + to
		}
		for op := 0; len(r) > 0; op++ {
			b := r.next()
			now += int64(r.next()) * int64(100*time.Millisecond)
			var got, want Transition[fs, fe]
			var gerr, werr error
			switch b % 4 {
			case 0, 1:
				e := fe(int(b/4) % (m.events + 1))
				got, gerr = s.Fire(e, time.Unix(0, now))
				want, werr = m.fire(e, now)
			case 2:
				got, gerr = s.Expire(time.Unix(0, now))
				want, werr = m.expire(now)
			case 3:
				snap, err := s.MarshalBinary()
				if err != nil {
					t.Fatal(err)
				}
				back, err := d.Restore(snap)
				if err != nil || back != s {
					t.Fatalf("op %d: Restore(MarshalBinary()) = %+v, %v; want %+v", op, back, err, s)
				}
			}
			if got != want || !sameError(gerr, werr) {
				t.Fatalf("op %d: got %v, %v; model %v, %v", op, got, gerr, want, werr)
			}
			if s.State() != m.state || s.Seq() != m.seq || s.deadline != m.deadline {
				t.Fatalf("op %d: session %s seq %d deadline %d; model %s seq %d deadline %d",
					op, s.State(), s.Seq(), s.deadline, m.state, m.seq, m.deadline)
			}
			if !slices.Equal(log, m.log) {
				t.Fatalf("op %d: actions ran\n%q\nmodel\n%q", op, log, m.log)
			}
			if s.Terminal() != d.Terminal(s.State()) {
				t.Fatalf("op %d: Terminal() disagrees with the definition", op)
			}
		}
	})
}

func FuzzRestore(f *testing.F) {
	d, err := NewDialogue(DialogueConfig{})
	if err != nil {
		f.Fatal(err)
	}
	s := d.NewSession(time.Unix(1e9, 0))
	for _, e := range []DialogueEvent{Text, Text, Timeout, Close} {
		b, _ := s.MarshalBinary()
		f.Add(b)
		s.Fire(e, time.Unix(1e9, 0))
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := d.Restore(data)
		if err != nil {
			if !errors.Is(err, ErrSnapshot) && !errors.Is(err, ErrIncompatible) {
				t.Fatalf("Restore error %v wraps neither ErrSnapshot nor ErrIncompatible", err)
			}
			if s != (Session[DialogueState, DialogueEvent]{}) {
				t.Fatalf("Restore returned %+v with its error", s)
			}
			return
		}
		// Accepted bytes are canonical: they encode back to themselves.
		back, err := s.MarshalBinary()
		if err != nil || !bytes.Equal(back, data) {
			t.Fatalf("Restore(%x) = %+v, which encodes to %x", data, s, back)
		}
		if _, _, ok := d.Timeout(s.State()); ok == s.Deadline().IsZero() {
			t.Fatalf("Restore(%x): state %s with deadline %v", data, s.State(), s.Deadline())
		}
	})
}

// FuzzWheel runs random programs on the wheel core against its model.
func FuzzWheel(f *testing.F) {
	f.Add([]byte{0, 10, 10, 1, 200, 3, 2, 0, 40, 6, 100, 100})
	f.Add([]byte{0, 70, 151, 7, 130, 249, 6, 207, 55, 3, 84, 226, 0, 20, 0, 2, 215, 217, 1, 66, 250})
	f.Add([]byte{1, 255, 255, 3, 0, 1, 7, 255, 255, 5, 0, 0, 0, 1, 1, 4, 0, 0, 6, 3, 3})
	f.Fuzz(func(t *testing.T, ops []byte) {
		newSimWheel(t).run(ops)
	})
}
