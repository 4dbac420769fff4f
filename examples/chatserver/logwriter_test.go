package main

import (
	"bytes"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the writer's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLogWriterFlushesEveryInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out syncBuffer
		lw := newLogWriter(&out, 100*time.Millisecond)
		lw.Write([]byte("one\n"))
		if got := out.String(); got != "" {
			t.Errorf("before the interval, out = %q, want nothing yet", got)
		}
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if got := out.String(); got != "one\n" {
			t.Errorf("after the interval, out = %q, want %q", got, "one\n")
		}
		lw.Write([]byte("two\n"))
		lw.Close()
		if got := out.String(); got != "one\ntwo\n" {
			t.Errorf("after Close, out = %q, want both lines", got)
		}
		lw.Close() // idempotent
	})
}
