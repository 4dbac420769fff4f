//go:build !unix

package main

// fileLimit returns 0: the limit on open files is unknown on this system.
func fileLimit() uint64 { return 0 }
