package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// Config configures a load run. The zero value is invalid: URL is
// required. Zero values of the other fields mean the defaults their
// comments state.
type Config struct {
	// URL is the chat server's WebSocket endpoint, ws://HOST:PORT/ws.
	URL string
	// MetricsURL is the server's Prometheus endpoint, read for
	// process_resident_memory_bytes. Empty means URL with scheme http (or
	// https) and path /metrics.
	MetricsURL string
	// Sessions is the number of concurrent sessions; zero means 1.
	Sessions int
	// Turns is the number of messages each session sends, one after the
	// other's reply; zero means 1.
	Turns int
	// Think is the pause between a reply and the session's next message.
	// A session answers the server's pings only while it waits for a
	// reply, so keep Think well under the server's heartbeat (25 s by
	// default; two missed pongs close the connection).
	Think time.Duration
	// Ramp spreads the sessions' starts evenly over this time; zero starts
	// them all at once.
	Ramp time.Duration
	// Warmup leaves the turns sent in the first Warmup of the run out of
	// the Summary's latency figures (P50, P99, OverheadP99 and the
	// histograms), so that they describe the steady state after a ramp.
	// Every turn is still verified and counted, and the time series keeps
	// them all. Zero leaves none out.
	Warmup time.Duration
	// Timeout bounds the WebSocket handshake and the wait for each reply;
	// a reply later than that counts as lost. Zero means 30 s.
	Timeout time.Duration
	// Retries is how often a turn the server shed (an error frame with
	// code rate_limited, overloaded or unavailable) is sent again, each
	// time after the retry_after_ms the server asked for; zero means none.
	Retries int
	// Text is the user message each turn sends; empty means a short
	// question.
	Text string
	// Drain is how long a session, after sending its end frame, keeps
	// reading for late or duplicate replies before it closes; zero means
	// 1 s. A server that closes the connection on the end frame cuts it
	// short.
	Drain time.Duration
	// Interval is how often the progress line is written, the server's
	// memory is read and a point of the time series is taken; zero means
	// 1 s.
	Interval time.Duration
	// Progress receives the live progress line every Interval; nil means
	// none.
	Progress io.Writer
}

// Defaults of [Config].
const (
	defaultTimeout  = 30 * time.Second
	defaultDrain    = time.Second
	defaultInterval = time.Second
	defaultText     = "Which of the products we talked about fits a small team best?"
	// defaultRetryAfter is the wait before retrying a shed turn whose error
	// frame gave no retry_after_ms.
	defaultRetryAfter = 100 * time.Millisecond
	// readLimit is the largest server frame accepted.
	readLimit = 1 << 20
	// maxErrorSamples is how many error messages a Summary keeps.
	maxErrorSamples = 5
)

// ErrConfig reports an invalid [Config].
var ErrConfig = errors.New("loadgen: invalid configuration")

func (c Config) withDefaults() (Config, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return c, fmt.Errorf("%w: -url: %v", ErrConfig, err)
	}
	if u.Scheme != "ws" && u.Scheme != "wss" || u.Host == "" {
		return c, fmt.Errorf("%w: -url %q: want a ws:// or wss:// URL with a host", ErrConfig, c.URL)
	}
	if c.MetricsURL == "" {
		m := url.URL{Scheme: "http", Host: u.Host, Path: "/metrics"}
		if u.Scheme == "wss" {
			m.Scheme = "https"
		}
		c.MetricsURL = m.String()
	}
	if c.Sessions < 0 || c.Turns < 0 || c.Retries < 0 {
		return c, fmt.Errorf("%w: sessions, turns and retries must not be negative", ErrConfig)
	}
	if c.Think < 0 || c.Ramp < 0 || c.Warmup < 0 || c.Timeout < 0 || c.Drain < 0 || c.Interval < 0 {
		return c, fmt.Errorf("%w: durations must not be negative", ErrConfig)
	}
	c.Sessions = max(c.Sessions, 1)
	c.Turns = max(c.Turns, 1)
	c.Timeout = cmp(c.Timeout, defaultTimeout)
	c.Drain = cmp(c.Drain, defaultDrain)
	c.Interval = cmp(c.Interval, defaultInterval)
	if c.Text == "" {
		c.Text = defaultText
	}
	return c, nil
}

// cmp returns v, or def when v is zero.
func cmp(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

// FileLimitError reports that the operating system's limit on open files
// stopped the run from opening more connections. The sessions already
// connected ran to the end and are in the [Summary].
type FileLimitError struct {
	Limit     uint64 // the soft RLIMIT_NOFILE, or 0 when unknown
	Connected int64  // sessions that had connected
	Requested int    // sessions asked for
	Err       error  // the dial error
}

// Error implements the error interface with the plain advice a user needs.
func (e *FileLimitError) Error() string {
	limit := "the open-file limit"
	if e.Limit > 0 {
		limit = fmt.Sprintf("the open-file limit (%d)", e.Limit)
	}
	return fmt.Sprintf("loadgen: %s stopped new connections after %d of %d sessions; "+
		"raise it (ulimit -n) or run fewer sessions", limit, e.Connected, e.Requested)
}

// Unwrap returns the dial error.
func (e *FileLimitError) Unwrap() error { return e.Err }

// Summary is the outcome of a run.
type Summary struct {
	Sessions    int64         // sessions that connected
	Turns       int64         // turns answered by a verified reply
	Elapsed     time.Duration // from the start to the last answered turn
	TurnsPerSec float64       // Turns / Elapsed
	P50, P99    time.Duration // reply latency: send of the answered attempt to its reply (after Config.Warmup)
	OverheadP99 time.Duration // p99 of latency minus the reply's model_ms
	Errors      int64         // dial, connection, timeout, protocol and non-retryable error frames
	Shed        int64         // error frames that shed a turn (each retry counts)
	ShedTurns   int64         // turns shed at least once (warmup included)
	MaxShed     int64         // most times one turn was shed (warmup included)
	SettleP99   time.Duration // p99 from a turn's first send to its reply, retries included, of the turns answered and first sent after Config.Warmup
	Lost        int64         // messages sent and never answered
	Dup         int64         // replies or errors for a message already answered
	Crossed     int64         // replies or errors for an id this session never sent
	ServerRSSMB float64       // peak server resident memory in MB (10^6 bytes); NaN when unread

	ErrorSamples []string // the first few error messages
	RSSErr       error    // why the server's memory could not be read, if it could not
	Series       []Point  // one point per Interval
	Latency      counts   // histogram of reply latency
	Overhead     counts   // histogram of latency minus model_ms
}

// Point is one interval of a run's time series.
type Point struct {
	At          time.Duration // since the start, at the end of the interval
	Connected   int64
	Turns       int64   // answered so far
	TurnsPerSec float64 // in this interval
	ShedPerSec  float64 // in this interval
	Errors      int64   // so far
	// Reply latency of the turns answered in this interval; zero when none.
	P50, P99, Max, OverheadP99 time.Duration
	ServerRSSMB                float64 // latest reading; NaN when unread
}

// String formats the summary line.
func (s *Summary) String() string {
	return fmt.Sprintf("loadgen sessions=%d turns=%d turns_per_s=%.1f p50_ms=%.1f p99_ms=%.1f "+
		"overhead_p99_ms=%.1f errors=%d shed=%d lost=%d dup=%d crossed=%d server_rss_mb=%.1f",
		s.Sessions, s.Turns, s.TurnsPerSec, ms(s.P50), ms(s.P99), ms(s.OverheadP99),
		s.Errors, s.Shed, s.Lost, s.Dup, s.Crossed, s.ServerRSSMB)
}

// ms converts d to fractional milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Run opens cfg.Sessions WebSocket sessions to the chat server at cfg.URL,
// spread over cfg.Ramp, and has each send cfg.Turns messages one after
// another, verifying every reply. It returns when every session has ended,
// or early when ctx is done (the summary then covers what was done). It
// runs one goroutine per session plus three of its own, and all have exited
// when it returns.
//
// The error is an [ErrConfig] error for a bad cfg, a *[FileLimitError]
// when the file limit stopped new connections, or ctx's error.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Summary{}, err
	}
	r := newRunner(cfg)
	defer r.transport.CloseIdleConnections()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Go(func() { r.watch(ctx, stop) })
	bg.Go(func() { r.sample(stop) })
	bg.Go(func() { r.readRSS(stop) })

	var sessions sync.WaitGroup
	timer := time.NewTimer(0)
	<-timer.C
launch:
	for i := range r.sessions {
		if d := time.Until(r.start.Add(cfg.Ramp * time.Duration(i) / time.Duration(cfg.Sessions))); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				timer.Stop()
				break launch
			case <-timer.C:
			}
		}
		if ctx.Err() != nil || r.fileLimit.Load() != nil {
			break
		}
		s := &r.sessions[i]
		sessions.Go(func() { s.run(ctx) })
	}
	sessions.Wait()
	close(stop)
	bg.Wait()
	return r.summary(), r.err(ctx)
}

// runner is the state of one run, shared by its goroutines.
type runner struct {
	cfg       Config
	tag       string // makes this run's message ids unique
	text      []byte // cfg.Text as a JSON string
	start     time.Time
	transport *http.Transport
	client    *http.Client // for the server's metrics
	wsClient  *http.Client // for the sessions' handshakes
	sessions  []session

	connected, opened                     atomic.Int64
	turns, errs, shed, lost, dup, crossed atomic.Int64
	shedTurns                             atomic.Int64
	maxShed                               atomic.Uint64
	latency, overhead                     histogram // every turn, for the time series
	steadyLatency, steadyOverhead         histogram // turns sent after cfg.Warmup, when set
	settle, steadySettle                  histogram // first send to reply: every turn, and after cfg.Warmup
	rss                                   rssReading
	fileLimit                             atomic.Pointer[FileLimitError]

	mu      sync.Mutex // guards the fields below
	samples []string
	series  []Point
}

func newRunner(cfg Config) *runner {
	text, _ := json.Marshal(cfg.Text) // a string always marshals
	dialer := net.Dialer{Timeout: cfg.Timeout}
	transport := &http.Transport{
		DialContext:         dialer.DialContext,
		TLSHandshakeTimeout: cfg.Timeout,
		MaxIdleConnsPerHost: 1,
	}
	r := &runner{
		cfg:       cfg,
		tag:       strconv.FormatUint(rand.Uint64()%(36*36*36*36), 36),
		text:      text,
		start:     time.Now(),
		transport: transport,
		client:    &http.Client{Transport: transport},
		wsClient:  &http.Client{Transport: &upgrader{dialer: dialer, next: transport}},
		sessions:  make([]session, cfg.Sessions),
	}
	r.rss.init()
	for i := range r.sessions {
		r.sessions[i].r, r.sessions[i].idx = r, i
	}
	return r
}

// since returns the time since the start of the run.
func (r *runner) since() time.Duration { return time.Since(r.start) }

// fail counts an error and keeps its message if it is among the first.
func (r *runner) fail(format string, args ...any) {
	r.errs.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) < maxErrorSamples {
		r.samples = append(r.samples, fmt.Sprintf(format, args...))
	}
}

func (r *runner) err(ctx context.Context) error {
	if e := r.fileLimit.Load(); e != nil {
		e.Connected = r.opened.Load()
		return e
	}
	return ctx.Err()
}

func (r *runner) summary() Summary {
	var last time.Duration
	for i := range r.sessions {
		last = max(last, r.sessions[i].lastAnswer)
	}
	s := Summary{
		Sessions:    r.opened.Load(),
		Turns:       r.turns.Load(),
		Elapsed:     last,
		Errors:      r.errs.Load(),
		Shed:        r.shed.Load(),
		ShedTurns:   r.shedTurns.Load(),
		MaxShed:     int64(r.maxShed.Load()),
		Lost:        r.lost.Load(),
		Dup:         r.dup.Load(),
		Crossed:     r.crossed.Load(),
		ServerRSSMB: r.rss.peakMB(),
		RSSErr:      r.rss.err,
	}
	if last > 0 {
		s.TurnsPerSec = float64(s.Turns) / last.Seconds()
	}
	lat, over, settle := &r.latency, &r.overhead, &r.settle
	if r.cfg.Warmup > 0 {
		lat, over, settle = &r.steadyLatency, &r.steadyOverhead, &r.steadySettle
	}
	lat.snapshot(&s.Latency)
	over.snapshot(&s.Overhead)
	var c counts
	settle.snapshot(&c)
	s.SettleP99 = c.quantile(0.99)
	s.P50, s.P99 = s.Latency.quantile(0.50), s.Latency.quantile(0.99)
	s.OverheadP99 = s.Overhead.quantile(0.99)
	r.mu.Lock()
	defer r.mu.Unlock()
	s.ErrorSamples = r.samples
	s.Series = r.series
	return s
}

// watch enforces deadlines until stop is closed: it closes the connection
// of a session whose deadline has passed, which ends the session's blocked
// read. When ctx is done it closes every connection. Deadlines live in the
// sessions, so a turn costs no timer or context.
func (r *runner) watch(ctx context.Context, stop <-chan struct{}) {
	tick := time.NewTicker(min(max(r.cfg.Timeout/20, 5*time.Millisecond), 100*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			for i := range r.sessions {
				if c := r.sessions[i].conn.Load(); c != nil {
					c.CloseNow()
				}
			}
			return
		case <-tick.C:
			now := r.since()
			for i := range r.sessions {
				s := &r.sessions[i]
				if d := s.deadline.Load(); d != 0 && now >= time.Duration(d) && s.deadline.CompareAndSwap(d, 0) {
					s.expired.Store(true)
					if c := s.conn.Load(); c != nil {
						c.CloseNow()
					}
				}
			}
		}
	}
}

// session is one simulated user: one connection, Turns messages in order.
// Only its own goroutine touches it, except for the atomic fields, which
// the watchdog reads.
type session struct {
	r   *runner
	idx int

	conn     atomic.Pointer[websocket.Conn]
	deadline atomic.Int64 // since the start, in ns; 0 means none
	expired  atomic.Bool  // the watchdog closed the connection

	out, in    []byte
	frame      serverFrame
	timer      *time.Timer
	turn       int       // the turn being worked on
	waiting    bool      // a message of turn is sent and not yet settled
	firstSent  time.Time // when turn's message was first sent
	sheds      uint64    // times turn's message was shed so far
	lastAnswer time.Duration
}

func (s *session) run(ctx context.Context) {
	r := s.r
	conn, err := s.dial(ctx)
	if err != nil {
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE):
			r.fileLimit.CompareAndSwap(nil, &FileLimitError{
				Limit: fileLimit(), Requested: r.cfg.Sessions, Err: err,
			})
		default:
			r.fail("session %d: %v", s.idx, err)
		}
		return
	}
	s.conn.Store(conn)
	r.opened.Add(1)
	r.connected.Add(1)
	defer r.connected.Add(-1)
	defer conn.CloseNow()
	if ctx.Err() != nil { // the watchdog may have missed this connection
		return
	}
	s.timer = time.NewTimer(0)
	<-s.timer.C
	defer s.timer.Stop()

	if s.hello(ctx) && s.turns(ctx) {
		s.end(ctx)
	}
}

func (s *session) dial(ctx context.Context) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.r.cfg.Timeout)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, s.r.cfg.URL, &websocket.DialOptions{
		HTTPClient:   s.r.wsClient,
		Subprotocols: []string{subprotocol},
	})
	if err != nil {
		return nil, err
	}
	if p := conn.Subprotocol(); p != subprotocol {
		conn.Close(websocket.StatusProtocolError, "parley.v1 required")
		return nil, fmt.Errorf("server chose subprotocol %q, want %q", p, subprotocol)
	}
	conn.SetReadLimit(readLimit)
	return conn, nil
}

// hello reads the server's first frame.
func (s *session) hello(ctx context.Context) bool {
	s.setDeadline(s.r.cfg.Timeout)
	if err := s.read(); err != nil {
		s.ioFailed(ctx, "hello", err)
		return false
	}
	s.deadline.Store(0)
	if s.frame.Type != typeHello {
		s.r.fail("session %d: first frame is not hello: %s", s.idx, clip(s.in))
		return false
	}
	return true
}

// turns sends every turn and waits for its reply. It returns false when the
// session cannot go on.
func (s *session) turns(ctx context.Context) bool {
	cfg := &s.r.cfg
	for s.turn = 1; s.turn <= cfg.Turns; s.turn++ {
		s.sheds = 0
		for attempt := 0; ; attempt++ {
			sent, ok := s.send(ctx)
			if !ok {
				return false
			}
			if attempt == 0 {
				s.firstSent = sent
			}
			retryAfter, ok := s.await(ctx, sent)
			if !ok {
				return false
			}
			if retryAfter < 0 {
				break // settled
			}
			if attempt == cfg.Retries {
				s.r.fail("session %d turn %d: still shed after %d retries", s.idx, s.turn, cfg.Retries)
				break
			}
			jitter := time.Duration(rand.Int64N(int64(retryAfter)/10 + 1))
			if !s.sleep(ctx, retryAfter+jitter) {
				return false
			}
		}
		if cfg.Think > 0 && s.turn < cfg.Turns && !s.sleep(ctx, cfg.Think) {
			return false
		}
	}
	return true
}

// send writes the current turn's message.
func (s *session) send(ctx context.Context) (time.Time, bool) {
	r := s.r
	s.out = appendTextFrame(s.out[:0], r.tag, s.idx, s.turn, r.text)
	sent := time.Now()
	s.setDeadline(r.cfg.Timeout)
	if err := s.conn.Load().Write(context.Background(), websocket.MessageText, s.out); err != nil {
		s.ioFailed(ctx, "send", err) // not sent, so not lost
		return sent, false
	}
	s.waiting = true
	return sent, true
}

// await reads frames until the current turn's message is settled. It
// returns the wait the server asked for when it shed the message, or a
// negative duration when the message was answered or refused for good.
func (s *session) await(ctx context.Context, sent time.Time) (retryAfter time.Duration, ok bool) {
	r := s.r
	f := &s.frame
	for {
		if err := s.read(); err != nil {
			s.ioFailed(ctx, "reply", err)
			return 0, false
		}
		if f.Type == typeState {
			continue
		}
		if f.Type != typeReply && f.Type != typeError {
			r.fail("session %d: unexpected frame: %s", s.idx, clip(s.in))
			continue
		}
		if !s.verify() {
			continue
		}
		s.waiting = false
		s.deadline.Store(0)
		if f.Type == typeReply {
			latency := time.Since(sent)
			overhead := latency - time.Duration(f.ModelMS*float64(time.Millisecond))
			settle := latency + sent.Sub(s.firstSent)
			r.latency.record(latency)
			r.overhead.record(overhead)
			r.settle.record(settle)
			if w := r.cfg.Warmup; w > 0 {
				if sent.Sub(r.start) >= w {
					r.steadyLatency.record(latency)
					r.steadyOverhead.record(overhead)
				}
				if s.firstSent.Sub(r.start) >= w {
					r.steadySettle.record(settle)
				}
			}
			r.turns.Add(1)
			s.lastAnswer = r.since()
			return -1, true
		}
		if !f.shed() {
			r.fail("session %d turn %d: %s", s.idx, s.turn, clip(s.in))
			return -1, true
		}
		s.noteShed()
		if math.IsNaN(f.RetryAfterMS) || f.RetryAfterMS < 0 {
			return defaultRetryAfter, true
		}
		return time.Duration(f.RetryAfterMS * float64(time.Millisecond)), true
	}
}

// noteShed counts a shed of the current turn's message.
func (s *session) noteShed() {
	r := s.r
	r.shed.Add(1)
	s.sheds++
	if s.sheds == 1 {
		r.shedTurns.Add(1)
	}
	raise(&r.maxShed, s.sheds)
}

// verify checks the id of a reply or error frame and reports whether it
// settles the message the session is waiting for; otherwise it counts the
// frame as a duplicate or as crossed.
func (s *session) verify() bool {
	session, turn, ok := parseID(s.frame.ID.b, s.r.tag)
	switch {
	case !ok || session != s.idx || turn == endTurn || turn > s.turn:
		s.r.crossed.Add(1) // not an id this session has sent
	case turn == s.turn && s.waiting:
		return true
	default:
		s.r.dup.Add(1)
	}
	return false
}

// end sends the end frame and reads until the server closes the connection
// or cfg.Drain passes, counting late duplicates and crossed replies.
func (s *session) end(ctx context.Context) {
	r := s.r
	s.out = appendEndFrame(s.out[:0], r.tag, s.idx)
	s.turn = r.cfg.Turns
	s.setDeadline(r.cfg.Drain)
	if s.conn.Load().Write(context.Background(), websocket.MessageText, s.out) != nil {
		return // the server may close first; nothing is outstanding
	}
	for s.read() == nil {
		if s.frame.Type != typeReply && s.frame.Type != typeError {
			continue
		}
		if sess, turn, ok := parseID(s.frame.ID.b, r.tag); ok && sess == s.idx && turn == endTurn {
			continue // the server's answer to the end frame
		}
		s.verify()
	}
	s.deadline.Store(0)
	if ctx.Err() == nil && !s.expired.Load() {
		s.conn.Load().Close(websocket.StatusNormalClosure, "")
	}
}

// read reads one frame into s.frame, reusing s.in. Only a failure of the
// connection is an error: a frame that is not valid JSON text decodes as
// typeUnknown, which the caller reports.
func (s *session) read() error {
	typ, rd, err := s.conn.Load().Reader(context.Background())
	if err != nil {
		return err
	}
	s.in = s.in[:0]
	for {
		if len(s.in) == cap(s.in) {
			s.in = append(s.in, 0)[:len(s.in)]
		}
		n, err := rd.Read(s.in[len(s.in):cap(s.in)])
		s.in = s.in[:len(s.in)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if typ != websocket.MessageText || s.frame.decode(s.in) != nil {
		s.frame.Type = typeUnknown
	}
	return nil
}

// ioFailed accounts for a failed read or write: the message being waited
// for, if any, is lost, and the cause is an error unless the run was
// cancelled.
func (s *session) ioFailed(ctx context.Context, what string, err error) {
	if ctx.Err() != nil {
		return
	}
	if s.waiting {
		s.r.lost.Add(1)
		s.waiting = false
	}
	if s.expired.Load() {
		err = fmt.Errorf("no answer within %v", s.r.cfg.Timeout)
	}
	s.r.fail("session %d %s: %v", s.idx, what, err)
}

// clip returns a frame for an error message, cut short if it is long.
func clip(frame []byte) string {
	const limit = 200
	if len(frame) > limit {
		return string(frame[:limit]) + "..."
	}
	return string(frame)
}

// setDeadline has the watchdog close the connection after d.
func (s *session) setDeadline(d time.Duration) {
	s.deadline.Store(int64(s.r.since() + d))
}

// sleep waits for d and reports whether ctx stayed live.
func (s *session) sleep(ctx context.Context, d time.Duration) bool {
	s.timer.Reset(d)
	select {
	case <-ctx.Done():
		s.timer.Stop()
		return false
	case <-s.timer.C:
		return true
	}
}
