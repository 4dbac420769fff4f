// Package bench holds parley's side-by-side benchmarks: each parley package
// measured in the same run as the Go alternatives a host would otherwise
// use (channels, other queues, other state machine libraries).
//
// It is its own module so that competitor libraries never enter parley's
// go.mod. Run it from this directory:
//
//	go test -run '^$' -bench . -benchmem
//
// and compare runs with benchstat (pinned in this module's go.mod):
//
//	go test -run '^$' -bench . -count 10 > new.txt
//	go tool benchstat old.txt new.txt
package bench
