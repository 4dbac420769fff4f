package backpressure_test

import (
	"container/heap"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parley-go/parley/backpressure"
)

// mustLine returns backpressure.NewLine(target, span) or fails t.
func mustLine(t testing.TB, target, span time.Duration) *backpressure.Line {
	t.Helper()
	l, err := backpressure.NewLine(target, span)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestNewLineRefusesBadConfig(t *testing.T) {
	for _, tt := range []struct {
		name         string
		target, span time.Duration
	}{
		{"zero target", 0, time.Second},
		{"zero span", time.Millisecond, 0},
		{"negative span", time.Millisecond, -time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := backpressure.NewLine(tt.target, tt.span); !errors.Is(err, backpressure.ErrConfig) {
				t.Errorf("backpressure.NewLine(%v, %v) = %v, want backpressure.ErrConfig", tt.target, tt.span, err)
			}
		})
	}
}

// TestLine walks one line through an overload with explicit times.
func TestLine(t *testing.T) {
	const span, target = 100 * time.Millisecond, 5 * time.Millisecond
	t0 := time.Unix(1000, 0)
	l := mustLine(t, target, span)

	// Nobody waits: a message passes and takes no ticket.
	var a, b, c, fresh backpressure.Ticket
	if ok, _ := l.Pass(&a, 10*time.Millisecond, t0); !ok || a != 0 {
		t.Fatalf("pass on an empty line = %v with ticket %d, want true and no ticket", ok, a)
	}
	// Ten admissions in the first span: 100 a second.
	for i := range 10 {
		l.Admitted(new(backpressure.Ticket), 0, t0.Add(time.Duration(i)*span/10))
	}
	t1 := t0.Add(span)
	// Three clients are shed, in order: tickets 1, 2, 3, called 10 ms
	// apart at the rate admitted.
	for i, tk := range []*backpressure.Ticket{&a, &b, &c} {
		eta := l.Refused(tk, t1)
		if *tk != backpressure.Ticket(i+1) {
			t.Errorf("shed #%d took ticket %d, want %d", i+1, *tk, i+1)
		}
		want := time.Duration(i+1) * 10 * time.Millisecond
		if eta < want || eta > want+want/10+time.Nanosecond {
			t.Errorf("shed #%d: eta = %v, want %v plus up to a tenth", i+1, eta, want)
		}
	}
	if n := l.Waiting(t1); n != 3 {
		t.Errorf("waiting = %d, want 3", n)
	}
	// Shed again, a client keeps its ticket.
	if l.Refused(&c, t1); c != 3 {
		t.Errorf("shed of a ticket holder took ticket %d, want 3 kept", c)
	}
	// While they wait, another client's message goes to the back, unless
	// nothing is queued for the backend.
	if ok, eta := l.Pass(&fresh, 50*time.Millisecond, t1); ok || fresh != 4 || eta < 30*time.Millisecond {
		t.Errorf("pass of a newcomer = %v, ticket %d, eta %v; want false, ticket 4, eta >= 30ms", ok, fresh, eta)
	}
	var idle backpressure.Ticket
	if ok, _ := l.Pass(&idle, 0, t1); !ok || idle != 0 {
		t.Errorf("pass with nothing queued = %v with ticket %d, want true and no ticket", ok, idle)
	}
	if ok, _ := l.Pass(&idle, target, t1); ok || idle != 5 {
		t.Errorf("pass with the wait at target = %v with ticket %d, want false and ticket 5", ok, idle)
	}
	// Ticket 3 is not called yet at t1 + 20 ms; ticket 2 is.
	t2 := t1.Add(20 * time.Millisecond)
	if ok, _ := l.Pass(&c, 50*time.Millisecond, t2); ok {
		t.Error("pass of ticket 3 at 20 ms = true, want false (called at 30 ms)")
	}
	if ok, _ := l.Pass(&b, 50*time.Millisecond, t2); !ok {
		t.Error("pass of ticket 2 at 20 ms = false, want true")
	}
	l.Admitted(&b, 50*time.Millisecond, t2)
	if b != 0 {
		t.Errorf("admitted left ticket %d, want 0", b)
	}
	// A ticket holder admitted while the backend keeps up calls half a
	// ticket more: two of them, one whole ticket. Ticket 3 is called at
	// t2 then, 10 ms early.
	for range 4 {
		l.Admitted(new(backpressure.Ticket), 0, t2) // no ticket: no extra call
	}
	if ok, _ := l.Pass(&c, 50*time.Millisecond, t2); ok {
		t.Error("pass of ticket 3 after admissions without tickets = true, want false")
	}
	tk := backpressure.Ticket(1) // called long ago
	l.Admitted(&tk, target, t2)
	if ok, _ := l.Pass(&c, 50*time.Millisecond, t2); ok {
		t.Error("pass of ticket 3 after one ticket holder got in within target = true, want false")
	}
	tk = 1
	l.Admitted(&tk, target, t2)
	if ok, _ := l.Pass(&c, 50*time.Millisecond, t2); !ok {
		t.Error("pass of ticket 3 after two ticket holders got in within target = false, want true")
	}
	// Long after, every ticket is called: the line is empty again, and
	// the next client shed is the next one called.
	t3 := t1.Add(time.Second)
	if ok, _ := l.Pass(new(backpressure.Ticket), 50*time.Millisecond, t3); !ok {
		t.Error("pass of a newcomer once every ticket is called = false, want true")
	}
	var d backpressure.Ticket
	// After a quiet second the rate is measured afresh: until then the
	// line tells no eta, and holds nobody back while the wait is within
	// target.
	if eta := l.Refused(&d, t3); d != 6 || eta != 0 {
		t.Errorf("shed after a quiet spell: ticket %d, eta %v; want 6, 0", d, eta)
	}
	if ok, _ := l.Pass(new(backpressure.Ticket), target, t3); !ok {
		t.Error("pass of a newcomer with no rate measured and the wait at target = false, want true")
	}
	if ok, _ := l.Pass(new(backpressure.Ticket), target+1, t3); ok {
		t.Error("pass of a newcomer with no rate measured and the wait over target = true, want false")
	}
}

// TestLineStopsDrainingWhenCalledClientsAreRefused: once a client
// holding a called ticket is refused for overload, tickets are called
// faster than the backend takes them, and admissions call no extra tickets
// for a span.
func TestLineStopsDrainingWhenCalledClientsAreRefused(t *testing.T) {
	const span, target = 100 * time.Millisecond, 5 * time.Millisecond
	t0 := time.Unix(1000, 0)
	l := mustLine(t, target, span)
	for i := range 10 { // 100 a second
		l.Admitted(new(backpressure.Ticket), 0, t0.Add(time.Duration(i)*span/10))
	}
	t1 := t0.Add(span)
	var a, b backpressure.Ticket
	l.Refused(&a, t1) // called at 10 ms
	l.Refused(&b, t1) // called at 20 ms
	t2 := t1.Add(10 * time.Millisecond)
	if eta := l.Refused(&a, t2); eta != 0 {
		t.Fatalf("shed of called ticket 1: eta %v, want 0", eta)
	}
	for range 4 { // two tickets' worth, were it draining
		tk := backpressure.Ticket(1)
		l.Admitted(&tk, 0, t2)
	}
	if ok, _ := l.Pass(&b, 50*time.Millisecond, t2); ok {
		t.Error("pass of ticket 2 right after a called client was refused = true, want false (no extra calls)")
	}
}

// TestLineEtaIsCapped: a client far back is told to come back after at
// most ten spans and a tenth, not after the minutes the rate would say.
func TestLineEtaIsCapped(t *testing.T) {
	const span = 100 * time.Millisecond
	t0 := time.Unix(1000, 0)
	l := mustLine(t, span/20, span)
	for i := range 11 { // one admission a span: 10 a second
		l.Admitted(new(backpressure.Ticket), 0, t0.Add(time.Duration(i)*span))
	}
	t1 := t0.Add(10 * span)
	var eta time.Duration
	for range 1000 {
		eta = l.Refused(new(backpressure.Ticket), t1)
	}
	if lo, hi := 10*span, 11*span; eta < lo || eta > hi {
		t.Errorf("eta of ticket 1000 at 10/s = %v, want in [%v, %v]", eta, lo, hi)
	}
}

// TestLineIsFair simulates clients that retry when told against a
// backend that serves a fixed number of messages a second and an admission
// that refuses whatever would queue longer than an interval. Against the
// same load without the line, where a client whose message was just
// served sends its next one as the queue moves up and so is admitted ahead
// of those refused before, the line keeps the most refusals of one
// message, and the slowest messages' wait from first send to admission
// (or to the end, for messages never admitted), far lower.
func TestLineIsFair(t *testing.T) {
	overload := simulation{clients: 1000, perSec: 100, start: time.Second}
	line := overload.run(t, true)
	lottery := overload.run(t, false)
	t.Logf("line: %+v", line)
	t.Logf("no line: %+v", lottery)
	if line.served < lottery.served*9/10 {
		t.Errorf("served %d messages with the line, %d without; want about as many", line.served, lottery.served)
	}
	if line.maxShed > 20 || line.maxShed*4 > lottery.maxShed {
		t.Errorf("most refusals of one message: %d with the line, %d without; want <= 20 and a quarter at most",
			line.maxShed, lottery.maxShed)
	}
	// First come, first served, 1000 clients at 100 a second would wait 10 s.
	if line.p99Wait > 13*time.Second || line.p99Wait*2 > lottery.p99Wait {
		t.Errorf("p99 wait from first send to admission: %v with the line, %v without; want <= 13s and half at most",
			line.p99Wait, lottery.p99Wait)
	}
}

// TestLineDrains: the backend stalls for 10 s under a load it serves
// easily, while clients keep arriving, so that tickets are issued all
// through the stall. Once it serves again the line empties within 5 s,
// and the line serves about as many messages as admission without it.
func TestLineDrains(t *testing.T) {
	// 2000 clients arriving over 30 s, each sending every 0.5 s or so
	// (up to 4000 a second), against 20000 a second; the backend stalls
	// from 5 s to 15 s.
	stall := simulation{clients: 2000, perSec: 20000, think: 500 * time.Millisecond, start: 30 * time.Second,
		stallAt: 5 * time.Second, stallFor: 10 * time.Second}
	out := stall.run(t, true)
	without := stall.run(t, false)
	t.Logf("line: %+v", out)
	t.Logf("no line: %+v", without)
	if out.shed == 0 {
		t.Fatal("the stall refused nothing; the simulation does not test draining")
	}
	if out.lateShed > 0 || out.waiting > 0 {
		t.Errorf("from 5 s after the stall: %d refusals, %d clients still waiting; want none", out.lateShed, out.waiting)
	}
	if out.served < without.served*95/100 {
		t.Errorf("served %d messages with the line, %d without; want at least 95%% as many", out.served, without.served)
	}
}

// TestLineDrainsWhileTheBackendKeepsUp: a line of 200 is left behind,
// and newcomers arrive as fast as messages were admitted before, so they
// join it as fast as the admission rate calls tickets. Ticket holders who
// get in while the backend keeps up call half a ticket more each, and the
// line empties; at the admission rate alone it would stay 200 long.
func TestLineDrainsWhileTheBackendKeepsUp(t *testing.T) {
	const span, target, wait = 100 * time.Millisecond, 50 * time.Millisecond, 10 * time.Millisecond
	t0 := time.Unix(1000, 0)
	l := mustLine(t, target, span)
	var holders []backpressure.Ticket // tickets in the order issued
	for ms := range 3000 {
		now := t0.Add(time.Duration(ms) * time.Millisecond)
		if ms == 500 { // a burst refused at once: 200 tickets
			for range 200 {
				var tk backpressure.Ticket
				l.Refused(&tk, now)
				holders = append(holders, tk)
			}
		}
		// Holders come back the moment they are called.
		for len(holders) > 0 {
			if ok, _ := l.Pass(&holders[0], wait, now); !ok {
				break
			}
			l.Admitted(&holders[0], wait, now)
			holders = holders[1:]
		}
		var tk backpressure.Ticket // one newcomer a millisecond
		if ok, _ := l.Pass(&tk, wait, now); ok {
			l.Admitted(&tk, wait, now)
		} else {
			holders = append(holders, tk)
		}
	}
	if n := l.Waiting(t0.Add(3 * time.Second)); n > 0 {
		t.Errorf("2.5 s after the burst %d clients wait, want none", n)
	}
}

type admissionOutcome struct {
	served, maxShed int
	shed, lateShed  int // refusals, and those from 5 s after the stall
	waiting         int // tickets not called at the end
	p99Wait         time.Duration
}

// simulation is a virtual minute of clients against a backend that serves
// perSec messages a second one after another, behind an admission that
// refuses whatever would wait longer than an interval (500 ms). Each
// client sends its first message within start, and its next one think
// after the previous one was served. A refused client comes back when
// told. Admission expects every message to wait at least 2 ms, as behind
// a micro-batcher's window while requests come steadily. The
// backend serves nothing for stallFor from stallAt.
type simulation struct {
	clients, perSec   int
	think, start      time.Duration
	stallAt, stallFor time.Duration
}

func (sim simulation) run(t *testing.T, withLine bool) admissionOutcome {
	t.Helper()
	const (
		interval = 500 * time.Millisecond
		length   = time.Minute
	)
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := time.Unix(1000, 0)
	l := mustLine(t, interval/5, interval)
	type client struct {
		ticket    backpressure.Ticket
		sheds     int
		firstSent time.Duration
	}
	cs := make([]client, sim.clients)
	var events timeHeap[event]
	for i := range cs {
		cs[i].firstSent = time.Duration(rng.Int64N(int64(sim.start)))
		heap.Push(&events, event{at: cs[i].firstSent, client: i})
	}
	var (
		out      admissionOutcome
		waits    []time.Duration
		lastDone time.Duration // when the backend finishes what it has admitted
	)
	service := time.Second / time.Duration(sim.perSec)
	for events.Len() > 0 {
		e := heap.Pop(&events).(event)
		if e.at > length {
			break
		}
		c := &cs[e.client]
		now := t0.Add(e.at)
		if sim.stallFor > 0 && e.at >= sim.stallAt {
			lastDone = max(lastDone, sim.stallAt+sim.stallFor)
		}
		wait := max(lastDone-e.at, 0) + 2*time.Millisecond
		retry := time.Duration(-1)
		switch {
		case wait > interval:
			retry = interval + time.Duration(rng.Int64N(int64(interval)))
			if withLine {
				retry = max(retry, l.Refused(&c.ticket, now))
			}
		case withLine:
			if ok, eta := l.Pass(&c.ticket, wait, now); !ok {
				retry = max(100*time.Millisecond+time.Duration(rng.Int64N(int64(100*time.Millisecond))), eta)
			}
		}
		if retry >= 0 {
			out.shed++
			if e.at > sim.stallAt+sim.stallFor+5*time.Second {
				out.lateShed++
			}
			c.sheds++
			heap.Push(&events, event{at: e.at + retry, client: e.client})
			continue
		}
		l.Admitted(&c.ticket, wait, now)
		out.served++
		out.maxShed = max(out.maxShed, c.sheds)
		waits = append(waits, e.at-c.firstSent)
		lastDone = max(lastDone, e.at) + service
		c.sheds, c.firstSent = 0, lastDone+sim.think
		heap.Push(&events, event{at: c.firstSent, client: e.client})
	}
	out.waiting = l.Waiting(t0.Add(length))
	// Messages still refused at the end count with their wait so far: a
	// client starved for the whole run must not vanish from the figures.
	for _, c := range cs {
		if c.sheds > 0 {
			out.maxShed = max(out.maxShed, c.sheds)
			waits = append(waits, length-c.firstSent)
		}
	}
	slices.Sort(waits)
	out.p99Wait = waits[len(waits)*99/100]
	return out
}

type event struct {
	at     time.Duration
	client int
}

func (e event) when() time.Duration { return e.at }

// BenchmarkLine is what the line adds to each admitted request while
// nobody waits (no overload): Pass and Admitted.
func BenchmarkLine(b *testing.B) {
	b.Run("state=empty", func(b *testing.B) {
		l := mustLine(b, 100*time.Millisecond, 500*time.Millisecond)
		now := time.Unix(1000, 0)
		b.ReportAllocs()
		for b.Loop() {
			now = now.Add(time.Microsecond)
			var tk backpressure.Ticket
			if ok, _ := l.Pass(&tk, time.Millisecond, now); !ok {
				b.Fatal("Pass on an empty line = false")
			}
			l.Admitted(&tk, time.Millisecond, now)
		}
	})
	b.Run("state=empty/parallel", func(b *testing.B) {
		l := mustLine(b, 100*time.Millisecond, 500*time.Millisecond)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			// Each goroutine has its own clock, so that the loop measures
			// the line, not time.Now; the line takes times a little out of
			// order, as from callers on several goroutines.
			now := time.Unix(1000, 0)
			for pb.Next() {
				now = now.Add(time.Microsecond)
				var tk backpressure.Ticket
				if ok, _ := l.Pass(&tk, time.Millisecond, now); !ok {
					b.Error("Pass on an empty line = false")
					return
				}
				l.Admitted(&tk, time.Millisecond, now)
			}
		})
	})
}

// TestLineConcurrent runs clients on several goroutines against one line
// while another reads Waiting, for the race detector; each client's ticket
// is back to zero once it is admitted.
func TestLineConcurrent(t *testing.T) {
	l := mustLine(t, time.Millisecond, 10*time.Millisecond)
	const clients, rounds = 8, 500
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
				if n := l.Waiting(time.Now()); n < 0 || n > clients*rounds {
					t.Errorf("Waiting = %d, want 0 to %d", n, clients*rounds)
					return
				}
			}
		}
	})
	var clientsDone sync.WaitGroup
	for c := range clients {
		clientsDone.Go(func() {
			var tk backpressure.Ticket
			for i := range rounds {
				now := time.Now()
				if (i+c)%3 == 0 {
					l.Refused(&tk, now)
				}
				if ok, _ := l.Pass(&tk, time.Duration(i%3)*time.Millisecond, now); ok {
					l.Admitted(&tk, 0, now)
					if tk != 0 {
						t.Errorf("ticket after Admitted = %d, want 0", tk)
						return
					}
				}
			}
		})
	}
	clientsDone.Wait()
	close(done)
	wg.Wait()
}
