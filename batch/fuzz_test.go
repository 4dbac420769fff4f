package batch_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/parley-go/parley/batch"
)

// Batch function behaviours in FuzzBatcher, chosen by the ops.
const (
	modeOK = iota
	modeError
	modeWrongCount
	modePanic
	modeItemErrors // odd ids fail
	modeSlow       // takes 40 ms unless its ctx ends first
	numModes
)

var (
	errFuzzBatch = errors.New("fuzz: batch failed")
	errFuzzItem  = errors.New("fuzz: odd item")
)

// FuzzBatcher drives a Batcher, in a synctest bubble, with a configuration
// and a sequence of operations decoded from data: calls with contexts that
// can or cannot end, cancellations, timeouts, waits, batch function
// behaviours and Close. It checks that every accepted request reaches the
// batch function at most once and in order, that every caller is answered
// with its own result or a reason, that nothing accepted is lost (a request
// whose caller did not give up reached the batch function exactly once), and
// that a batch's context ends only after all its callers gave up.
func FuzzBatcher(f *testing.F) {
	f.Add([]byte{0, 3, 0, 1, 0, 5, 0, 0, 0, 0x80, 0x40, 0x60, 0x9f, 0x40})
	f.Add([]byte{1, 2, 1, 0, 1, 9, 0x40, 0x40, 0x40, 0x40, 0x60, 0x61, 0x85, 0x40, 0x40, 0xe0, 0x40})
	f.Add([]byte{0, 4, 2, 3, 0, 1, 0xa5, 0x40, 0x40, 0x40, 0x40, 0x60, 0x80, 0xa4, 0x40, 0x40, 0x81, 0x40, 0x62})
	f.Add([]byte{1, 1, 0, 0, 0, 0, 0xa1, 0x40, 0x40, 0xa2, 0x40, 0x40, 0xa3, 0x40, 0x40, 0x88, 0xa0, 0x40})
	f.Add([]byte{0, 3, 1, 2, 1, 3, 0xc3, 0xc8, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0xe0, 0x40, 0x60})
	f.Fuzz(func(t *testing.T, data []byte) {
		synctest.Test(t, func(t *testing.T) { fuzzBatcher(t, data) })
	})
}

// fuzzRun is the state of one FuzzBatcher run.
type fuzzRun struct {
	maxInFlight int
	mode        atomic.Int32

	mu       sync.Mutex
	ctxs     map[int]context.Context // every caller's ctx
	seen     map[int]int             // id → batch function calls that got it
	lastSeen int                     // the last id the batch function got
	answers  map[int]answer
	wg       sync.WaitGroup
}

func fuzzBatcher(t *testing.T, data []byte) {
	if len(data) < 6 {
		return
	}
	cfg := batch.Config{
		Policy:      batch.Policy(data[0] & 1),
		MaxSize:     1 + int(data[1]%5),
		MaxInFlight: 1 + int(data[2]%3),
		FailFast:    data[4]&1 == 1,
		MaxWait:     time.Duration(1+data[5]%20) * time.Millisecond,
	}
	cfg.QueueSize = cfg.MaxSize + int(data[3]%4)
	ops := data[6:]

	r := &fuzzRun{
		maxInFlight: cfg.MaxInFlight,
		ctxs:        map[int]context.Context{},
		seen:        map[int]int{},
		lastSeen:    -1,
		answers:     map[int]answer{},
	}
	b, err := batch.New(r.fn(t), cfg)
	if err != nil {
		t.Fatalf("New(%+v) = %v", cfg, err)
	}
	start := time.Now()
	var cancels []context.CancelFunc
	closed := false
	for id, op := range ops {
		kind, arg := op>>5, int(op&31)
		switch kind {
		case 0, 1, 2: // a call that cannot end, one that can, one with a timeout
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			switch kind {
			case 1:
				ctx, cancel = context.WithCancel(ctx)
			case 2:
				ctx, cancel = context.WithTimeout(ctx, time.Duration(1+arg)*time.Millisecond)
			}
			cancels = append(cancels, cancel)
			r.mu.Lock()
			r.ctxs[id] = ctx
			r.mu.Unlock()
			r.wg.Go(func() {
				resp, err := b.Do(ctx, id)
				r.mu.Lock()
				defer r.mu.Unlock()
				r.answers[id] = answer{resp, err, time.Since(start)}
			})
		case 3:
			if len(cancels) > 0 {
				cancels[arg%len(cancels)]()
			}
		case 4:
			time.Sleep(time.Duration(arg) * time.Millisecond)
		case 5:
			r.mode.Store(int32(arg % numModes))
		case 6:
			if !closed {
				closed = true
				go b.Close()
			}
		default:
			time.Sleep(time.Duration(arg) * 10 * time.Millisecond)
		}
		synctest.Wait()
	}
	b.Close()
	r.wg.Wait()
	for _, cancel := range cancels {
		cancel()
	}
	r.check(t, cfg, b.Stats())
}

// fn is the batch function: it checks what it is given and behaves as the
// current mode says.
func (r *fuzzRun) fn(t *testing.T) batch.Func[int, int] {
	return func(ctx context.Context, reqs []int) ([]int, error) {
		r.mu.Lock()
		for i, id := range reqs {
			if r.seen[id]++; r.seen[id] > 1 {
				t.Errorf("batch function got request %d again", id)
			}
			if i > 0 && id <= reqs[i-1] {
				t.Errorf("batch %v is out of order", reqs)
			}
		}
		if r.maxInFlight == 1 && reqs[0] <= r.lastSeen {
			t.Errorf("batch %v dispatched after request %d", reqs, r.lastSeen)
		}
		r.lastSeen = reqs[len(reqs)-1]
		r.mu.Unlock()

		switch r.mode.Load() {
		case modeError:
			return nil, errFuzzBatch
		case modeWrongCount:
			return times10(reqs)[1:], nil
		case modePanic:
			panic("fuzz: batch function panicked")
		case modeItemErrors:
			errs := make(batch.ItemErrors, len(reqs))
			for i, id := range reqs {
				if id%2 == 1 {
					errs[i] = errFuzzItem
				}
			}
			return times10(reqs), errs
		case modeSlow:
			select {
			case <-time.After(40 * time.Millisecond):
			case <-ctx.Done():
				r.mu.Lock()
				defer r.mu.Unlock()
				for _, id := range reqs {
					if r.ctxs[id].Err() == nil {
						t.Errorf("batch ctx of %v ended while caller %d still waits", reqs, id)
					}
				}
				return nil, ctx.Err()
			}
		default:
			time.Sleep(5 * time.Millisecond)
		}
		return times10(reqs), nil
	}
}

// check classifies every answer against what the batch function saw.
func (r *fuzzRun) check(t *testing.T, cfg batch.Config, s batch.Stats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.answers) != len(r.ctxs) {
		t.Errorf("%d callers answered, want %d", len(r.answers), len(r.ctxs))
	}
	var gaveUp uint64
	for id, a := range r.answers {
		seen := r.seen[id]
		switch {
		case a.err == nil:
			if a.resp != id*10 || seen != 1 {
				t.Errorf("Do(%d) = %d, nil after %d batch calls; want %d after 1", id, a.resp, seen, id*10)
			}
		case errors.Is(a.err, context.Canceled) || errors.Is(a.err, context.DeadlineExceeded):
			gaveUp++
			if r.ctxs[id].Err() == nil {
				t.Errorf("Do(%d) = %v but its ctx has not ended", id, a.err)
			}
		case a.err == batch.ErrFull || a.err == batch.ErrClosed:
			if seen != 0 {
				t.Errorf("Do(%d) = %v, but the batch function got it", id, a.err)
			}
			if a.err == batch.ErrFull && !cfg.FailFast {
				t.Errorf("Do(%d) = %v without FailFast", id, a.err)
			}
		case a.err == errFuzzBatch || a.err == errFuzzItem || errors.Is(a.err, batch.ErrResultCount) || errors.Is(a.err, batch.ErrPanic):
			if seen != 1 {
				t.Errorf("Do(%d) = %v after %d batch calls, want 1", id, a.err, seen)
			}
		default:
			t.Errorf("Do(%d) = unexpected %v", id, a.err)
		}
	}
	var items uint64
	for _, n := range r.seen {
		items += uint64(n)
	}
	if s.Items != items || s.Canceled+s.Abandoned != gaveUp || s.Queued+s.Blocked+s.InFlight != 0 {
		t.Errorf("Stats() = %+v; want Items %d, Canceled+Abandoned %d, nothing left", s, items, gaveUp)
	}
	if t.Failed() {
		t.Logf("config %+v", cfg)
	}
}
