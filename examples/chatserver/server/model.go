package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/time/rate"
)

// Message is one entry of a conversation sent to a [Model]: a role
// ("system", "user" or "assistant") and its text.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Completion is a model's answer to one prompt.
type Completion struct {
	// Text is the answer.
	Text string
	// Service is how long the model itself worked on this prompt, excluding
	// any time the prompt waited for the model's capacity.
	Service time.Duration
	// Queue is how long the prompt waited for the model's capacity before
	// service began, when the model knows it (zero otherwise).
	Queue time.Duration
}

// Model is a backend that answers a batch of prompts, each a conversation
// ending with the user's turn. Complete returns one completion per prompt,
// in order, or an error for the whole batch. It must honour ctx.
//
// Two implementations ship with the server: [SimModel] (the default) and
// [OpenAI] for any OpenAI-compatible /v1/chat/completions endpoint.
type Model interface {
	Complete(ctx context.Context, prompts [][]Message) ([]Completion, error)
}

// ErrModelFailed is returned by [SimModel] for a batch it was configured to
// fail (see [SimConfig.FailureRate]).
var ErrModelFailed = errors.New("server: simulated model failure")

// SimConfig configures a [SimModel]. The zero value is a model that answers
// at once, never fails and never echoes.
type SimConfig struct {
	// Latency is the mean time of one batch call.
	Latency time.Duration
	// Sigma is the shape of the lognormal latency distribution around
	// Latency; 0 makes every call take exactly Latency.
	Sigma float64
	// PerItem is the extra time each prompt in a batch adds to the call.
	PerItem time.Duration
	// Capacity is the most prompts per second the model serves; prompts
	// beyond it wait their turn (reported as [Completion.Queue]). 0 means
	// unlimited.
	Capacity float64
	// FailureRate is the probability, 0 to 1, that a batch call fails.
	FailureRate float64
	// EchoRate is the probability, 0 to 1, that an answer repeats the
	// user's words back.
	EchoRate float64
	// Seed seeds the model's random choices; 0 picks a random seed.
	Seed uint64
}

// SimModel is a simulated model backend: each batch call takes a random
// latency plus a per-item cost, may fail, may echo the user, and the model
// serves at most a configured number of prompts per second. It is safe for
// concurrent use. Use [NewSimModel]; the zero value is not usable.
type SimModel struct {
	cfg SimConfig
	lim *rate.Limiter // nil when capacity is unlimited

	mu  sync.Mutex
	rng *rand.Rand
}

// NewSimModel returns a simulated model. It rejects negative durations and
// probabilities outside [0, 1].
func NewSimModel(cfg SimConfig) (*SimModel, error) {
	switch {
	case cfg.Latency < 0 || cfg.PerItem < 0:
		return nil, fmt.Errorf("server: simulated model latency %v and per-item cost %v must not be negative", cfg.Latency, cfg.PerItem)
	case cfg.Sigma < 0 || cfg.Capacity < 0:
		return nil, fmt.Errorf("server: simulated model sigma %v and capacity %v must not be negative", cfg.Sigma, cfg.Capacity)
	case cfg.FailureRate < 0 || cfg.FailureRate > 1 || cfg.EchoRate < 0 || cfg.EchoRate > 1:
		return nil, fmt.Errorf("server: simulated model failure rate %v and echo rate %v must be within [0, 1]", cfg.FailureRate, cfg.EchoRate)
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	m := &SimModel{cfg: cfg, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	if cfg.Capacity > 0 {
		// A burst of a tenth of a second's capacity (at least one prompt)
		// lets batches through without letting the rate overshoot much.
		m.lim = rate.NewLimiter(rate.Limit(cfg.Capacity), max(1, int(cfg.Capacity/10)))
	}
	return m, nil
}

// Complete implements [Model].
func (m *SimModel) Complete(ctx context.Context, prompts [][]Message) ([]Completion, error) {
	if len(prompts) == 0 {
		return nil, nil
	}
	queue, err := m.wait(ctx, len(prompts))
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	service := m.latency() + time.Duration(len(prompts))*m.cfg.PerItem
	fail := m.cfg.FailureRate > 0 && m.rng.Float64() < m.cfg.FailureRate
	echo := make([]bool, len(prompts))
	for i := range echo {
		echo[i] = m.cfg.EchoRate > 0 && m.rng.Float64() < m.cfg.EchoRate
	}
	m.mu.Unlock()

	if service > 0 {
		t := time.NewTimer(service)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	if fail {
		return nil, ErrModelFailed
	}
	out := make([]Completion, len(prompts))
	for i, p := range prompts {
		out[i] = Completion{Text: simAnswer(p, echo[i]), Service: service, Queue: queue}
	}
	return out, nil
}

// wait blocks until the model has capacity for n prompts and returns how
// long that took.
func (m *SimModel) wait(ctx context.Context, n int) (time.Duration, error) {
	if m.lim == nil {
		return 0, nil
	}
	// Reserve in chunks no larger than the burst so any batch size fits.
	var total time.Duration
	for n > 0 {
		k := min(n, m.lim.Burst())
		r := m.lim.ReserveN(time.Now(), k)
		d := r.Delay()
		if d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				r.Cancel()
				return total, ctx.Err()
			}
		}
		total += d
		n -= k
	}
	return total, nil
}

// latency draws one call's latency; m.mu must be held.
func (m *SimModel) latency() time.Duration {
	mean := float64(m.cfg.Latency)
	if m.cfg.Sigma == 0 || mean == 0 {
		return m.cfg.Latency
	}
	// A lognormal with mean exp(mu + sigma^2/2) equal to the configured mean.
	s := m.cfg.Sigma
	mu := math.Log(mean) - s*s/2
	return time.Duration(math.Exp(mu + s*m.rng.NormFloat64()))
}

// simAnswer makes the simulated model's answer to a conversation. An echo
// repeats the user's last words back, as real models sometimes do.
func simAnswer(prompt []Message, echo bool) string {
	var user string
	turns := 0
	for _, m := range prompt {
		if m.Role == "user" {
			user = m.Content
			turns++
		}
	}
	if echo {
		return "You said: " + user
	}
	topic := "that"
	if w := lastWord(user); w != "" {
		topic = "«" + w + "»"
	}
	return "Noted, turn " + strconv.Itoa(turns) + ": tell me more about " + topic + "."
}

// lastWord returns the last space-separated word of s.
func lastWord(s string) string {
	s = strings.TrimRightFunc(s, unicode.IsSpace)
	i := strings.LastIndexFunc(s, unicode.IsSpace)
	if i < 0 {
		return s
	}
	_, size := utf8.DecodeRuneInString(s[i:])
	return s[i+size:]
}
