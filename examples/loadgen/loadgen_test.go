package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if childMain() {
		return
	}
	code := m.Run()
	if code == 0 {
		if leaked := ourGoroutines(); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines of the load generator left after the tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// ourGoroutines returns the stacks of goroutines running the load
// generator's code (Run returns only after all of them have exited).
func ourGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var ours []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "main.(*runner)") || strings.Contains(g, "main.(*session)") {
			ours = append(ours, g)
		}
	}
	return strings.Join(ours, "\n\n")
}

// counters are the verification counts of a Summary.
type counters struct {
	Sessions, Turns, Errors, Shed, ShedTurns, MaxShed, Lost, Dup, Crossed int64
}

func countersOf(s *Summary) counters {
	return counters{s.Sessions, s.Turns, s.Errors, s.Shed, s.ShedTurns, s.MaxShed, s.Lost, s.Dup, s.Crossed}
}

// Reply timeouts of the tests: long enough that a busy machine does not
// trip it, and shorter where a test waits for it to expire.
const (
	testTimeout  = 10 * time.Second
	shortTimeout = 1500 * time.Millisecond
)

// testConfig is a small run against url.
func testConfig(url string) Config {
	return Config{
		URL:      url,
		Sessions: 8,
		Turns:    6,
		Timeout:  testTimeout,
		Retries:  3,
		Drain:    300 * time.Millisecond,
		Interval: 50 * time.Millisecond,
	}
}

func TestRunVerifies(t *testing.T) {
	t.Parallel()
	const all = 8 * 6
	tests := []struct {
		name  string
		rules map[turnKey]fakeRule
		want  counters
	}{
		{"clean", nil, counters{Sessions: 8, Turns: all}},
		{"dropped reply", map[turnKey]fakeRule{{3, 4}: {drop: true}},
			// the session stops at the timeout: turns 4, 5, 6 are not done
			counters{Sessions: 8, Turns: all - 3, Errors: 1, Lost: 1}},
		{"duplicate reply", map[turnKey]fakeRule{{2, 2}: {dup: true}},
			counters{Sessions: 8, Turns: all, Dup: 1}},
		{"duplicate of the last reply", map[turnKey]fakeRule{{5, 6}: {dup: true}},
			counters{Sessions: 8, Turns: all, Dup: 1}},
		{"another session's id", map[turnKey]fakeRule{{1, 3}: {cross: "PREFIX.7.1"}},
			counters{Sessions: 8, Turns: all, Crossed: 1}},
		{"an id of no session", map[turnKey]fakeRule{{1, 3}: {cross: "m1"}},
			counters{Sessions: 8, Turns: all, Crossed: 1}},
		{"another run's id", map[turnKey]fakeRule{{1, 3}: {cross: "lgzzzzz.1.1"}},
			counters{Sessions: 8, Turns: all, Crossed: 1}},
		{"an own id not sent yet", map[turnKey]fakeRule{{1, 3}: {cross: "PREFIX.SELF.5"}},
			counters{Sessions: 8, Turns: all, Crossed: 1}},
		{"the end id before the end", map[turnKey]fakeRule{{1, 3}: {cross: "PREFIX.SELF.end"}},
			counters{Sessions: 8, Turns: all, Crossed: 1}},
		{"reply delivered to another session", map[turnKey]fakeRule{{4, 2}: {misroute: true}},
			// session 4 times out at turn 2; another session gets its reply
			counters{Sessions: 8, Turns: all - 5, Errors: 1, Lost: 1, Crossed: 1}},
		{"shed twice, then served", map[turnKey]fakeRule{{6, 2}: {shed: 2}},
			counters{Sessions: 8, Turns: all, Shed: 2, ShedTurns: 1, MaxShed: 2}},
		{"shed past the retries", map[turnKey]fakeRule{{6, 2}: {shed: 10}},
			// the first attempt and 3 retries are shed, then the turn is given up
			counters{Sessions: 8, Turns: all - 1, Errors: 1, Shed: 4, ShedTurns: 1, MaxShed: 4}},
		{"refused", map[turnKey]fakeRule{{0, 1}: {fail: "bad_request"}},
			counters{Sessions: 8, Turns: all - 1, Errors: 1}},
		{"connection dropped", map[turnKey]fakeRule{{7, 3}: {hangup: true}},
			counters{Sessions: 8, Turns: all - 4, Errors: 1, Lost: 1}},
		{"several at once", map[turnKey]fakeRule{
			{0, 2}: {dup: true, cross: "PREFIX.3.1"},
			{1, 1}: {shed: 1},
			{2, 6}: {drop: true},
			{3, 5}: {shed: 3},
		}, counters{Sessions: 8, Turns: all - 1, Errors: 1, Shed: 4, ShedTurns: 2, MaxShed: 3, Lost: 1, Dup: 1, Crossed: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeServer(t, &fakeServer{rules: tt.rules, delay: time.Millisecond})
			cfg := testConfig(f.url())
			if tt.want.Lost > 0 {
				cfg.Timeout = shortTimeout // a lost reply is found by waiting this long
			}
			sum, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatalf("Run = %v, want no error", err)
			}
			if got := countersOf(&sum); got != tt.want {
				t.Errorf("Run counters = %+v, want %+v", got, tt.want)
			}
			if sum.Errors > 0 && len(sum.ErrorSamples) == 0 {
				t.Errorf("Run counted %d errors but kept no message", sum.Errors)
			}
			if got := sum.Latency.total(); got != uint64(sum.Turns) {
				t.Errorf("latency histogram holds %d replies, want %d", got, sum.Turns)
			}
			// A turn served after n sheds waited at least n retry_after_ms
			// (the fake asks for 5 ms) since its first send; with 48 turns
			// or fewer, p99 is the slowest turn's.
			if served := tt.want.MaxShed < 4; served && tt.want.MaxShed > 0 {
				if min := time.Duration(tt.want.MaxShed) * 5 * time.Millisecond; sum.SettleP99 < min {
					t.Errorf("SettleP99 = %v, want at least %v", sum.SettleP99, min)
				}
			}
		})
	}
}

func TestRunProtocolFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		fake *fakeServer
		want counters
	}{
		{"no subprotocol", &fakeServer{subprotocols: []string{}}, counters{Errors: 8}},
		{"other subprotocol", &fakeServer{subprotocols: []string{"chat.v0"}}, counters{Errors: 8}},
		{"no hello", &fakeServer{noHello: true}, counters{Sessions: 8, Errors: 8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeServer(t, tt.fake)
			sum, err := Run(context.Background(), testConfig(f.url()))
			if err != nil {
				t.Fatalf("Run = %v, want no error", err)
			}
			if got := countersOf(&sum); got != tt.want {
				t.Errorf("Run counters = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRunOverhead(t *testing.T) {
	t.Parallel()
	const model = 30 * time.Millisecond
	f := newFakeServer(t, &fakeServer{delay: model, modelMS: ms(model)})
	cfg := testConfig(f.url())
	cfg.Turns = 3
	sum, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sum.P50 < model {
		t.Errorf("P50 = %v, want at least the fake's delay %v", sum.P50, model)
	}
	// Overhead is latency minus model_ms, so its p99 is the latency p99
	// shifted by the model time, up to the histogram's resolution.
	want := sum.P99 - model
	if diff := (sum.OverheadP99 - want).Abs(); diff > sum.P99/50 {
		t.Errorf("OverheadP99 = %v, want %v (P99 %v minus model_ms %v)", sum.OverheadP99, want, sum.P99, model)
	}
}

// TestRunWarmup: turns sent during the warmup are verified and counted,
// and kept in the time series, but left out of the summary's latency
// figures.
func TestRunWarmup(t *testing.T) {
	t.Parallel()
	const slow = 2 * time.Second
	rules := make(map[turnKey]fakeRule)
	for s := range 4 {
		rules[turnKey{s, 1}] = fakeRule{slow: slow} // sent at once, answered late
	}
	f := newFakeServer(t, &fakeServer{rules: rules})
	cfg := testConfig(f.url())
	cfg.Sessions, cfg.Turns, cfg.Ramp = 4, 4, 0
	cfg.Warmup = slow / 2 // turn 1 is sent before it, turns 2 to 4 after
	sum, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := countersOf(&sum); got != (counters{Sessions: 4, Turns: 16}) {
		t.Errorf("counters = %+v, want 4 sessions and 16 turns, no errors", got)
	}
	if n := sum.Latency.total(); n != 12 {
		t.Errorf("latency histogram holds %d turns, want the 12 sent after the warmup", n)
	}
	if sum.P99 >= slow/2 {
		t.Errorf("P99 = %v, want the fast turns' (under %v): the slow first turns are left out", sum.P99, slow/2)
	}
	var most time.Duration
	for _, p := range sum.Series {
		most = max(most, p.Max)
	}
	if most < slow {
		t.Errorf("slowest reply in the time series = %v, want the first turns' %v", most, slow)
	}
}

func TestRunServerRSS(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t, &fakeServer{rssBytes: 123.45e6})
	sum, err := Run(context.Background(), testConfig(f.url()))
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(sum.ServerRSSMB-123.45) > 1e-9 || sum.RSSErr != nil {
		t.Errorf("ServerRSSMB = %v (%v), want 123.45", sum.ServerRSSMB, sum.RSSErr)
	}

	cfg := testConfig(f.url())
	cfg.MetricsURL = f.srv.URL + "/nothing"
	sum, err = Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !math.IsNaN(sum.ServerRSSMB) || sum.RSSErr == nil {
		t.Errorf("with no metrics: ServerRSSMB = %v, RSSErr = %v; want NaN and an error", sum.ServerRSSMB, sum.RSSErr)
	}
	if line := sum.String(); !strings.HasSuffix(line, " server_rss_mb=NaN") {
		t.Errorf("summary line %q does not end in server_rss_mb=NaN", line)
	}
}

func TestRunCancel(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t, &fakeServer{delay: 20 * time.Millisecond})
	cfg := testConfig(f.url())
	cfg.Turns = 1000
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	sum, err := Run(ctx, cfg)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
	if sum.Turns == 0 || sum.Turns >= 8*1000 {
		t.Errorf("Turns = %d, want some but not all", sum.Turns)
	}
	if c := countersOf(&sum); c.Errors+c.Lost+c.Dup+c.Crossed != 0 {
		t.Errorf("cancelled run counters = %+v, want no errors, lost, dup or crossed", c)
	}
}

func TestRunProgress(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t, &fakeServer{delay: 10 * time.Millisecond, rssBytes: 5e6})
	cfg := testConfig(f.url())
	cfg.Turns = 10
	var progress bytes.Buffer
	cfg.Progress = &progress
	sum, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(progress.String()), "\n")
	if len(lines) != len(sum.Series) || len(lines) < 2 {
		t.Fatalf("got %d progress lines and %d points, want the same number, at least 2", len(lines), len(sum.Series))
	}
	for _, field := range []string{"connected=", "turns=", "turns/s=", "p99_ms=", "overhead_p99_ms=", "errors=", "shed=", "lost="} {
		if !strings.Contains(lines[0], field) {
			t.Errorf("progress line %q lacks %s", lines[0], field)
		}
	}
	wantLast := fmt.Sprintf(" turns=%d ", sum.Turns)
	if !strings.Contains(lines[len(lines)-1], wantLast) {
		t.Errorf("last progress line %q lacks %q", lines[len(lines)-1], wantLast)
	}
	var total float64
	prev := time.Duration(0)
	for _, p := range sum.Series {
		total += p.TurnsPerSec * (p.At - prev).Seconds()
		prev = p.At
	}
	if math.Abs(total-float64(sum.Turns)) > 0.5 {
		t.Errorf("turns/s over the series adds up to %.1f turns, want %d", total, sum.Turns)
	}
}

func TestSummaryString(t *testing.T) {
	s := Summary{
		Sessions: 10000, Turns: 200000, TurnsPerSec: 16234.56, P50: 503200 * time.Microsecond,
		P99: 541 * time.Millisecond, OverheadP99: 12345 * time.Microsecond, Errors: 1, Shed: 2,
		Lost: 3, Dup: 4, Crossed: 5, ServerRSSMB: 211.04,
	}
	want := "loadgen sessions=10000 turns=200000 turns_per_s=16234.6 p50_ms=503.2 p99_ms=541.0 " +
		"overhead_p99_ms=12.3 errors=1 shed=2 lost=3 dup=4 crossed=5 server_rss_mb=211.0"
	if got := s.String(); got != want {
		t.Errorf("String() =\n%s\nwant\n%s", got, want)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no url", Config{}},
		{"http url", Config{URL: "http://127.0.0.1:8080/ws"}},
		{"no host", Config{URL: "ws:///ws"}},
		{"bad url", Config{URL: "ws://[::1"}},
		{"negative sessions", Config{URL: "ws://h/ws", Sessions: -1}},
		{"negative think", Config{URL: "ws://h/ws", Think: -time.Second}},
		{"negative warmup", Config{URL: "ws://h/ws", Warmup: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Run(context.Background(), tt.cfg); !errors.Is(err, ErrConfig) {
				t.Errorf("Run(%+v) = %v, want ErrConfig", tt.cfg, err)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	tests := []struct {
		url, metrics string
	}{
		{"ws://127.0.0.1:8080/ws", "http://127.0.0.1:8080/metrics"},
		{"wss://chat.example:443/ws?tenant=a", "https://chat.example:443/metrics"},
	}
	for _, tt := range tests {
		cfg, err := Config{URL: tt.url}.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.MetricsURL != tt.metrics {
			t.Errorf("MetricsURL for %s = %s, want %s", tt.url, cfg.MetricsURL, tt.metrics)
		}
		if cfg.Sessions != 1 || cfg.Turns != 1 || cfg.Timeout != defaultTimeout || cfg.Text != defaultText {
			t.Errorf("defaults = %+v", cfg)
		}
	}
}
