package server

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/parley-go/parley/backpressure"
	"github.com/parley-go/parley/batch"
	"github.com/parley-go/parley/ctxstore"
	"github.com/parley-go/parley/fsm"
)

// Config configures a [Server]. Model and Store are required; a zero field
// means the default its comment gives.
type Config struct {
	// Model answers the prompts. Required.
	Model Model
	// Store keeps every session's record. Required. The server does not
	// close it: close it after [Server.Shutdown], which stores every
	// session first.
	Store *ctxstore.Store
	// Logger receives the server's structured logs. Default slog.Default().
	Logger *slog.Logger

	// SystemPrompt is pinned at the top of every session's context window.
	// Default "You are a helpful assistant. Answer briefly."
	SystemPrompt string
	// ChattingIdle and PauseIdle are the dialogue's idle timeouts: CHATTING
	// to PAUSE, and PAUSE to END. Defaults 30 s and 5 min.
	ChattingIdle, PauseIdle time.Duration
	// Heartbeat is the ping interval; a connection that misses two pongs
	// in a row is closed. Default 25 s.
	Heartbeat time.Duration
	// MaxFrameBytes is the largest frame a client may send; a larger one
	// closes the connection with status 1009. Default 16 KiB.
	MaxFrameBytes int64
	// MaxTextBytes is the longest user message; a longer one gets a
	// too_large error frame. Default 4000 bytes.
	MaxTextBytes int
	// QueueSize is the capacity of each session's inbound ring; a client
	// further ahead than that is slowed down by TCP. Default 8.
	QueueSize int
	// DedupWindow is how many answered message ids each session remembers
	// for answering repeats (while their replies are in the context
	// window). Default 8.
	DedupWindow int
	// StoreTimeout bounds waiting for room in the context store's
	// write-behind buffer. Default 10 s. (Writes to a client have no
	// timeout of their own: one that stops reading stops answering pings
	// too, and the heartbeat closes its connection.)
	StoreTimeout time.Duration

	// Batch configures the batcher in front of the model. Defaults:
	// MaxSize 64, MaxWait 2 ms, MaxInFlight 256, QueueSize 16384.
	Batch batch.Config
	// AdmitTarget and AdmitInterval are the CoDel parameters of admission,
	// applied to the time messages wait before the model starts on them.
	// Defaults 100 ms and 500 ms, scaled for model calls of about 0.5 s.
	AdmitTarget, AdmitInterval time.Duration
	// AdmitMaxWait is the longest a message may expect to wait for the
	// model and still be admitted: one that would wait longer is refused
	// at once, whatever the detector says (it lets a burst in for up to an
	// interval). Default: halfway between AdmitTarget and AdmitInterval
	// (300 ms). With the simulated model capped at 2,000 prompts a second
	// and 10k sessions asking for more, served turns' p50 was 0.73 s and
	// their p99 1.09 to 1.42 s over nine runs, against 0.88 s and 1.32 to
	// 1.52 s over three when the backstop was the interval (500 ms), at
	// the same throughput.
	AdmitMaxWait time.Duration
	// SessionRate and SessionBurst limit each session's messages per
	// second. Defaults 5/s and 10.
	SessionRate  rate.Limit
	SessionBurst int
	// GlobalRate limits admitted messages per second across the server.
	// Zero means no global limit.
	GlobalRate rate.Limit
	// Guard configures the breaker and retries around the model call
	// (its Fallback is the server's own). Defaults: the backpressure
	// package's, with a 30 s attempt timeout.
	Guard backpressure.GuardConfig[[]Completion]
	// FallbackText is the answer given, marked fallback, while the model
	// is failing. Default "Sorry, I can't answer right now. Please try
	// again in a moment."
	FallbackText string

	// EchoThreshold is the share of the user's 4-grams a reply may repeat
	// before it is flagged as an echo. Default 0.5.
	EchoThreshold float64
	// EchoRegenerate asks the model once more when a reply is flagged.
	EchoRegenerate bool
	// PromptSample logs the full prompt of one turn in PromptSample, and a
	// hash of the context otherwise. Default 100.
	PromptSample int
}

func (c *Config) setDefaults() error {
	if c.Model == nil || c.Store == nil {
		return errors.New("server: Config.Model and Config.Store are required")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	// In field order, so that the first negative field is the one named.
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"Heartbeat", int64(c.Heartbeat)}, {"MaxFrameBytes", c.MaxFrameBytes}, {"MaxTextBytes", int64(c.MaxTextBytes)},
		{"QueueSize", int64(c.QueueSize)}, {"DedupWindow", int64(c.DedupWindow)}, {"StoreTimeout", int64(c.StoreTimeout)},
		{"AdmitTarget", int64(c.AdmitTarget)}, {"AdmitInterval", int64(c.AdmitInterval)}, {"AdmitMaxWait", int64(c.AdmitMaxWait)},
		{"SessionBurst", int64(c.SessionBurst)}, {"PromptSample", int64(c.PromptSample)},
	} {
		if f.v < 0 {
			return fmt.Errorf("server: Config.%s must not be negative (0 means the default)", f.name)
		}
	}
	setDefault(&c.SystemPrompt, "You are a helpful assistant. Answer briefly.")
	setDefault(&c.Heartbeat, 25*time.Second)
	setDefault(&c.MaxFrameBytes, 16<<10)
	setDefault(&c.MaxTextBytes, 4000)
	setDefault(&c.QueueSize, 8)
	setDefault(&c.DedupWindow, 8)
	setDefault(&c.StoreTimeout, 10*time.Second)
	setDefault(&c.Batch.MaxSize, 64)
	setDefault(&c.Batch.MaxWait, 2*time.Millisecond)
	setDefault(&c.Batch.MaxInFlight, 256)
	setDefault(&c.Batch.QueueSize, 16384)
	setDefault(&c.AdmitTarget, 100*time.Millisecond)
	setDefault(&c.AdmitInterval, 500*time.Millisecond)
	setDefault(&c.AdmitMaxWait, c.AdmitTarget+(c.AdmitInterval-c.AdmitTarget)/2)
	setDefault(&c.SessionRate, 5)
	setDefault(&c.SessionBurst, 10)
	setDefault(&c.Guard.AttemptTimeout, 30*time.Second)
	setDefault(&c.FallbackText, "Sorry, I can't answer right now. Please try again in a moment.")
	setDefault(&c.EchoThreshold, 0.5)
	setDefault(&c.PromptSample, 100)
	return nil
}

// setDefault sets *p to def when *p is the zero value.
func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// dialogue is the reference dialogue's session type.
type dialogue = fsm.Session[fsm.DialogueState, fsm.DialogueEvent]

//go:embed web
var webFiles embed.FS

// Server is the chat server. Create it with [New], serve [Server.Handler],
// and stop it with [Server.Shutdown]. It is safe for concurrent use.
//
// New starts the goroutines of its timer wheel, its batcher and a small
// pool for the sessions' workers; Shutdown stops them.
type Server struct {
	cfg     Config
	log     *slog.Logger
	store   *ctxstore.Store
	def     *fsm.Definition[fsm.DialogueState, fsm.DialogueEvent]
	wheel   *fsm.Wheel[*session]
	gate    *backpressure.Gate
	line    *backpressure.Line // order of the sessions shed for overload
	guard   *backpressure.Guard[[]Completion]
	batcher *batch.Batcher[*modelReq, answer]
	exec    *executor // runs the sessions' workers
	// storeCtx bounds the context store calls of every session.
	storeCtx deadlines
	metrics  *metrics
	mux      *http.ServeMux

	// queued counts turns handed to the batcher and not yet dispatched;
	// headWait is the queueing delay (ns) of the last dispatched turn,
	// lastDispatch when (Unix ns) it was dispatched, and callTime the
	// recent mean duration (ns) of a model call (0 until one returns).
	// Together they estimate the current queueing delay for admission.
	queued       atomic.Int64
	headWait     atomic.Int64
	lastDispatch atomic.Int64
	callTime     atomic.Int64
	inFlight     atomic.Int64  // model calls under way
	turns        atomic.Uint64 // turns answered, for log sampling

	mu       sync.Mutex
	sessions map[ctxstore.Key]*session // live sessions, attached to a connection
	places   places                    // wait-line tickets of sessions that left
	draining bool
	conns    sync.WaitGroup // connection handlers
	shutdown sync.Once
	closed   chan struct{}
}

// New returns a server for cfg. It copies cfg.
func New(cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	def, err := fsm.NewDialogue(fsm.DialogueConfig{ChattingIdle: cfg.ChattingIdle, PauseIdle: cfg.PauseIdle})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	det, err := backpressure.NewDetector(cfg.AdmitTarget, cfg.AdmitInterval)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	gate, err := backpressure.NewGate(det, backpressure.GateConfig{
		GlobalRate: cfg.GlobalRate,
		KeyRate:    cfg.SessionRate,
		KeyBurst:   cfg.SessionBurst,
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	gcfg := cfg.Guard
	gcfg.Fallback = func(context.Context, error) ([]Completion, error) {
		// The batch function fills in one fallback answer per prompt.
		return nil, nil
	}
	guard, err := backpressure.NewGuard(gcfg)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	line, err := backpressure.NewLine(cfg.AdmitTarget, cfg.AdmitInterval)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		store:    cfg.Store,
		def:      def,
		gate:     gate,
		line:     line,
		guard:    guard,
		sessions: make(map[ctxstore.Key]*session),
		closed:   make(chan struct{}),
	}
	s.lastDispatch.Store(time.Now().UnixNano()) // no dispatch is overdue yet
	s.batcher, err = batch.New(s.runBatch, cfg.Batch)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	// 256 warm goroutines hold a few MB of stacks at most; under load at
	// 10k sessions on 2 CPUs they left one task in six to a new goroutine
	// (two in three with the pool fixed at 8).
	s.exec = newExecutor(4*runtime.GOMAXPROCS(0), 256)
	s.storeCtx.timeout = cfg.StoreTimeout
	s.wheel = fsm.NewWheel(fsm.WheelConfig{Resolution: 10 * time.Millisecond}, func(x fsm.Expiry[*session]) {
		x.Key.expired(x.Time)
	})
	s.metrics = newMetrics(s)
	s.mux = http.NewServeMux()
	web, _ := fs.Sub(webFiles, "web")
	s.mux.Handle("GET /", http.FileServerFS(web))
	s.mux.HandleFunc("GET /ws", s.serveWS)
	s.mux.Handle("GET /metrics", s.metrics.handler())
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	s.mux.HandleFunc("GET /readyz", s.serveReady)
	return s, nil
}

// Handler returns the server's HTTP handler: the chat page at /, the
// WebSocket endpoint at /ws, Prometheus metrics at /metrics, and /healthz
// and /readyz.
func (s *Server) Handler() http.Handler { return s.mux }

func (s *Server) serveReady(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	if draining {
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

// Shutdown drains the server: it stops accepting connections and messages,
// answers every message already accepted, stores every session, closes
// every connection with status 1001, and stops the server's goroutines.
// It does not close the Store; do that after Shutdown returns. If ctx ends
// first, Shutdown closes the remaining connections at once and returns
// ctx's error; their sessions are still stored.
//
// Stop the http.Server's listener (http.Server.Shutdown) first or
// concurrently, so no new connection arrives.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.shutdown.Do(func() {
		s.mu.Lock()
		s.draining = true
		live := make([]*session, 0, len(s.sessions))
		for _, ss := range s.sessions {
			live = append(live, ss)
		}
		s.mu.Unlock()
		s.log.Info("draining", "sessions", len(live))
		for _, ss := range live {
			ss.drain()
		}
		done := make(chan struct{})
		go func() { s.conns.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			err = fmt.Errorf("server: drain cut short: %w", ctx.Err())
			for _, ss := range live {
				ss.conn.CloseNow()
			}
			<-done
		}
		s.batcher.Close()
		s.wheel.Close()
		s.exec.close()
		close(s.closed)
	})
	<-s.closed
	return err
}

// attach registers ss as the live session for its key. If another
// connection holds the session, attach makes it let go and waits until it
// has stored the session, so the new connection reads the latest record.
func (s *Server) attach(ctx context.Context, ss *session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.draining {
			return errDraining
		}
		old := s.sessions[ss.key]
		if old == nil || old.isStored() {
			// A stored session's connection may still be closing; it
			// no longer owns the session. Its place in the wait line,
			// or the one kept since its connection went away, goes to
			// the new connection.
			if old != nil {
				ss.ticket = old.leftTicket()
			} else {
				ss.ticket = s.places.take(ss.key, time.Now())
			}
			s.sessions[ss.key] = ss
			s.conns.Add(1)
			return nil
		}
		s.mu.Unlock()
		old.replace()
		select {
		case <-old.stored:
		case <-ctx.Done():
			s.mu.Lock()
			return ctx.Err()
		}
		s.mu.Lock()
	}
}

// StoreWriteError is meant for the context store's [ctxstore.Config]
// OnWriteError hook: it counts and logs a write that will never reach the
// cold tier and, when the cold tier refused it as stale (another node
// wrote the session since), makes the live session merge its turns into the
// newer record at its next save. It does not block.
func (s *Server) StoreWriteError(k ctxstore.Key, err error) {
	s.metrics.storeErrors.Inc()
	s.log.Warn("context store dropped a write", "session", k.String(), "err", err)
	if !errors.Is(err, ctxstore.ErrStale) {
		return
	}
	s.mu.Lock()
	ss := s.sessions[k]
	s.mu.Unlock()
	if ss != nil {
		ss.outdated.Store(true)
	}
}

// liveSessions returns the number of sessions attached to a connection.
func (s *Server) liveSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// detach removes ss, stored, from the live sessions. If it was waiting its
// turn in the wait line, its ticket is kept for a connection that resumes
// the session (see placeKeep).
func (s *Server) detach(ss *session) {
	s.mu.Lock()
	if s.sessions[ss.key] == ss {
		delete(s.sessions, ss.key)
		s.places.keep(ss.key, ss.leftTicket(), time.Now())
	}
	s.mu.Unlock()
	s.conns.Done()
}

// statusReplaced is the close status of a connection whose session was
// resumed on another connection.
const statusReplaced websocket.StatusCode = 4000

var errDraining = errors.New("server: draining")
