package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// rssMetric is the standard process collector's resident memory gauge.
const rssMetric = "process_resident_memory_bytes"

// metricsTimeout bounds one read of the server's metrics.
const metricsTimeout = 2 * time.Second

// rssReading holds the server's resident memory as read so far. Use init
// before first use. It is safe for concurrent use, except that err is
// written only by the goroutine running readRSS and read after it exited.
type rssReading struct {
	latest, peak atomic.Uint64 // math.Float64bits of MB; NaN when unread
	err          error         // the first failed read
}

func (r *rssReading) init() {
	r.latest.Store(math.Float64bits(math.NaN()))
	r.peak.Store(math.Float64bits(math.NaN()))
}

func (r *rssReading) set(mb float64) {
	r.latest.Store(math.Float64bits(mb))
	for {
		old := r.peak.Load()
		if p := math.Float64frombits(old); p >= mb {
			return
		}
		if r.peak.CompareAndSwap(old, math.Float64bits(mb)) {
			return
		}
	}
}

func (r *rssReading) latestMB() float64 { return math.Float64frombits(r.latest.Load()) }
func (r *rssReading) peakMB() float64   { return math.Float64frombits(r.peak.Load()) }

// readRSS reads the server's resident memory at the start, every
// cfg.Interval and once more when stop is closed, keeping the latest and
// the peak.
func (r *runner) readRSS(stop <-chan struct{}) {
	tick := time.NewTicker(r.cfg.Interval)
	defer tick.Stop()
	for {
		mb, err := fetchRSS(r.client, r.cfg.MetricsURL)
		if err != nil && r.rss.err == nil {
			r.rss.err = err
		}
		if err == nil {
			r.rss.set(mb)
		}
		select {
		case <-stop:
			if mb, err := fetchRSS(r.client, r.cfg.MetricsURL); err == nil {
				r.rss.set(mb)
			}
			return
		case <-tick.C:
		}
	}
}

// fetchRSS reads process_resident_memory_bytes from the Prometheus text
// exposition at url and returns it in MB (10^6 bytes).
func fetchRSS(client *http.Client, url string) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), metricsTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, fmt.Errorf("loadgen: metrics: %w", err)
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	// Uncompressed: the server would otherwise gzip the exposition for
	// every reading, once per interval, with a new flate writer each time
	// (6.1 MB of the chat server's allocations in 5 s of a 10k-session
	// run), load the run itself does not make.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("loadgen: metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("loadgen: metrics: GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("loadgen: metrics: %s: %w", url, err)
	}
	fam := families[rssMetric]
	if fam == nil || len(fam.GetMetric()) == 0 {
		return 0, fmt.Errorf("loadgen: metrics: %s has no %s", url, rssMetric)
	}
	m := fam.GetMetric()[0]
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue() / 1e6, nil
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue() / 1e6, nil
	}
	return 0, fmt.Errorf("loadgen: metrics: %s: %s is a %v, want a gauge", url, rssMetric, fam.GetType())
}
