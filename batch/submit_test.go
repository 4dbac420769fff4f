package batch_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/parley-go/parley/batch"
)

// submitted collects the answers Submit's callbacks deliver.
type submitted struct {
	mu      sync.Mutex
	answers map[int][]answer // by request
	start   time.Time
}

func (s *submitted) done(req int) func(int, error) {
	return func(resp int, err error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.answers[req] = append(s.answers[req], answer{resp, err, time.Since(s.start)})
	}
}

func TestSubmit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newBackend(10 * time.Millisecond)
		b := newBatcher(t, be.fn, batch.Config{MaxSize: 4, MaxInFlight: 1})
		s := &submitted{answers: map[int][]answer{}, start: time.Now()}
		// 1 goes at once; 2..5 queue behind it and go as one batch, with a
		// blocking Do caller riding in the same batch as 6.
		for req := 1; req <= 5; req++ {
			if err := b.Submit(req, s.done(req)); err != nil {
				t.Fatalf("Submit(%d) = %v", req, err)
			}
		}
		got, err := b.Do(t.Context(), 6)
		if err != nil || got != 60 {
			t.Errorf("Do(6) = %d, %v; want 60, nil", got, err)
		}
		b.Close()
		for req := 1; req <= 5; req++ {
			as := s.answers[req]
			if len(as) != 1 || as[0].resp != req*10 || as[0].err != nil {
				t.Errorf("answers to Submit(%d) = %+v, want exactly one %d", req, as, req*10)
			}
		}
		if want := 10 * time.Millisecond; s.answers[1][0].at != want {
			t.Errorf("first answer at %v, want %v", s.answers[1][0].at, want)
		}
		if want := 20 * time.Millisecond; s.answers[5][0].at != want {
			t.Errorf("second batch answered at %v, want %v", s.answers[5][0].at, want)
		}
	})
}

func TestSubmitRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		b := newBatcher(t, func(_ context.Context, reqs []int) ([]int, error) {
			<-release
			return times10(reqs), nil
		}, batch.Config{MaxSize: 1, MaxInFlight: 1, QueueSize: 1})
		s := &submitted{answers: map[int][]answer{}, start: time.Now()}
		for _, req := range []int{1, 2} { // 1 in flight, 2 queued
			if err := b.Submit(req, s.done(req)); err != nil {
				t.Fatalf("Submit(%d) = %v", req, err)
			}
		}
		synctest.Wait()
		if err := b.Submit(3, s.done(3)); !errors.Is(err, batch.ErrFull) {
			t.Errorf("Submit into a full queue = %v, want ErrFull", err)
		}
		close(release)
		b.Close()
		if err := b.Submit(4, s.done(4)); !errors.Is(err, batch.ErrClosed) {
			t.Errorf("Submit after Close = %v, want ErrClosed", err)
		}
		if len(s.answers[3]) != 0 || len(s.answers[4]) != 0 {
			t.Errorf("refused requests were answered: %+v", s.answers)
		}
		if len(s.answers[1]) != 1 || len(s.answers[2]) != 1 {
			t.Errorf("accepted requests answered %d and %d times, want once each", len(s.answers[1]), len(s.answers[2]))
		}
		if st := b.Stats(); st.Rejected != 1 || st.Items != 2 {
			t.Errorf("Stats = %+v, want 1 rejected and 2 items", st)
		}
	})
}

func TestSubmitGetsBatchErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		boom := errors.New("boom")
		b := newBatcher(t, func(_ context.Context, reqs []int) ([]int, error) {
			return nil, batch.ItemErrors{nil, boom}[:len(reqs)]
		}, batch.Config{MaxSize: 2, MaxInFlight: 1, Policy: batch.FixedWindow, MaxWait: time.Millisecond})
		s := &submitted{answers: map[int][]answer{}, start: time.Now()}
		b.Submit(1, s.done(1))
		b.Submit(2, s.done(2))
		b.Close()
		if a := s.answers[1]; len(a) != 1 || a[0].err != nil {
			t.Errorf("answer to 1 = %+v, want no error", a)
		}
		if a := s.answers[2]; len(a) != 1 || !errors.Is(a[0].err, boom) {
			t.Errorf("answer to 2 = %+v, want boom", a)
		}
	})
}
