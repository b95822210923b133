//go:build !cairnfault

package main

import "log/slog"

// testFaultHook is the default build's: no fault injection, whatever the
// environment says. The test hooks live in faulthook.go, compiled only with
// the cairnfault build tag.
func testFaultHook(func(string) string, string, *slog.Logger) (func(point string) error, error) {
	return nil, nil
}
