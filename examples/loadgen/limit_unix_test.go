//go:build unix

package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Environment of the child process TestFileLimit starts: the command line
// and the soft limit on open files to run it under.
const (
	childArgsEnv   = "LOADGEN_TEST_CHILD_ARGS"
	childNoFileEnv = "LOADGEN_TEST_CHILD_NOFILE"
)

// childMain runs the program as the child of TestFileLimit, under a lowered
// file limit, and reports whether it did (then it has exited).
func childMain() bool {
	args, ok := os.LookupEnv(childArgsEnv)
	if !ok {
		return false
	}
	n, err := strconv.ParseUint(os.Getenv(childNoFileEnv), 10, 64)
	if err != nil {
		panic(err)
	}
	lim := syscall.Rlimit{Cur: n, Max: n}
	var cur syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &cur); err != nil {
		panic(err)
	}
	lim.Max = cur.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		panic(err)
	}
	os.Exit(run(strings.Fields(args), os.Stdout, os.Stderr))
	return true
}

// TestFileLimit runs the program in a child process whose file limit is
// too low for the sessions asked for, and checks that it says so plainly,
// still runs the sessions it could open and counts no errors.
func TestFileLimit(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t, &fakeServer{delay: 5 * time.Millisecond})
	const limit, sessions = 48, 200
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		childArgsEnv+"=-q -url "+f.url()+" -sessions "+strconv.Itoa(sessions)+" -turns 3 -ramp 0 -timeout 5s",
		childNoFileEnv+"="+strconv.Itoa(limit))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if exit, ok := errors.AsType[*exec.ExitError](err); !ok || exit.ExitCode() != 1 {
		t.Fatalf("child exited with %v, want status 1; stderr:\n%s", err, stderr.String())
	}
	want := "loadgen: the open-file limit (" + strconv.Itoa(limit) + ") stopped new connections after "
	if !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
	}
	if strings.Contains(stderr.String(), "loadgen: error:") {
		t.Errorf("stderr reports errors, want none:\n%s", stderr.String())
	}
	sum := parseSummary(t, stdout.String())
	if sum["sessions"] <= 0 || sum["sessions"] >= sessions {
		t.Errorf("sessions = %v, want some but fewer than %d", sum["sessions"], sessions)
	}
	if sum["errors"] != 0 || sum["lost"] != 0 || sum["turns"] != 3*sum["sessions"] {
		t.Errorf("summary %s: want errors=0 lost=0 and 3 turns per connected session", stdout.String())
	}
}
