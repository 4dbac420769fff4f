package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-echarts/go-echarts/v2/charts"
	"github.com/go-echarts/go-echarts/v2/components"
	"github.com/go-echarts/go-echarts/v2/opts"
)

// Chart titles of the report.
const (
	titleLatency   = "Reply latency over time"
	titleHistogram = "Reply latency histogram"
	titleRate      = "Turns per second"
)

// maxBars is the most bars of equal width the latency histogram draws.
const maxBars = 50

// writeReport writes the run's report to w: one HTML page with three
// charts (latency over time, latency histogram, turns/s over time).
//
// The charts need the ECharts script. With echarts empty the page loads it
// from go-echarts' asset host; an http or https URL names another place to
// load it from; anything else is the path of a local echarts.min.js,
// whose content the page then holds, so it needs no network to be viewed.
func writeReport(w io.Writer, cfg *Config, s *Summary, echarts string) error {
	page := components.NewPage()
	page.SetPageTitle(s.String()) // the summary line, as the page title
	page.SetLayout(components.PageFlexLayout)
	page.AddCharts(latencyChart(cfg, s), histogramChart(cfg, s), rateChart(s))
	switch {
	case echarts == "":
	case strings.HasPrefix(echarts, "http://") || strings.HasPrefix(echarts, "https://"):
		page.ClearPresetJSAssets()
		page.AddCustomizedJSAssets(echarts)
	default:
		js, err := os.ReadFile(echarts)
		if err != nil {
			return fmt.Errorf("loadgen: report: %w", err)
		}
		// The script cannot end the <script> element it sits in early.
		js = bytes.ReplaceAll(js, []byte("</script"), []byte(`<\/script`))
		page.ClearPresetJSAssets()
		page.AddCustomizedHeaders("<script>" + string(js) + "</script>")
	}
	if err := page.Render(w); err != nil {
		return fmt.Errorf("loadgen: report: %w", err)
	}
	return nil
}

// chartOpts are the options all three charts share.
func chartOpts(title, subtitle, xName, yName string) []charts.GlobalOpts {
	return []charts.GlobalOpts{
		charts.WithInitializationOpts(opts.Initialization{Width: "1000px", Height: "420px"}),
		charts.WithTitleOpts(opts.Title{Title: title, Subtitle: subtitle}),
		charts.WithTooltipOpts(opts.Tooltip{Show: opts.Bool(true), Trigger: "axis"}),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(true), Right: "5%"}),
		charts.WithGridOpts(opts.Grid{Top: "90px", Left: "70px", Right: "40px"}),
		charts.WithXAxisOpts(opts.XAxis{Name: xName, NameLocation: "middle", NameGap: 30}),
		charts.WithYAxisOpts(opts.YAxis{Name: yName}),
	}
}

func latencyChart(cfg *Config, s *Summary) *charts.Line {
	c := charts.NewLine()
	// One line: echarts sets multi-line subtitles without line spacing.
	subtitle := fmt.Sprintf("%d sessions x %d turns, think %v, ramp %v, %s; %.1f turns/s, overhead p99 %.1f ms%s, server RSS %.1f MB",
		cfg.Sessions, cfg.Turns, cfg.Think, cfg.Ramp, cfg.URL, s.TurnsPerSec, ms(s.OverheadP99), afterWarmup(cfg), s.ServerRSSMB)
	c.SetGlobalOptions(chartOpts(titleLatency, subtitle, "seconds since start", "ms")...)
	c.SetXAxis(seconds(s.Series))
	series := func(f func(p *Point) time.Duration) []opts.LineData {
		data := make([]opts.LineData, len(s.Series))
		for i := range s.Series {
			data[i] = opts.LineData{Value: round1(ms(f(&s.Series[i])))}
		}
		return data
	}
	c.AddSeries("p50", series(func(p *Point) time.Duration { return p.P50 }))
	c.AddSeries("p99", series(func(p *Point) time.Duration { return p.P99 }))
	c.AddSeries("max", series(func(p *Point) time.Duration { return p.Max }))
	c.AddSeries("overhead p99", series(func(p *Point) time.Duration { return p.OverheadP99 }))
	return c
}

// afterWarmup qualifies the summary's latency figures when a warmup left
// turns out of them.
func afterWarmup(cfg *Config) string {
	if cfg.Warmup <= 0 {
		return ""
	}
	return fmt.Sprintf(" (turns sent after the first %v)", cfg.Warmup)
}

func histogramChart(cfg *Config, s *Summary) *charts.Bar {
	c := charts.NewBar()
	subtitle := fmt.Sprintf("%d replies%s; p50 %.1f ms, p99 %.1f ms; the last bar may hold the slowest 0.1%%",
		s.Latency.total(), afterWarmup(cfg), ms(s.P50), ms(s.P99))
	c.SetGlobalOptions(chartOpts(titleHistogram, subtitle, "reply latency from (ms)", "replies")...)
	labels, bars := histogramBars(&s.Latency)
	data := make([]opts.BarData, len(bars))
	for i, n := range bars {
		data[i] = opts.BarData{Value: n}
	}
	c.SetXAxis(labels).AddSeries("replies", data)
	return c
}

// histogramBars sorts the counted durations into at most maxBars bars of
// equal width, from the smallest duration to the 99.9th percentile, plus a
// last bar for the slowest 0.1% when they lie beyond. Each bar is labelled
// with where it starts, in ms. The width is a power-of-two multiple of the
// widest bucket in range, so every bucket falls into exactly one bar and
// the counts are exact.
func histogramBars(c *counts) (labels []string, bars []uint64) {
	total := c.total()
	if total == 0 {
		return nil, nil
	}
	lo := 0
	for c[lo] == 0 {
		lo++
	}
	hi, seen := lo, c[lo]
	for float64(seen) < 0.999*float64(total) {
		hi++
		seen += c[hi]
	}
	loStart, _ := bucketBounds(lo)
	hiStart, width := bucketBounds(hi)
	end := hiStart + width
	start := loStart / width * width
	for (end-start+width-1)/width > maxBars {
		width *= 2
		start = loStart / width * width
	}
	bars = make([]uint64, (end-start+width-1)/width)
	for i := lo; i <= hi; i++ {
		low, _ := bucketBounds(i)
		bars[(low-start)/width] += c[i]
	}
	for i := range bars {
		labels = append(labels, msLabel(start+uint64(i)*width))
	}
	if tail := total - seen; tail > 0 {
		labels = append(labels, ">="+msLabel(end))
		bars = append(bars, tail)
	}
	return labels, bars
}

// msLabel formats microseconds as milliseconds.
func msLabel(micros uint64) string {
	return strconv.FormatFloat(float64(micros)/1000, 'g', 5, 64)
}

func rateChart(s *Summary) *charts.Line {
	c := charts.NewLine()
	subtitle := fmt.Sprintf("%.1f turns/s over the run; shed turns are retried after retry_after_ms", s.TurnsPerSec)
	c.SetGlobalOptions(chartOpts(titleRate, subtitle, "seconds since start", "per second")...)
	c.SetXAxis(seconds(s.Series))
	turns := make([]opts.LineData, len(s.Series))
	shed := make([]opts.LineData, len(s.Series))
	for i, p := range s.Series {
		turns[i] = opts.LineData{Value: round1(p.TurnsPerSec)}
		shed[i] = opts.LineData{Value: round1(p.ShedPerSec)}
	}
	c.AddSeries("turns/s", turns).AddSeries("shed/s", shed)
	return c
}

// seconds labels the points of a series with their time since the start.
func seconds(series []Point) []string {
	labels := make([]string, len(series))
	for i, p := range series {
		labels[i] = strconv.FormatFloat(p.At.Seconds(), 'f', 1, 64)
	}
	return labels
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }
