package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/engine/embedded"
)

// TestCrashGroupCommit kills the node (kill -9 from inside, at the
// committer's before-commit and after-commit points) while the committer is
// making several partitions' batches durable in one synced write. Hotspots
// are half a degree apart, so their claims spread over every partition, and
// 32 clients keep many partitions busy at once. After a clean restart every
// acknowledged grant replays, no claim is applied twice or half (I1, I2, I4
// against what the clients saw, and the server's audit), and the offline
// verifier `cairn verify --data` passes on the stopped store.
func TestCrashGroupCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a real server; skipped with -short")
	}
	const cycles = 3
	bin := faultBinary(t)
	for i, point := range []string{embedded.FaultBeforeCommit, embedded.FaultAfterCommit} {
		t.Run(point, func(t *testing.T) {
			data, addr := t.TempDir(), freeAddr(t)
			t.Setenv(hooksEnv, "")
			t.Setenv(crashAtEnv, "")
			p := startServe(t, bin, data, addr)
			defer func() { p.kill() }()
			w := newFaultWorld(t, p.base, 24, 40, 5)
			w.spacing = 0.5
			w.setup()
			p.kill()
			rng := rand.New(rand.NewPCG(uint64(i), 123))
			var multi groupStats
			for round := range cycles {
				// Groups before the kill: enough that the scraper below sees
				// some commits before the process dies, even on a fast machine.
				n := 80 + rng.IntN(120)
				crashRound(t, bin, data, addr, point, n, func(base string, died <-chan struct{}) {
					scraped := make(chan struct{})
					go func() { defer close(scraped); multi.watch(base, died) }()
					w.drive(round, 32, 20000, died)
					<-scraped
				})
			}
			if !multi.sawGroup() {
				t.Fatalf("no group commit held more than one partition batch in any round (/metrics: %s); the test did not exercise what it is for", &multi)
			}
			t.Setenv(hooksEnv, "")
			t.Setenv(crashAtEnv, "")
			p = startServe(t, bin, data, addr)
			v := w.verify()
			if point == embedded.FaultAfterCommit {
				for round := range cycles {
					if v.lostReplayed[round] == 0 {
						t.Fatalf("round %d: no claim whose answer the crash swallowed was durable; want the killed group's (%v)", round, v.lostReplayed)
					}
				}
			}
			p.kill()
			out, err := exec.Command(bin, "verify", "--data", data).CombinedOutput()
			if err != nil {
				t.Fatalf("cairn verify --data %s = %v\n%s", data, err, out)
			}
			t.Logf("%s: %d kill -9 cycles, %d claims sent, %d acknowledged, %d grants; groups %s; unanswered durable %v, not durable %v; verify: %s",
				point, cycles, len(w.sent), len(w.acked), v.grants, &multi, v.lostReplayed, v.lostFresh, strings.TrimSpace(string(out)))
		})
	}
}

// groupStats keeps the largest cairn_commit_group_batches sum and count
// seen on a node's /metrics: sum > count means some synced commit held more
// than one partition's batch.
type groupStats struct {
	mu         sync.Mutex
	sum, count float64
}

func (g *groupStats) sawGroup() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sum > g.count
}

func (g *groupStats) String() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return fmt.Sprintf("batches/commit sum %.0f over %.0f commits", g.sum, g.count)
}

// watch scrapes base/metrics until stop is closed (the node died).
func (g *groupStats) watch(base string, stop <-chan struct{}) {
	hc := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-stop:
			return
		case <-time.After(5 * time.Millisecond): // scrape interval
		}
		res, err := hc.Get(base + "/metrics")
		if err != nil {
			continue
		}
		var sum, count float64
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			name, val, ok := strings.Cut(sc.Text(), " ")
			if !ok {
				continue
			}
			f, err := strconv.ParseFloat(val, 64)
			if err != nil {
				continue
			}
			switch name {
			case "cairn_commit_group_batches_sum":
				sum = f
			case "cairn_commit_group_batches_count":
				count = f
			}
		}
		res.Body.Close()
		g.mu.Lock()
		if sum-count > g.sum-g.count {
			g.sum, g.count = sum, count
		}
		g.mu.Unlock()
	}
}
