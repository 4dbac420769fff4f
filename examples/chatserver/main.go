// Command chatserver is parley's example WebSocket chat server: every parley
// package wired the way a host would wire them, in front of a simulated
// model (or any OpenAI-compatible backend).
//
//	go run ./examples/chatserver
//
// serves the chat page at http://127.0.0.1:8080/ and the parley.v1
// WebSocket protocol at /ws (documented in package
// github.com/parley-go/parley/examples/chatserver/server), with Prometheus
// metrics at /metrics and health checks at /healthz and /readyz. Session
// context is kept on disk under the user cache directory by default, or in
// Redis with -redis. SIGINT or SIGTERM drains the server: it stops
// accepting, answers every message it accepted, flushes the context store
// and closes connections with status 1001.
//
// Run with -h for the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/parley-go/parley/ctxstore"
	"github.com/parley-go/parley/examples/chatserver/server"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "chatserver:", err)
		os.Exit(1)
	}
}

// options are the command line settings.
type options struct {
	addr      string
	dataDir   string
	redisAddr string
	logLevel  slog.Level
	drain     time.Duration
	pprof     bool
	memLimit  int64
	gcPercent int

	sim          server.SimConfig
	concurrency  int
	modelURL     string
	modelName    string
	modelKey     string
	modelTimeout time.Duration

	cfg      server.Config
	hotBytes int64
	ttl      time.Duration
	linger   time.Duration
	batch    int
	window   ctxstore.Window
}

func parseFlags(args []string, stderr *os.File) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("chatserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: chatserver [flags]\n\nparley's example WebSocket chat server. Flags:\n\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8080", "`host:port` to listen on")
	fs.StringVar(&o.dataDir, "data", "", "`dir`ectory of the embedded context store (default: parley under the user cache directory)")
	fs.StringVar(&o.redisAddr, "redis", "", "keep session context in Redis at `host:port` instead of on disk")
	fs.TextVar(&o.logLevel, "log-level", slog.LevelInfo, "log `level`: debug, info, warn or error")
	fs.DurationVar(&o.drain, "drain-timeout", 30*time.Second, "how long a shutdown may take to answer accepted messages")
	fs.BoolVar(&o.pprof, "pprof", false, "serve Go's profiler at /debug/pprof/")
	fs.IntVar(&o.gcPercent, "gc-percent", 50, "Go's GOGC: heap growth between collections, in `percent` of the live heap; lower trades CPU for memory (Go's default is 100)")
	fs.Int64Var(&o.memLimit, "memory-limit", 0, "soft limit on the Go runtime's memory in `bytes`, like GOMEMLIMIT (0 = GOMEMLIMIT or none); the process's RSS runs about 10% above it (the binary and the embedded store's mapped file are outside it). With a limit, a -gc-percent of a few hundred leaves the pace to the limit once the heap nears it, and spares the collections while the heap grows")

	fs.DurationVar(&o.sim.Latency, "model-latency", 500*time.Millisecond, "simulated model: mean latency of a call")
	fs.Float64Var(&o.sim.Sigma, "model-sigma", 0.2, "simulated model: spread of the lognormal latency (0 = fixed)")
	fs.DurationVar(&o.sim.PerItem, "model-per-item", time.Millisecond, "simulated model: extra latency per prompt in a batch")
	fs.Float64Var(&o.sim.Capacity, "model-capacity", 0, "simulated model: most prompts served per `second` (0 = unlimited)")
	fs.Float64Var(&o.sim.FailureRate, "model-failure-rate", 0, "simulated model: probability that a call fails")
	fs.Float64Var(&o.sim.EchoRate, "model-echo-rate", 0.02, "simulated model: probability that an answer echoes the user")
	fs.IntVar(&o.concurrency, "model-concurrency", 0, "most prompts in flight to the model (default: capacity x latency when -model-capacity is set, else unlimited)")
	fs.StringVar(&o.modelURL, "model-url", "", "use the OpenAI-compatible backend at `URL` (e.g. http://127.0.0.1:8000 for llama.cpp, vLLM, Ollama) instead of the simulated model")
	fs.StringVar(&o.modelName, "model-name", "", "model name sent to the -model-url backend")
	fs.StringVar(&o.modelKey, "model-key", os.Getenv("OPENAI_API_KEY"), "bearer token for the -model-url backend (default $OPENAI_API_KEY)")
	fs.DurationVar(&o.modelTimeout, "model-timeout", 30*time.Second, "timeout of one model call attempt")

	fs.DurationVar(&o.cfg.ChattingIdle, "idle-pause", 30*time.Second, "idle time after which CHATTING moves to PAUSE")
	fs.DurationVar(&o.cfg.PauseIdle, "idle-end", 5*time.Minute, "idle time after which PAUSE moves to END")
	fs.DurationVar(&o.cfg.Heartbeat, "heartbeat", 25*time.Second, "ping interval; two missed pongs close the connection")
	fs.Int64Var(&o.cfg.MaxFrameBytes, "max-frame", 16<<10, "largest client frame in `bytes`; larger closes with 1009")
	fs.IntVar(&o.cfg.MaxTextBytes, "max-text", 4000, "longest user message in `bytes`")
	fs.IntVar(&o.cfg.Batch.MaxSize, "batch-size", 64, "most prompts per model call")
	fs.DurationVar(&o.cfg.Batch.MaxWait, "batch-wait", 2*time.Millisecond, "longest a prompt waits for its batch to fill while a call slot is free")
	fs.DurationVar(&o.cfg.AdmitTarget, "admit-target", 100*time.Millisecond, "admission: queueing delay a healthy queue may briefly exceed")
	fs.DurationVar(&o.cfg.AdmitInterval, "admit-interval", 500*time.Millisecond, "admission: how long the delay may stay above target before new messages are shed")
	fs.DurationVar(&o.cfg.AdmitMaxWait, "admit-max-wait", 0, "admission: a message that would wait longer than this for the model is shed at once (default halfway between -admit-target and -admit-interval)")
	sessionRate := fs.Float64("session-rate", 5, "messages per second allowed per session")
	fs.IntVar(&o.cfg.SessionBurst, "session-burst", 10, "burst of messages allowed per session")
	globalRate := fs.Float64("global-rate", 0, "messages per second admitted across the server (0 = unlimited)")
	fs.Float64Var(&o.cfg.EchoThreshold, "echo-threshold", 0.5, "share of the user's 4-grams a reply may repeat before it is flagged")
	fs.BoolVar(&o.cfg.EchoRegenerate, "echo-regenerate", false, "ask the model once more when a reply is flagged as an echo")
	fs.IntVar(&o.cfg.PromptSample, "log-prompt-every", 100, "log the full prompt of one turn in `n` (a context hash otherwise)")
	fs.Int64Var(&o.hotBytes, "hot-bytes", 16<<20, "budget of the in-memory context tier in `bytes`")
	fs.DurationVar(&o.ttl, "context-ttl", 24*time.Hour, "how long an idle session's context is kept")
	fs.IntVar(&o.window.MaxTurns, "context-turns", 16, "most turns in a session's context window (its system prompt aside)")
	fs.IntVar(&o.window.MaxTokens, "context-tokens", 4096, "token budget of a session's context window")
	fs.DurationVar(&o.linger, "store-linger", 125*time.Millisecond, "least time between two writes to the cold tier; a session's turns within it are written once")
	fs.IntVar(&o.batch, "store-batch", 512, "most sessions in one write to the cold tier; with -store-linger it caps the sessions written per second (default 4096/s), "+
		"and a larger batch costs less CPU per session and more memory while it is written")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.cfg.SessionRate = rate.Limit(*sessionRate)
	o.cfg.GlobalRate = rate.Limit(*globalRate)
	o.cfg.Guard.AttemptTimeout = o.modelTimeout
	return o, nil
}

func run(ctx context.Context, args []string, stderr *os.File) error {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	// A server holding thousands of sessions is mostly live heap, and
	// Go's default lets the heap grow to twice that between collections.
	defer debug.SetGCPercent(debug.SetGCPercent(o.gcPercent))
	if o.memLimit > 0 {
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(o.memLimit))
	}
	// Logs go out in bursts of up to 100 ms, not one write per line.
	logs := newLogWriter(stderr, 100*time.Millisecond)
	defer logs.Close()
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: o.logLevel}))
	defer slog.SetDefault(slog.Default())
	slog.SetDefault(log)

	model, err := newModel(o)
	if err != nil {
		return err
	}
	cold, closeCold, err := openCold(o, log)
	if err != nil {
		return err
	}
	defer closeCold()
	// The store reports writes the cold tier refused (another node wrote
	// the session) to the server, which is made after the store.
	var srvp atomic.Pointer[server.Server]
	store, err := ctxstore.New(cold, ctxstore.Config{
		TTL:      o.ttl,
		HotBytes: o.hotBytes,
		Linger:   o.linger,
		MaxBatch: o.batch,
		Window:   o.window,
		Logger:   log,
		OnWriteError: func(k ctxstore.Key, err error) {
			if srv := srvp.Load(); srv != nil {
				srv.StoreWriteError(k, err)
			}
		},
	})
	if err != nil {
		return err
	}
	o.cfg.Model, o.cfg.Store, o.cfg.Logger = model, store, log
	srv, err := server.New(o.cfg)
	if err != nil {
		store.Close(context.Background())
		return err
	}
	srvp.Store(srv)

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		srv.Shutdown(context.Background())
		store.Close(context.Background())
		return err
	}
	handler := srv.Handler()
	if o.pprof {
		mux := http.NewServeMux()
		mux.Handle("/", handler)
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		handler = mux
	}
	hs := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	log.Info("listening", "addr", "http://"+ln.Addr().String()+"/", "cold", coldName(o), "model", modelName(o))

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case err = <-served:
		log.Error("serving", "err", err)
	case <-ctx.Done():
		log.Info("shutting down")
	}
	return shutdown(hs, srv, store, o.drain, log)
}

// shutdown stops accepting, drains the chat server and flushes the store;
// each step gets the rest of the drain timeout.
func shutdown(hs *http.Server, srv *server.Server, store *ctxstore.Store, timeout time.Duration, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// http.Server.Shutdown closes the listener and idle connections; it
	// does not wait for WebSocket connections, which the chat server
	// drains itself.
	errs := []error{hs.Shutdown(ctx), srv.Shutdown(ctx)}
	if err := store.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("flushing the context store: %w", err))
	} else {
		log.Info("context store flushed")
	}
	return errors.Join(errs...)
}

func newModel(o *options) (server.Model, error) {
	if o.modelURL != "" {
		return server.NewOpenAI(o.modelURL, o.modelName, o.modelKey, nil)
	}
	m, err := server.NewSimModel(o.sim)
	if err != nil {
		return nil, err
	}
	// Keep the queue in front of a capped model where admission can see
	// it: by Little's law the model serves capacity x latency prompts at
	// once, so more in flight would only queue inside the model.
	conc := o.concurrency
	if conc == 0 && o.sim.Capacity > 0 {
		conc = max(1, int(o.sim.Capacity*(o.sim.Latency.Seconds())))
	}
	if conc > 0 {
		o.cfg.Batch.MaxInFlight = max(1, conc/max(1, o.cfg.Batch.MaxSize))
	}
	return m, nil
}

func modelName(o *options) string {
	if o.modelURL != "" {
		return o.modelURL
	}
	return "simulated"
}

func coldName(o *options) string {
	if o.redisAddr != "" {
		return "redis " + o.redisAddr
	}
	return "bolt " + o.dataDir
}

// openCold opens the context store's cold tier: Redis with -redis, else the
// embedded bbolt file under -data.
func openCold(o *options, log *slog.Logger) (ctxstore.Cold, func(), error) {
	if o.redisAddr != "" {
		c := redis.NewClient(&redis.Options{Addr: o.redisAddr})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Ping(ctx).Err(); err != nil {
			c.Close()
			return nil, nil, fmt.Errorf("redis at %s: %w", o.redisAddr, err)
		}
		return ctxstore.NewRedis(c, ctxstore.RedisConfig{Logger: log}), func() { c.Close() }, nil
	}
	if o.dataDir == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return nil, nil, fmt.Errorf("no -data directory given and %w", err)
		}
		o.dataDir = filepath.Join(dir, "parley")
	}
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return nil, nil, err
	}
	b, err := ctxstore.OpenBolt(filepath.Join(o.dataDir, "context.db"))
	if err != nil {
		return nil, nil, err
	}
	return b, func() { b.Close() }, nil
}
