package batch_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/parley-go/parley/batch"
)

// backend is a batch function for tests: each call records its requests and
// the time since start, sleeps latency, and answers req*10 for every req.
type backend struct {
	start   time.Time
	latency time.Duration

	mu      sync.Mutex
	batches []dispatch
}

// dispatch is one batch call as the backend saw it.
type dispatch struct {
	at  time.Duration // since the test's start
	ids []int
}

func newBackend(latency time.Duration) *backend {
	return &backend{start: time.Now(), latency: latency}
}

func (be *backend) fn(ctx context.Context, reqs []int) ([]int, error) {
	be.record(reqs)
	time.Sleep(be.latency)
	return times10(reqs), nil
}

func (be *backend) record(reqs []int) {
	be.mu.Lock()
	defer be.mu.Unlock()
	be.batches = append(be.batches, dispatch{time.Since(be.start), slices.Clone(reqs)})
}

func (be *backend) seen() []dispatch {
	be.mu.Lock()
	defer be.mu.Unlock()
	return slices.Clone(be.batches)
}

func times10(reqs []int) []int {
	out := make([]int, len(reqs))
	for i, r := range reqs {
		out[i] = r * 10
	}
	return out
}

func newBatcher(t *testing.T, fn batch.Func[int, int], cfg batch.Config) *batch.Batcher[int, int] {
	t.Helper()
	b, err := batch.New(fn, cfg)
	if err != nil {
		t.Fatalf("New(%+v) = %v", cfg, err)
	}
	return b
}

// answer is what one Do call returned, and when (since the test's start).
type answer struct {
	resp int
	err  error
	at   time.Duration
}

// callers runs Do calls in goroutines and records their answers by id.
type callers struct {
	b     *batch.Batcher[int, int]
	start time.Time
	wg    sync.WaitGroup

	mu      sync.Mutex
	answers map[int]answer
}

func newCallers(b *batch.Batcher[int, int], start time.Time) *callers {
	return &callers{b: b, start: start, answers: map[int]answer{}}
}

// do starts Do(ctx, id) and, inside a bubble, waits until it has queued or
// blocked, so that ids are accepted in the order do is called.
func (cs *callers) do(ctx context.Context, id int) {
	cs.wg.Go(func() {
		resp, err := cs.b.Do(ctx, id)
		cs.mu.Lock()
		defer cs.mu.Unlock()
		if _, dup := cs.answers[id]; dup {
			panic(fmt.Sprintf("id %d used twice", id))
		}
		cs.answers[id] = answer{resp, err, time.Since(cs.start)}
	})
	synctest.Wait()
}

// answer returns id's answer, failing t if there is none yet.
func (cs *callers) answer(t *testing.T, id int) answer {
	t.Helper()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	a, ok := cs.answers[id]
	if !ok {
		t.Fatalf("Do(%d) has not returned", id)
	}
	return a
}

// pending reports whether id's Do call has not returned yet.
func (cs *callers) pending(id int) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	_, ok := cs.answers[id]
	return !ok
}

// sleepUntil sleeps until d after start.
func sleepUntil(start time.Time, d time.Duration) {
	time.Sleep(time.Until(start.Add(d)))
}

func TestSchedule(t *testing.T) {
	type arrival struct {
		at time.Duration
		id int
	}
	const ms = time.Millisecond
	tests := []struct {
		name     string
		cfg      batch.Config
		latency  time.Duration
		arrivals []arrival
		want     []dispatch
	}{{
		name:     "idle/lone request leaves at once",
		cfg:      batch.Config{MaxSize: 4},
		latency:  30 * ms,
		arrivals: []arrival{{0, 1}, {100 * ms, 2}},
		want:     []dispatch{{0, []int{1}}, {100 * ms, []int{2}}},
	}, {
		name:     "idle/accumulates while busy, up to MaxSize",
		cfg:      batch.Config{MaxSize: 4},
		latency:  30 * ms,
		arrivals: []arrival{{0, 1}, {5 * ms, 2}, {6 * ms, 3}, {7 * ms, 4}, {8 * ms, 5}, {9 * ms, 6}},
		want:     []dispatch{{0, []int{1}}, {30 * ms, []int{2, 3, 4, 5}}, {60 * ms, []int{6}}},
	}, {
		name:     "idle/spare slot waits MaxWait",
		cfg:      batch.Config{MaxSize: 4, MaxInFlight: 2, MaxWait: 10 * ms},
		latency:  100 * ms,
		arrivals: []arrival{{0, 1}, {5 * ms, 2}, {8 * ms, 3}},
		want:     []dispatch{{0, []int{1}}, {15 * ms, []int{2, 3}}},
	}, {
		name:     "idle/spare slot leaves when full",
		cfg:      batch.Config{MaxSize: 2, MaxInFlight: 2, MaxWait: 10 * ms},
		latency:  100 * ms,
		arrivals: []arrival{{0, 1}, {5 * ms, 2}, {6 * ms, 3}},
		want:     []dispatch{{0, []int{1}}, {6 * ms, []int{2, 3}}},
	}, {
		name:     "idle/no batching with MaxSize 1",
		cfg:      batch.Config{MaxSize: 1},
		latency:  30 * ms,
		arrivals: []arrival{{0, 1}, {0, 2}, {0, 3}},
		want:     []dispatch{{0, []int{1}}, {30 * ms, []int{2}}, {60 * ms, []int{3}}},
	}, {
		name:     "fixed/lone request waits the window",
		cfg:      batch.Config{Policy: batch.FixedWindow, MaxSize: 4, MaxWait: 50 * ms},
		latency:  30 * ms,
		arrivals: []arrival{{0, 1}},
		want:     []dispatch{{50 * ms, []int{1}}},
	}, {
		name:     "fixed/full batch leaves at once",
		cfg:      batch.Config{Policy: batch.FixedWindow, MaxSize: 4, MaxWait: 50 * ms},
		latency:  30 * ms,
		arrivals: []arrival{{0, 1}, {10 * ms, 2}, {20 * ms, 3}, {30 * ms, 4}, {31 * ms, 5}},
		want:     []dispatch{{30 * ms, []int{1, 2, 3, 4}}, {81 * ms, []int{5}}},
	}, {
		name:     "fixed/window starts with the oldest request",
		cfg:      batch.Config{Policy: batch.FixedWindow, MaxSize: 4, MaxWait: 50 * ms},
		latency:  30 * ms,
		arrivals: []arrival{{0, 1}, {40 * ms, 2}, {60 * ms, 3}},
		want:     []dispatch{{50 * ms, []int{1, 2}}, {110 * ms, []int{3}}},
	}, {
		name:     "fixed/expired window waits for a slot",
		cfg:      batch.Config{Policy: batch.FixedWindow, MaxSize: 2, MaxWait: 50 * ms},
		latency:  100 * ms,
		arrivals: []arrival{{0, 1}, {0, 2}, {10 * ms, 3}},
		want:     []dispatch{{0, []int{1, 2}}, {100 * ms, []int{3}}},
	}, {
		name:     "fixed/two slots",
		cfg:      batch.Config{Policy: batch.FixedWindow, MaxSize: 2, MaxWait: 50 * ms, MaxInFlight: 2},
		latency:  100 * ms,
		arrivals: []arrival{{0, 1}, {0, 2}, {10 * ms, 3}, {20 * ms, 4}, {30 * ms, 5}},
		want:     []dispatch{{0, []int{1, 2}}, {20 * ms, []int{3, 4}}, {100 * ms, []int{5}}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				be := newBackend(tt.latency)
				b := newBatcher(t, be.fn, tt.cfg)
				cs := newCallers(b, be.start)
				for _, a := range tt.arrivals {
					sleepUntil(be.start, a.at)
					cs.do(context.Background(), a.id)
				}
				cs.wg.Wait()
				b.Close()

				got := be.seen()
				if !slices.EqualFunc(got, tt.want, func(a, b dispatch) bool {
					return a.at == b.at && slices.Equal(a.ids, b.ids)
				}) {
					t.Fatalf("batches = %v, want %v", got, tt.want)
				}
				for _, d := range tt.want {
					for _, id := range d.ids {
						want := answer{resp: id * 10, at: d.at + tt.latency}
						if got := cs.answer(t, id); got != want {
							t.Errorf("Do(%d) = %+v, want %+v", id, got, want)
						}
					}
				}
			})
		})
	}
}

func TestBatchFunctionFailures(t *testing.T) {
	errBackend := errors.New("backend down")
	errItem := errors.New("item rejected")
	// Each fn fails the batch [1 2 3] its own way and answers later batches.
	type want struct {
		resp int
		err  error // matched with errors.Is, or exactly when exact
	}
	tests := []struct {
		name  string
		fail  func(reqs []int) ([]int, error)
		want  [3]want
		exact bool   // errors must be the very values returned
		msg   string // every error message contains msg
	}{{
		name:  "whole batch error",
		fail:  func(reqs []int) ([]int, error) { return nil, errBackend },
		want:  [3]want{{0, errBackend}, {0, errBackend}, {0, errBackend}},
		exact: true,
	}, {
		name: "too few results",
		fail: func(reqs []int) ([]int, error) { return times10(reqs)[:2], nil },
		want: [3]want{{0, batch.ErrResultCount}, {0, batch.ErrResultCount}, {0, batch.ErrResultCount}},
		msg:  "2 results for 3 requests",
	}, {
		name: "too many results",
		fail: func(reqs []int) ([]int, error) { return append(times10(reqs), 0), nil },
		want: [3]want{{0, batch.ErrResultCount}, {0, batch.ErrResultCount}, {0, batch.ErrResultCount}},
		msg:  "4 results for 3 requests",
	}, {
		name: "item errors",
		fail: func(reqs []int) ([]int, error) {
			return times10(reqs), batch.ItemErrors{nil, errItem, nil}
		},
		want:  [3]want{{10, nil}, {0, errItem}, {30, nil}},
		exact: true,
	}, {
		name: "wrapped item errors",
		fail: func(reqs []int) ([]int, error) {
			return times10(reqs), fmt.Errorf("model: %w", batch.ItemErrors{errItem, nil, nil})
		},
		want:  [3]want{{0, errItem}, {20, nil}, {30, nil}},
		exact: true,
	}, {
		name: "item errors without results",
		fail: func(reqs []int) ([]int, error) {
			return nil, batch.ItemErrors{errItem, errItem, errItem}
		},
		want:  [3]want{{0, errItem}, {0, errItem}, {0, errItem}},
		exact: true,
	}, {
		name: "nil item errors",
		fail: func(reqs []int) ([]int, error) {
			var errs batch.ItemErrors // no request failed
			return times10(reqs), errs
		},
		want:  [3]want{{10, nil}, {20, nil}, {30, nil}},
		exact: true,
	}, {
		name: "too few item errors",
		fail: func(reqs []int) ([]int, error) {
			return times10(reqs), batch.ItemErrors{nil, errItem}
		},
		want: [3]want{{0, batch.ErrResultCount}, {0, batch.ErrResultCount}, {0, batch.ErrResultCount}},
		msg:  "2 item errors and 3 results for 3 requests",
	}, {
		name: "item errors with too few results",
		fail: func(reqs []int) ([]int, error) {
			return times10(reqs)[:1], batch.ItemErrors{nil, errItem, nil}
		},
		want: [3]want{{0, batch.ErrResultCount}, {0, batch.ErrResultCount}, {0, batch.ErrResultCount}},
		msg:  "3 item errors and 1 results for 3 requests",
	}, {
		name: "panic",
		fail: func(reqs []int) ([]int, error) { panic("model exploded") },
		want: [3]want{{0, batch.ErrPanic}, {0, batch.ErrPanic}, {0, batch.ErrPanic}},
		msg:  "model exploded",
	}, {
		name: "panic with nil",
		fail: func(reqs []int) ([]int, error) { panic(nil) },
		want: [3]want{{0, batch.ErrPanic}, {0, batch.ErrPanic}, {0, batch.ErrPanic}},
		msg:  "nil",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				be := newBackend(time.Millisecond)
				fn := func(ctx context.Context, reqs []int) ([]int, error) {
					if reqs[0] == 1 {
						return tt.fail(reqs)
					}
					return be.fn(ctx, reqs)
				}
				b := newBatcher(t, fn, batch.Config{Policy: batch.FixedWindow, MaxSize: 3})
				defer b.Close()
				cs := newCallers(b, be.start)
				for id := 1; id <= 4; id++ {
					cs.do(context.Background(), id)
				}
				cs.wg.Wait()
				for i, w := range tt.want {
					got := cs.answer(t, i+1)
					if got.resp != w.resp || !errors.Is(got.err, w.err) ||
						tt.exact && got.err != w.err ||
						!strings.Contains(fmt.Sprint(got.err), tt.msg) {
						t.Errorf("Do(%d) = %d, %v; want %d, %v (message with %q)", i+1, got.resp, got.err, w.resp, w.err, tt.msg)
					}
				}
				// The batcher keeps serving.
				if got := cs.answer(t, 4); got.resp != 40 || got.err != nil {
					t.Errorf("Do(4) after the failed batch = %d, %v; want 40, nil", got.resp, got.err)
				}
				wantFailed := uint64(1)
				if tt.want[0].err == nil || tt.want[0].err == errItem {
					wantFailed = 0 // item errors do not fail the batch as a whole
				}
				if s := b.Stats(); s.Failed != wantFailed || s.Batches != 2 {
					t.Errorf("Stats() Failed, Batches = %d, %d; want %d, 2", s.Failed, s.Batches, wantFailed)
				}
			})
		})
	}
}

func TestCancelBeforeDispatch(t *testing.T) {
	// Do(1) leaves at once and takes 100 ms; 2, 3 and 4 queue or block.
	tests := []struct {
		name                string
		queueSize           int
		cancel              int
		wantQueued, blocked int // after the cancel
		wantSeen            []int
	}{
		{"queued", 4, 3, 2, 0, []int{1, 2, 4}},
		{"blocked", 1, 3, 1, 1, []int{1, 2, 4}},
		{"queued makes room for blocked", 1, 2, 1, 1, []int{1, 3, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				be := newBackend(100 * time.Millisecond)
				b := newBatcher(t, be.fn, batch.Config{MaxSize: 1, QueueSize: tt.queueSize})
				cs := newCallers(b, be.start)
				ctx, cancel := context.WithCancel(context.Background())
				for id := 1; id <= 4; id++ {
					if id == tt.cancel {
						cs.do(ctx, id)
					} else {
						cs.do(context.Background(), id)
					}
				}

				time.Sleep(10 * time.Millisecond)
				cancel()
				synctest.Wait()
				want := answer{err: context.Canceled, at: 10 * time.Millisecond}
				if got := cs.answer(t, tt.cancel); got != want {
					t.Errorf("Do(%d) after cancel = %+v, want %+v", tt.cancel, got, want)
				}
				if s := b.Stats(); s.Queued != tt.wantQueued || s.Blocked != tt.blocked {
					t.Errorf("Stats() Queued, Blocked after cancel = %d, %d; want %d, %d", s.Queued, s.Blocked, tt.wantQueued, tt.blocked)
				}
				cs.wg.Wait()
				b.Close()

				var ids []int
				for _, d := range be.seen() {
					ids = append(ids, d.ids...)
				}
				if !slices.Equal(ids, tt.wantSeen) {
					t.Errorf("backend saw %v, want %v", ids, tt.wantSeen)
				}
				if s := b.Stats(); s.Canceled != 1 || s.Items != 3 {
					t.Errorf("Stats() Canceled, Items = %d, %d; want 1, 3", s.Canceled, s.Items)
				}
			})
		})
	}
}

func TestBatchContext(t *testing.T) {
	const (
		ms      = time.Millisecond
		latency = 100 * ms
		stays   = 0  // a caller whose ctx can end but does not
		cannot  = -1 // a caller with context.Background
	)
	tests := []struct {
		name       string
		giveUpAt   [3]time.Duration // when each caller's ctx ends, or stays, or cannot
		wantCancel time.Duration    // when the batch ctx ends; 0: never
	}{
		{"all give up", [3]time.Duration{10 * ms, 30 * ms, 20 * ms}, 30 * ms},
		{"one stays", [3]time.Duration{10 * ms, stays, 20 * ms}, 0},
		{"one cannot give up", [3]time.Duration{10 * ms, cannot, 20 * ms}, 0},
		{"none give up", [3]time.Duration{stays, stays, stays}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				var ctxEnded atomic.Int64 // since start
				fn := func(ctx context.Context, reqs []int) ([]int, error) {
					select {
					case <-time.After(latency):
						return times10(reqs), nil
					case <-ctx.Done():
						ctxEnded.Store(int64(time.Since(start)))
						return nil, ctx.Err()
					}
				}
				b := newBatcher(t, fn, batch.Config{Policy: batch.FixedWindow, MaxSize: 3})
				defer b.Close()
				cs := newCallers(b, start)
				for i, at := range tt.giveUpAt {
					ctx, cancel := context.WithCancel(context.Background())
					switch {
					case at > 0:
						ctx, cancel = context.WithTimeout(context.Background(), at)
					case at == cannot:
						ctx = context.Background()
					}
					defer cancel()
					cs.do(ctx, i+1) // all three form one batch at 0
				}
				cs.wg.Wait()
				synctest.Wait() // fn sees its ctx end after the last caller has left

				if got := time.Duration(ctxEnded.Load()); got != tt.wantCancel {
					t.Errorf("batch ctx ended at %v, want %v (0: never)", got, tt.wantCancel)
				}
				for i, at := range tt.giveUpAt {
					want := answer{resp: (i + 1) * 10, at: latency}
					if at > 0 {
						want = answer{err: context.DeadlineExceeded, at: at}
					}
					if got := cs.answer(t, i+1); got != want {
						t.Errorf("Do(%d) = %+v, want %+v", i+1, got, want)
					}
				}
			})
		})
	}
}

// TestBatchContextDerived derives contexts from a batch function's context
// as a host does (a timeout per call, an AfterFunc): they end when the
// batch context does, a stopped AfterFunc never runs, and no goroutine
// waits on the batch context for them.
func TestBatchContextDerived(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const giveUp = 10 * time.Millisecond
		start := time.Now()
		var (
			mu                            sync.Mutex
			watchers                      int
			derivedEnded, afterRan        time.Duration
			derivedErr                    error
			stoppedRan, stopOK, stopAgain bool
			lateRan                       = make(chan struct{})
		)
		fn := func(ctx context.Context, reqs []int) ([]int, error) {
			derived, cancel := context.WithTimeout(ctx, time.Hour)
			defer cancel()
			context.AfterFunc(ctx, func() {
				mu.Lock()
				defer mu.Unlock()
				afterRan = time.Since(start)
			})
			// The method itself, as the context package calls it.
			af, isAF := ctx.(interface{ AfterFunc(func()) func() bool })
			if !isAF {
				return nil, errors.New("the batch context has no AfterFunc method")
			}
			stop := af.AfterFunc(func() {
				mu.Lock()
				defer mu.Unlock()
				stoppedRan = true
			})
			ok := stop()
			buf := make([]byte, 1<<20)
			n := strings.Count(string(buf[:runtime.Stack(buf, true)]), "created by context.(*cancelCtx).propagateCancel")
			<-derived.Done()
			mu.Lock()
			watchers, stopOK, stopAgain = n, ok, stop()
			derivedEnded, derivedErr = time.Since(start), derived.Err()
			mu.Unlock()
			context.AfterFunc(ctx, func() { close(lateRan) }) // already cancelled: runs at once
			return nil, ctx.Err()
		}
		b := newBatcher(t, fn, batch.Config{})
		defer b.Close()
		ctx, cancel := context.WithTimeout(context.Background(), giveUp)
		defer cancel()
		if _, err := b.Do(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Do = %v, want context.DeadlineExceeded", err)
		}
		<-lateRan
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		if watchers != 0 {
			t.Errorf("%d goroutines wait on the batch context for contexts derived from it, want 0", watchers)
		}
		if derivedEnded != giveUp || !errors.Is(derivedErr, context.Canceled) {
			t.Errorf("derived context ended at %v with %v, want %v with context.Canceled", derivedEnded, derivedErr, giveUp)
		}
		if afterRan != giveUp {
			t.Errorf("AfterFunc ran at %v, want %v", afterRan, giveUp)
		}
		if !stopOK || stopAgain || stoppedRan {
			t.Errorf("stop() = %v, then %v, stopped func ran: %v; want true, false, false", stopOK, stopAgain, stoppedRan)
		}
	})
}

func TestBatchContextValues(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type key struct{}
		var got []string
		fn := func(ctx context.Context, reqs []int) ([]int, error) {
			_, hasDeadline := ctx.Deadline()
			got = append(got, fmt.Sprint(ctx.Value(key{}), hasDeadline, ctx.Err(), ctx))
			return times10(reqs), nil
		}
		b := newBatcher(t, fn, batch.Config{})
		ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), key{}, "caller"), time.Hour)
		defer cancel()
		if _, err := b.Do(ctx, 1); err != nil {
			t.Fatalf("Do = %v", err)
		}
		b.Close()
		if want := []string{"<nil> false <nil> batch.Context"}; !slices.Equal(got, want) {
			t.Errorf("batch ctx (value, has deadline, err, string) = %q, want %q", got, want)
		}
	})
}

func TestQueueFull(t *testing.T) {
	for _, failFast := range []bool{false, true} {
		t.Run(fmt.Sprintf("failfast=%v", failFast), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				be := newBackend(100 * time.Millisecond)
				b := newBatcher(t, be.fn, batch.Config{MaxSize: 2, QueueSize: 2, FailFast: failFast})
				cs := newCallers(b, be.start)
				for id := 1; id <= 5; id++ { // 1 leaves at once, 2 and 3 fill the queue
					cs.do(context.Background(), id)
				}
				if failFast {
					for _, id := range []int{4, 5} {
						if got, want := cs.answer(t, id), (answer{err: batch.ErrFull}); got != want {
							t.Errorf("Do(%d) on a full queue = %+v, want %+v", id, got, want)
						}
					}
				} else if s := b.Stats(); s.Blocked != 2 || s.Queued != 2 || !cs.pending(4) {
					t.Errorf("Stats() Blocked, Queued = %d, %d, Do(4) pending %v; want 2, 2, true", s.Blocked, s.Queued, cs.pending(4))
				}
				cs.wg.Wait()
				b.Close()

				want := []dispatch{{0, []int{1}}, {100 * time.Millisecond, []int{2, 3}}, {200 * time.Millisecond, []int{4, 5}}}
				wantRejected := uint64(0)
				if failFast {
					want, wantRejected = want[:2], 2
				}
				if got := be.seen(); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("batches = %v, want %v", got, want)
				}
				if s := b.Stats(); s.Rejected != wantRejected {
					t.Errorf("Stats().Rejected = %d, want %d", s.Rejected, wantRejected)
				}
			})
		})
	}
}

func TestClose(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name     string
		cfg      batch.Config
		ids      int   // Do(1) ... Do(ids) at 0, in order
		refused  []int // blocked at Close: answered ErrClosed
		want     []dispatch
		closedAt time.Duration
	}{{
		name: "queued requests leave at once",
		// The window is an hour: only Close can dispatch the requests.
		cfg:      batch.Config{Policy: batch.FixedWindow, MaxWait: time.Hour, MaxSize: 4},
		ids:      3,
		want:     []dispatch{{ms, []int{1, 2, 3}}},
		closedAt: 11 * ms,
	}, {
		name: "queued requests wait for a slot",
		cfg: batch.Config{
			Policy: batch.FixedWindow, MaxWait: time.Hour, MaxSize: 2, QueueSize: 4, MaxInFlight: 2,
		},
		ids:      5, // [1 2] and [3 4] at once; 5 waits for a slot
		want:     []dispatch{{0, []int{1, 2}}, {0, []int{3, 4}}, {10 * ms, []int{5}}},
		closedAt: 20 * ms,
	}, {
		name:     "blocked callers are refused",
		cfg:      batch.Config{MaxSize: 2, QueueSize: 2},
		ids:      5, // [1] at once; 2, 3 queue; 4, 5 block
		refused:  []int{4, 5},
		want:     []dispatch{{0, []int{1}}, {10 * ms, []int{2, 3}}},
		closedAt: 20 * ms,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				be := newBackend(10 * ms)
				b := newBatcher(t, be.fn, tt.cfg)
				cs := newCallers(b, be.start)
				for id := 1; id <= tt.ids; id++ {
					cs.do(context.Background(), id)
				}
				time.Sleep(ms)

				var closers sync.WaitGroup
				closedAt := make([]time.Duration, 2)
				for i := range closedAt {
					closers.Go(func() {
						b.Close()
						closedAt[i] = time.Since(be.start)
					})
				}
				synctest.Wait()
				for _, id := range tt.refused {
					if got, want := cs.answer(t, id), (answer{err: batch.ErrClosed, at: ms}); got != want {
						t.Errorf("blocked Do(%d) at Close = %+v, want %+v", id, got, want)
					}
				}
				if _, err := b.Do(context.Background(), 100); err != batch.ErrClosed {
					t.Errorf("Do during Close = %v, want %v", err, batch.ErrClosed)
				}
				closers.Wait()
				cs.wg.Wait()

				if got := be.seen(); fmt.Sprint(got) != fmt.Sprint(tt.want) {
					t.Errorf("batches = %v, want %v", got, tt.want)
				}
				for _, d := range tt.want {
					for _, id := range d.ids {
						if got := cs.answer(t, id); got.resp != id*10 || got.err != nil {
							t.Errorf("Do(%d) = %d, %v; want %d, nil", id, got.resp, got.err, id*10)
						}
					}
				}
				for i, at := range closedAt {
					if at != tt.closedAt {
						t.Errorf("Close #%d returned at %v, want %v", i, at, tt.closedAt)
					}
				}
				b.Close() // once more, after the fact
				if _, err := b.Do(context.Background(), 101); err != batch.ErrClosed {
					t.Errorf("Do after Close = %v, want %v", err, batch.ErrClosed)
				}
				if s := b.Stats(); s.Queued != 0 || s.Blocked != 0 || s.InFlight != 0 {
					t.Errorf("Stats() after Close = %+v, want nothing queued, blocked or in flight", s)
				}
			})
		})
	}
}

func TestMaxInFlight(t *testing.T) {
	for _, maxInFlight := range []int{1, 3} {
		t.Run(fmt.Sprintf("max=%d", maxInFlight), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var running, most atomic.Int32
				fn := func(ctx context.Context, reqs []int) ([]int, error) {
					n := running.Add(1)
					for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
					}
					time.Sleep(50 * time.Millisecond)
					running.Add(-1)
					return times10(reqs), nil
				}
				b := newBatcher(t, fn, batch.Config{MaxSize: 2, MaxInFlight: maxInFlight, MaxWait: 5 * time.Millisecond})
				cs := newCallers(b, time.Now())
				for id := range 40 {
					cs.do(context.Background(), id)
				}
				cs.wg.Wait()
				b.Close()
				if got := int(most.Load()); got != maxInFlight {
					t.Errorf("most batch calls at once = %d, want %d", got, maxInFlight)
				}
				for id := range 40 {
					if got := cs.answer(t, id); got.resp != id*10 || got.err != nil {
						t.Errorf("Do(%d) = %d, %v; want %d, nil", id, got.resp, got.err, id*10)
					}
				}
			})
		})
	}
}

func TestStats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newBackend(30 * time.Millisecond)
		b := newBatcher(t, be.fn, batch.Config{MaxSize: 3, QueueSize: 3})
		cs := newCallers(b, be.start)
		cs.do(context.Background(), 1) // alone, waits 0
		time.Sleep(10 * time.Millisecond)
		// [2 3 4] leaves at 30 ms, after 20 ms each; 5 blocks until then and
		// leaves at 60 ms, after 50 ms counted from its Do.
		for id := 2; id <= 5; id++ {
			cs.do(context.Background(), id)
		}
		if s := b.Stats(); s.Queued != 3 || s.Blocked != 1 || s.InFlight != 1 {
			t.Errorf("Stats() Queued, Blocked, InFlight = %d, %d, %d; want 3, 1, 1", s.Queued, s.Blocked, s.InFlight)
		}
		cs.wg.Wait()
		b.Close()
		got := b.Stats()
		want := batch.Stats{
			Batches:   3,
			Items:     5,
			Sizes:     []uint64{0, 2, 0, 1},
			QueueWait: 3*20*time.Millisecond + 50*time.Millisecond,
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("Stats() = %+v, want %+v", got, want)
		}
	})
}

func TestNew(t *testing.T) {
	fn := func(ctx context.Context, reqs []int) ([]int, error) { return reqs, nil }
	tests := []struct {
		name string
		fn   batch.Func[int, int]
		cfg  batch.Config
		msg  string
	}{
		{"nil func", nil, batch.Config{}, "nil batch function"},
		{"unknown policy", fn, batch.Config{Policy: 7}, "unknown Policy Policy(7)"},
		{"negative MaxSize", fn, batch.Config{MaxSize: -1}, "MaxSize -1 is negative"},
		{"negative MaxWait", fn, batch.Config{MaxWait: -time.Second}, "MaxWait -1s is negative"},
		{"negative MaxInFlight", fn, batch.Config{MaxInFlight: -2}, "MaxInFlight -2 is negative"},
		{"negative QueueSize", fn, batch.Config{QueueSize: -3}, "QueueSize -3 is negative"},
		{"queue smaller than batch", fn, batch.Config{MaxSize: 8, QueueSize: 4}, "QueueSize 4 is less than MaxSize 8"},
		{"queue smaller than default batch", fn, batch.Config{QueueSize: 4}, "QueueSize 4 is less than MaxSize 8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := batch.New(tt.fn, tt.cfg)
			if b != nil || !errors.Is(err, batch.ErrConfig) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("New(%+v) = %v, %v; want nil, %v with %q", tt.cfg, b, err, batch.ErrConfig, tt.msg)
			}
		})
	}
	t.Run("large MaxSize raises the default queue", func(t *testing.T) {
		b, err := batch.New(fn, batch.Config{MaxSize: 2000})
		if err != nil {
			t.Fatalf("New = %v", err)
		}
		b.Close()
	})
}

func TestDoWithEndedContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newBackend(time.Millisecond)
		b := newBatcher(t, be.fn, batch.Config{})
		defer b.Close()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := b.Do(ctx, 1); err != context.Canceled {
			t.Errorf("Do(canceled ctx) = %v, want %v", err, context.Canceled)
		}
		if got := be.seen(); len(got) != 0 {
			t.Errorf("backend saw %v, want nothing", got)
		}
	})
}

func TestPolicyString(t *testing.T) {
	for p, want := range map[batch.Policy]string{
		batch.DispatchWhenIdle: "DispatchWhenIdle",
		batch.FixedWindow:      "FixedWindow",
		9:                      "Policy(9)",
	} {
		if got := p.String(); got != want {
			t.Errorf("Policy(%d).String() = %q, want %q", int(p), got, want)
		}
	}
}

func TestItemErrorsError(t *testing.T) {
	tests := []struct {
		errs batch.ItemErrors
		want string
	}{
		{batch.ItemErrors{nil, errors.New("bad"), nil, errors.New("worse")}, "batch: failed requests: [1] bad; [3] worse"},
		{batch.ItemErrors{nil}, "batch: failed requests: none"},
	}
	for _, tt := range tests {
		if got := tt.errs.Error(); got != tt.want {
			t.Errorf("%#v.Error() = %q, want %q", tt.errs, got, tt.want)
		}
	}
}

// TestConcurrentStress runs in real time under the race detector: many
// callers, random cancellation, several batch calls at once. Every request
// that succeeds got its own answer, the backend saw no request twice, and
// Close leaves no goroutine behind.
func TestConcurrentStress(t *testing.T) {
	before := runtime.NumGoroutine()
	var seen sync.Map
	var dups atomic.Int32
	fn := func(ctx context.Context, reqs []int) ([]int, error) {
		for _, r := range reqs {
			if _, dup := seen.LoadOrStore(r, true); dup {
				dups.Add(1)
			}
		}
		if reqs[0]%97 == 0 {
			return nil, errors.New("unlucky batch")
		}
		time.Sleep(time.Duration(len(reqs)) * 20 * time.Microsecond)
		return times10(reqs), nil
	}
	b := newBatcher(t, fn, batch.Config{MaxSize: 8, MaxInFlight: 3, QueueSize: 16, MaxWait: 100 * time.Microsecond})
	const goroutines, perGoroutine = 16, 300
	var wg sync.WaitGroup
	var ok, failed, canceled atomic.Int32
	for g := range goroutines {
		wg.Go(func() {
			for i := range perGoroutine {
				id := g*perGoroutine + i
				ctx, cancel := context.WithCancel(context.Background())
				if i%5 == 0 {
					go cancel()
				}
				resp, err := b.Do(ctx, id)
				cancel()
				switch {
				case err == nil && resp == id*10:
					ok.Add(1)
				case err == nil:
					t.Errorf("Do(%d) = %d, want %d", id, resp, id*10)
				case errors.Is(err, context.Canceled):
					canceled.Add(1)
				default:
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	b.Close()
	if dups.Load() != 0 {
		t.Errorf("backend saw %d requests twice", dups.Load())
	}
	s := b.Stats()
	if got := int(ok.Load() + failed.Load() + canceled.Load()); got != goroutines*perGoroutine {
		t.Errorf("answers = %d, want %d", got, goroutines*perGoroutine)
	}
	// Callers whose ctx ended before Do are answered without being counted.
	if s.Canceled+s.Abandoned > uint64(canceled.Load()) {
		t.Errorf("Stats() Canceled+Abandoned = %d, callers saw only %d cancellations", s.Canceled+s.Abandoned, canceled.Load())
	}
	var distinct uint64
	seen.Range(func(any, any) bool { distinct++; return true })
	if s.Items != distinct || s.Items < uint64(ok.Load()+failed.Load()) {
		t.Errorf("Stats().Items = %d; backend saw %d requests, callers got %d answers from it", s.Items, distinct, ok.Load()+failed.Load())
	}
	t.Logf("ok=%d failed=%d canceled=%d stats=%+v", ok.Load(), failed.Load(), canceled.Load(), s)
	// Goroutines of this test (its cancel goroutines) may take a moment to exit.
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("goroutines after Close = %d, before New %d", n, before)
	}
}
