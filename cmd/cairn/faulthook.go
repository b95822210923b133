//go:build cairnfault

package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/cairnhq/cairn/internal/engine/embedded"
)

// Test-only fault injection for `cairn serve`, read from the environment.
// This file is compiled only with the cairnfault build tag
// (go build -tags cairnfault): the tests that crash or fail a real binary at
// an exact point of the claim pipeline build it so. The default binary has
// faulthook_off.go instead, which reads no variable at all, so a leaked test
// environment can never turn a production process into a kill switch
// (TestDefaultBinaryHasNoFaultHooks greps the default binary for it).
//
//	CAIRN_TEST_HOOKS=1               required; without it the two below are refused
//	CAIRN_TEST_CRASH_AT=<point>:<n>  kill -9 the process the n-th time point is reached
//	CAIRN_TEST_FAIL_AT=<point>:<n>   from the n-th time point is reached on, fail the
//	                                 commit (what a full disk or a failing fsync does)
//
// The points are the embedded engine's, every one in embedded.FaultPoints.
// Adding a point needs no change here: declare embedded.FaultX, call
// e.hook(FaultX) where the engine reaches it, and list it in
// embedded.FaultPoints; then CAIRN_TEST_CRASH_AT=x:<n> crashes there. A test
// that drives the node to the new point and crashes it there goes in
// faults_test.go (crashRound does the crash; TestCrashPoints covers the claim
// pipeline's points). Only the embedded store has fault points.
const (
	envTestHooks   = "CAIRN_TEST_HOOKS"
	envTestCrashAt = "CAIRN_TEST_CRASH_AT"
	envTestFailAt  = "CAIRN_TEST_FAIL_AT"
)

// errTestHooks wraps every refusal of the test hook variables.
var errTestHooks = errors.New("test hooks")

// faultAt is one armed hook: act runs when point is reached the n-th time.
type faultAt struct {
	point string
	n     int64
	seen  atomic.Int64
}

// parseFaultAt parses "<point>:<n>".
func parseFaultAt(name, v string) (*faultAt, error) {
	point, ns, ok := strings.Cut(v, ":")
	n, err := strconv.ParseInt(ns, 10, 64)
	if !ok || err != nil || n < 1 || !slices.Contains(embedded.FaultPoints, point) {
		return nil, fmt.Errorf("%w: %s=%q: want <point>:<n>, point one of %s, n >= 1",
			errTestHooks, name, v, strings.Join(embedded.FaultPoints, ", "))
	}
	return &faultAt{point: point, n: n}, nil
}

// reached counts one arrival at point and reports whether this is the
// n-th or a later one.
func (f *faultAt) reached(point string) (nth, after bool) {
	if f == nil || point != f.point {
		return false, false
	}
	c := f.seen.Add(1)
	return c == f.n, c >= f.n
}

// testFaultHook returns the embedded engine's FaultHook that the
// environment asks for, or nil when it asks for none. It refuses the hook
// variables unless CAIRN_TEST_HOOKS=1, and with a store other than embedded.
func testFaultHook(getenv func(string) string, store string, log *slog.Logger) (func(point string) error, error) {
	crashV, failV := getenv(envTestCrashAt), getenv(envTestFailAt)
	if crashV == "" && failV == "" {
		return nil, nil
	}
	if getenv(envTestHooks) != "1" {
		return nil, fmt.Errorf("%w: %s and %s are for tests only and need %s=1", errTestHooks, envTestCrashAt, envTestFailAt, envTestHooks)
	}
	if store != "embedded" {
		return nil, fmt.Errorf("%w: fault points exist only in the embedded store, not %q", errTestHooks, store)
	}
	var crash, fail *faultAt
	var err error
	if crashV != "" {
		if crash, err = parseFaultAt(envTestCrashAt, crashV); err != nil {
			return nil, err
		}
	}
	if failV != "" {
		if fail, err = parseFaultAt(envTestFailAt, failV); err != nil {
			return nil, err
		}
	}
	log.Warn("TEST HOOKS ENABLED: this process will crash or fail on purpose", envTestCrashAt, crashV, envTestFailAt, failV)
	return func(point string) error {
		if nth, _ := crash.reached(point); nth {
			// A true kill -9: no deferred function, no buffered write, no
			// Pebble close runs. Block until the signal lands.
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		if _, after := fail.reached(point); after {
			return fmt.Errorf("test hook: injected commit failure at %s", point)
		}
		return nil
	}, nil
}
