package main

import (
	"errors"
	"math"
	"runtime/debug"
	"testing"
)

func TestParseCgroupLimit(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		err  bool
	}{
		{"max\n", 0, true},
		{"1073741824\n", 1 << 30, false},
		{"9223372036854771712\n", 0, true}, // v1 "unlimited"
		{"-1", 0, true},
		{"lots", 0, true},
		{"", 0, true},
	} {
		got, err := parseCgroupLimit([]byte(c.in))
		if got != c.want || (err != nil) != c.err {
			t.Errorf("parseCgroupLimit(%q) = %d, %v; want %d, error %v", c.in, got, err, c.want, c.err)
		}
	}
}

func TestParseMemTotal(t *testing.T) {
	got, err := parseMemTotal([]byte("MemFree:  100 kB\nMemTotal:       24576000 kB\n"))
	if err != nil || got != 24576000<<10 {
		t.Fatalf("parseMemTotal = %d, %v; want %d", got, err, int64(24576000)<<10)
	}
	for _, bad := range []string{"", "MemTotal: x kB\n", "MemTotal: 10 MB\n", "MemTotal: 99999999999999999999 kB\n"} {
		if n, err := parseMemTotal([]byte(bad)); err == nil {
			t.Errorf("parseMemTotal(%q) = %d, nil; want an error", bad, n)
		}
	}
}

// TestMemoryPolicy: the environment wins over the defaults, flags win over
// both, and the limit comes from the cgroup before the machine.
func TestMemoryPolicy(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	gib := func(n int64) func() (int64, error) { return func() (int64, error) { return n << 30, nil } }
	none := func() (int64, error) { return 0, errNoLimit }
	for _, c := range []struct {
		name      string
		gc        int
		limitMiB  int64
		env       func(string) string
		cg, mach  func() (int64, error)
		want      memoryPolicy
		wantLimit int64 // what the runtime holds afterwards
		wantGC    int
	}{
		{"defaults, cgroup", -1, -1, env(), gib(4), gib(24), memoryPolicy{gcPercentDefault, 3 << 30, "cgroup"}, 3 << 30, gcPercentDefault},
		{"defaults, machine", -1, -1, env(), none, gib(24), memoryPolicy{gcPercentDefault, 18 << 30, "machine"}, 18 << 30, gcPercentDefault},
		{"env wins", -1, -1, env("GOGC", "50", "GOMEMLIMIT", "1GiB"), gib(4), gib(24), memoryPolicy{-1, 0, "GOMEMLIMIT"}, -1, -1},
		{"flags win", 200, 512, env("GOGC", "50", "GOMEMLIMIT", "1GiB"), gib(4), gib(24), memoryPolicy{200, 512 << 20, "flag"}, 512 << 20, 200},
		{"no limit", -1, 0, env(), gib(4), gib(24), memoryPolicy{gcPercentDefault, 0, "none"}, math.MaxInt64, gcPercentDefault},
		{"nothing known", -1, -1, env(), none, func() (int64, error) { return 0, errors.New("no meminfo") }, memoryPolicy{gcPercentDefault, 0, "none"}, -1, gcPercentDefault},
	} {
		t.Run(c.name, func(t *testing.T) {
			debug.SetGCPercent(77)
			debug.SetMemoryLimit(5 << 40)
			got, err := applyMemoryPolicy(c.gc, c.limitMiB, c.env, c.cg, c.mach)
			if err != nil || got != c.want {
				t.Fatalf("applyMemoryPolicy = %+v, %v; want %+v", got, err, c.want)
			}
			limit := debug.SetMemoryLimit(-1) // reads without changing
			if c.wantLimit == -1 {
				c.wantLimit = 5 << 40 // untouched
			}
			if limit != c.wantLimit {
				t.Errorf("runtime memory limit = %d; want %d", limit, c.wantLimit)
			}
			gc := debug.SetGCPercent(77)
			if c.wantGC == -1 {
				c.wantGC = 77 // untouched
			}
			if gc != c.wantGC {
				t.Errorf("runtime GC percent = %d; want %d", gc, c.wantGC)
			}
		})
	}
}
