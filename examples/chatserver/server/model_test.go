package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func userPrompt(text string) []Message {
	return []Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: text}}
}

func TestSimModelLatencyAndBatchCost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, err := NewSimModel(SimConfig{Latency: 500 * time.Millisecond, PerItem: 2 * time.Millisecond, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		out, err := m.Complete(context.Background(), [][]Message{userPrompt("a"), userPrompt("b"), userPrompt("c")})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := time.Since(start), 506*time.Millisecond; got != want {
			t.Errorf("batch of 3 took %v, want %v", got, want)
		}
		for i, c := range out {
			if c.Service != 506*time.Millisecond || c.Queue != 0 {
				t.Errorf("completion %d: Service, Queue = %v, %v; want 506ms, 0", i, c.Service, c.Queue)
			}
		}
	})
}

func TestSimModelCapacityQueues(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 100 prompts/s with a burst of 10: the first 10 pass at once, the
		// next 10 wait 100 ms.
		m, err := NewSimModel(SimConfig{Latency: 10 * time.Millisecond, Capacity: 100, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		batch := make([][]Message, 10)
		for i := range batch {
			batch[i] = userPrompt("hi")
		}
		first, err := m.Complete(context.Background(), batch)
		if err != nil {
			t.Fatal(err)
		}
		second, err := m.Complete(context.Background(), batch)
		if err != nil {
			t.Fatal(err)
		}
		if first[0].Queue != 0 {
			t.Errorf("first batch Queue = %v, want 0", first[0].Queue)
		}
		// 10 ms of the 100 ms refill already passed during the first call.
		if got, want := second[0].Queue, 90*time.Millisecond; got != want {
			t.Errorf("second batch Queue = %v, want %v", got, want)
		}
	})
}

func TestSimModelCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, err := NewSimModel(SimConfig{Latency: time.Second, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err = m.Complete(ctx, [][]Message{userPrompt("hi")})
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 100*time.Millisecond {
			t.Errorf("Complete = %v after %v; want DeadlineExceeded after 100ms", err, time.Since(start))
		}
	})
}

func TestSimModelFailureAndEcho(t *testing.T) {
	fail, err := NewSimModel(SimConfig{FailureRate: 1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fail.Complete(context.Background(), [][]Message{userPrompt("hi")}); !errors.Is(err, ErrModelFailed) {
		t.Errorf("FailureRate 1: Complete err = %v, want ErrModelFailed", err)
	}
	echo, err := NewSimModel(SimConfig{EchoRate: 1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	const msg = "what is the weather in paris today"
	out, err := echo.Complete(context.Background(), [][]Message{userPrompt(msg)})
	if err != nil {
		t.Fatal(err)
	}
	if got := echoOverlap(msg, out[0].Text); got != 1 {
		t.Errorf("EchoRate 1: echoOverlap(%q, %q) = %v, want 1", msg, out[0].Text, got)
	}
}

func TestNewSimModelRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  SimConfig
	}{
		{"negative latency", SimConfig{Latency: -1}},
		{"negative per-item", SimConfig{PerItem: -1}},
		{"negative sigma", SimConfig{Sigma: -0.5}},
		{"negative capacity", SimConfig{Capacity: -1}},
		{"failure rate above 1", SimConfig{FailureRate: 1.5}},
		{"echo rate below 0", SimConfig{EchoRate: -0.1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewSimModel(tt.cfg); err == nil {
				t.Errorf("NewSimModel(%+v) = nil error, want one", tt.cfg)
			}
		})
	}
}

func TestEchoOverlap(t *testing.T) {
	tests := []struct {
		user, reply string
		want        float64
	}{
		{"what is the weather in paris today", "You said: what is the weather in paris today", 1},
		{"what is the weather in paris today", "Sunny, 21 degrees.", 0},
		{"What is the weather, in Paris?", "the weather in paris is fine", 1.0 / 3},
		{"hi there", "hi there", 0}, // too short to judge
		{"one two three four", "ONE two, three... four!", 1},
	}
	for _, tt := range tests {
		if got := echoOverlap(tt.user, tt.reply); got != tt.want {
			t.Errorf("echoOverlap(%q, %q) = %v, want %v", tt.user, tt.reply, got, tt.want)
		}
	}
}

// fakeOpenAI is a local stand-in for an OpenAI-compatible server. It answers
// with the reversed last user message, or with status when status is set.
func fakeOpenAI(t *testing.T, status int) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/chat/completions" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		if got := r.Header.Get("Authorization"); got != "Bearer k" {
			t.Errorf("Authorization = %q, want %q", got, "Bearer k")
		}
		var req chatRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if status != 0 {
			w.WriteHeader(status)
			w.Write([]byte(`{"error":{"message":"model is loading"}}`))
			return
		}
		last := req.Messages[len(req.Messages)-1].Content
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"model":   req.Model,
			"choices": []any{map[string]any{"index": 0, "message": Message{Role: "assistant", Content: req.Model + ":" + strings.ToUpper(last)}}},
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestOpenAIBatch(t *testing.T) {
	srv := fakeOpenAI(t, 0)
	m, err := NewOpenAI(srv.URL, "tiny", "k", srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Complete(context.Background(), [][]Message{userPrompt("one"), userPrompt("two")})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"tiny:ONE", "tiny:TWO"} {
		if out[i].Text != want {
			t.Errorf("completion %d = %q, want %q", i, out[i].Text, want)
		}
		if out[i].Service <= 0 {
			t.Errorf("completion %d Service = %v, want > 0", i, out[i].Service)
		}
	}
}

func TestOpenAIErrors(t *testing.T) {
	srv := fakeOpenAI(t, http.StatusServiceUnavailable)
	m, err := NewOpenAI(srv.URL+"/v1/chat/completions", "tiny", "k", srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Complete(context.Background(), [][]Message{userPrompt("one")})
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "model is loading") {
		t.Errorf("Complete against a 503 = %v, want an error naming the status and the backend's message", err)
	}
	if _, err := NewOpenAI("localhost:8000", "", "", nil); err == nil {
		t.Error("NewOpenAI without a scheme = nil error, want one")
	}
}

func BenchmarkEchoOverlap(b *testing.B) {
	b.ReportAllocs()
	user := "Which of the products we talked about fits a small team best?"
	reply := "Noted, turn 7: tell me more about the products that fit a small team."
	for b.Loop() {
		echoOverlap(user, reply)
	}
}

func TestLastWord(t *testing.T) {
	for in, want := range map[string]string{
		"":                       "",
		"parsnips":               "parsnips",
		"tell me about parsnips": "parsnips",
		"trailing space  ":       "space",
		"non\u00a0breaking":      "breaking",
	} {
		if got := lastWord(in); got != want {
			t.Errorf("lastWord(%q) = %q, want %q", in, got, want)
		}
	}
}
