//go:build !unix

package bench

import "time"

// cpuTime reports that this platform has no process CPU clock we read.
func cpuTime() (time.Duration, bool) { return 0, false }
