// Loadgen drives many concurrent chat sessions against the example chat
// server (examples/chatserver) over its parley.v1 WebSocket protocol,
// verifies every reply and measures the run.
//
// Each session opens one connection, sends -turns messages one after the
// other (the next after the reply and -think), retries a message the server
// shed after the retry_after_ms it asked for, then sends an end frame and
// reads on until the server closes (or a second passes). Every reply and
// error frame must carry the id of the message the session is waiting for:
// a second answer to a message counts as dup, an answer to an id the
// session never sent (another session's, say) as crossed, and a message
// never answered (within -timeout) as lost. While it runs, a progress line
// goes to stderr every second; at the end one summary line goes to stdout:
//
//	loadgen sessions=<n> turns=<n> turns_per_s=<f> p50_ms=<f> p99_ms=<f> overhead_p99_ms=<f> errors=<n> shed=<n> lost=<n> dup=<n> crossed=<n> server_rss_mb=<f>
//
// Latency runs from sending the answered attempt of a message to its reply;
// overhead is latency minus the model_ms the server reports for the reply;
// turns_per_s is answered turns over the time from the start (ramp
// included) to the last answer; server_rss_mb is the peak of the server's
// process_resident_memory_bytes (in 10^6 bytes), read from its metrics
// every second, or NaN when they could not be read. When the server shed
// messages, a line on stderr says how many turns were shed at least once,
// the most times one turn was shed, and p99 from a turn's first send to
// its reply, retries included (turns given up after -retries are left
// out). With -warmup D, p50, p99, overhead p99 and p99 from first send
// leave out the turns sent in the first D of the run (a line on stderr
// says so); every other figure still counts every turn.
// -report writes an HTML page with latency over time, a latency histogram
// and turns/s over time; it loads the ECharts script from a CDN unless
// -echarts names a local copy to embed.
//
// Usage:
//
//	go run ./examples/loadgen -url ws://127.0.0.1:8080/ws -sessions 10000 -turns 20 -ramp 2s -report report.html
//
// The load generator runs Go's garbage collector with GOGC=400 unless the
// GOGC environment variable is set, to leave more of the machine to the
// server it measures.
//
// The exit status is 0 when every turn was answered with no error, loss,
// duplicate or crossed reply, and 1 otherwise. When the operating system's
// limit on open files stops it from opening more connections, it says so,
// lets the sessions already connected finish and exits with status 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"time"
)

// defaultRamp is the -ramp default: 10k sessions connecting at the same
// instant overflow a listen backlog, which costs seconds of SYN retries.
const defaultRamp = time.Second

func main() {
	// The load generator should take as little of the machine as it can
	// from the server it measures, which usually runs beside it. Its heap
	// (mostly the sessions' buffers) is small next to the machine's
	// memory, so it collects garbage a quarter as often as Go's default,
	// unless GOGC says otherwise.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options is the parsed command line.
type options struct {
	cfg        Config
	report     string // -report file
	echarts    string // -echarts file or URL
	cpuProfile string // -cpuprofile file
}

// run is the program: it parses args, runs the load and writes the summary
// line to stdout and everything else to stderr, returning the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	opt, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	var report *os.File
	if opt.report != "" {
		// Created now, so that a bad path fails before the run, not after.
		if report, err = os.Create(opt.report); err != nil {
			fmt.Fprintln(stderr, "loadgen: report:", err)
			return 2
		}
		defer report.Close()
	}
	if opt.cpuProfile != "" {
		stopProfile, err := startProfile(opt.cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		defer stopProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	sum, err := Run(ctx, opt.cfg)
	if errors.Is(err, ErrConfig) {
		fmt.Fprintln(stderr, err)
		return 2
	}
	status := 0
	for _, msg := range sum.ErrorSamples {
		fmt.Fprintln(stderr, "loadgen: error:", msg)
	}
	if sum.ShedTurns > 0 {
		fmt.Fprintf(stderr, "loadgen: %d turns were shed at least once, one of them %d times; "+
			"p99 from a turn's first send to its reply %.1f ms\n", sum.ShedTurns, sum.MaxShed, ms(sum.SettleP99))
	}
	if w := opt.cfg.Warmup; w > 0 {
		fmt.Fprintf(stderr, "loadgen: p50, p99, overhead p99 and p99 from first send leave out the turns sent in the first %v (-warmup)\n", w)
	}
	if sum.RSSErr != nil && math.IsNaN(sum.ServerRSSMB) {
		fmt.Fprintln(stderr, "loadgen: server memory unknown:", sum.RSSErr)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		status = 1
	}
	if report != nil {
		if err := writeReport(report, &opt.cfg, &sum, opt.echarts); err != nil {
			fmt.Fprintln(stderr, err)
			status = 1
		}
		if err := report.Close(); err != nil {
			fmt.Fprintln(stderr, "loadgen: report:", err)
			status = 1
		}
	}
	fmt.Fprintln(stdout, sum.String())
	if sum.Errors+sum.Lost+sum.Dup+sum.Crossed > 0 || sum.Turns < int64(opt.cfg.Sessions)*int64(opt.cfg.Turns) {
		status = 1
	}
	return status
}

// parseFlags parses the command line.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: loadgen [flags]\n\n"+
			"Drives concurrent chat sessions against the example chat server, verifies\n"+
			"every reply and prints one summary line. Flags:\n\n")
		fs.PrintDefaults()
	}
	var opt options
	cfg := &opt.cfg
	fs.StringVar(&cfg.URL, "url", "ws://127.0.0.1:8080/ws", "chat server WebSocket `URL`")
	fs.StringVar(&cfg.MetricsURL, "metrics", "", "server Prometheus metrics `URL` (default: -url with http and path /metrics)")
	fs.IntVar(&cfg.Sessions, "sessions", 100, "concurrent sessions `N`")
	fs.IntVar(&cfg.Turns, "turns", 10, "messages per session `M`, each sent after the previous reply")
	fs.DurationVar(&cfg.Think, "think", 0, "pause between a reply and the session's next message (keep it under the server's 25s heartbeat)")
	fs.DurationVar(&cfg.Ramp, "ramp", defaultRamp, "spread the sessions' starts evenly over this `duration`")
	fs.DurationVar(&cfg.Warmup, "warmup", 0, "leave the turns sent in the first `duration` out of the summary's latency figures, to see the steady state after the ramp (every turn is still verified and counted)")
	fs.DurationVar(&cfg.Timeout, "timeout", defaultTimeout, "limit on the handshake and on the wait for each reply")
	fs.IntVar(&cfg.Retries, "retries", 100, "times a shed message is retried after the server's retry_after_ms")
	fs.StringVar(&cfg.Text, "text", defaultText, "the user message each turn sends")
	fs.DurationVar(&cfg.Interval, "interval", defaultInterval, "progress line and time series interval")
	fs.StringVar(&opt.report, "report", "", "write an HTML report with charts to `FILE` (.html)")
	fs.StringVar(&opt.echarts, "echarts", "", "for -report: echarts.min.js as a local `FILE` to embed, so the page works offline, "+
		"or a URL to load it from (default: go-echarts' CDN)")
	fs.StringVar(&opt.cpuProfile, "cpuprofile", "", "write the load generator's own CPU profile to `FILE`")
	quiet := fs.Bool("q", false, "no progress line")
	if err := fs.Parse(args); err != nil {
		return opt, err
	}
	if fs.NArg() > 0 {
		return opt, fmt.Errorf("%w: unexpected argument %q", ErrConfig, fs.Arg(0))
	}
	if ext := strings.ToLower(filepath.Ext(opt.report)); opt.report != "" && ext != ".html" && ext != ".htm" {
		return opt, fmt.Errorf("%w: -report %q: the report is an HTML page; name it .html", ErrConfig, opt.report)
	}
	if !*quiet {
		cfg.Progress = stderr
	}
	return opt, nil
}

// startProfile starts writing a CPU profile to name and returns the
// function that ends it.
func startProfile(name string) (stop func(), err error) {
	f, err := os.Create(name)
	if err != nil {
		return nil, fmt.Errorf("loadgen: cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("loadgen: cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
