//go:build race

package fsm_test

// raceEnabled reports whether the race detector is on; it makes sync.Pool
// drop items at random, so pooled paths may allocate.
const raceEnabled = true
