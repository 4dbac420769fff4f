package server

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/parley-go/parley/fsm"
)

// metrics are the server's Prometheus metrics, on a registry of its own
// with the Go runtime's and the process's (process_resident_memory_bytes is
// what the load generator reports as server RSS).
type metrics struct {
	reg *prometheus.Registry

	connections   prometheus.Gauge
	sessions      [fsm.End + 1]prometheus.Gauge // by dialogue state
	turns         *prometheus.CounterVec        // by outcome
	shed          *prometheus.CounterVec        // by reason
	badRequests   prometheus.Counter
	replays       prometheus.Counter
	echoes        prometheus.Counter
	deadConns     prometheus.Counter
	storeErrors   prometheus.Counter
	modelFailures prometheus.Counter
	queueDelay    prometheus.Histogram
	batchSize     prometheus.Histogram
	replyLatency  prometheus.Histogram
	overhead      prometheus.Histogram
	modelLatency  prometheus.Histogram
}

func newMetrics(s *Server) *metrics {
	reg := prometheus.NewRegistry()
	f := promauto.With(reg)
	m := &metrics{
		reg:           reg,
		connections:   f.NewGauge(prometheus.GaugeOpts{Name: "parley_connections", Help: "Open WebSocket connections."}),
		turns:         f.NewCounterVec(prometheus.CounterOpts{Name: "parley_turns_total", Help: "Answered user messages, by outcome (model or fallback)."}, []string{"outcome"}),
		shed:          f.NewCounterVec(prometheus.CounterOpts{Name: "parley_shed_total", Help: "User messages refused by admission, by reason."}, []string{"reason"}),
		badRequests:   f.NewCounter(prometheus.CounterOpts{Name: "parley_bad_requests_total", Help: "Client frames refused as malformed or too large."}),
		replays:       f.NewCounter(prometheus.CounterOpts{Name: "parley_replays_total", Help: "Repeated message ids answered from the dedup window."}),
		echoes:        f.NewCounter(prometheus.CounterOpts{Name: "parley_echo_flagged_total", Help: "Replies flagged by the 4-gram echo check."}),
		deadConns:     f.NewCounter(prometheus.CounterOpts{Name: "parley_dead_connections_total", Help: "Connections closed after two missed pongs."}),
		storeErrors:   f.NewCounter(prometheus.CounterOpts{Name: "parley_store_errors_total", Help: "Session records the context store refused."}),
		modelFailures: f.NewCounter(prometheus.CounterOpts{Name: "parley_model_failures_total", Help: "Batches answered by the fallback because the model failed or the breaker was open."}),
		queueDelay: f.NewHistogram(prometheus.HistogramOpts{Name: "parley_queue_delay_seconds", Help: "Time from a message's arrival until the model call for it started.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		batchSize: f.NewHistogram(prometheus.HistogramOpts{Name: "parley_batch_size", Help: "Prompts per model call.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 8)}),
		replyLatency: f.NewHistogram(prometheus.HistogramOpts{Name: "parley_reply_seconds", Help: "Time from a message's arrival until its reply was written.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
		overhead: f.NewHistogram(prometheus.HistogramOpts{Name: "parley_overhead_seconds", Help: "Time from a message's arrival until its reply was written, less the model's own time for it.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		modelLatency: f.NewHistogram(prometheus.HistogramOpts{Name: "parley_model_seconds", Help: "The model's own time per call.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
	}
	states := f.NewGaugeVec(prometheus.GaugeOpts{Name: "parley_sessions", Help: "Live sessions by dialogue state."}, []string{"state"})
	for st := range m.sessions {
		m.sessions[st] = states.WithLabelValues(fsm.DialogueState(st).String())
	}
	f.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_batch_queued", Help: "Prompts waiting for a model call."}, func() float64 { return float64(s.queued.Load()) })
	f.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_wait_line", Help: "Places in the wait line of sessions refused for overload that are not called yet (a session that left keeps its place until it is called)."}, func() float64 {
		return float64(s.line.Waiting(time.Now()))
	})
	f.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_ring_queued", Help: "Messages waiting in the sessions' rings."}, func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		n := 0
		for _, ss := range s.sessions {
			n += ss.in.Len()
		}
		return float64(n)
	})
	f.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_breaker_state", Help: "The model breaker's state: 0 closed, 1 half-open, 2 open."}, func() float64 {
		return float64(s.guard.State())
	})
	f.NewCounterFunc(prometheus.CounterOpts{Name: "parley_breaker_opened_total", Help: "Times the model breaker opened."}, func() float64 {
		return float64(s.guard.Stats().Opened)
	})
	f.NewCounterFunc(prometheus.CounterOpts{Name: "parley_model_retries_total", Help: "Model call attempts after the first."}, func() float64 {
		return float64(s.guard.Stats().Retries)
	})
	f.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_cache_hit_ratio", Help: "Share of context store reads answered from memory."}, func() float64 {
		st := s.store.Stats()
		if st.Hits+st.Misses == 0 {
			return 0
		}
		return float64(st.Hits) / float64(st.Hits+st.Misses)
	})
	f.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_store_pending", Help: "Session records acknowledged but not yet in the cold tier."}, func() float64 {
		return float64(s.store.Stats().Pending)
	})
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *metrics) stateEnter(st fsm.DialogueState) { m.sessions[st].Inc() }
func (m *metrics) stateLeave(st fsm.DialogueState) { m.sessions[st].Dec() }

func (m *metrics) transition(from, to fsm.DialogueState) {
	if from != to {
		m.stateLeave(from)
		m.stateEnter(to)
	}
}

// turnDone records an answered message.
func (m *metrics) turnDone(a answer, latency float64) {
	outcome := "model"
	if a.fallback {
		outcome = "fallback"
	}
	m.turns.WithLabelValues(outcome).Inc()
	m.replyLatency.Observe(latency)
	if !a.fallback {
		m.modelLatency.Observe(a.Service.Seconds())
		m.overhead.Observe(latency - a.Service.Seconds())
	}
}
