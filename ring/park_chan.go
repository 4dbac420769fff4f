//go:build !gc || !go1.26 || go1.27 || race || parley_chanpark

package ring

// See park_runtime.go: in this build every consumer parks on a channel, and
// sleeper is never used.

// sleeperAvailable reports whether this build has sleepers.
const sleeperAvailable = false

type sleeper[T any] struct {
	parked bool // always false
}

func (s *sleeper[T]) free() bool         { return false }
func (s *sleeper[T]) arm()               { panic("ring: no sleeper in this build") }
func (s *sleeper[T]) sleep() delivery[T] { panic("ring: no sleeper in this build") }
func (s *sleeper[T]) wake(delivery[T])   { panic("ring: no sleeper in this build") }
