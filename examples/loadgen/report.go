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

// maxBars is the most bars the latency histogram draws; neighbouring
// buckets are merged to stay under it.
const maxBars = 60

// writeReport writes the run's report to w: one HTML page with three
// charts (latency over time, latency histogram, turns/s over time).
//
// The charts need the ECharts script. With echarts empty the page loads it
// from go-echarts' asset host; an http or https URL names another place to
// load it from; anything else is the path of a local echarts.min.js,
// whose content the page then holds, so it needs no network to be viewed.
func writeReport(w io.Writer, cfg *Config, s *Summary, echarts string) error {
	page := components.NewPage()
	page.SetPageTitle("loadgen report")
	page.SetLayout(components.PageFlexLayout)
	page.AddCharts(latencyChart(cfg, s), histogramChart(s), rateChart(s))
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
	subtitle := fmt.Sprintf("%d sessions x %d turns, think %v, ramp %v, %s\n%s",
		cfg.Sessions, cfg.Turns, cfg.Think, cfg.Ramp, cfg.URL, s)
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

func histogramChart(s *Summary) *charts.Bar {
	c := charts.NewBar()
	subtitle := fmt.Sprintf("%d replies; p50 %.1f ms, p99 %.1f ms; bars are log-spaced",
		s.Latency.total(), ms(s.P50), ms(s.P99))
	c.SetGlobalOptions(chartOpts(titleHistogram, subtitle, "reply latency from (ms)", "replies")...)
	labels, bars := histogramBars(&s.Latency)
	data := make([]opts.BarData, len(bars))
	for i, n := range bars {
		data[i] = opts.BarData{Value: n}
	}
	c.SetXAxis(labels).AddSeries("replies", data)
	return c
}

// histogramBars merges the buckets from the first to the last non-empty one
// into at most maxBars bars, each labelled with its lower bound in ms.
func histogramBars(c *counts) (labels []string, bars []uint64) {
	lo, hi := -1, -1
	for i, n := range c {
		if n > 0 {
			if lo < 0 {
				lo = i
			}
			hi = i
		}
	}
	if lo < 0 {
		return nil, nil
	}
	group := (hi - lo + maxBars) / maxBars
	for i := lo; i <= hi; i += group {
		var n uint64
		for _, v := range c[i:min(i+group, hi+1)] {
			n += v
		}
		low, _ := bucketBounds(i)
		labels = append(labels, strconv.FormatFloat(float64(low)/1000, 'g', 4, 64))
		bars = append(bars, n)
	}
	return labels, bars
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
