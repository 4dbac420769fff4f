package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// checkReport checks that page is the HTML report with its three charts,
// each with data.
func checkReport(t *testing.T, page []byte) {
	t.Helper()
	html := string(page)
	if n := strings.Count(html, "echarts.init("); n != 3 {
		t.Errorf("report has %d charts, want 3", n)
	}
	for _, want := range []string{
		titleLatency, titleHistogram, titleRate,
		`"name":"p50"`, `"name":"p99"`, `"name":"overhead p99"`, `"name":"replies"`, `"name":"turns/s"`,
	} {
		if !strings.Contains(html, want) {
			t.Errorf("report lacks %s", want)
		}
	}
	if strings.Contains(html, `"data":[]`) || strings.Contains(html, `"data":null`) {
		t.Errorf("report has a series without data")
	}
}

func TestReport(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t, &fakeServer{delay: 3 * time.Millisecond})
	cfg := testConfig(f.url())
	cfg.Turns = 20
	sum, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var page bytes.Buffer
	if err := writeReport(&page, &cfg, &sum, ""); err != nil {
		t.Fatalf("writeReport = %v", err)
	}
	checkReport(t, page.Bytes())
	if !strings.Contains(page.String(), sum.String()) {
		t.Errorf("report does not show the summary line %q", sum.String())
	}
}

func TestReportECharts(t *testing.T) {
	js := filepath.Join(t.TempDir(), "echarts.min.js")
	if err := os.WriteFile(js, []byte(`var echarts={init:function(){}};var s="</script>";`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, echarts string
		want, not     []string
	}{
		{"default", "", []string{`<script src="https://go-echarts.github.io/go-echarts-assets/assets/echarts.min.js">`}, nil},
		{"url", "http://127.0.0.1:8000/echarts.min.js", []string{`<script src="http://127.0.0.1:8000/echarts.min.js">`}, []string{"go-echarts.github.io"}},
		{"embedded", js, []string{`<script>var echarts={init:function(){}};var s="<\/script>";</script>`}, []string{"go-echarts.github.io", "<script src="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{URL: "ws://127.0.0.1:1/ws", Sessions: 1, Turns: 1}
			var sum Summary
			sum.Latency[bucketOf(500_000)] = 1
			sum.Series = []Point{{At: time.Second, Turns: 1, TurnsPerSec: 1, P50: 500 * time.Millisecond}}
			var page bytes.Buffer
			if err := writeReport(&page, &cfg, &sum, tt.echarts); err != nil {
				t.Fatal(err)
			}
			for _, want := range tt.want {
				if !strings.Contains(page.String(), want) {
					t.Errorf("report lacks %s", want)
				}
			}
			for _, not := range tt.not {
				if strings.Contains(page.String(), not) {
					t.Errorf("report holds %s", not)
				}
			}
		})
	}
	var page bytes.Buffer
	err := writeReport(&page, &Config{}, &Summary{}, filepath.Join(t.TempDir(), "missing.js"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("writeReport with a missing script = %v, want fs.ErrNotExist", err)
	}
}

func TestHistogramBars(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	uniform := make([]time.Duration, 100000)
	for i := range uniform {
		// across the 524.288 ms boundary, where buckets double in width
		uniform[i] = 400*time.Millisecond + time.Duration(rng.Int64N(int64(300*time.Millisecond)))
	}
	tests := []struct {
		name   string
		values []time.Duration
		flat   bool // the values are uniform: the inner bars must be level
	}{
		{"empty", nil, false},
		{"one value", []time.Duration{500 * time.Millisecond}, false},
		{"narrow", []time.Duration{500 * time.Millisecond, 501 * time.Millisecond, 530 * time.Millisecond}, false},
		{"wide", []time.Duration{time.Microsecond, time.Millisecond, time.Second, time.Minute}, false},
		{"uniform", uniform, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h histogram
			for _, v := range tt.values {
				h.record(v)
			}
			var c counts
			h.snapshot(&c)
			labels, bars := histogramBars(&c)
			if len(labels) != len(bars) || len(bars) > maxBars+1 {
				t.Fatalf("histogramBars gave %d labels and %d bars, want equal and at most %d", len(labels), len(bars), maxBars+1)
			}
			var total uint64
			prev := -1.0
			for i, n := range bars {
				total += n
				low, err := strconv.ParseFloat(strings.TrimPrefix(labels[i], ">="), 64)
				if err != nil || low <= prev {
					t.Errorf("label %d = %q, want a number above %v", i, labels[i], prev)
				}
				prev = low
			}
			if total != uint64(len(tt.values)) {
				t.Errorf("bars add up to %d, want %d", total, len(tt.values))
			}
			if len(tt.values) > 0 && (bars[0] == 0 || bars[len(bars)-1] == 0) {
				t.Errorf("bars %v start or end empty", bars)
			}
			if !tt.flat {
				return
			}
			inner := bars[1 : len(bars)-2] // the first and last bars may be partly outside the values
			var sum uint64
			for _, n := range inner {
				sum += n
			}
			mean := float64(sum) / float64(len(inner))
			for i, n := range inner {
				if math.Abs(float64(n)-mean) > 0.15*mean {
					t.Errorf("bar %s holds %d, want about %.0f like the others: %v", labels[i+1], n, mean, bars)
				}
			}
		})
	}
}
