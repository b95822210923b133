package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/engine/embedded"
	"github.com/cairnhq/cairn/internal/hunt"
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

// TestCrashDuringTruncation kills the node (kill -9, from inside) while it
// truncates its log (--log-retention): the log's new start is recorded and
// nothing of it deleted yet. Three cycles under claim load, each writing a
// snapshot, waiting past the retention, and writing the next, which
// truncates at the first. A clean restart must finish the truncation and
// serve the same state: every acknowledged grant still held (a claim of the
// same hotspot by the same player, with a new key since the old one is past
// the 1 s window, is already_claimed), wallets equal to the tickets held
// times the reward, the server's audit (folding the snapshot the log now
// starts at, then the log) and `cairn verify --data` OK.
func TestCrashDuringTruncation(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a real server; skipped with -short")
	}
	bin := faultBinary(t)
	data, addr := t.TempDir(), freeAddr(t)
	flags := []string{"--log-retention", "1s", "--idempotency-window", "1s", "--snapshot-interval", "0"}
	t.Setenv(hooksEnv, "")
	t.Setenv(crashAtEnv, "")
	p := startServe(t, bin, data, addr, flags...)
	defer func() { p.kill() }()
	w := newFaultWorld(t, p.base, 20, 60, 7)
	w.setup()
	p.kill()
	const cycles = 3
	for round := range cycles {
		crashRound(t, bin, data, addr, embedded.FaultTruncate, 1, func(_ string, died <-chan struct{}) {
			var wg sync.WaitGroup
			wg.Go(func() { w.drive(round, 8, 1_000_000, died) })
			defer wg.Wait()
			snapshot := func() {
				if st, b, _, err := w.c.do("POST", "/v1/admin/snapshot", testAdmin, "", nil); err == nil && st != 200 {
					t.Errorf("snapshot = %d %s", st, b)
				}
			}
			time.Sleep(300 * time.Millisecond)
			snapshot()
			time.Sleep(1500 * time.Millisecond) // past the retention and the window
			snapshot()                          // truncates at the first: dies at the hook
		}, flags...)
	}
	t.Setenv(hooksEnv, "")
	t.Setenv(crashAtEnv, "")
	p = startServe(t, bin, data, addr, flags...)
	// Every (player, hotspot) sent: a fresh claim says whether it is held.
	type pair struct {
		player  hunt.PlayerID
		hotspot string
	}
	acked := map[pair]bool{}
	for cl := range w.acked {
		acked[pair{cl.player, cl.hotspot}] = true
	}
	held := map[hunt.PlayerID]int64{}
	probed := map[pair]bool{}
	for _, cl := range w.sent {
		k := pair{cl.player, cl.hotspot}
		if probed[k] {
			continue
		}
		probed[k] = true
		cl.key = "probe-" + cl.key
		st, b, _, err := w.post(cl)
		var got struct {
			Code string `json:"code"`
		}
		_ = json.Unmarshal(b, &got)
		switch {
		case err != nil:
			t.Fatalf("probe %+v: %v", cl, err)
		case st == 201 && !acked[k]:
			held[cl.player]++ // never acknowledged: granted now
		case st == 409 && got.Code == "already_claimed":
			held[cl.player]++
		case st == 409 && got.Code == "sold_out" && !acked[k]:
		default:
			t.Fatalf("probe of %s at %s (acknowledged %v) = %d %s; an acknowledged grant must be held", cl.player, cl.hotspot, acked[k], st, b)
		}
	}
	for pl, tok := range w.c.token {
		st, b, _, err := w.c.do("GET", "/v1/wallet", tok, "", nil)
		var wal struct {
			Balance int64 `json:"balance"`
		}
		if err != nil || st != 200 || json.Unmarshal(b, &wal) != nil || wal.Balance != held[pl]*w.reward {
			t.Fatalf("wallet %s = %d %s %v; want %d (tickets held × reward)", pl, st, b, err, held[pl]*w.reward)
		}
	}
	st, audit, _, err := w.c.do("GET", "/v1/admin/audit", testAdmin, "", nil)
	if err != nil || st != 200 || !strings.Contains(string(audit), `"base_grants"`) {
		t.Fatalf("audit = %d %s %v; want OK over a log that starts at a snapshot", st, audit, err)
	}
	p.kill()
	out, err := exec.Command(bin, "verify", "--data", data).CombinedOutput()
	if err != nil {
		t.Fatalf("cairn verify --data %s = %v\n%s", data, err, out)
	}
	t.Logf("%d kill -9 cycles during log truncation, %d claims sent, %d acknowledged, %d pairs probed; verify: %s",
		cycles, len(w.sent), len(w.acked), len(probed), strings.TrimSpace(string(out)))
}
