package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	lfsm "github.com/looplab/fsm"
	"github.com/parley-go/parley/fsm"
	"github.com/qmuntal/stateless"
)

// BenchmarkFire fires the reference dialogue's events on one session,
// alternating timeout and text from CHATTING so that every event is a real
// transition (CHATTING -> PAUSE -> CHATTING ...), with no actions.
func BenchmarkFire(b *testing.B) {
	events := [2]fsm.DialogueEvent{fsm.Timeout, fsm.Text}

	b.Run("impl=parley", func(b *testing.B) {
		def := dialogue(b)
		now := time.Now()
		sess := def.NewSession(now)
		if _, err := sess.Fire(fsm.Text, now); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := sess.Fire(events[i&1], now); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})

	b.Run("impl=looplab", func(b *testing.B) {
		f := looplabDialogue(fsm.Chatting.String())
		ctx := context.Background()
		names := [2]string{fsm.Timeout.String(), fsm.Text.String()}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := f.Event(ctx, names[i&1]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})

	b.Run("impl=stateless", func(b *testing.B) {
		sm := statelessDialogue(fsm.Chatting)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := sm.Fire(events[i&1]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})

	b.Run("impl=switch", func(b *testing.B) {
		s := &switchDialogue{state: fsm.Chatting}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if !s.fire(events[i&1]) {
				b.Fatal("switch rejected an event")
			}
			i++
		}
	})
}

// fsmConn is what a host keeps per connection for the state machine: the
// session and its timeout's handle in the wheel.
type fsmConn struct {
	sess  fsm.Session[fsm.DialogueState, fsm.DialogueEvent]
	entry fsm.Entry
}

// BenchmarkSessions creates n sessions in CHATTING, each with its idle
// deadline armed in one wheel, and reports the heap they hold per session
// (sessions, handles and the wheel's entries), the time per session and
// the goroutines they added.
func BenchmarkSessions(b *testing.B) {
	b.Run("n=1000000", func(b *testing.B) {
		const n = 1_000_000
		def := dialogue(b)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		goroutines := runtime.NumGoroutine()
		var conns []fsmConn
		var wheel *fsm.Wheel[uint64]
		b.ReportAllocs()
		for b.Loop() {
			if wheel != nil {
				wheel.Close()
			}
			wheel = fsm.NewWheel(fsm.WheelConfig{}, func(fsm.Expiry[uint64]) {})
			conns = make([]fsmConn, n)
			now := time.Now()
			for i := range conns {
				c := &conns[i]
				c.sess = def.NewSession(now)
				if _, err := c.sess.Fire(fsm.Text, now); err != nil {
					b.Fatal(err)
				}
				c.entry = wheel.Add(uint64(i), c.sess.Deadline())
			}
		}
		goroutines = runtime.NumGoroutine() - goroutines
		runtime.GC()
		runtime.ReadMemStats(&after)
		if got := wheel.Len(); got != n {
			b.Fatalf("wheel holds %d deadlines, want %d", got, n)
		}
		runtime.KeepAlive(conns)
		wheel.Close()
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/n, "bytes/session")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/session")
		b.ReportMetric(float64(goroutines), "goroutines")
	})
}

// BenchmarkTimeoutRearm re-arms the deadline of a random one of armed
// sessions to a later time, as activity does: parley's wheel against one
// runtime timer per session. The handles come from a precomputed random
// sequence, because a host holds a session's handle next to the session
// it has just fired; ns/op is the timer structure's own cost.
func BenchmarkTimeoutRearm(b *testing.B) {
	for _, armed := range []int{1000, 1_000_000} {
		b.Run(fmt.Sprintf("armed=%d", armed), func(b *testing.B) {
			b.Run("impl=parley", func(b *testing.B) {
				wheel := fsm.NewWheel(fsm.WheelConfig{}, func(fsm.Expiry[uint64]) {})
				defer wheel.Close()
				base := time.Now().Add(time.Hour)
				entries := make([]fsm.Entry, armed)
				for i := range entries {
					entries[i] = wheel.Add(uint64(i), base.Add(time.Duration(i)*30*time.Second/time.Duration(armed)))
				}
				seq := randomSequence(entries)
				b.ReportAllocs()
				k := 0
				for b.Loop() {
					k++
					if !wheel.Arm(seq[k&(len(seq)-1)], base.Add(30*time.Second+time.Duration(k))) {
						b.Fatal("Arm of a live entry failed")
					}
				}
				if got := wheel.Len(); got != armed {
					b.Fatalf("wheel holds %d deadlines, want %d", got, armed)
				}
			})
			b.Run("impl=runtime", func(b *testing.B) {
				timers := make([]*time.Timer, armed)
				for i := range timers {
					timers[i] = time.AfterFunc(time.Hour+time.Duration(i)*30*time.Second/time.Duration(armed), func() {})
				}
				defer func() {
					for _, t := range timers {
						t.Stop()
					}
				}()
				seq := randomSequence(timers)
				b.ReportAllocs()
				k := 0
				for b.Loop() {
					k++
					seq[k&(len(seq)-1)].Reset(time.Hour + 30*time.Second + time.Duration(k))
				}
			})
		})
	}
}

// BenchmarkTimeoutExpire re-arms the deadlines of a million sessions to a
// moment already past and waits until the wheel has delivered all of them:
// ns/timeout covers the re-arm, the wheel's work and the callback, and
// goroutines counts those the wheel added (its one).
func BenchmarkTimeoutExpire(b *testing.B) {
	b.Run("due=1000000", func(b *testing.B) {
		const n = 1_000_000
		goroutines := runtime.NumGoroutine()
		var delivered atomic.Int64
		done := make(chan struct{}, 1)
		wheel := fsm.NewWheel(fsm.WheelConfig{}, func(fsm.Expiry[uint64]) {
			if delivered.Add(1) == n {
				done <- struct{}{}
			}
		})
		defer wheel.Close()
		entries := make([]fsm.Entry, n)
		later := time.Now().Add(time.Hour)
		for i := range entries {
			entries[i] = wheel.Add(uint64(i), later)
		}
		past := time.Now().Add(-time.Second)
		b.ReportAllocs()
		for b.Loop() {
			delivered.Store(0)
			for _, e := range entries {
				wheel.Arm(e, past)
			}
			<-done
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/timeout")
		b.ReportMetric(float64(runtime.NumGoroutine()-goroutines), "goroutines")
	})
}

// TestFireImplsAgree checks that the implementations BenchmarkFire compares
// walk the dialogue the same way.
func TestFireImplsAgree(t *testing.T) {
	def, err := fsm.NewDialogue(fsm.DialogueConfig{})
	if err != nil {
		t.Fatal(err)
	}
	events := []fsm.DialogueEvent{fsm.Timeout, fsm.Text, fsm.Timeout, fsm.Text, fsm.Close, fsm.Text}
	for _, start := range []fsm.DialogueState{fsm.Hello, fsm.Chatting} {
		now := time.Now()
		sess := def.NewSession(now)
		if start == fsm.Chatting {
			sess.Fire(fsm.Text, now)
		}
		ll := looplabDialogue(start.String())
		sl := statelessDialogue(start)
		sw := &switchDialogue{state: start}
		for _, e := range events {
			_, perr := sess.Fire(e, now)
			lerr := ll.Event(context.Background(), e.String())
			serr := sl.Fire(e)
			ok := sw.fire(e)
			if (perr == nil) != (lerr == nil) || (perr == nil) != (serr == nil) || (perr == nil) != ok {
				t.Fatalf("from %s on %s: parley %v, looplab %v, stateless %v, switch %v", start, e, perr, lerr, serr, ok)
			}
			if st := sess.State(); ll.Current() != st.String() || sl.MustState() != st || sw.state != st {
				t.Fatalf("from %s after %s: parley %s, looplab %s, stateless %v, switch %s", start, e, st, ll.Current(), sl.MustState(), sw.state)
			}
		}
	}
}

// randomSequence returns 2^20 items picked at random from items, the same
// picks for every call with as many items.
func randomSequence[T any](items []T) []T {
	r := rand.New(rand.NewPCG(1, 2))
	seq := make([]T, 1<<20)
	for k := range seq {
		seq[k] = items[r.IntN(len(items))]
	}
	return seq
}

func dialogue(b *testing.B) *fsm.Definition[fsm.DialogueState, fsm.DialogueEvent] {
	b.Helper()
	def, err := fsm.NewDialogue(fsm.DialogueConfig{})
	if err != nil {
		b.Fatal(err)
	}
	return def
}

// looplabDialogue is the reference dialogue in looplab/fsm, which keys
// states and events by string. It rejects CHATTING --text--> CHATTING as
// "no transition", having no internal transitions.
func looplabDialogue(initial string) *lfsm.FSM {
	var (
		hello, chatting, pause, end = fsm.Hello.String(), fsm.Chatting.String(), fsm.Pause.String(), fsm.End.String()
		text, timeout, closed       = fsm.Text.String(), fsm.Timeout.String(), fsm.Close.String()
	)
	return lfsm.NewFSM(initial, lfsm.Events{
		{Name: text, Src: []string{hello, chatting, pause}, Dst: chatting},
		{Name: timeout, Src: []string{chatting}, Dst: pause},
		{Name: timeout, Src: []string{pause}, Dst: end},
		{Name: closed, Src: []string{hello, chatting, pause}, Dst: end},
	}, lfsm.Callbacks{})
}

// statelessDialogue is the reference dialogue in qmuntal/stateless, in its
// immediate firing mode.
func statelessDialogue(initial fsm.DialogueState) *stateless.StateMachine {
	sm := stateless.NewStateMachineWithMode(initial, stateless.FiringImmediate)
	nop := func(context.Context, ...any) error { return nil }
	sm.Configure(fsm.Hello).Permit(fsm.Text, fsm.Chatting).Permit(fsm.Close, fsm.End)
	sm.Configure(fsm.Chatting).InternalTransition(fsm.Text, nop).Permit(fsm.Timeout, fsm.Pause).Permit(fsm.Close, fsm.End)
	sm.Configure(fsm.Pause).Permit(fsm.Text, fsm.Chatting).Permit(fsm.Timeout, fsm.End).Permit(fsm.Close, fsm.End)
	return sm
}

// switchDialogue is the reference dialogue as a hand-written switch: the
// floor, with no deadline, sequence number or error value.
type switchDialogue struct{ state fsm.DialogueState }

func (s *switchDialogue) fire(e fsm.DialogueEvent) bool {
	switch {
	case s.state == fsm.End:
		return false
	case e == fsm.Close:
		s.state = fsm.End
	case e == fsm.Text:
		s.state = fsm.Chatting
	case e == fsm.Timeout && s.state == fsm.Chatting:
		s.state = fsm.Pause
	case e == fsm.Timeout && s.state == fsm.Pause:
		s.state = fsm.End
	default:
		return false
	}
	return true
}
