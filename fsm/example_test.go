package fsm_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/parley-go/parley/fsm"
)

// The reference dialogue, driven with explicit times.
func Example() {
	def, err := fsm.NewDialogue(fsm.DialogueConfig{ChattingIdle: 30 * time.Second, PauseIdle: 2 * time.Minute})
	if err != nil {
		panic(err)
	}
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	sess := def.NewSession(t0)
	fmt.Println(sess.State())

	tr, _ := sess.Fire(fsm.Text, t0.Add(time.Second))
	fmt.Printf("%s -> %s, idle until %s\n", tr.From, tr.To, sess.Deadline().UTC().Format(time.TimeOnly))

	tr, _ = sess.Fire(fsm.Text, t0.Add(10*time.Second)) // activity re-arms the timeout
	fmt.Printf("%s -> %s, idle until %s\n", tr.From, tr.To, sess.Deadline().UTC().Format(time.TimeOnly))

	tr, _ = sess.Expire(sess.Deadline())
	fmt.Printf("%s -> %s, idle until %s\n", tr.From, tr.To, sess.Deadline().UTC().Format(time.TimeOnly))

	tr, _ = sess.Fire(fsm.Close, t0.Add(time.Minute))
	fmt.Printf("%s -> %s, terminal %v\n", tr.From, tr.To, sess.Terminal())

	_, err = sess.Fire(fsm.Text, t0.Add(2*time.Minute))
	fmt.Println(err, errors.Is(err, fsm.ErrTerminal))
	// Output:
	// HELLO
	// HELLO -> CHATTING, idle until 12:00:31
	// CHATTING -> CHATTING, idle until 12:00:40
	// CHATTING -> PAUSE, idle until 12:02:40
	// PAUSE -> END, terminal true
	// fsm: END is terminal: cannot fire text true
}

// The owner of a session receives an expiry the wheel took for delivery
// just before a message re-armed the deadline: Expire recognises it as
// stale. The next expiry is current and moves the session to PAUSE.
func ExampleSession_Expire() {
	def, _ := fsm.NewDialogue(fsm.DialogueConfig{ChattingIdle: 30 * time.Second})
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	sess := def.NewSession(t0)
	sess.Fire(fsm.Text, t0) // CHATTING, due at 12:00:30

	// What the owner's queue holds: a message that arrived at 12:00:30.2,
	// then the expiry for 12:00:30 that the wheel had already taken, and
	// later the expiry for the deadline the message set.
	inbox := []any{
		fsm.Text,
		fsm.Expiry[string]{Key: "conn-1", Time: t0.Add(30 * time.Second)},
		fsm.Expiry[string]{Key: "conn-1", Time: t0.Add(60*time.Second + 200*time.Millisecond)},
	}
	now := t0.Add(30*time.Second + 200*time.Millisecond)
	for _, m := range inbox {
		var tr fsm.Transition[fsm.DialogueState, fsm.DialogueEvent]
		var err error
		switch m := m.(type) {
		case fsm.DialogueEvent:
			tr, err = sess.Fire(m, now)
		case fsm.Expiry[string]:
			tr, err = sess.Expire(m.Time)
		}
		// Here the owner would call wheel.Arm(entry, sess.Deadline()).
		if errors.Is(err, fsm.ErrNotDue) {
			fmt.Println("stale expiry ignored, due", sess.Deadline().UTC().Format(time.TimeOnly+".0"))
			continue
		}
		fmt.Printf("%s -> %s\n", tr.From, tr.To)
	}
	// Output:
	// CHATTING -> CHATTING
	// stale expiry ignored, due 12:01:00.2
	// CHATTING -> PAUSE
}

// A wheel delivers due deadlines to a callback on its own goroutine, which
// hands them to the sessions' owners; here, through one channel.
func ExampleWheel() {
	expiries := make(chan fsm.Expiry[string], 3)
	wheel := fsm.NewWheel(fsm.WheelConfig{}, func(x fsm.Expiry[string]) { expiries <- x })
	defer wheel.Close()

	// Deadlines already past are delivered at once, in arming order.
	past := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	a := wheel.Add("conn-a", time.Time{}) // no deadline yet
	wheel.Add("conn-b", past)
	wheel.Arm(a, past.Add(time.Second))
	for range 2 {
		x := <-expiries
		fmt.Println(x.Key, "due")
	}
	fmt.Println(wheel.Len(), "armed")
	// Output:
	// conn-b due
	// conn-a due
	// 0 armed
}

type light uint8

const (
	green light = iota
	amber
	red
)

func (l light) String() string { return [...]string{"GREEN", "AMBER", "RED"}[l] }

type signal uint8

const (
	tick signal = iota
	emergency
)

func (s signal) String() string { return [...]string{"tick", "emergency"}[s] }

// A host's own machine: a guard, actions, a timeout, and an action that
// fires a follow-up event (run to completion).
func ExampleNew() {
	type step = fsm.Step[light, signal]
	logAction := func(x *step) { fmt.Printf("  %s: %s -> %s\n", x.Event, x.From, x.To) }
	def, err := fsm.New(fsm.Spec[light, signal]{
		Name:    "traffic light",
		Initial: red,
		States: []fsm.StateSpec[light, signal]{
			{State: green, Timeout: time.Minute, TimeoutEvent: tick},
			{State: amber, Timeout: 5 * time.Second, TimeoutEvent: tick},
			{State: red, Timeout: time.Minute, TimeoutEvent: tick},
		},
		Transitions: []fsm.TransitionSpec[light, signal]{
			{From: green, Event: tick, To: amber, Action: logAction},
			{From: amber, Event: tick, To: red, Action: logAction},
			{From: red, Event: tick, To: green, Action: logAction,
				Guard: func(x *step) bool { return x.Arg != "pedestrians" }, GuardName: "clear"},
			{From: red, Event: tick, To: red, Internal: true, Action: logAction},
			{From: green, Event: emergency, To: amber, Action: func(x *step) {
				logAction(x)
				x.Fire(tick) // straight on to red, after this transition
			}},
		},
	})
	if err != nil {
		panic(err)
	}
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	sess := def.NewSession(t0)
	sess.FireWith(tick, t0, "pedestrians")
	sess.Fire(tick, t0)
	sess.Fire(emergency, t0.Add(time.Second))
	fmt.Println(sess.State(), "until", sess.Deadline().Sub(t0))
	// Output:
	//   tick: RED -> RED
	//   tick: RED -> GREEN
	//   emergency: GREEN -> AMBER
	//   tick: AMBER -> RED
	// RED until 1m1s
}

// Snapshots are small and carry the definition's fingerprint.
func ExampleDefinition_Restore() {
	def, _ := fsm.NewDialogue(fsm.DialogueConfig{})
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	sess := def.NewSession(t0)
	sess.Fire(fsm.Text, t0)
	snap, _ := sess.MarshalBinary()
	fmt.Println(len(snap), "bytes")

	// Retuned durations keep snapshots readable...
	retuned, _ := fsm.NewDialogue(fsm.DialogueConfig{ChattingIdle: time.Minute})
	back, err := retuned.Restore(snap)
	fmt.Println(back.State(), back.Deadline().Equal(sess.Deadline()), err)

	// ...another machine's are rejected.
	other, _ := fsm.New(fsm.Spec[light, signal]{Name: "traffic light", States: []fsm.StateSpec[light, signal]{{State: 0}}})
	_, err = other.Restore(snap)
	fmt.Println(errors.Is(err, fsm.ErrIncompatible))
	// Output:
	// 20 bytes
	// CHATTING true <nil>
	// true
}

func ExampleDefinition_Mermaid() {
	def, _ := fsm.NewDialogue(fsm.DialogueConfig{})
	fmt.Print(def.Mermaid())
	// Output:
	// ---
	// title: "dialogue"
	// ---
	// stateDiagram-v2
	//     [*] --> HELLO
	//     HELLO --> CHATTING : text
	//     HELLO --> END : close
	//     CHATTING --> CHATTING : text (internal)
	//     CHATTING --> PAUSE : timeout after 30s
	//     CHATTING --> END : close
	//     PAUSE --> CHATTING : text
	//     PAUSE --> END : timeout after 5m
	//     PAUSE --> END : close
	//     END --> [*]
}
