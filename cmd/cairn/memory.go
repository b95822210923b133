package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// The Go runtime's memory policy of `cairn serve`. By default it raises the
// GC target (fewer collections on a small live heap: the claim path's tail
// latency was GC, not decisions) and caps the heap with a soft memory limit
// derived from the container's (cgroup) or the machine's memory, so the
// raised target can never run the process out of memory: near the limit the
// runtime collects as often as it must. GOGC and GOMEMLIMIT, when set, win
// (the runtime reads them itself); --gc-percent and --memory-limit-mib
// override both.

const (
	// gcPercentDefault is the GC target used when neither GOGC nor
	// --gc-percent says otherwise.
	gcPercentDefault = 400
	// memoryLimitShare is the share of the available memory used as the
	// soft limit (the rest: page cache for Pebble, the kernel, other processes).
	memoryLimitShare = 0.75
)

// memoryPolicy is what applyMemoryPolicy decided, for the start-up log.
type memoryPolicy struct {
	GCPercent   int    // -1 = what GOGC says
	LimitBytes  int64  // 0 = what GOMEMLIMIT says
	LimitSource string // "GOMEMLIMIT", "flag", "cgroup", "machine", "none"
}

// applyMemoryPolicy sets the GC percent and soft memory limit. gcPercent
// < 0 and limitMiB < 0 mean "choose" (0 for limitMiB means no limit);
// getenv and the two readers are parameters so tests can drive every case.
func applyMemoryPolicy(gcPercent int, limitMiB int64, getenv func(string) string, cgroupMax, machineTotal func() (int64, error)) (memoryPolicy, error) {
	var pol memoryPolicy
	switch {
	case gcPercent >= 0:
		pol.GCPercent = gcPercent
		debug.SetGCPercent(gcPercent)
	case getenv("GOGC") != "":
		pol.GCPercent = -1
	default:
		pol.GCPercent = gcPercentDefault
		debug.SetGCPercent(gcPercentDefault)
	}
	switch {
	case limitMiB == 0:
		pol.LimitSource = "none"
		debug.SetMemoryLimit(math.MaxInt64)
	case limitMiB > 0:
		if limitMiB > math.MaxInt64>>20 {
			return pol, fmt.Errorf("--memory-limit-mib %d is too large", limitMiB)
		}
		pol.LimitBytes, pol.LimitSource = limitMiB<<20, "flag"
		debug.SetMemoryLimit(pol.LimitBytes)
	case getenv("GOMEMLIMIT") != "":
		pol.LimitSource = "GOMEMLIMIT"
	default:
		avail, src := int64(0), "none"
		if n, err := cgroupMax(); err == nil && n > 0 {
			avail, src = n, "cgroup"
		} else if n, err := machineTotal(); err == nil && n > 0 {
			avail, src = n, "machine"
		}
		pol.LimitSource = src
		if avail > 0 {
			pol.LimitBytes = int64(float64(avail) * memoryLimitShare)
			debug.SetMemoryLimit(pol.LimitBytes)
		}
	}
	return pol, nil
}

// cgroupMemoryMax reads the memory limit of this process's cgroup (v2
// memory.max, else v1 memory.limit_in_bytes). errNoLimit when there is none.
func cgroupMemoryMax() (int64, error) {
	for _, p := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		return parseCgroupLimit(b)
	}
	return 0, errNoLimit
}

var errNoLimit = errors.New("no memory limit")

// parseCgroupLimit parses a cgroup memory limit file: "max" (v2) or a
// number so large that it means "unlimited" (v1) is errNoLimit.
func parseCgroupLimit(b []byte) (int64, error) {
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, errNoLimit
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("cgroup memory limit %q: not a positive number", s)
	}
	if n >= 1<<62 { // v1 writes a page-rounded MaxInt64 for "unlimited"
		return 0, errNoLimit
	}
	return n, nil
}

// machineMemory reads MemTotal from /proc/meminfo.
func machineMemory() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	return parseMemTotal(b)
}

func parseMemTotal(b []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "MemTotal:" && f[2] == "kB" {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil || n <= 0 || n > math.MaxInt64>>10 {
				return 0, fmt.Errorf("meminfo: MemTotal %q", f[1])
			}
			return n << 10, nil
		}
	}
	return 0, errors.New("meminfo: no MemTotal line")
}
