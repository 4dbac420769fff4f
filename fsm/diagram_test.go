package fsm_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parley-go/parley/fsm"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s differs (rerun with -update if intended):\n got:\n%s\nwant:\n%s", name, got, want)
	}
}

func TestDialogueDiagrams(t *testing.T) {
	d := mustDialogue(t, fsm.DialogueConfig{})
	golden(t, "dialogue.mmd", d.Mermaid())
	golden(t, "dialogue.dot", d.DOT())
}

// odd is a state type whose names need quoting or aliasing.
type odd uint8

func (o odd) String() string {
	return [...]string{"start here", `say "hi"`, "end", "ok_1"}[o]
}

func TestDiagramsQuoteNames(t *testing.T) {
	d, err := fsm.New(fsm.Spec[odd, ev]{
		Name:    `odd "names"; #1`,
		Initial: 0,
		States: []fsm.StateSpec[odd, ev]{
			{State: 0, Timeout: 90 * time.Second, TimeoutEvent: 1},
			{State: 1}, {State: 2}, {State: 3},
		},
		Transitions: []fsm.TransitionSpec[odd, ev]{
			{From: 0, Event: 0, To: 1, Guard: func(*fsm.Step[odd, ev]) bool { return true }, GuardName: `quota; "left"`},
			{From: 0, Event: 1, To: 2},
			{From: 1, Event: 0, To: 3},
			{From: 3, Event: 0, To: 3, Internal: true},
			{From: 3, Event: 1, To: 2},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "odd.mmd", d.Mermaid())
	golden(t, "odd.dot", d.DOT())
}
