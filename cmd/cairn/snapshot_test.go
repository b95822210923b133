package main

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/engine/embedded"
)

// TestCrashDuringSnapshot kills the node (kill -9, from inside) while it
// writes a snapshot under claim load, three times: each process writes one
// snapshot whole, then dies half-way through the next. After a clean
// restart, which must start from a whole snapshot and the log after it,
// every acknowledged grant replays, nothing is granted twice or over its
// tickets, wallets equal their grants, the server's audit passes, and
// `cairn verify --data` holds every snapshot to the log.
func TestCrashDuringSnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a real server; skipped with -short")
	}
	bin := faultBinary(t)
	data, addr := t.TempDir(), freeAddr(t)
	t.Setenv(hooksEnv, "")
	t.Setenv(crashAtEnv, "")
	p := startServe(t, bin, data, addr)
	defer func() { p.kill() }()
	w := newFaultWorld(t, p.base, 20, 60, 7)
	w.setup()
	p.kill()
	const cycles = 3
	snapDir := filepath.Join(data, "store", "snapshots")
	for round := range cycles {
		crashRound(t, bin, data, addr, embedded.FaultSnapshotWrite, 2, func(_ string, died <-chan struct{}) {
			var wg sync.WaitGroup
			wg.Go(func() { w.drive(round, 8, 1_000_000, died) })
			defer wg.Wait()
			for {
				select {
				case <-died:
					return
				case <-time.After(150 * time.Millisecond):
				}
				// The second snapshot of the process dies half-way through.
				w.c.do("POST", "/v1/admin/snapshot", testAdmin, "", nil)
			}
		})
		if tmps, _ := filepath.Glob(filepath.Join(snapDir, "*.tmp")); len(tmps) == 0 {
			t.Fatalf("round %d: no half-written snapshot after the kill; want the crash to have hit the write", round)
		}
	}
	t.Setenv(hooksEnv, "")
	t.Setenv(crashAtEnv, "")
	p = startServe(t, bin, data, addr)
	v := w.verify()
	p.kill()
	loaded := regexp.MustCompile(`embedded store opened.* snapshot=(\S*)`).FindStringSubmatch(p.logs.String())
	if loaded == nil || !strings.HasPrefix(loaded[1], "snap-") {
		t.Fatalf("restart after the crashes did not start from a snapshot (%q); want the last whole one\n%s", loaded, p.logs.String())
	}
	out, err := exec.Command(bin, "verify", "--data", data).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "equal the fold of the log") {
		t.Fatalf("cairn verify --data %s = %v\n%s", data, err, out)
	}
	t.Logf("%d kill -9 cycles during snapshot writes, %d claims sent, %d acknowledged, %d grants; restart from %s; unanswered durable %v, not durable %v; verify: %s",
		cycles, len(w.sent), len(w.acked), v.grants, loaded[1], v.lostReplayed, v.lostFresh, strings.TrimSpace(string(out)))
}
