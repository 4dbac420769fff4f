package ring

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// FuzzBuffer runs a random sequence of pushes, pops, batches and Close
// against a slice model. Blocking calls get a done context, so a call that
// would wait returns ctx.Err() at once instead and must change nothing.
//
// The first byte picks the capacity (1 to 16, rounded up to a power of two);
// each following pair of bytes is an operation and its argument.
func FuzzBuffer(f *testing.F) {
	f.Add([]byte{3, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0})
	f.Add([]byte{4, 4, 7, 5, 3, 2, 0, 3, 0, 4, 9, 6, 0, 5, 2, 3, 0, 5, 8})
	f.Add([]byte{1, 2, 0, 2, 0, 3, 0, 3, 0, 6, 0, 2, 0, 3, 0})
	f.Add([]byte{16, 4, 20, 5, 5, 4, 30, 5, 40, 1, 0, 7, 0, 6, 0, 5, 1, 5, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) == 0 {
			return
		}
		b := New[int](int(ops[0])%16 + 1)
		var model []int
		closed := false
		next := 0 // the value the next pushed item carries
		items := func(n int) []int {
			vs := make([]int, n)
			for i := range vs {
				vs[i] = next + i
			}
			return vs
		}
		// accept records that the first n of vs were queued.
		accept := func(vs []int, n int) {
			model = append(model, vs[:n]...)
			next += n
		}
		// wantPushErr is the error a blocking push must return once the
		// model has no room for the rest of its items.
		wantPushErr := func() error {
			if closed {
				return ErrClosed
			}
			return context.Canceled
		}
		for i := 1; i+1 < len(ops); i += 2 {
			op, arg := ops[i]%8, int(ops[i+1])
			room := b.Cap() - len(model)
			switch op {
			case 0: // TryPush
				want := !closed && room > 0
				if got := b.TryPush(next); got != want {
					t.Fatalf("op %d: TryPush = %t, want %t (len %d, closed %t)", i, got, want, len(model), closed)
				}
				if want {
					accept([]int{next}, 1)
				}
			case 1: // TryPop
				v, ok := b.TryPop()
				if want := len(model) > 0; ok != want || ok && v != model[0] {
					t.Fatalf("op %d: TryPop = %d, %t, want %t (model %v)", i, v, ok, want, model)
				}
				if ok {
					model = model[1:]
				}
			case 2: // Push
				err := b.Push(canceled, next)
				var want error
				if closed || room == 0 {
					want = wantPushErr()
				}
				if !errors.Is(err, want) {
					t.Fatalf("op %d: Push = %v, want %v", i, err, want)
				}
				if err == nil {
					accept([]int{next}, 1)
				}
			case 3: // Pop
				v, err := b.Pop(canceled)
				switch {
				case len(model) > 0:
					if err != nil || v != model[0] {
						t.Fatalf("op %d: Pop = %d, %v, want %d, nil", i, v, err, model[0])
					}
					model = model[1:]
				case closed:
					if !errors.Is(err, ErrClosed) {
						t.Fatalf("op %d: Pop on closed, drained = %v, want ErrClosed", i, err)
					}
				default:
					if !errors.Is(err, context.Canceled) {
						t.Fatalf("op %d: Pop on empty with done ctx = %v, want context.Canceled", i, err)
					}
				}
			case 4: // PushBatch
				vs := items(arg % 24)
				n, err := b.PushBatch(canceled, vs)
				wantN := 0
				if !closed {
					wantN = min(len(vs), room)
				}
				var want error
				if wantN < len(vs) {
					want = wantPushErr()
				}
				if n != wantN || !errors.Is(err, want) {
					t.Fatalf("op %d: PushBatch(%d items) = %d, %v, want %d, %v", i, len(vs), n, err, wantN, want)
				}
				accept(vs, n)
			case 5: // PopBatch
				dst := make([]int, arg%24)
				n, err := b.PopBatch(canceled, dst)
				wantN := min(len(dst), len(model))
				var want error
				switch {
				case len(dst) == 0 || wantN > 0:
				case closed:
					want = ErrClosed
				default:
					want = context.Canceled
				}
				if n != wantN || !errors.Is(err, want) || !slices.Equal(dst[:n], model[:wantN]) {
					t.Fatalf("op %d: PopBatch(len %d) = %v, %v, want %v, %v", i, len(dst), dst[:n], err, model[:wantN], want)
				}
				model = model[n:]
			case 6: // Close
				b.Close()
				closed = true
			case 7: // Len and Stats
				if got := b.Len(); got != len(model) {
					t.Fatalf("op %d: Len = %d, want %d", i, got, len(model))
				}
				s := b.Stats()
				if s.Pushed != uint64(next) || s.Popped != uint64(next-len(model)) || s.HighWater > b.Cap() {
					t.Fatalf("op %d: Stats = %+v, want %d pushed, %d popped", i, s, next, next-len(model))
				}
			}
		}
		// Whatever happened, the Buffer still holds exactly the model.
		for _, want := range model {
			if v, err := b.Pop(context.Background()); v != want || err != nil {
				t.Fatalf("draining: Pop = %d, %v, want %d, nil", v, err, want)
			}
		}
		if !closed {
			if v, ok := b.TryPop(); ok {
				t.Fatalf("draining: TryPop = %d, true, want nothing left", v)
			}
		} else if _, err := b.Pop(context.Background()); !errors.Is(err, ErrClosed) {
			t.Fatalf("draining: Pop on closed, drained = %v, want ErrClosed", err)
		}
	})
}
