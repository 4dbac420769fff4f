//go:build gc && go1.26 && !go1.27 && !race && !parley_chanpark

package ring

import (
	"sync/atomic"
	"unsafe"
)

// This file parks a consumer with the Go runtime's own primitives, gopark
// and goready, which channels and sync.Cond are built on. They are linked by
// name: the runtime keeps both for packages that use them this way (see
// go.dev/issue/67401: "Do not remove or change the type signature"). The
// wait and trace reason numbers below are not part of that promise, so the
// file is built only for the Go release they were read from
// (TestSleeperWaitReason checks the wait reason; the trace reason was read
// off an execution trace); other releases, race-detector builds and builds
// with the tag parley_chanpark use park_chan.go, where every consumer parks
// on a channel.
//
// Why: a parked consumer woken by a channel send costs the channel's lock
// and wait queue on top of the Buffer's mutex, which made a single hand-off
// (BenchmarkPingPong) 15 to 21% slower than a bare channel. Parked with
// gopark, the hand-off needs no lock but the Buffer's own.

//go:linkname gopark runtime.gopark
func gopark(unlockf func(gp uintptr, arg unsafe.Pointer) bool, arg unsafe.Pointer, reason, traceReason uint8, traceskip int)

//go:linkname goready runtime.goready
func goready(gp uintptr, traceskip int)

// The runtime's waitReasonSyncCondWait and traceBlockCondWait in Go 1.26: a
// sleeper shows in goroutine dumps and execution traces as a sync.Cond
// waiter, and testing/synctest counts it as durably blocked, like one.
const (
	waitReasonSyncCondWait = 21
	traceBlockCondWait     = 4
)

// sleeperAvailable reports whether this build has sleepers.
const sleeperAvailable = true

// The states of sleeper.g other than the parked goroutine itself.
const (
	sleeperFree  = iota // no consumer holds the sleeper
	sleeperArmed        // a consumer holds it and has not parked yet
	sleeperWoken        // a claimer has handed over d
)

// sleeper is where at most one consumer parks whose wait cannot be
// cancelled (its ctx is never done). A consumer takes it under the Buffer's
// mutex (free, then arm) and holds it until sleep returns; a claimer,
// also under the mutex, takes the parked consumer by clearing parked, then
// (after unlocking) leaves a delivery in d and wakes it.
type sleeper[T any] struct {
	parked bool // a consumer is registered and unclaimed; guarded by Buffer.mu
	d      delivery[T]
	// g is one of the states above, or the parked goroutine (a runtime g,
	// which the runtime never frees, so a uintptr can hold it safely).
	g atomic.Uintptr
}

// free reports whether no consumer holds the sleeper. Buffer.mu must be
// held.
func (s *sleeper[T]) free() bool { return s.g.Load() == sleeperFree }

// arm registers the calling consumer as the sleeper. Buffer.mu must be held
// and s free.
func (s *sleeper[T]) arm() {
	s.parked = true
	s.g.Store(sleeperArmed)
}

// sleep waits for the delivery of the claim that ends the caller's
// registration, returns it and frees the sleeper.
func (s *sleeper[T]) sleep() delivery[T] {
	if s.g.Load() != sleeperWoken {
		gopark(sleeperCommit, unsafe.Pointer(&s.g), waitReasonSyncCondWait, traceBlockCondWait, 1)
	}
	// This load reads the claimer's sleeperWoken, so d's write happens
	// before the read below, for the memory model as well as in fact.
	if s.g.Load() != sleeperWoken {
		panic("ring: sleeper woken without a delivery")
	}
	d := s.d
	s.d = delivery[T]{}
	s.g.Store(sleeperFree)
	return d
}

// wake hands d to the sleeper claimed under the Buffer's mutex, waking it if
// it has parked. It is called once per claim, after unlocking.
func (s *sleeper[T]) wake(d delivery[T]) {
	s.d = d
	if gp := s.g.Swap(sleeperWoken); gp > sleeperWoken {
		goready(gp, 1)
	}
}

// sleeperCommit runs on the system stack once gopark has taken the caller
// off its thread, and parks it only if no claimer has woken it meanwhile.
//
//go:nosplit
func sleeperCommit(gp uintptr, g unsafe.Pointer) bool {
	return (*atomic.Uintptr)(g).CompareAndSwap(sleeperArmed, gp)
}
