package fsm

import (
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"unsafe"
)

// wheelModel is the obvious implementation of wheelCore: a map from entry
// to due tick.
type wheelModel struct {
	cur int64
	due map[int32]int64 // armed entries
}

// simWheel drives a wheelCore and its model with the same operations and
// compares what they deliver.
type simWheel struct {
	t       testing.TB
	c       wheelCore[int32]
	m       wheelModel
	live    map[int32]Entry // key (= entry index) to handle
	dropped []Entry         // handles of removed entries
}

func newSimWheel(t testing.TB) *simWheel {
	w := &simWheel{t: t, m: wheelModel{due: map[int32]int64{}}, live: map[int32]Entry{}}
	w.c.init()
	return w
}

func (w *simWheel) add() int32 {
	i, gen := w.c.alloc(0)
	w.c.link(i).key = i
	w.live[i] = Entry{idx: uint32(i), gen: gen}
	return i
}

func (w *simWheel) arm(i int32, t int64) {
	if _, ok := w.c.valid(w.live[i]); !ok {
		w.t.Fatalf("live entry %d reported invalid", i)
	}
	w.c.arm(i, t)
	w.m.due[i] = min(max(t, w.m.cur), w.m.cur+horizon)
}

func (w *simWheel) disarm(i int32) {
	w.c.disarm(i)
	delete(w.m.due, i)
}

func (w *simWheel) remove(i int32) {
	w.c.release(i)
	delete(w.m.due, i)
	w.dropped = append(w.dropped, w.live[i])
	delete(w.live, i)
}

// advance moves both to tick now, with the core working in rounds of at
// most budget moves and batch deliveries (with budget 0, the wheel's own
// rounds), and checks the deliveries.
func (w *simWheel) advance(now int64, budget, batch int) {
	w.t.Helper()
	var got []Expiry[int32]
	if budget == 0 {
		for more := true; more; {
			got, more = w.c.round(now, got, 0, 1)
		}
	}
	for budget > 0 {
		left := w.c.advance(now, budget)
		got = w.c.take(got, len(got)+batch, 0, 1)
		if left > 0 && w.c.readyEmpty() {
			break
		}
	}
	w.m.cur = max(w.m.cur, now)
	var want []Expiry[int32]
	for i, t := range w.m.due {
		if t <= now {
			want = append(want, Expiry[int32]{Key: i, Time: time.Unix(0, t)})
			delete(w.m.due, i)
		}
	}
	for k := 1; k < len(got); k++ {
		if got[k].Time.Before(got[k-1].Time) {
			w.t.Fatalf("advance(%d) delivered %v before %v", now, got[k-1], got[k])
		}
	}
	byKey := func(a, b Expiry[int32]) int { return int(a.Key - b.Key) }
	slices.SortFunc(got, byKey)
	slices.SortFunc(want, byKey)
	if !slices.EqualFunc(got, want, func(a, b Expiry[int32]) bool { return a.Key == b.Key && a.Time.Equal(b.Time) }) {
		w.t.Fatalf("advance(%d) delivered\n%v\nwant\n%v", now, got, want)
	}
	if w.c.armed != len(w.m.due) {
		w.t.Fatalf("armed = %d, model has %d", w.c.armed, len(w.m.due))
	}
	if now > w.c.cur {
		w.t.Fatalf("cur = %d after advance(%d)", w.c.cur, now)
	}
}

// run interprets ops as a random program of adds, re-arms (later, earlier,
// past, far), disarms, removes and advances.
func (w *simWheel) run(ops []byte) {
	keys := func() []int32 {
		ks := make([]int32, 0, len(w.live))
		for k := range w.live {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return ks
	}
	pick := func(b byte) (int32, bool) {
		ks := keys()
		if len(ks) == 0 {
			return 0, false
		}
		return ks[int(b)%len(ks)], true
	}
	for len(ops) >= 3 {
		op, a, b := ops[0], ops[1], ops[2]
		ops = ops[3:]
		cur := w.m.cur
		switch op % 8 {
		case 0, 1: // add and arm a few ticks to a few thousand ahead
			w.arm(w.add(), cur+int64(a)*int64(b)/4)
		case 2: // re-arm
			if i, ok := pick(a); ok {
				w.arm(i, cur+int64(b)*int64(b))
			}
		case 3: // re-arm in the past or far ahead
			if i, ok := pick(a); ok {
				t := cur - int64(b)
				if b&1 == 1 {
					t = cur + int64(b)<<24
				}
				w.arm(i, t)
			}
		case 4:
			if i, ok := pick(a); ok {
				w.disarm(i)
			}
		case 5:
			if i, ok := pick(a); ok {
				w.remove(i)
			}
		default: // advance in the wheel's rounds, or in small ones
			budget, batch := 0, 0
			if a&1 == 1 {
				budget, batch = 1+int(b%3), 1+int(b%5)
			}
			w.advance(cur+int64(a)*int64(b)/2, budget, batch)
		}
	}
	for _, h := range w.dropped {
		if _, ok := w.c.valid(h); ok {
			w.t.Fatalf("removed handle %+v still valid", h)
		}
	}
	// Drain everything still armed.
	for len(w.m.due) > 0 {
		w.advance(slices.Max(slicesValues(w.m.due)), 0, 0)
	}
}

func slicesValues(m map[int32]int64) []int64 {
	var vs []int64
	for _, v := range m {
		vs = append(vs, v)
	}
	return vs
}

func TestWheelCoreMatchesModel(t *testing.T) {
	for seed := range uint64(50) {
		r := rand.New(rand.NewPCG(seed, 1))
		ops := make([]byte, 3000)
		for i := range ops {
			ops[i] = byte(r.Uint32())
		}
		newSimWheel(t).run(ops)
	}
}

func TestWheelCoreHorizon(t *testing.T) {
	w := newSimWheel(t)
	i := w.add()
	w.arm(i, 5*horizon) // filed at the horizon instead
	w.advance(horizon-1, 0, 0)
	w.advance(horizon, 0, 0)
	// Ticks well past 2^32 still reconstruct from their low bits.
	for k := range int64(5) {
		w.arm(i, w.m.cur+horizon/2+k)
		w.advance(w.m.cur+horizon/2+k, 0, 0)
	}
	if w.c.cur <= 1<<32 {
		t.Fatalf("cur = %d, want past 2^32", w.c.cur)
	}
}

func TestWheelEntryHandles(t *testing.T) {
	w := newSimWheel(t)
	a := w.add()
	ha := w.live[a]
	w.remove(a)
	b := w.add() // reuses a's slot
	if b != a {
		t.Fatalf("add after remove used slot %d, want %d", b, a)
	}
	hb := w.live[b]
	for _, h := range []Entry{{}, ha, {idx: 3, gen: 1}, {idx: uint32(w.c.n), gen: 1}} {
		if _, ok := w.c.valid(h); ok {
			t.Errorf("valid(%+v) = true, want false", h)
		}
	}
	if _, ok := w.c.valid(hb); !ok || hb == ha {
		t.Errorf("new handle %+v: valid %v; old one %+v", hb, ok, ha)
	}
}

func TestEntrySize(t *testing.T) {
	if got := unsafe.Sizeof(state{}) + unsafe.Sizeof(link[uint64]{}); got != 24 {
		t.Errorf("an entry with a uint64 key takes %d bytes, want 24", got)
	}
}

// delivery is one call of a wheel's callback, with the virtual time it ran.
type delivery struct {
	key  int
	at   time.Time // Expiry.Time
	when time.Time // time.Now() in the callback
}

// recordingWheel returns a wheel whose deliveries are appended to *got.
func recordingWheel(cfg WheelConfig) (*Wheel[int], func() []delivery) {
	var mu sync.Mutex
	var got []delivery
	w := NewWheel(cfg, func(x Expiry[int]) {
		mu.Lock()
		got = append(got, delivery{x.Key, x.Time, time.Now()})
		mu.Unlock()
	})
	return w, func() []delivery {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
}

func TestWheelFiresAtDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		w, got := recordingWheel(WheelConfig{})
		defer w.Close()
		deadlines := []time.Duration{
			30 * time.Second, time.Millisecond, 2 * time.Hour, 30*time.Second + 500*time.Microsecond,
			64 * time.Millisecond, 4096 * time.Millisecond, 0, -time.Minute,
		}
		for k, d := range deadlines {
			w.Add(k, start.Add(d))
		}
		time.Sleep(3 * time.Hour)
		want := map[int]time.Duration{
			0: 30 * time.Second, 1: time.Millisecond, 2: 2 * time.Hour,
			3: 30*time.Second + time.Millisecond, // rounded up to the resolution
			4: 64 * time.Millisecond, 5: 4096 * time.Millisecond,
			6: 0, 7: 0, // already due: delivered at once, timed now
		}
		ds := got()
		if len(ds) != len(want) {
			t.Fatalf("delivered %v, want %d", ds, len(want))
		}
		for _, d := range ds {
			at := start.Add(want[d.key])
			if !d.at.Equal(at) || !d.when.Equal(at) {
				t.Errorf("key %d delivered with Time %v at %v, want both %v", d.key, d.at.Sub(start), d.when.Sub(start), want[d.key])
			}
		}
		if n := w.Len(); n != 0 {
			t.Errorf("Len() = %d after all deliveries, want 0", n)
		}
	})
}

func TestWheelRearm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		w, got := recordingWheel(WheelConfig{Resolution: 10 * time.Millisecond})
		defer w.Close()
		later := w.Add(1, start.Add(10*time.Second))
		earlier := w.Add(2, start.Add(20*time.Second))
		disarmed := w.Add(3, start.Add(5*time.Second))
		removed := w.Add(4, start.Add(5*time.Second))
		again := w.Add(5, start.Add(time.Second))
		unarmed := w.Add(6, time.Time{})
		if n := w.Len(); n != 5 {
			t.Errorf("Len() = %d, want 5", n)
		}
		time.Sleep(2 * time.Second)
		w.Arm(later, start.Add(25*time.Second))
		w.Arm(earlier, start.Add(3*time.Second))
		w.Arm(disarmed, time.Time{})
		w.Remove(removed)
		w.Arm(again, start.Add(4*time.Second)) // delivered at 1s, armed again
		w.Arm(unarmed, start.Add(6*time.Second+5*time.Millisecond))
		if w.Arm(removed, start) || w.Remove(removed) {
			t.Error("Arm or Remove of a removed entry reported true")
		}
		time.Sleep(time.Minute)
		want := []delivery{
			{5, start.Add(time.Second), start.Add(time.Second)},
			{2, start.Add(3 * time.Second), start.Add(3 * time.Second)},
			{5, start.Add(4 * time.Second), start.Add(4 * time.Second)},
			{6, start.Add(6*time.Second + 10*time.Millisecond), start.Add(6*time.Second + 10*time.Millisecond)},
			{1, start.Add(25 * time.Second), start.Add(25 * time.Second)},
		}
		if ds := got(); !slices.EqualFunc(ds, want, func(a, b delivery) bool {
			return a.key == b.key && a.at.Equal(b.at) && a.when.Equal(b.when)
		}) {
			t.Errorf("delivered %v\nwant %v", ds, want)
		}
	})
}

// TestWheelManyDue delivers more deadlines at one instant than the wheel
// handles per round, and a spread of random ones: each exactly once, at its
// own tick.
func TestWheelManyDue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		w, got := recordingWheel(WheelConfig{})
		defer w.Close()
		const same, spread = 3 * maxMoves, 20000
		r := rand.New(rand.NewPCG(1, 2))
		want := map[int]time.Time{}
		for k := range same {
			want[k] = start.Add(time.Second)
			w.Add(k, want[k])
		}
		for k := same; k < same+spread; k++ {
			want[k] = start.Add(time.Duration(r.IntN(600_000)+1000) * time.Millisecond)
			e := w.Add(k, want[k].Add(-time.Duration(r.IntN(1000))*time.Millisecond))
			w.Arm(e, want[k]) // mostly later: left in place, refiled when its slot comes
		}
		time.Sleep(11 * time.Minute)
		ds := got()
		if len(ds) != len(want) {
			t.Fatalf("delivered %d, want %d", len(ds), len(want))
		}
		for _, d := range ds {
			if !d.at.Equal(want[d.key]) || !d.when.Equal(want[d.key]) {
				t.Fatalf("key %d delivered with Time %v at %v, want %v", d.key, d.at.Sub(start), d.when.Sub(start), want[d.key].Sub(start))
			}
			delete(want, d.key)
		}
	})
}

func TestWheelCallbackMayUseWheel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var w *Wheel[int]
		var entries [3]Entry
		var mu sync.Mutex
		var fired []int
		w = NewWheel(WheelConfig{}, func(x Expiry[int]) {
			mu.Lock()
			defer mu.Unlock()
			fired = append(fired, x.Key)
			switch x.Key {
			case 0:
				w.Arm(entries[0], x.Time.Add(time.Second)) // once more
				entries[0] = Entry{}
			case 1:
				w.Remove(entries[1])
				w.Add(2, x.Time.Add(time.Second))
			}
		})
		defer w.Close()
		now := time.Now()
		mu.Lock()
		entries[0] = w.Add(0, now.Add(time.Second))
		entries[1] = w.Add(1, now.Add(time.Second))
		mu.Unlock()
		time.Sleep(time.Minute)
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(fired, []int{0, 1, 0, 2}) {
			t.Errorf("fired %v, want [0 1 0 2]", fired)
		}
	})
}

func TestWheelClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var calls int
		w := NewWheel(WheelConfig{}, func(Expiry[int]) {
			calls++
			<-release
		})
		w.Add(1, time.Now())
		w.Add(2, time.Now())
		synctest.Wait() // the callback is blocked on the first expiry
		closed := make(chan struct{})
		for range 3 {
			go func() {
				w.Close()
				closed <- struct{}{}
			}()
		}
		synctest.Wait()
		select {
		case <-closed:
			t.Fatal("Close returned while a callback was running")
		default:
		}
		close(release)
		for range 3 {
			<-closed
		}
		w.Close()
		if calls != 1 {
			t.Errorf("callback ran %d times, want 1: none starts once Close is under way", calls)
		}
		// The stopped wheel still accepts calls, and delivers nothing.
		// Entry 2 is still armed if the wheel took entry 1 alone, before
		// entry 2 was added; either way, entry 3 adds one.
		before := w.Len()
		e := w.Add(3, time.Now())
		if !w.Arm(e, time.Now()) || w.Len() != before+1 {
			t.Errorf("Arm on a closed wheel = false or Len() = %d, want true, %d", w.Len(), before+1)
		}
	})
}

// TestWheelSessions runs the host flow of the package doc: one owner
// goroutine per session, the wheel's callback handing expiries to the
// owners, and messages racing the timeouts.
func TestWheelSessions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		def, err := NewDialogue(DialogueConfig{ChattingIdle: 30 * time.Second, PauseIdle: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		type owner struct {
			inbox chan any // DialogueEvent or Expiry[int]
			log   []string
		}
		const n = 3
		var owners [n]*owner
		w := NewWheel(WheelConfig{}, func(x Expiry[int]) { owners[x.Key].inbox <- x })
		defer w.Close()
		var wg sync.WaitGroup
		for k := range owners {
			o := &owner{inbox: make(chan any, 16)}
			owners[k] = o
			sess := def.NewSession(time.Now())
			entry := w.Add(k, sess.Deadline())
			wg.Go(func() {
				for m := range o.inbox {
					var tr Transition[DialogueState, DialogueEvent]
					var err error
					switch m := m.(type) {
					case DialogueEvent:
						tr, err = sess.Fire(m, time.Now())
					case Expiry[int]:
						tr, err = sess.Expire(m.Time)
					}
					w.Arm(entry, sess.Deadline())
					if errors.Is(err, ErrNotDue) {
						o.log = append(o.log, "stale")
						continue
					}
					if err != nil {
						t.Errorf("session %d: %v", k, err)
						continue
					}
					if tr.From != tr.To {
						o.log = append(o.log, time.Since(start).String()+" "+tr.To.String())
					}
				}
			})
		}
		var senders sync.WaitGroup
		send := func(k int, at time.Duration, e DialogueEvent) {
			senders.Go(func() {
				time.Sleep(time.Until(start.Add(at)))
				owners[k].inbox <- e
			})
		}
		send(0, time.Second, Text)
		send(1, time.Second, Text)
		send(2, time.Second, Text)
		send(0, 20*time.Second, Text) // re-arms: PAUSE at 50s, not 31s
		send(1, 40*time.Second, Text) // wakes PAUSE (entered at 31s) up again
		send(2, 45*time.Second, Close)
		time.Sleep(10 * time.Minute)
		senders.Wait()
		w.Close() // no callback sends to an inbox after this
		for _, o := range owners {
			close(o.inbox)
		}
		wg.Wait()
		want := [n][]string{
			{"1s CHATTING", "50s PAUSE", "1m50s END"},
			{"1s CHATTING", "31s PAUSE", "40s CHATTING", "1m10s PAUSE", "2m10s END"},
			{"1s CHATTING", "31s PAUSE", "45s END"},
		}
		for k, o := range owners {
			if !slices.Equal(o.log, want[k]) {
				t.Errorf("session %d went %q, want %q", k, o.log, want[k])
			}
		}
	})
}

// TestWheelStaleExpiry has a message and the timeout arrive at the same
// instant, in both orders: the session ends up the same either way, and
// the timeout fires at most once.
func TestWheelStaleExpiry(t *testing.T) {
	def, err := NewDialogue(DialogueConfig{ChattingIdle: 30 * time.Second, PauseIdle: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for _, messageFirst := range []bool{true, false} {
		s := def.NewSession(time.Unix(0, 0))
		s.Fire(Text, time.Unix(0, 0))
		due := s.Deadline()
		x := Expiry[int]{Time: due}
		var got []string
		apply := func(tr Transition[DialogueState, DialogueEvent], err error) {
			switch {
			case errors.Is(err, ErrNotDue):
				got = append(got, "stale")
			case err != nil:
				t.Fatal(err)
			default:
				got = append(got, tr.To.String())
			}
		}
		if messageFirst {
			apply(s.Fire(Text, due))
			apply(s.Expire(x.Time))
		} else {
			apply(s.Expire(x.Time))
			apply(s.Fire(Text, due))
		}
		want := []string{"CHATTING", "stale"}
		if !messageFirst {
			want = []string{"PAUSE", "CHATTING"}
		}
		if !slices.Equal(got, want) || s.State() != Chatting || !s.Deadline().Equal(due.Add(30*time.Second)) {
			t.Errorf("message first %v: %v, state %s, deadline %v; want %v, CHATTING, %v",
				messageFirst, got, s.State(), s.Deadline(), want, due.Add(30*time.Second))
		}
	}
}
