package fsm_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/parley-go/parley/fsm"
)

// st and ev are small test enums; values above 9 print as numbers.
type st uint8

func (s st) String() string {
	if s < 10 {
		return "S" + string(rune('0'+s))
	}
	return fmt.Sprintf("st(%d)", uint8(s))
}

type ev int

func (e ev) String() string { return fmt.Sprintf("e%d", int(e)) }

type (
	spec   = fsm.Spec[st, ev]
	state  = fsm.StateSpec[st, ev]
	trans  = fsm.TransitionSpec[st, ev]
	stepT  = fsm.Step[st, ev]
	result = fsm.Transition[st, ev]
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func yes(*stepT) bool { return true }

func mustNew(t *testing.T, sp spec) *fsm.Definition[st, ev] {
	t.Helper()
	d, err := fsm.New(sp)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return d
}

func mustDialogue(t testing.TB, cfg fsm.DialogueConfig) *fsm.Definition[fsm.DialogueState, fsm.DialogueEvent] {
	t.Helper()
	d, err := fsm.NewDialogue(cfg)
	if err != nil {
		t.Fatalf("NewDialogue: %v", err)
	}
	return d
}

func TestNewReportsProblems(t *testing.T) {
	two := []state{{State: 0}, {State: 1}}
	tests := []struct {
		name string
		spec spec
		want []string // substrings of the error, one per problem
	}{
		{"empty name", spec{States: two[:1]}, []string{`"": empty Name`}},
		{"undeclared initial", spec{Name: "m", Initial: 3, States: two},
			[]string{"initial state S3 is not declared"}},
		{"duplicate state", spec{Name: "m", States: []state{{State: 0}, {State: 0}}},
			[]string{"state S0 declared twice"}},
		{"event out of range", spec{Name: "m", States: two, Transitions: []trans{{From: 0, Event: 256, To: 1}, {From: 0, Event: -1, To: 1}}},
			[]string{"S0 --e256--> S1: event value 256 outside 0..255", "value 18446744073709551615 outside", "state S1 is unreachable"}},
		{"unknown state", spec{Name: "m", States: two, Transitions: []trans{{From: 0, Event: 0, To: 1}, {From: 1, Event: 0, To: 7}}},
			[]string{"transition S1 --e0--> S7: unknown state S7"}},
		{"duplicate transition", spec{Name: "m", States: two, Transitions: []trans{{From: 0, Event: 2, To: 1}, {From: 0, Event: 2, To: 1}}},
			[]string{"duplicate transition S0 --e2--> S1"}},
		{"ambiguous transition", spec{Name: "m", States: two, Transitions: []trans{{From: 0, Event: 2, To: 1}, {From: 0, Event: 2, To: 0}}},
			[]string{"ambiguous transitions S0 --e2--> S1 and S0 --e2--> S0"}},
		{"same guard twice", spec{Name: "m", States: two, Transitions: []trans{
			{From: 0, Event: 2, To: 1, Guard: yes, GuardName: "g"}, {From: 0, Event: 2, To: 0, Guard: yes, GuardName: "g"}, {From: 0, Event: 1, To: 1}}},
			[]string{"ambiguous transitions S0 --e2--> S1 [g] and S0 --e2--> S0 [g]"}},
		{"guard without name", spec{Name: "m", States: two, Transitions: []trans{{From: 0, Event: 0, To: 1, Guard: yes}}},
			[]string{"S0 --e0--> S1: Guard and GuardName must be set together", "S1 is unreachable"}},
		{"internal leaving", spec{Name: "m", States: two, Transitions: []trans{{From: 0, Event: 0, To: 1, Internal: true}}},
			[]string{"S0 --e0--> S1 (internal): internal, but leaves S0", "S1 is unreachable"}},
		{"timeout on terminal", spec{Name: "m", States: []state{{State: 0}, {State: 1, Timeout: time.Second, TimeoutEvent: 3}}, Transitions: []trans{{From: 0, Event: 0, To: 1}}},
			[]string{"timeout on terminal state S1"}},
		{"timeout without transition", spec{Name: "m", States: []state{{State: 0, Timeout: time.Second, TimeoutEvent: 3}, {State: 1}}, Transitions: []trans{{From: 0, Event: 0, To: 1}}},
			[]string{"state S0 times out with event e3, but has no transition on e3"}},
		{"timeout only guarded", spec{Name: "m", States: []state{{State: 0, Timeout: time.Second, TimeoutEvent: 0}, {State: 1}}, Transitions: []trans{{From: 0, Event: 0, To: 1, Guard: yes, GuardName: "g"}}},
			[]string{"state S0 times out with event e0, but every transition on e0 is guarded"}},
		{"negative timeout", spec{Name: "m", States: []state{{State: 0, Timeout: -time.Second}}},
			[]string{"state S0 has timeout -1s"}},
		{"unreachable", spec{Name: "m", States: []state{{State: 0}, {State: 1}, {State: 2}}, Transitions: []trans{{From: 0, Event: 0, To: 1}, {From: 2, Event: 0, To: 1}}},
			[]string{"state S2 is unreachable from S0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := fsm.New(tt.spec)
			if err == nil {
				t.Fatalf("New = %v, nil; want an error", d)
			}
			if !errors.Is(err, fsm.ErrDefinition) {
				t.Errorf("New error %q does not wrap ErrDefinition", err)
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("New error %q lacks %q", msg, w)
				}
			}
			if got := strings.Count(msg, "fsm: invalid definition"); got != len(tt.want) {
				t.Errorf("New reported %d problems, want %d:\n%s", got, len(tt.want), msg)
			}
		})
	}
}

func TestNewCopiesSpec(t *testing.T) {
	sp := spec{Name: "m", States: []state{{State: 0}, {State: 1}}, Transitions: []trans{{From: 0, Event: 0, To: 1}}}
	d := mustNew(t, sp)
	sp.Transitions[0].To = 0
	sp.States[1].State = 5
	s := d.NewSession(t0)
	if tr, err := s.Fire(0, t0); err != nil || tr.To != 1 {
		t.Errorf("Fire after changing the spec = %v, %v; want to S1", tr, err)
	}
}

func TestDialogue(t *testing.T) {
	d := mustDialogue(t, fsm.DialogueConfig{ChattingIdle: 10 * time.Second, PauseIdle: time.Minute})
	s := d.NewSession(t0)
	type step struct {
		event    fsm.DialogueEvent
		at       time.Duration
		want     string // "FROM->TO" or the error
		deadline time.Duration
	}
	steps := []step{
		{fsm.Timeout, 1 * time.Second, "fsm: no transition from HELLO on timeout", 0},
		{fsm.Text, 2 * time.Second, "HELLO->CHATTING", 12 * time.Second},
		{fsm.Text, 5 * time.Second, "CHATTING->CHATTING", 15 * time.Second},
		{fsm.Timeout, 15 * time.Second, "CHATTING->PAUSE", 75 * time.Second},
		{fsm.Text, 20 * time.Second, "PAUSE->CHATTING", 30 * time.Second},
		{fsm.Timeout, 30 * time.Second, "CHATTING->PAUSE", 90 * time.Second},
		{fsm.Timeout, 90 * time.Second, "PAUSE->END", 0},
		{fsm.Text, 91 * time.Second, "fsm: END is terminal: cannot fire text", 0},
		{fsm.Close, 92 * time.Second, "fsm: END is terminal: cannot fire close", 0},
	}
	var seq uint32
	for _, st := range steps {
		tr, err := s.Fire(st.event, t0.Add(st.at))
		got := fmt.Sprintf("%s->%s", tr.From, tr.To)
		if err != nil {
			got = err.Error()
		} else {
			seq++
		}
		if got != st.want {
			t.Errorf("at %v Fire(%s) = %s, want %s", st.at, st.event, got, st.want)
		}
		var want time.Time
		if st.deadline != 0 {
			want = t0.Add(st.deadline)
		}
		if !s.Deadline().Equal(want) {
			t.Errorf("at %v after %s Deadline() = %v, want %v", st.at, st.event, s.Deadline(), want)
		}
		if s.Seq() != seq {
			t.Errorf("at %v after %s Seq() = %d, want %d", st.at, st.event, s.Seq(), seq)
		}
	}
	if !s.Terminal() || s.State() != fsm.End {
		t.Errorf("final state %s, Terminal() = %v; want END, true", s.State(), s.Terminal())
	}
}

func TestDialogueDefaults(t *testing.T) {
	d := mustDialogue(t, fsm.DialogueConfig{})
	for _, tt := range []struct {
		s    fsm.DialogueState
		want time.Duration
		ok   bool
	}{{fsm.Hello, 0, false}, {fsm.Chatting, 30 * time.Second, true}, {fsm.Pause, 5 * time.Minute, true}, {fsm.End, 0, false}} {
		if got, e, ok := d.Timeout(tt.s); got != tt.want || ok != tt.ok || ok && e != fsm.Timeout {
			t.Errorf("Timeout(%s) = %v, %s, %v; want %v, timeout, %v", tt.s, got, e, ok, tt.want, tt.ok)
		}
	}
	if _, err := fsm.NewDialogue(fsm.DialogueConfig{PauseIdle: -time.Second}); !errors.Is(err, fsm.ErrDefinition) {
		t.Errorf("NewDialogue(negative PauseIdle) error = %v, want ErrDefinition", err)
	}
	other := mustDialogue(t, fsm.DialogueConfig{ChattingIdle: time.Hour})
	if d.Fingerprint() != other.Fingerprint() {
		t.Errorf("fingerprints differ across idle durations: %x, %x", d.Fingerprint(), other.Fingerprint())
	}
	names := []string{fsm.Hello.String(), fsm.Chatting.String(), fsm.Pause.String(), fsm.End.String(), fsm.DialogueState(9).String(),
		fsm.Text.String(), fsm.Timeout.String(), fsm.Close.String(), fsm.DialogueEvent(7).String()}
	if got, want := strings.Join(names, " "), "HELLO CHATTING PAUSE END DialogueState(9) text timeout close DialogueEvent(7)"; got != want {
		t.Errorf("names = %q, want %q", got, want)
	}
}

func TestFireRejects(t *testing.T) {
	d := mustNew(t, spec{Name: "m", States: []state{{State: 0}, {State: 1}}, Transitions: []trans{
		{From: 0, Event: 0, To: 1, Guard: func(*stepT) bool { return false }, GuardName: "never"},
		{From: 0, Event: 1, To: 1},
	}})
	tests := []struct {
		name  string
		from  st
		event ev
		want  fsm.TransitionError[st, ev]
		is    error
	}{
		{"no transition", 0, 2, fsm.TransitionError[st, ev]{State: 0, Event: 2}, fsm.ErrNoTransition},
		{"unknown event", 0, 99, fsm.TransitionError[st, ev]{State: 0, Event: 99}, fsm.ErrNoTransition},
		{"negative event", 0, -5, fsm.TransitionError[st, ev]{State: 0, Event: -5}, fsm.ErrNoTransition},
		{"guard rejects", 0, 0, fsm.TransitionError[st, ev]{State: 0, Event: 0, Guarded: true}, fsm.ErrNoTransition},
		{"terminal", 1, 1, fsm.TransitionError[st, ev]{State: 1, Event: 1, Terminal: true}, fsm.ErrTerminal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := d.NewSession(t0)
			if tt.from == 1 {
				if _, err := s.Fire(1, t0); err != nil {
					t.Fatal(err)
				}
			}
			before := s
			tr, err := s.Fire(tt.event, t0.Add(time.Second))
			te, ok := errors.AsType[*fsm.TransitionError[st, ev]](err)
			if !ok || *te != tt.want {
				t.Fatalf("Fire(%s) = %v, %v; want %+v", tt.event, tr, err, tt.want)
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("Fire(%s) error %v is not %v", tt.event, err, tt.is)
			}
			if tr != (result{}) || s != before {
				t.Errorf("rejected Fire changed things: %v, session %+v -> %+v", tr, before, s)
			}
		})
	}
}

// recorder builds a definition whose actions log to it.
type recorder struct{ log []string }

func (r *recorder) act(name string) fsm.Action[st, ev] {
	return func(x *stepT) {
		r.log = append(r.log, fmt.Sprintf("%s(%s %s->%s in %s)", name, x.Event, x.From, x.To, x.Session().State()))
	}
}

func TestActionsOrder(t *testing.T) {
	var r recorder
	d := mustNew(t, spec{Name: "m", States: []state{
		{State: 0, OnEntry: r.act("enter0"), OnExit: r.act("exit0")},
		{State: 1, OnEntry: r.act("enter1"), OnExit: r.act("exit1")},
	}, Transitions: []trans{
		{From: 0, Event: 0, To: 1, Action: r.act("go")},
		{From: 1, Event: 0, To: 1, Internal: true, Action: r.act("stay")},
		{From: 1, Event: 1, To: 1, Action: r.act("reenter")},
		{From: 1, Event: 2, To: 1, Internal: true},
	}})
	s := d.NewSession(t0)
	for _, e := range []ev{0, 0, 1, 2} {
		if _, err := s.Fire(e, t0); err != nil {
			t.Fatalf("Fire(%s): %v", e, err)
		}
	}
	want := "exit0(e0 S0->S1 in S0) go(e0 S0->S1 in S0) enter1(e0 S0->S1 in S1) " +
		"stay(e0 S1->S1 in S1) " +
		"exit1(e1 S1->S1 in S1) reenter(e1 S1->S1 in S1) enter1(e1 S1->S1 in S1)"
	if got := strings.Join(r.log, " "); got != want {
		t.Errorf("actions ran\n%s\nwant\n%s", got, want)
	}
	if s.Seq() != 4 {
		t.Errorf("Seq() = %d, want 4", s.Seq())
	}
}

func TestGuardsInOrder(t *testing.T) {
	allow := map[string]bool{}
	guard := func(name string) fsm.Guard[st, ev] {
		return func(x *stepT) bool {
			x.Fire(9) // dropped when the guard rejects
			return allow[name]
		}
	}
	d := mustNew(t, spec{Name: "m", States: []state{{State: 0}, {State: 1}, {State: 2}, {State: 3}}, Transitions: []trans{
		{From: 0, Event: 0, To: 3}, // the fallback, declared first, tried last
		{From: 0, Event: 0, To: 1, Guard: guard("a"), GuardName: "a"},
		{From: 0, Event: 0, To: 2, Guard: guard("b"), GuardName: "b"},
	}})
	tests := []struct {
		allow []string
		want  st
		err   error
	}{
		{nil, 3, nil},
		// The passing guard's queued e9 is kept, and rejected after the
		// transition; the rejecting guards' are dropped.
		{[]string{"b"}, 2, fsm.ErrTerminal},
		{[]string{"a", "b"}, 1, fsm.ErrTerminal},
	}
	for _, tt := range tests {
		clear(allow)
		for _, a := range tt.allow {
			allow[a] = true
		}
		s := d.NewSession(t0)
		tr, err := s.Fire(0, t0)
		if tr.To != tt.want || s.State() != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("allowing %v: Fire = %v, %v (state %s); want to %s, %v", tt.allow, tr, err, s.State(), tt.want, tt.err)
		}
	}
}

func TestRunToCompletion(t *testing.T) {
	var r recorder
	var s fsm.Session[st, ev]
	d := mustNew(t, spec{Name: "m", States: []state{
		{State: 0}, {State: 1, OnEntry: func(x *stepT) { x.Fire(1); x.Fire(2) }}, {State: 2}, {State: 3},
	}, Transitions: []trans{
		{From: 0, Event: 0, To: 1, Action: r.act("a")},
		{From: 1, Event: 1, To: 2, Action: func(x *stepT) {
			r.act("b")(x)
			// The session is busy: firing on it directly is refused.
			if _, err := s.Fire(3, t0); !errors.Is(err, fsm.ErrReentrant) {
				t.Errorf("Fire from an action = %v, want ErrReentrant", err)
			}
			if _, err := s.Expire(t0.Add(time.Hour)); !errors.Is(err, fsm.ErrReentrant) {
				t.Errorf("Expire from an action = %v, want ErrReentrant", err)
			}
		}},
		{From: 2, Event: 2, To: 3, Action: r.act("c")},
		{From: 3, Event: 3, To: 0},
	}})
	s = d.NewSession(t0)
	tr, err := s.Fire(0, t0)
	if err != nil || tr != (result{From: 0, To: 1, Event: 0}) {
		t.Fatalf("Fire = %v, %v; want S0->S1 on e0", tr, err)
	}
	want := "a(e0 S0->S1 in S0) b(e1 S1->S2 in S1) c(e2 S2->S3 in S2)"
	if got := strings.Join(r.log, " "); got != want || s.State() != 3 || s.Seq() != 3 {
		t.Errorf("ran %q, state %s, seq %d; want %q, S3, 3", got, s.State(), s.Seq(), want)
	}
	// The session is usable again afterwards.
	if _, err := s.Fire(3, t0); err != nil || s.State() != 0 {
		t.Errorf("Fire after the run = %v, state %s; want nil, S0", err, s.State())
	}
}

func TestQueuedRejection(t *testing.T) {
	d := mustNew(t, spec{Name: "m", States: []state{{State: 0}, {State: 1}, {State: 2}}, Transitions: []trans{
		{From: 0, Event: 0, To: 1, Action: func(x *stepT) { x.Fire(5); x.Fire(1); x.Fire(6) }},
		{From: 1, Event: 1, To: 2},
	}})
	s := d.NewSession(t0)
	tr, err := s.Fire(0, t0)
	te, ok := errors.AsType[*fsm.TransitionError[st, ev]](err)
	if tr.To != 1 || !ok || *te != (fsm.TransitionError[st, ev]{State: 1, Event: 5, Queued: true}) {
		t.Fatalf("Fire = %v, %v; want the S0->S1 transition and e5 rejected in S1", tr, err)
	}
	if !strings.HasSuffix(err.Error(), "(queued by an action)") {
		t.Errorf("error %q does not say the event was queued", err)
	}
	if s.State() != 2 || s.Seq() != 2 {
		t.Errorf("state %s, seq %d; want S2, 2 (e1 still ran, e6 was rejected too)", s.State(), s.Seq())
	}
}

func TestRunaway(t *testing.T) {
	d := mustNew(t, spec{Name: "m", States: []state{{State: 0}, {State: 1}}, Transitions: []trans{
		{From: 0, Event: 0, To: 1, Action: func(x *stepT) { x.Fire(1) }},
		{From: 1, Event: 1, To: 0, Action: func(x *stepT) { x.Fire(0) }},
	}})
	s := d.NewSession(t0)
	if _, err := s.Fire(0, t0); !errors.Is(err, fsm.ErrRunaway) {
		t.Fatalf("Fire of a cycle = %v, want ErrRunaway", err)
	}
	if s.Seq() != 65 {
		t.Errorf("Seq() = %d, want 65 (the event and 64 queued)", s.Seq())
	}
	if _, err := s.Fire(ev(s.State()), t0); errors.Is(err, fsm.ErrReentrant) {
		t.Errorf("session still busy after a runaway: %v", err)
	}
}

// wide is a state type whose values can exceed MaxValue.
type wide int

func (w wide) String() string { return fmt.Sprintf("W%d", int(w)) }

func TestNewRejectsOutOfRangeStates(t *testing.T) {
	_, err := fsm.New(fsm.Spec[wide, ev]{Name: "m", States: []fsm.StateSpec[wide, ev]{{State: 0}, {State: 256}, {State: -1}},
		Transitions: []fsm.TransitionSpec[wide, ev]{{From: 0, Event: 0, To: 256}}})
	for _, want := range []string{
		"state W256 has value 256, outside 0..255",
		"state W-1 has value 18446744073709551615, outside 0..255",
		"transition W0 --e0--> W256: unknown state W256",
	} {
		if !errors.Is(err, fsm.ErrDefinition) || !strings.Contains(err.Error(), want) {
			t.Errorf("New error %v lacks %q", err, want)
		}
	}
}

func TestArg(t *testing.T) {
	var got []any
	d := mustNew(t, spec{Name: "m", States: []state{{State: 0, Timeout: time.Second, TimeoutEvent: 1}, {State: 1}}, Transitions: []trans{
		{From: 0, Event: 0, To: 0, Action: func(x *stepT) { got = append(got, x.Arg, x.Now()) }},
		{From: 0, Event: 1, To: 1, Action: func(x *stepT) { got = append(got, x.Arg, x.Now()) }},
	}})
	s := d.NewSession(t0)
	if _, err := s.FireWith(0, t0.Add(time.Second), "conn-7"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ExpireWith(t0.Add(time.Hour), 42); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint([]any{"conn-7", t0.Add(time.Second), 42, t0.Add(2 * time.Second)})
	if fmt.Sprint(got) != want {
		t.Errorf("actions saw %v, want %v", got, want)
	}
}

func TestExpire(t *testing.T) {
	d := mustDialogue(t, fsm.DialogueConfig{ChattingIdle: 30 * time.Second, PauseIdle: time.Minute})
	s := d.NewSession(t0)
	if _, err := s.Expire(t0.Add(time.Hour)); !errors.Is(err, fsm.ErrNotDue) {
		t.Errorf("Expire in HELLO = %v, want ErrNotDue", err)
	}
	s.Fire(fsm.Text, t0)
	deadline := t0.Add(30 * time.Second)
	// The wheel took the expiry, then a message moved the deadline on.
	s.Fire(fsm.Text, t0.Add(30*time.Second+time.Millisecond))
	before := s
	if _, err := s.Expire(deadline); !errors.Is(err, fsm.ErrNotDue) || s != before {
		t.Errorf("stale Expire = %v, session changed %v; want ErrNotDue, unchanged", err, s != before)
	}
	deadline = s.Deadline()
	if _, err := s.Expire(deadline.Add(-time.Nanosecond)); !errors.Is(err, fsm.ErrNotDue) {
		t.Errorf("early Expire = %v, want ErrNotDue", err)
	}
	// Delivered late: the transition happens at the deadline, not at now.
	tr, err := s.Expire(deadline.Add(10 * time.Second))
	if err != nil || tr != (fsm.Transition[fsm.DialogueState, fsm.DialogueEvent]{From: fsm.Chatting, To: fsm.Pause, Event: fsm.Timeout}) {
		t.Fatalf("Expire = %v, %v; want CHATTING->PAUSE", tr, err)
	}
	if want := deadline.Add(time.Minute); !s.Deadline().Equal(want) {
		t.Errorf("PAUSE deadline = %v, want %v", s.Deadline(), want)
	}
	// A duplicate of the same expiry is stale now.
	if _, err := s.Expire(deadline.Add(10 * time.Second)); !errors.Is(err, fsm.ErrNotDue) {
		t.Errorf("duplicate Expire = %v, want ErrNotDue", err)
	}
}

func TestZeroSession(t *testing.T) {
	var s fsm.Session[st, ev]
	if _, err := s.Fire(0, t0); !errors.Is(err, fsm.ErrZeroSession) {
		t.Errorf("Fire = %v, want ErrZeroSession", err)
	}
	if _, err := s.FireWith(0, t0, nil); !errors.Is(err, fsm.ErrZeroSession) {
		t.Errorf("FireWith = %v, want ErrZeroSession", err)
	}
	if _, err := s.Expire(t0); !errors.Is(err, fsm.ErrZeroSession) {
		t.Errorf("Expire = %v, want ErrZeroSession", err)
	}
	if _, err := s.MarshalBinary(); !errors.Is(err, fsm.ErrZeroSession) {
		t.Errorf("MarshalBinary = %v, want ErrZeroSession", err)
	}
	if s.State() != 0 || s.Terminal() || !s.Deadline().IsZero() || s.Definition() != nil {
		t.Errorf("zero session: state %s, terminal %v, deadline %v", s.State(), s.Terminal(), s.Deadline())
	}
}

func TestSessionSize(t *testing.T) {
	if got := unsafe.Sizeof(fsm.Session[fsm.DialogueState, fsm.DialogueEvent]{}); got != 24 {
		t.Errorf("Sizeof(Session) = %d, want 24", got)
	}
	// The state is stored in one byte whatever its type.
	if got := unsafe.Sizeof(fsm.Session[st, ev]{}); got != 24 {
		t.Errorf("Sizeof(Session[st, ev]) = %d, want 24", got)
	}
}

func TestFireDoesNotAllocate(t *testing.T) {
	d := mustDialogue(t, fsm.DialogueConfig{})
	s := d.NewSession(t0)
	s.Fire(fsm.Text, t0)
	events := [2]fsm.DialogueEvent{fsm.Timeout, fsm.Text}
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := s.Fire(events[i&1], t0); err != nil {
			t.Fatal(err)
		}
		i++
	}); n != 0 {
		t.Errorf("Fire allocates %v times per call, want 0", n)
	}

	// With actions, the step is pooled: steady state does not allocate
	// either, unless the race detector makes sync.Pool drop items.
	ad := mustNew(t, spec{Name: "m", States: []state{{State: 0}, {State: 1}}, Transitions: []trans{
		{From: 0, Event: 0, To: 1, Action: func(x *stepT) { x.Fire(1) }},
		{From: 1, Event: 1, To: 0},
	}})
	as := ad.NewSession(t0)
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := as.Fire(0, t0); err != nil {
			t.Fatal(err)
		}
	}); n > 0.1 && !raceEnabled {
		t.Errorf("Fire with actions allocates %v times per call, want 0", n)
	}
}
