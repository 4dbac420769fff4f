package server

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := deadlines{timeout: 10 * time.Second}
		start := time.Now()
		first := d.get(start)
		if dl, _ := first.Deadline(); dl != start.Add(10*time.Second) {
			t.Errorf("first deadline = %v, want start+10s", dl.Sub(start))
		}
		time.Sleep(900 * time.Millisecond)
		if d.get(time.Now()) != first {
			t.Error("within a second, get made a new context")
		}
		time.Sleep(100 * time.Millisecond)
		second := d.get(time.Now())
		if second == first {
			t.Fatal("after a second, get handed out the old context")
		}
		if dl, _ := second.Deadline(); dl != start.Add(11*time.Second) {
			t.Errorf("second deadline = %v after start, want 11s", dl.Sub(start))
		}
		if first.Err() != nil {
			t.Error("the old context ended early")
		}
		time.Sleep(9 * time.Second) // to the first context's deadline
		synctest.Wait()
		if first.Err() == nil {
			t.Error("the old context outlived its deadline")
		}
	})
}
