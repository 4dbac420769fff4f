package batch_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/parley-go/parley/batch"
)

// A model backend that answers several prompts in one call sits behind a
// Batcher; each caller sends one prompt and gets its own reply.
func Example() {
	model := func(_ context.Context, prompts []string) ([]string, error) {
		replies := make([]string, len(prompts))
		for i, p := range prompts {
			replies[i] = strings.ToUpper(p)
		}
		return replies, nil
	}
	b, err := batch.New(model, batch.Config{MaxSize: 4})
	if err != nil {
		panic(err)
	}
	defer b.Close()

	prompts := []string{"hello", "where is my order", "thanks, bye"}
	replies := make([]string, len(prompts))
	var wg sync.WaitGroup
	for i, p := range prompts {
		wg.Go(func() {
			reply, err := b.Do(context.Background(), p)
			if err != nil {
				reply = "error: " + err.Error()
			}
			replies[i] = reply
		})
	}
	wg.Wait()
	for i, p := range prompts {
		fmt.Printf("%s -> %s\n", p, replies[i])
	}
	// Output:
	// hello -> HELLO
	// where is my order -> WHERE IS MY ORDER
	// thanks, bye -> THANKS, BYE
}

// A batch function fails single requests with ItemErrors; only their
// callers see an error.
func ExampleItemErrors() {
	errEmpty := errors.New("empty prompt")
	model := func(_ context.Context, prompts []string) ([]string, error) {
		replies := make([]string, len(prompts))
		var errs batch.ItemErrors
		for i, p := range prompts {
			if p == "" {
				if errs == nil {
					errs = make(batch.ItemErrors, len(prompts))
				}
				errs[i] = errEmpty
				continue
			}
			replies[i] = strings.ToUpper(p)
		}
		return replies, errs // a nil ItemErrors means no prompt failed
	}
	b, err := batch.New(model, batch.Config{})
	if err != nil {
		panic(err)
	}
	defer b.Close()

	for _, p := range []string{"hi", ""} {
		reply, err := b.Do(context.Background(), p)
		fmt.Printf("%q -> %q, %v\n", p, reply, err)
	}
	// Output:
	// "hi" -> "HI", <nil>
	// "" -> "", empty prompt
}
