//go:build unix

package main

import "syscall"

// fileLimit returns the soft limit on open files, or 0 when unknown.
func fileLimit() uint64 {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil {
		return 0
	}
	return uint64(lim.Cur)
}
