package backpressure_test

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/parley-go/parley/backpressure"
)

// The overload simulation runs an open-loop queueing model on a virtual
// clock: requests arrive (Poisson, plus bursts in phase B), wait in one FIFO
// queue in front of a fixed number of service slots, and a policy may shed
// them. taildrop decides at arrival; the others decide when a request
// reaches the head of the queue and a slot is free, which is where a chat
// host calls the gate: when a message leaves its queue for the model, with
// the time it waited. Clients do not retry. Everything is seeded, so a run
// is deterministic.

// scenario describes one backend and the parley settings recommended for it.
type scenario struct {
	name     string
	slots    int
	mean     time.Duration // mean service time
	sigma    float64       // lognormal shape of the service time; 0: fixed
	deadline time.Duration // client deadline, arrival to completion
	tailCap  int           // queue length the taildrop policy allows

	// target and interval are the detector settings this package
	// recommends for the scenario (see the package documentation).
	target, interval time.Duration
	// rfcTarget and rfcInterval are codel-rfc's: the RFC 8289 defaults
	// where they fit the backend, the scaled ones above where the defaults
	// would shed healthy traffic.
	rfcTarget, rfcInterval time.Duration

	overload time.Duration // phase A length
	steady   time.Duration // phase B and C length
	sessions int           // distinct keys the requests are spread over
}

// capacity is the scenario's service rate in requests per second.
func (sc scenario) capacity() float64 { return float64(sc.slots) / sc.mean.Seconds() }

var scenarios = []scenario{
	{
		name: "rpc", slots: 4, mean: 20 * time.Millisecond, deadline: 500 * time.Millisecond, tailCap: 4,
		target: 80 * time.Millisecond, interval: 400 * time.Millisecond,
		rfcTarget: backpressure.DefaultTarget, rfcInterval: backpressure.DefaultInterval,
		overload: 60 * time.Second, steady: 60 * time.Second, sessions: 2000,
	},
	{
		name: "llm", slots: 32, mean: 2 * time.Second, sigma: 0.5, deadline: 10 * time.Second, tailCap: 8,
		target: 1 * time.Second, interval: 4 * time.Second,
		rfcTarget: 1 * time.Second, rfcInterval: 4 * time.Second,
		overload: 60 * time.Second, steady: 600 * time.Second, sessions: 2000,
	},
}

// request is one simulated request.
type request struct {
	arrive  time.Duration // since the start of the phase
	service time.Duration
	key     string
}

// policy decides the fate of requests. admit runs at arrival with the
// current queue length and busy slots; serve runs when the request reaches
// the head of the queue and a slot is free, with its queueing delay and the
// queue length left behind it. Returning false sheds the request.
type policy interface {
	admit(r *request, now time.Time, queued, busy int) bool
	serve(r *request, now time.Time, waited time.Duration, left int) bool
}

// taildrop sheds arrivals when every slot is busy and the queue is full.
type taildrop struct{ slots, cap int }

func (p taildrop) admit(_ *request, _ time.Time, queued, busy int) bool {
	return busy < p.slots || queued < p.cap
}
func (taildrop) serve(*request, time.Time, time.Duration, int) bool { return true }

// fifo queues everything and drops requests whose client deadline has
// passed when they reach the head of the queue.
type fifo struct{ deadline time.Duration }

func (fifo) admit(*request, time.Time, int, int) bool { return true }
func (p fifo) serve(_ *request, _ time.Time, waited time.Duration, _ int) bool {
	return waited < p.deadline
}

// codelRFC is RFC 8289 head drop: the detector's control law drops the
// head at increasing frequency while a standing queue persists. As in the
// RFC, a queue holding at most one request after this one never drops.
type codelRFC struct{ det *backpressure.Detector }

func (codelRFC) admit(*request, time.Time, int, int) bool { return true }
func (p codelRFC) serve(_ *request, now time.Time, waited time.Duration, left int) bool {
	if left <= 1 {
		waited = 0
	}
	return p.det.ObserveAt(waited, now) != backpressure.Drop
}

// parley is this package's Gate, called the way a host calls it: once per
// request as it leaves the queue, with the request's key and queueing delay.
type parley struct{ gate *backpressure.Gate }

func (parley) admit(*request, time.Time, int, int) bool { return true }
func (p parley) serve(r *request, now time.Time, waited time.Duration, _ int) bool {
	return p.gate.AdmitAt(r.key, waited, now) == nil
}

var policies = []string{"taildrop", "fifo", "codel-rfc", "parley"}

// newPolicy builds a fresh policy for one phase of sc.
func newPolicy(t testing.TB, name string, sc scenario) policy {
	t.Helper()
	switch name {
	case "taildrop":
		return taildrop{slots: sc.slots, cap: sc.tailCap}
	case "fifo":
		return fifo{deadline: sc.deadline}
	case "codel-rfc":
		det, err := backpressure.NewDetector(sc.rfcTarget, sc.rfcInterval)
		if err != nil {
			t.Fatal(err)
		}
		return codelRFC{det: det}
	}
	det, err := backpressure.NewDetector(sc.target, sc.interval)
	if err != nil {
		t.Fatal(err)
	}
	// Per-session buckets as a chat host would set them: far above what a
	// session sends here, so they must never fire.
	gate, err := backpressure.NewGate(det, backpressure.GateConfig{KeyRate: 5, KeyBurst: 10})
	if err != nil {
		t.Fatal(err)
	}
	return parley{gate: gate}
}

// outcome is what one run of a phase measured.
type outcome struct {
	arrivals, shed int
	good           int             // completed within the deadline and within the phase
	waits          []time.Duration // queueing delay of every served request
	drain          time.Duration   // from the last arrival until the queue was empty
}

// departures is a min-heap of completion times.
type departures = timeHeap[completion]

type completion struct {
	at, arrive time.Duration
}

func (c completion) when() time.Duration { return c.at }

// timeHeap is a min-heap of events by their time, for container/heap.
type timeHeap[E interface{ when() time.Duration }] []E

func (h timeHeap[E]) Len() int           { return len(h) }
func (h timeHeap[E]) Less(i, j int) bool { return h[i].when() < h[j].when() }
func (h timeHeap[E]) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timeHeap[E]) Push(x any)        { *h = append(*h, x.(E)) }
func (h *timeHeap[E]) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// epoch is the virtual clock's origin.
var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// run pushes arrivals (sorted by arrival time) through sc's slots under pol.
// Requests completing after end do not count as goodput.
func run(sc scenario, pol policy, arrivals []request, end time.Duration) outcome {
	out := outcome{arrivals: len(arrivals)}
	var (
		queue    []*request
		busy     int
		deps     departures
		lastPop  time.Duration
		lastArr  time.Duration
		now      time.Duration
		nextArr  int
		dispatch = func() {
			for busy < sc.slots && len(queue) > 0 {
				r := queue[0]
				queue = queue[1:]
				lastPop = now
				waited := now - r.arrive
				if !pol.serve(r, epoch.Add(now), waited, len(queue)) {
					out.shed++
					continue
				}
				busy++
				out.waits = append(out.waits, waited)
				heap.Push(&deps, completion{at: now + r.service, arrive: r.arrive})
			}
		}
	)
	for nextArr < len(arrivals) || deps.Len() > 0 {
		if deps.Len() > 0 && (nextArr == len(arrivals) || deps[0].at <= arrivals[nextArr].arrive) {
			c := heap.Pop(&deps).(completion)
			now = c.at
			busy--
			if c.at-c.arrive <= sc.deadline && c.at <= end {
				out.good++
			}
			dispatch()
			continue
		}
		r := &arrivals[nextArr]
		nextArr++
		now, lastArr = r.arrive, r.arrive
		if !pol.admit(r, epoch.Add(now), len(queue), busy) {
			out.shed++
			continue
		}
		queue = append(queue, r)
		dispatch()
	}
	out.drain = max(0, lastPop-lastArr)
	return out
}

// arrivalGen draws arrivals for one phase of a scenario.
type arrivalGen struct {
	sc  scenario
	rng *rand.Rand
}

func (g arrivalGen) request(at time.Duration) request {
	sc := g.sc
	service := sc.mean
	if sc.sigma > 0 {
		mu := math.Log(sc.mean.Seconds()) - sc.sigma*sc.sigma/2
		service = time.Duration(math.Exp(mu+sc.sigma*g.rng.NormFloat64()) * float64(time.Second))
	}
	return request{arrive: at, service: service, key: "s" + strconv.Itoa(g.rng.IntN(sc.sessions))}
}

// poisson returns arrivals at rate per second over [0, dur).
func (g arrivalGen) poisson(perSec float64, dur time.Duration) []request {
	var rs []request
	for at := time.Duration(0); ; {
		at += time.Duration(g.rng.ExpFloat64() / perSec * float64(time.Second))
		if at >= dur {
			return rs
		}
		rs = append(rs, g.request(at))
	}
}

// bursts returns harmless bursts over [0, dur): every five intervals (give
// or take one), burstSize requests arrive evenly spread over a tenth of an
// interval.
func (g arrivalGen) bursts(dur time.Duration) []request {
	sc := g.sc
	n := burstSize(sc)
	var rs []request
	for at := sc.interval; ; {
		at += 4*sc.interval + time.Duration(g.rng.Int64N(int64(2*sc.interval)))
		if at >= dur {
			return rs
		}
		for i := range n {
			rs = append(rs, g.request(at+time.Duration(i)*sc.interval/10/time.Duration(n)))
		}
	}
}

// burstSize is the size of a phase B burst: on top of half load, half the
// slots are free, and the rest of the burst queues and drains with the
// spare half of the capacity within about half an interval, so it is gone
// well within one interval.
func burstSize(sc scenario) int {
	return sc.slots/2 + int(sc.capacity()/2*sc.interval.Seconds()/2)
}

func sorted(rs []request) []request {
	slices.SortStableFunc(rs, func(a, b request) int {
		return int(a.arrive - b.arrive)
	})
	return rs
}

// simRow is one printed line of the simulation.
type simRow struct {
	scenario, policy                string
	goodput, p99, falseShed, shed80 float64
	drain                           time.Duration
}

func (r simRow) String() string {
	return fmt.Sprintf("sim scenario=%s policy=%s goodput_pct=%.1f p99_queue_ms=%.1f false_shed_pct=%.2f shed_at_80_pct=%.2f drain_ms=%.1f",
		r.scenario, r.policy, r.goodput, r.p99, r.falseShed, r.shed80, float64(r.drain)/float64(time.Millisecond))
}

// simulate runs the three phases of sc under the named policy with seed.
// Each phase starts from an empty system with a fresh policy.
func simulate(t testing.TB, sc scenario, name string, seed uint64) simRow {
	t.Helper()
	gen := func(phase uint64) arrivalGen {
		return arrivalGen{sc: sc, rng: rand.New(rand.NewPCG(seed, phase))}
	}
	row := simRow{scenario: sc.name, policy: name}
	phase := func(arrivals []request, end time.Duration) outcome {
		pol := newPolicy(t, name, sc)
		out := run(sc, pol, arrivals, end)
		if p, ok := pol.(parley); ok {
			if s := p.gate.Stats(); s.RateLimitedKey+s.RateLimitedGlobal != 0 || s.Overloaded != uint64(out.shed) {
				t.Errorf("%s seed %d: gate stats %+v, want no rate limiting and %d overload sheds", sc.name, seed, s, out.shed)
			}
		}
		return out
	}

	// Phase A: Poisson at twice capacity.
	a := phase(gen(1).poisson(2*sc.capacity(), sc.overload), sc.overload)
	row.goodput = 100 * float64(a.good) / (sc.capacity() * sc.overload.Seconds())
	row.p99 = float64(percentile(a.waits, 0.99)) / float64(time.Millisecond)
	row.drain = a.drain

	// Phase B: half load plus bursts that drain within an interval.
	g := gen(2)
	b := phase(sorted(append(g.poisson(sc.capacity()/2, sc.steady), g.bursts(sc.steady)...)), sc.steady)
	row.falseShed = 100 * float64(b.shed) / float64(b.arrivals)

	// Phase C: Poisson at 80% of capacity.
	c := phase(gen(3).poisson(0.8*sc.capacity(), sc.steady), sc.steady)
	row.shed80 = 100 * float64(c.shed) / float64(c.arrivals)
	return row
}

// percentile returns the q-quantile of ds (nearest rank).
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(math.Ceil(q*float64(len(s))))-1)]
}

// TestOverloadSimulation runs every scenario under every policy, prints one
// line each, and asserts the targets for parley on the printed seed and on
// four more. Each phase starts from an empty system and a fresh policy.
//
//   - goodput_pct: phase A (Poisson at twice capacity for 60 s): requests
//     completed within their deadline and within the 60 s, as a percentage
//     of what the slots can serve in 60 s.
//   - p99_queue_ms: phase A: 99th percentile of the queueing delay of the
//     requests that were served.
//   - drain_ms: phase A: from the last arrival until the queue was empty.
//   - false_shed_pct: phase B (half load plus bursts that drain within an
//     interval): requests shed, as a percentage of arrivals.
//   - shed_at_80_pct: phase C (Poisson at 80% of capacity): requests shed,
//     as a percentage of arrivals.
func TestOverloadSimulation(t *testing.T) {
	const printedSeed = 1
	for _, sc := range scenarios {
		for _, name := range policies {
			row := simulate(t, sc, name, printedSeed)
			fmt.Println(row)
			if name == "parley" {
				checkTargets(t, sc, row)
			}
		}
	}
	if testing.Short() {
		return
	}
	for seed := uint64(2); seed <= 5; seed++ {
		for _, sc := range scenarios {
			checkTargets(t, sc, simulate(t, sc, "parley", seed))
		}
	}
}

// checkTargets asserts the targets for a parley row.
func checkTargets(t *testing.T, sc scenario, row simRow) {
	t.Helper()
	if row.goodput < 95 {
		t.Errorf("%v: goodput_pct = %.1f, want >= 95", row, row.goodput)
	}
	if row.falseShed > 1 {
		t.Errorf("%v: false_shed_pct = %.2f, want <= 1", row, row.falseShed)
	}
	if row.shed80 != 0 {
		t.Errorf("%v: shed_at_80_pct = %.2f, want 0", row, row.shed80)
	}
	if row.drain > sc.interval {
		t.Errorf("%v: drain = %v, want <= one interval (%v)", row, row.drain, sc.interval)
	}
}
