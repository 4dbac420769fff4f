package batch_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/parley-go/parley/batch"
)

// The simulated backend: one instance, a call of n items takes
// simBase + n*simPerItem.
const (
	simBase    = 30 * time.Millisecond
	simPerItem = 2500 * time.Microsecond
	simQueue   = 64 // queue size; a full queue answers ErrFull
)

// simCapacity is the unbatched capacity of the backend, in requests per
// second.
var simCapacity = float64(time.Second) / float64(simBase+simPerItem)

// simLoad is an open-loop Poisson arrival process.
type simLoad struct {
	name     string
	rate     float64       // arrivals per second
	duration time.Duration // arrivals stop after this
	warmup   time.Duration // arrivals and completions before this are not measured
	seed     uint64
}

var simLoads = []simLoad{
	{name: "low", rate: 0.1 * simCapacity, duration: 1500 * time.Second, warmup: 10 * time.Second, seed: 1},
	{name: "high", rate: 4 * simCapacity, duration: 70 * time.Second, warmup: 10 * time.Second, seed: 2},
}

var simPolicies = []struct {
	name string
	cfg  batch.Config
}{
	{"none", batch.Config{MaxSize: 1}},
	{"fixed", batch.Config{Policy: batch.FixedWindow, MaxSize: 4, MaxWait: 50 * time.Millisecond}},
	{"parley", batch.Config{Policy: batch.DispatchWhenIdle, MaxSize: 4}},
}

// simResult is what one load and policy measured.
type simResult struct {
	served   int           // completions in (first, last]
	span     time.Duration // last - first: the first and last completion in the measured window
	p50, p99 time.Duration // latency of the requests that arrived in the window and were served
	meanSize float64       // mean batch size over the whole run
	rejected int           // ErrFull answers
}

func (r simResult) throughput() float64 { return float64(r.served) / r.span.Seconds() }

// atLeast reports whether r's throughput is at least k times o's, computed
// exactly from integer counts and nanoseconds.
func (r simResult) atLeast(k int64, o simResult) bool {
	return int64(r.served)*int64(o.span) >= k*int64(o.served)*int64(r.span)
}

// TestBatchSimulation runs each policy against the simulated backend under
// a light and a heavy open-loop Poisson load, in virtual time, prints one
// batchsim line per load and policy, and asserts the targets: under heavy
// load parley serves at least 3x the unbatched throughput and no less than
// the fixed window; under light load it adds at most 1 ms to the unbatched
// p50 and 5 ms to its p99. Each case runs twice and must give the same
// result both times.
func TestBatchSimulation(t *testing.T) {
	results := map[string]simResult{}
	for _, load := range simLoads {
		for _, p := range simPolicies {
			t.Run(fmt.Sprintf("load=%s/policy=%s", load.name, p.name), func(t *testing.T) {
				r := simulate(t, load, p.cfg)
				// Seeded arrivals in virtual time: a second run is the same.
				if again := simulate(t, load, p.cfg); again != r {
					t.Errorf("runs differ: %+v, then %+v", r, again)
				}
				results[load.name+"/"+p.name] = r
				fmt.Printf("batchsim load=%s policy=%s throughput_rps=%.2f p50_ms=%.2f p99_ms=%.2f mean_batch=%.2f\n",
					load.name, p.name, r.throughput(), ms(r.p50), ms(r.p99), r.meanSize)
				t.Logf("served %d in %v after warm-up, %d rejected", r.served, r.span, r.rejected)
			})
		}
	}
	if t.Failed() {
		return
	}

	high := func(p string) simResult { return results["high/"+p] }
	if !high("parley").atLeast(3, high("none")) {
		t.Errorf("high load: parley throughput %.2f < 3 x none %.2f", high("parley").throughput(), high("none").throughput())
	}
	if !high("parley").atLeast(1, high("fixed")) {
		t.Errorf("high load: parley throughput %.2f < fixed %.2f", high("parley").throughput(), high("fixed").throughput())
	}
	low := func(p string) simResult { return results["low/"+p] }
	if got, limit := low("parley").p50, low("none").p50+time.Millisecond; got > limit {
		t.Errorf("low load: parley p50 %v > none p50 + 1 ms = %v", got, limit)
	}
	if got, limit := low("parley").p99, low("none").p99+5*time.Millisecond; got > limit {
		t.Errorf("low load: parley p99 %v > none p99 + 5 ms = %v", got, limit)
	}
	// The simulation can tell the policies apart: a fixed window makes a
	// lone request wait about its window.
	if got, limit := low("fixed").p50, low("none").p50+40*time.Millisecond; got < limit {
		t.Errorf("low load: fixed p50 %v < none p50 + 40 ms = %v; the window does not show", got, limit)
	}
}

// simulate runs load against the simulated backend through a Batcher with
// cfg (plus the simulation's queue), in a synctest bubble.
func simulate(t *testing.T, load simLoad, cfg batch.Config) simResult {
	var r simResult
	cfg.QueueSize, cfg.FailFast = simQueue, true
	synctest.Test(t, func(t *testing.T) {
		fn := func(_ context.Context, reqs []int) ([]int, error) {
			time.Sleep(simBase + time.Duration(len(reqs))*simPerItem)
			return reqs, nil
		}
		b, err := batch.New(fn, cfg)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var (
			wg          sync.WaitGroup
			mu          sync.Mutex
			completions []time.Duration // since start, of every served request
			latencies   []time.Duration // of the served requests that arrived after warm-up
		)
		rng := rand.New(rand.NewPCG(load.seed, 0))
		at := time.Duration(0)
		for id := 0; ; id++ {
			at += time.Duration(rng.ExpFloat64() / load.rate * float64(time.Second))
			if at >= load.duration {
				break
			}
			sleepUntil(start, at)
			wg.Go(func() {
				arrived := time.Now()
				resp, err := b.Do(context.Background(), id)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == batch.ErrFull:
					r.rejected++
				case err != nil || resp != id:
					t.Errorf("Do(%d) = %d, %v", id, resp, err)
				default:
					completions = append(completions, time.Since(start))
					if arrived.Sub(start) >= load.warmup {
						latencies = append(latencies, time.Since(arrived))
					}
				}
			})
		}
		wg.Wait()
		b.Close()

		s := b.Stats()
		r.meanSize = float64(s.Items) / float64(s.Batches)
		if len(latencies) == 0 {
			t.Fatal("no request served after warm-up")
		}
		slices.Sort(latencies)
		r.p50, r.p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
		// Throughput between the first and the last completion in the
		// window, so that where a batch boundary falls does not count.
		slices.Sort(completions)
		i := slices.IndexFunc(completions, func(d time.Duration) bool { return d >= load.warmup })
		j := slices.IndexFunc(completions, func(d time.Duration) bool { return d > load.duration })
		if j < 0 {
			j = len(completions)
		}
		if i < 0 || j-i < 2 {
			t.Fatalf("too few completions in the window: %d", max(j-i, 0))
		}
		first, last := completions[i], completions[j-1]
		r.span = last - first
		for _, d := range completions[i:j] {
			if d > first {
				r.served++
			}
		}
	})
	return r
}

// percentile returns the nearest-rank p-quantile of sorted, which must not
// be empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	return sorted[max(int(math.Ceil(p*float64(len(sorted))))-1, 0)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
