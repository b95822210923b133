//go:build cairnfault

package main

import (
	"errors"
	"log/slog"
	"testing"
)

// These tests need the hooks compiled in: go test -tags cairnfault ./cmd/cairn
// (.ci/run does). The binary-level fault tests build the tagged binary
// themselves (faultBinary) and run in every go test.

// TestFaultHookNames: the variable names the binary-level tests set are the
// ones the hooks read.
func TestFaultHookNames(t *testing.T) {
	for _, c := range [][2]string{{hooksEnv, envTestHooks}, {crashAtEnv, envTestCrashAt}, {failAtEnv, envTestFailAt}} {
		if c[0] != c[1] {
			t.Errorf("test constant %q != hook variable %q", c[0], c[1])
		}
	}
}

// TestFaultHookEnv: the hooks are refused without CAIRN_TEST_HOOKS=1,
// with a bad spec and with a store that has no fault points; a fail hook
// fails from its n-th arrival at its point on, and only there.
func TestFaultHookEnv(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	if h, err := testFaultHook(env(), "embedded", log); h != nil || err != nil {
		t.Fatalf("testFaultHook(no variables) = %v, %v; want nil, nil", h != nil, err)
	}
	for _, c := range []struct {
		env   func(string) string
		store string
	}{
		{env(envTestCrashAt, "before-commit:1"), "embedded"},                      // no CAIRN_TEST_HOOKS
		{env(envTestFailAt, "before-commit:1", envTestHooks, "true"), "embedded"}, // only "1" enables
		{env(envTestCrashAt, "before-commit", envTestHooks, "1"), "embedded"},
		{env(envTestCrashAt, "before-commit:0", envTestHooks, "1"), "embedded"},
		{env(envTestCrashAt, "during-lunch:3", envTestHooks, "1"), "embedded"},
		{env(envTestFailAt, "after-commit:x", envTestHooks, "1"), "embedded"},
		{env(envTestCrashAt, "mid-batch:3", envTestHooks, "1"), "redis://127.0.0.1:1/0"},
	} {
		if h, err := testFaultHook(c.env, c.store, log); h != nil || !errors.Is(err, errTestHooks) {
			t.Errorf("testFaultHook(%s=%q %s=%q %s=%q, %s) = %v, %v; want a refusal",
				envTestCrashAt, c.env(envTestCrashAt), envTestFailAt, c.env(envTestFailAt), envTestHooks, c.env(envTestHooks), c.store, h != nil, err)
		}
	}
	h, err := testFaultHook(env(envTestFailAt, "before-commit:3", envTestHooks, "1"), "embedded", log)
	if h == nil || err != nil {
		t.Fatalf("testFaultHook(fail at before-commit:3) = %v, %v", h != nil, err)
	}
	for i, c := range []struct {
		point string
		fails bool
	}{
		{"mid-batch", false}, {"before-commit", false}, {"after-commit", false}, {"before-commit", false},
		{"before-commit", true}, {"mid-batch", false}, {"before-commit", true},
	} {
		if err := h(c.point); (err != nil) != c.fails {
			t.Fatalf("call %d: hook(%s) = %v; want failure %v", i, c.point, err, c.fails)
		}
	}
}
