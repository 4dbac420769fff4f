package ctxstore

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestEstimateTokens(t *testing.T) {
	tests := []struct {
		text string
		want int
	}{
		{"", 0},
		{"a", 1},
		{"abcd", 1},
		{"abcde", 2},
		{strings.Repeat("x", 4000), 1000},
	}
	for _, tt := range tests {
		if got := EstimateTokens(tt.text); got != tt.want {
			t.Errorf("EstimateTokens(%d bytes) = %d, want %d", len(tt.text), got, tt.want)
		}
	}
}

// texts lists the texts of r's turns, oldest first.
func texts(r *Record) []string {
	var out []string
	for t := range r.Turns() {
		out = append(out, t.Text)
	}
	return out
}

func TestWindowBounds(t *testing.T) {
	win := Window{MaxTurns: 3, MaxTokens: 10}.withDefaults()
	type step struct {
		system string // set the system prompt (tokens = EstimateTokens)
		text   string
		tokens int
	}
	tests := []struct {
		name       string
		steps      []step
		wantTurns  []string
		wantTokens int
	}{
		{
			name:       "under both bounds",
			steps:      []step{{text: "a", tokens: 1}, {text: "b", tokens: 2}},
			wantTurns:  []string{"a", "b"},
			wantTokens: 3,
		},
		{
			name:       "turn bound drops the oldest",
			steps:      []step{{text: "a", tokens: 1}, {text: "b", tokens: 1}, {text: "c", tokens: 1}, {text: "d", tokens: 1}},
			wantTurns:  []string{"b", "c", "d"},
			wantTokens: 3,
		},
		{
			name:       "token budget drops the oldest",
			steps:      []step{{text: "a", tokens: 4}, {text: "b", tokens: 4}, {text: "c", tokens: 4}},
			wantTurns:  []string{"b", "c"},
			wantTokens: 8,
		},
		{
			name:       "the newest turn stays even over budget",
			steps:      []step{{text: "a", tokens: 1}, {text: "huge", tokens: 50}},
			wantTurns:  []string{"huge"},
			wantTokens: 50,
		},
		{
			name:       "the system prompt counts and is pinned",
			steps:      []step{{system: "12345678"}, {text: "a", tokens: 3}, {text: "b", tokens: 3}, {text: "c", tokens: 3}},
			wantTurns:  []string{"b", "c"},
			wantTokens: 2 + 6,
		},
		{
			name:       "a longer system prompt trims the turns",
			steps:      []step{{text: "a", tokens: 3}, {text: "b", tokens: 3}, {text: "c", tokens: 3}, {system: strings.Repeat("x", 16)}},
			wantTurns:  []string{"b", "c"},
			wantTokens: 4 + 6,
		},
		{
			name:       "tokens are counted when not given",
			steps:      []step{{text: "abcdefgh"}, {text: "abcdefghi"}},
			wantTurns:  []string{"abcdefgh", "abcdefghi"},
			wantTokens: 2 + 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Record{win: &win}
			for _, s := range tt.steps {
				if s.system != "" {
					r.SetSystem(s.system)
					continue
				}
				r.Append(Turn{Role: RoleUser, Text: s.text, Tokens: s.tokens})
			}
			if got := texts(r); !slices.Equal(got, tt.wantTurns) {
				t.Errorf("turns = %q, want %q", got, tt.wantTurns)
			}
			if got := r.Tokens(); got != tt.wantTokens {
				t.Errorf("Tokens() = %d, want %d", got, tt.wantTokens)
			}
			if got := r.Len(); got != len(tt.wantTurns) {
				t.Errorf("Len() = %d, want %d", got, len(tt.wantTurns))
			}
		})
	}
}

func TestWindowWrapsAround(t *testing.T) {
	win := Window{MaxTurns: 5, MaxTokens: 1 << 20}.withDefaults()
	r := &Record{win: &win}
	for i := range 103 {
		r.Append(Turn{Role: RoleUser, Text: fmt.Sprint(i), Tokens: 1})
		want := []string{}
		for j := max(0, i-4); j <= i; j++ {
			want = append(want, fmt.Sprint(j))
		}
		if got := texts(r); !slices.Equal(got, want) {
			t.Fatalf("after %d appends turns = %q, want %q", i+1, got, want)
		}
		if r.Turn(r.Len()-1).Text != fmt.Sprint(i) {
			t.Fatalf("Turn(Len-1) = %q, want %d", r.Turn(r.Len()-1).Text, i)
		}
	}
	if got := len(r.d.log.t); got > 7 {
		t.Errorf("turn log holds %d turns, want at most 7: the log must not grow past 1.5 x MaxTurns", got)
	}
}

func TestRecordZeroValue(t *testing.T) {
	var r Record
	if r.Len() != 0 || r.Tokens() != 0 || r.System() != "" || r.Snapshot() != nil || r.Seq() != 0 {
		t.Fatalf("zero Record = %s, want empty", dump(&r))
	}
	if _, ok := r.Slot("x"); ok {
		t.Error("zero Record has slot x")
	}
	r.Append(Turn{Role: RoleUser, Text: "hi"})
	if r.Len() != 1 || r.window().MaxTurns != defaultMaxTurns {
		t.Errorf("zero Record after Append: Len = %d, MaxTurns = %d; want 1, %d", r.Len(), r.window().MaxTurns, defaultMaxTurns)
	}
}

func TestRecordSlots(t *testing.T) {
	var r Record
	r.SetSlot("b", "2")
	r.SetSlot("a", "1")
	r.SetSlot("c", "3")
	r.DeleteSlot("c")
	r.DeleteSlot("missing")
	var got []string
	for k, v := range r.Slots() {
		got = append(got, k+"="+v)
	}
	if want := []string{"a=1", "b=2"}; !slices.Equal(got, want) {
		t.Errorf("Slots() = %q, want %q", got, want)
	}
	if v, ok := r.Slot("b"); !ok || v != "2" {
		t.Errorf("Slot(b) = %q, %v; want 2, true", v, ok)
	}
}

func TestRecordCopiesOnWrite(t *testing.T) {
	orig := fill(&Record{key: Key{"t", "s"}}, "v1")
	before := dump(orig)
	shared := orig.share()
	for name, change := range map[string]func(r *Record){
		"Append":      func(r *Record) { r.Append(Turn{Role: RoleUser, Text: "more"}) },
		"SetSystem":   func(r *Record) { r.SetSystem("other") },
		"SetSnapshot": func(r *Record) { r.SetSnapshot([]byte("other")) },
		"SetSlot":     func(r *Record) { r.SetSlot("product", "other") },
		"DeleteSlot":  func(r *Record) { r.DeleteSlot("product") },
	} {
		c := shared // a Get hands out copies like this one
		change(&c)
		if got := dump(&shared); got != before {
			t.Errorf("%s on a copy changed the shared record:\n got %s\nwant %s", name, got, before)
		}
		if dump(&c) == before {
			t.Errorf("%s changed nothing", name)
		}
	}
	orig.Append(Turn{Role: RoleUser, Text: "after share"})
	if got := dump(&shared); got != before {
		t.Errorf("changing the original after share changed the copy:\n got %s\nwant %s", got, before)
	}
}

func TestSetSnapshotCopies(t *testing.T) {
	var r Record
	b := []byte("abc")
	r.SetSnapshot(b)
	b[0] = 'X'
	if got := string(r.Snapshot()); got != "abc" {
		t.Errorf("Snapshot() = %q after the caller changed its slice, want abc", got)
	}
}

// TestRecordVersionsShareTurns checks the turn log that versions of a
// record share: versions made from one shared record append independently,
// each keeps its own window, and an older version reads the same on other
// goroutines while the newest keeps appending (run it with -race).
func TestRecordVersionsShareTurns(t *testing.T) {
	win := Window{MaxTurns: 4, MaxTokens: 1 << 20}.withDefaults()
	base := &Record{key: Key{"t", "s"}, win: &win}
	base.Append(Turn{Role: RoleUser, Text: "0", Tokens: 1})
	shared := base.share()
	a, b := shared, shared // two Gets of one stored version
	a.Append(Turn{Text: "a1", Tokens: 1})
	b.Append(Turn{Text: "b1", Tokens: 1})
	a.Append(Turn{Text: "a2", Tokens: 1})
	b.Append(Turn{Text: "b2", Tokens: 1})
	for _, c := range []struct {
		name string
		r    *Record
		want []string
	}{
		{"shared", &shared, []string{"0"}},
		{"a", &a, []string{"0", "a1", "a2"}},
		{"b", &b, []string{"0", "b1", "b2"}},
	} {
		if got := texts(c.r); !slices.Equal(got, c.want) {
			t.Errorf("%s: turns = %q, want %q", c.name, got, c.want)
		}
	}

	type version struct {
		r    Record
		want []string
	}
	versions := make(chan version, 16)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for v := range versions { // drained to the end, so the writer never blocks
				if got := texts(&v.r); !slices.Equal(got, v.want) {
					t.Errorf("version read on another goroutine: turns = %q, want %q", got, v.want)
				}
			}
		})
	}
	r := a
	for i := range 500 {
		r.Append(Turn{Role: RoleAssistant, Text: fmt.Sprint(i), Tokens: 1})
		if i%3 == 0 {
			// A sibling of r's version appends too: it must not disturb r.
			s := r.share()
			s.Append(Turn{Text: "sibling", Tokens: 1})
			versions <- version{s, texts(&s)}
		}
		v := r.share()
		versions <- version{v, texts(&v)}
	}
	close(versions)
	wg.Wait()
	if got := len(r.d.log.t); got > 2*win.MaxTurns {
		t.Errorf("turn log holds %d turns, want at most %d", got, 2*win.MaxTurns)
	}
}

// TestTurnLogBoundsDroppedText checks that the turns a record's log keeps
// after they left the window stay within about one token budget: small
// turns first make a log with many slots, then large turns trimmed by
// MaxTokens must not fill those slots with text no window holds.
func TestTurnLogBoundsDroppedText(t *testing.T) {
	win := Window{}.withDefaults() // 32 turns, 4096 tokens
	r := &Record{key: Key{"t", "s"}, win: &win}
	for range 31 {
		r.Append(Turn{Role: RoleUser, Text: "hi"})
		r.share()
	}
	big := strings.Repeat("x", 16000) // 4000 tokens
	budget := 4 * win.MaxTokens       // bytes of text in one token budget
	for i := range 200 {
		r.Append(Turn{Role: RoleAssistant, Text: big})
		r.share()
		held := 0
		for _, turn := range r.d.log.t[:r.d.log.claimed.Load()] {
			held += len(turn.Text)
		}
		if held > 3*budget {
			t.Fatalf("after %d large turns the log holds %d bytes of text, want at most %d (window holds %d)",
				i+1, held, 3*budget, r.Len()*len(big))
		}
	}
}
