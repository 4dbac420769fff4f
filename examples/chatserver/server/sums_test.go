package server

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parley-go/parley/ctxstore"
	"github.com/parley-go/parley/fsm"
)

func newSumsStore(t *testing.T) *ctxstore.Store {
	t.Helper()
	store, err := ctxstore.New(&ctxstore.Memory{}, ctxstore.Config{Logger: quietLogger(), Window: ctxstore.Window{MaxTurns: 5}})
	if err != nil {
		t.Fatal(err)
	}
	return store
}

// TestWindowSumsFollowTheRecord checks the incremental sums against sums
// rebuilt from the record, while turns come and go from the window and the
// record is replaced (as a merge does) behind the sums' back.
func TestWindowSumsFollowTheRecord(t *testing.T) {
	store := newSumsStore(t)
	rng := mrand.New(mrand.NewPCG(1, 2))
	rec := store.NewRecord("t", "a")
	rec.SetSystem("system")
	var w windowSums
	for i := range 2000 {
		switch r := rng.IntN(100); {
		case r < 3: // replaced by a record w has never seen
			rec = store.NewRecord("t", fmt.Sprint("r", i))
			rec.SetSystem(fmt.Sprint("system ", i%4))
			for range rng.IntN(8) {
				rec.Append(ctxstore.Turn{Role: ctxstore.RoleUser, Text: fmt.Sprint("merged ", rng.IntN(5))})
			}
		default:
			role := []ctxstore.Role{ctxstore.RoleUser, ctxstore.RoleAssistant}[rng.IntN(2)]
			turn := ctxstore.Turn{Role: role, Text: fmt.Sprint("turn ", rng.IntN(10))}
			rec.Append(turn)
			w.add(rec, turn)
		}
		var fresh windowSums
		if got, want := w.sum(rec), fresh.sum(rec); got != want {
			t.Fatalf("step %d: sum %x, rebuilt from the record %x", i, got, want)
		}
		if len(w.turns) > rec.Len()+8 {
			t.Fatalf("step %d: %d sums kept for a window of %d", i, len(w.turns), rec.Len())
		}
	}
}

// TestWindowSumsHashTheWindow checks that the hash depends on what the
// window holds, in order, and on nothing that has left it.
func TestWindowSumsHashTheWindow(t *testing.T) {
	store := newSumsStore(t)
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

// BenchmarkLogTurn measures the per-turn log line, context hash included,
// across 10k sessions of 16 turns each, so that the windows' texts are
// mostly out of the caches, as under load.
func BenchmarkLogTurn(b *testing.B) {
	store, err := ctxstore.New(&ctxstore.Memory{}, ctxstore.Config{Logger: quietLogger(), Window: ctxstore.Window{MaxTurns: 16}})
	if err != nil {
		b.Fatal(err)
	}
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
		ss.logTurn(&ss.req, a)
		i++
	}
}

// TestTurnLogLines checks the line logged for every turn: the session, the
// message, the full prompt for one turn in PromptSample and a context hash
// for the others, which differs as the window changes.
func TestTurnLogLines(t *testing.T) {
	// An *os.File is safe for the server's goroutines to log into.
	logs, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	e := newEnv(t, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, nil))
		c.PromptSample = 2
	})
	c, hello := e.hello(t, "")
	texts := []string{"one", "two", "three", "four"}
	for i, text := range texts {
		c.ask(fmt.Sprint("m", i), text)
	}
	c.conn.CloseNow()
	e.stop(t) // the session's lines are all out
	out, err := os.ReadFile(logs.Name())
	if err != nil {
		t.Fatal(err)
	}
	type line struct {
		Msg         string    `json:"msg"`
		Session     string    `json:"session"`
		ID          string    `json:"id"`
		State       string    `json:"state"`
		ModelMS     *float64  `json:"model_ms"`
		Fallback    *bool     `json:"fallback"`
		ContextHash *uint64   `json:"context_hash"`
		Prompt      []Message `json:"prompt"`
	}
	var turns []line
	for l := range bytes.Lines(out) {
		var ln line
		if err := json.Unmarshal(l, &ln); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if ln.Msg == "turn" {
			turns = append(turns, ln)
		}
	}
	if len(turns) != len(texts) {
		t.Fatalf("%d turn lines, want %d:\n%s", len(turns), len(texts), out)
	}
	hashes := map[uint64]bool{}
	for i, ln := range turns {
		if ln.Session != "default:"+hello.Session || ln.ID != fmt.Sprint("m", i) || ln.State != "CHATTING" || ln.ModelMS == nil || ln.Fallback == nil {
			t.Errorf("turn line %d = %+v, want session default:%s, id m%d, state CHATTING, model_ms and fallback", i, ln, hello.Session, i)
		}
		switch {
		case ln.ContextHash != nil && ln.Prompt == nil:
			hashes[*ln.ContextHash] = true
		case ln.ContextHash == nil && len(ln.Prompt) > 0:
			if last := ln.Prompt[len(ln.Prompt)-1]; last.Role != "user" || last.Content != texts[i] || len(ln.Prompt) != 2*i+2 {
				t.Errorf("turn line %d: prompt of %d messages ending %+v, want %d ending with the user's %q", i, len(ln.Prompt), last, 2*i+2, texts[i])
			}
		default:
			t.Errorf("turn line %d = %+v, want either a context hash or the prompt", i, ln)
		}
	}
	if len(hashes) != len(texts)/2 {
		t.Errorf("%d distinct context hashes, want %d", len(hashes), len(texts)/2)
	}
}
