//go:build !unix

package main

// childMain reports false: TestFileLimit, which starts a child, runs only
// on unix systems.
func childMain() bool { return false }
