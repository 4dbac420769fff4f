package server

import (
	"testing"
	"time"
)

func TestRateMeter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var m rateMeter
	if got := m.rate(t0); got != 0 {
		t.Errorf("rate of an empty meter = %v, want 0", got)
	}
	// 100 items every 10 ms for two seconds: 10,000 items/s.
	for i := range 200 {
		m.add(100, t0.Add(time.Duration(i)*10*time.Millisecond))
	}
	if got := m.rate(t0.Add(2 * time.Second)); got != 10000 {
		t.Errorf("rate = %v, want 10000", got)
	}
	// Half a second of silence halves the rate; two seconds clear it.
	if got := m.rate(t0.Add(2500 * time.Millisecond)); got != 5000 {
		t.Errorf("rate after 0.5 s of silence = %v, want 5000", got)
	}
	if got := m.rate(t0.Add(5 * time.Second)); got != 0 {
		t.Errorf("rate after 3 s of silence = %v, want 0", got)
	}
}
