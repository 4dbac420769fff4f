module github.com/parley-go/parley/bench

go 1.26.0

replace github.com/parley-go/parley => ../

tool golang.org/x/perf/cmd/benchstat

require (
	github.com/Workiva/go-datastructures v1.1.7
	github.com/looplab/fsm v1.0.3
	github.com/parley-go/parley v0.0.0
	github.com/qmuntal/stateless v1.7.2
)

require (
	github.com/aclements/go-moremath v0.0.0-20210112150236-f10218a38794 // indirect
	golang.org/x/perf v0.0.0-20260908200009-22c9c6c9d4da // indirect
)
