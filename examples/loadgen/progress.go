package main

import (
	"fmt"
	"time"
)

// sample takes a point of the time series every cfg.Interval and once more
// when stop is closed, and writes the progress line for each to
// cfg.Progress.
func (r *runner) sample(stop <-chan struct{}) {
	tick := time.NewTicker(r.cfg.Interval)
	defer tick.Stop()
	var (
		lat, over         [2]counts // previous and current snapshot
		delta             counts
		prevAt            time.Duration
		prevTurns, prevSh int64
		cur               int
	)
	for done := false; !done; {
		select {
		case <-stop:
			done = true
		case <-tick.C:
		}
		at := r.since()
		dt := (at - prevAt).Seconds()
		if dt <= 0 {
			continue
		}
		cur ^= 1
		r.latency.snapshot(&lat[cur])
		r.overhead.snapshot(&over[cur])
		p := Point{
			At:          at,
			Connected:   r.connected.Load(),
			Turns:       r.turns.Load(),
			Errors:      r.errs.Load(),
			ServerRSSMB: r.rss.latestMB(),
		}
		shed := r.shed.Load()
		p.TurnsPerSec = float64(p.Turns-prevTurns) / dt
		p.ShedPerSec = float64(shed-prevSh) / dt
		delta.sub(&lat[cur], &lat[cur^1])
		p.P50, p.P99, p.Max = delta.quantile(0.5), delta.quantile(0.99), delta.quantile(1)
		delta.sub(&over[cur], &over[cur^1])
		p.OverheadP99 = delta.quantile(0.99)
		prevAt, prevTurns, prevSh = at, p.Turns, shed

		r.mu.Lock()
		r.series = append(r.series, p)
		r.mu.Unlock()
		if r.cfg.Progress != nil {
			fmt.Fprintf(r.cfg.Progress, "loadgen: %5.1fs connected=%d turns=%d turns/s=%.1f p99_ms=%.1f "+
				"overhead_p99_ms=%.1f errors=%d shed=%d lost=%d rss_mb=%.1f\n",
				at.Seconds(), p.Connected, p.Turns, p.TurnsPerSec, ms(lat[cur].quantile(0.99)),
				ms(over[cur].quantile(0.99)), p.Errors, shed, r.lost.Load(), p.ServerRSSMB)
		}
	}
}
