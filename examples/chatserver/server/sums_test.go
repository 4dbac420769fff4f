package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-go/parley/ctxstore"
	"github.com/parley-go/parley/fsm"
)

func newSumsStore(t testing.TB, w ctxstore.Window) *ctxstore.Store {
	t.Helper()
	store, err := ctxstore.New(&ctxstore.Memory{}, ctxstore.Config{Logger: quietLogger(), Window: w})
	if err != nil {
		t.Fatal(err)
	}
	return store
}

// windowPrompt is the prompt a session builds from rec (see session.prompt).
func windowPrompt(rec *ctxstore.Record) []Message {
	p := []Message{{Role: string(ctxstore.RoleSystem), Content: rec.System()}}
	for t := range rec.Turns() {
		p = append(p, Message{Role: string(t.Role), Content: t.Text})
	}
	return p
}

// TestWindowSumsFollowTheRecord checks the incremental sums against the
// hash of the prompt built from the record, while turns leave the window
// by count and by tokens, and the record is replaced (as a merge does) or
// appended to behind the sums' back.
func TestWindowSumsFollowTheRecord(t *testing.T) {
	store := newSumsStore(t, ctxstore.Window{MaxTurns: 5, MaxTokens: 40})
	rng := mrand.New(mrand.NewPCG(1, 2))
	text := func(i int) string { return fmt.Sprint("turn ", i, strings.Repeat(".", rng.IntN(60))) }
	rec := store.NewRecord("t", "a")
	rec.SetSystem("system")
	var w windowSums
	for i := range 3000 {
		switch r := rng.IntN(100); {
		case r < 3: // replaced by a record w has never seen
			rec = store.NewRecord("t", fmt.Sprint("r", i))
			rec.SetSystem(fmt.Sprint("system ", i%4))
			for range rng.IntN(8) {
				rec.Append(ctxstore.Turn{Role: ctxstore.RoleUser, Text: text(i)})
			}
		case r < 5: // a new turn appended without telling w
			rec.Append(ctxstore.Turn{Role: ctxstore.RoleAssistant, Text: fmt.Sprint("unseen ", i)})
		default:
			role := []ctxstore.Role{ctxstore.RoleUser, ctxstore.RoleAssistant}[rng.IntN(2)]
			turn := ctxstore.Turn{Role: role, Text: text(i % 7)}
			rec.Append(turn)
			w.add(rec, turn)
		}
		if got, want := w.sum(rec), promptHash(windowPrompt(rec)); got != want {
			t.Fatalf("step %d: sum %x, hash of the window's prompt %x", i, got, want)
		}
		if len(w.turns) > rec.Len()+8 {
			t.Fatalf("step %d: %d sums kept for a window of %d", i, len(w.turns), rec.Len())
		}
	}
}

// TestWindowSumsHashTheWindow checks that the hash depends on what the
// window holds, in order, and on nothing that has left it.
func TestWindowSumsHashTheWindow(t *testing.T) {
	store := newSumsStore(t, ctxstore.Window{MaxTurns: 5})
	build := func(system string, texts ...string) uint64 {
		rec := store.NewRecord("t", "x")
		rec.SetSystem(system)
		var w windowSums
		for i, text := range texts {
			turn := ctxstore.Turn{Role: []ctxstore.Role{ctxstore.RoleUser, ctxstore.RoleAssistant}[i%2], Text: text}
			rec.Append(turn)
			w.add(rec, turn)
		}
		return w.sum(rec)
	}
	base := build("s", "a", "b", "c", "d", "e", "f", "g")
	for _, tc := range []struct {
		name  string
		sum   uint64
		equal bool
	}{
		{"same turns", build("s", "a", "b", "c", "d", "e", "f", "g"), true},
		{"older turns that left the window differ", build("s", "z", "y", "c", "d", "e", "f", "g"), true},
		{"a turn in the window differs", build("s", "a", "b", "c", "d", "x", "f", "g"), false},
		{"the system prompt differs", build("t", "a", "b", "c", "d", "e", "f", "g"), false},
		{"texts move between turns", build("s", "a", "b", "c", "d", "ef", "", "g"), false},
		{"turns in another order", build("s", "a", "b", "c", "d", "g", "f", "e"), false},
	} {
		if got := tc.sum == base; got != tc.equal {
			t.Errorf("%s: equal = %v, want %v", tc.name, got, tc.equal)
		}
	}
}

// BenchmarkLogTurn measures the per-turn log line, prompt hash included,
// across 10k sessions of 16 turns each, so that the windows' texts are
// mostly out of the caches, as under load.
func BenchmarkLogTurn(b *testing.B) {
	store := newSumsStore(b, ctxstore.Window{MaxTurns: 16})
	def, err := fsm.NewDialogue(fsm.DialogueConfig{})
	if err != nil {
		b.Fatal(err)
	}
	srv := &Server{
		cfg: Config{PromptSample: 100},
		log: slog.New(slog.NewJSONHandler(io.Discard, nil)),
		def: def,
	}
	now := time.Now()
	sessions := make([]*session, 10000)
	for i := range sessions {
		ss := &session{srv: srv, key: ctxstore.Key{Tenant: "default", ID: rand.Text()}}
		ss.rec = store.NewRecord(ss.key.Tenant, ss.key.ID)
		ss.rec.SetSystem("You are a helpful assistant. Answer briefly.")
		ss.dlg = def.NewSession(now)
		ss.sums.sum(ss.rec) // the sums follow rec from here, as in a live session
		for j := range 16 {
			ss.appendTurn([]ctxstore.Role{ctxstore.RoleUser, ctxstore.RoleAssistant}[j%2],
				fmt.Sprintf("Turn %d of session %d: which of the products we talked about fits a small team best?", j, i))
		}
		ss.req.id = "m1"
		ss.req.prompt = ss.prompt(nil)
		sessions[i] = ss
	}
	a := answer{Completion: Completion{Text: "an answer", Service: 500 * time.Millisecond}}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ss := sessions[i%len(sessions)]
		ss.req.promptHash = ss.sums.sum(ss.rec)
		ss.logTurn(&ss.req, a)
		i++
	}
}

// recordingModel notes the hash of each prompt it is sent, by the user's
// last message.
type recordingModel struct {
	Model
	mu     sync.Mutex
	hashes map[string]uint64
}

func (m *recordingModel) Complete(ctx context.Context, prompts [][]Message) ([]Completion, error) {
	m.mu.Lock()
	for _, p := range prompts {
		m.hashes[p[len(p)-1].Content] = promptHash(p)
	}
	m.mu.Unlock()
	return m.Model.Complete(ctx, prompts)
}

// TestTurnLogLines checks the line logged for every turn: the session, the
// message, the full prompt for one turn in PromptSample, and otherwise the
// hash of the prompt the model was sent, also once the window is full and
// turns leave it.
func TestTurnLogLines(t *testing.T) {
	// An *os.File is safe for the server's goroutines to log into.
	logs, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	const turns = 20 // 40 turns: the default window of 32 overflows
	model := &recordingModel{Model: newSim(t, SimConfig{Latency: time.Millisecond, Seed: 1}), hashes: map[string]uint64{}}
	e := newEnvWith(t, &ctxstore.Memory{}, model, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{AddSource: true}))
		c.PromptSample = 7
		c.SessionBurst = turns // no rate limit in the way
	})
	c, hello := e.hello(t, "")
	for i := range turns {
		c.ask(fmt.Sprint("m", i), fmt.Sprint("message ", i))
	}
	c.conn.CloseNow()
	e.stop(t) // the session's lines are all out
	out, err := os.ReadFile(logs.Name())
	if err != nil {
		t.Fatal(err)
	}
	type line struct {
		Msg         string `json:"msg"`
		Source      struct{ Function string }
		Session     string    `json:"session"`
		ID          string    `json:"id"`
		State       string    `json:"state"`
		ModelMS     *float64  `json:"model_ms"`
		Fallback    *bool     `json:"fallback"`
		ContextHash *uint64   `json:"context_hash"`
		Prompt      []Message `json:"prompt"`
	}
	var lines []line
	for l := range bytes.Lines(out) {
		var ln line
		if err := json.Unmarshal(l, &ln); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if ln.Msg == "turn" {
			lines = append(lines, ln)
		}
	}
	if len(lines) != turns {
		t.Fatalf("%d turn lines, want %d:\n%s", len(lines), turns, out)
	}
	for i, ln := range lines {
		text := fmt.Sprint("message ", i)
		if ln.Session != "default:"+hello.Session || ln.ID != fmt.Sprint("m", i) || ln.State != "CHATTING" || ln.ModelMS == nil || ln.Fallback == nil {
			t.Errorf("turn line %d = %+v, want session default:%s, id m%d, state CHATTING, model_ms and fallback", i, ln, hello.Session, i)
		}
		if !strings.HasSuffix(ln.Source.Function, ".logTurn") {
			t.Errorf("turn line %d: source function %q, want logTurn", i, ln.Source.Function)
		}
		switch sampled := (i+1)%7 == 0; {
		case sampled && ln.ContextHash == nil && len(ln.Prompt) > 0:
			want := 1 + min(2*i+1, 32)
			if last := ln.Prompt[len(ln.Prompt)-1]; last.Role != "user" || last.Content != text || len(ln.Prompt) != want {
				t.Errorf("turn line %d: prompt of %d messages ending %+v, want %d ending with the user's %q", i, len(ln.Prompt), last, want, text)
			}
		case !sampled && ln.ContextHash != nil && ln.Prompt == nil:
			model.mu.Lock()
			want, ok := model.hashes[text]
			model.mu.Unlock()
			if !ok || *ln.ContextHash != want {
				t.Errorf("turn line %d: context_hash %x, want %x, the hash of the prompt the model was sent", i, *ln.ContextHash, want)
			}
		default:
			t.Errorf("turn line %d = %+v, want the prompt on every 7th turn and its hash otherwise", i, ln)
		}
	}
}

// TestPromptBufferFitsTheWindow: the prompt buffer a session keeps for its
// whole life holds the window and at most half as much again, is regrown
// a few times only while the window fills, and its content is the
// window's.
func TestPromptBufferFitsTheWindow(t *testing.T) {
	store := newSumsStore(t, ctxstore.Window{MaxTurns: 16})
	defer store.Close(context.Background())
	ss := &session{rec: store.NewRecord("t", "s")}
	ss.rec.SetSystem("be brief")
	var p []Message
	grown := 0
	for i := range 40 {
		role := ctxstore.RoleUser
		if i%2 == 1 {
			role = ctxstore.RoleAssistant
		}
		ss.rec.Append(ctxstore.Turn{Role: role, Text: fmt.Sprintf("turn %d", i)})
		before := cap(p)
		p = ss.prompt(p[:0])
		if cap(p) != before {
			grown++
		}
		if want := windowPrompt(ss.rec); !slices.Equal(p, want) {
			t.Fatalf("after %d turns: prompt %v, want %v", i+1, p, want)
		}
	}
	if len(p) != 17 || cap(p) > 17*3/2 {
		t.Errorf("prompt buffer len %d cap %d, want 17 (the system prompt and 16 turns) and at most 25", len(p), cap(p))
	}
	if grown > 6 {
		t.Errorf("prompt buffer regrown %d times for a window of 16 turns, want at most 6", grown)
	}
}
