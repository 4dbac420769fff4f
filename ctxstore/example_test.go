package ctxstore_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/parley-go/parley/ctxstore"
)

// A session worker reads the session's record before each model call and
// Puts it back after the reply. A new process on the same cold tier picks
// the conversation up where it stopped.
func Example() {
	ctx := context.Background()
	var cold ctxstore.Memory // ctxstore.OpenBolt or ctxstore.NewRedis in a real server
	store, err := ctxstore.New(&cold, ctxstore.Config{Window: ctxstore.Window{MaxTurns: 4}})
	if err != nil {
		panic(err)
	}
	for _, msg := range []string{"hi", "which laptop?", "the cheaper one", "ship it"} {
		r, err := store.Get(ctx, "acme", "session-1")
		if errors.Is(err, ctxstore.ErrNotFound) {
			r = store.NewRecord("acme", "session-1")
			r.SetSystem("You are a shop assistant.")
		} else if err != nil {
			panic(err)
		}
		r.Append(ctxstore.Turn{Role: ctxstore.RoleUser, Text: msg})
		r.Append(ctxstore.Turn{Role: ctxstore.RoleAssistant, Text: "re: " + msg})
		if err := store.Put(ctx, r); err != nil {
			panic(err)
		}
	}
	if err := store.Close(ctx); err != nil { // writes everything to the cold tier
		panic(err)
	}

	restarted, err := ctxstore.New(&cold, ctxstore.Config{Window: ctxstore.Window{MaxTurns: 4}})
	if err != nil {
		panic(err)
	}
	defer restarted.Close(ctx)
	r, err := restarted.Get(ctx, "acme", "session-1")
	if err != nil {
		panic(err)
	}
	fmt.Printf("seq %d, %d tokens, system %q\n", r.Seq(), r.Tokens(), r.System())
	for t := range r.Turns() {
		fmt.Printf("%s: %s\n", t.Role, t.Text)
	}
	// Output:
	// seq 4, 21 tokens, system "You are a shop assistant."
	// user: the cheaper one
	// assistant: re: the cheaper one
	// user: ship it
	// assistant: re: ship it
}

// The window keeps the newest turns within both of its bounds; the system
// prompt is pinned and counts against the token budget.
func ExampleRecord_Append() {
	// A zero Record has the default window; Store.NewRecord uses the store's.
	var r ctxstore.Record
	r.SetSystem("Be brief.") // 3 tokens by EstimateTokens
	for i, text := range []string{"first question", "first answer", "second question"} {
		r.Append(ctxstore.Turn{Role: ctxstore.RoleUser, Text: text, Tokens: 500 * (i + 2)})
	}
	fmt.Println(r.Len(), r.Tokens())
	for t := range r.Turns() {
		fmt.Println(t.Text)
	}
	// Output:
	// 2 3503
	// first answer
	// second question
}
