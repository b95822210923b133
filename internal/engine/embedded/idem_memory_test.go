package embedded

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// BenchmarkIdemRetained measures the memory of an engine that retains
// IDEM_RETAINED_KEYS idempotency keys (default 10,000,000: the budget's
// figure) within its window, and the Bloom filters' false-positive rate at
// that load. It writes the i/ records into a store (as a day of decisions
// would have), opens the engine on it (Open loads every record of the live
// buckets into the filters) and reports, after a forced collection:
//
//   - rss-MiB: the process's RSS with the engine open; rss-delta-MiB: its
//     growth over the same process before Open (the store written and
//     closed, memory returned to the OS);
//
//   - heap-MiB: the Go heap in use, which is what the engine holds;
//
//   - open-s: how long Open took to load the keys;
//
//   - false-positive-rate: the share of 1,000,000 never-decided keys that
//     either filter admits (each would cost two point reads, never a wrong
//     answer); every retained key sampled must be admitted.
//
//     go test -run '^$' -bench BenchmarkIdemRetained -benchtime 1x -timeout 30m ./internal/engine/embedded/
//
// The player ids and keys are of realistic length: 100,000 players, UUID
// keys of 36 characters.
func BenchmarkIdemRetained(b *testing.B) {
	n := 10_000_000
	if s := os.Getenv("IDEM_RETAINED_KEYS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("IDEM_RETAINED_KEYS=%q: want a positive integer", s)
		}
		n = v
	}
	const players = 100_000
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	key := func(i int) idemKey {
		return idemKey{hunt.PlayerID("player-" + strconv.Itoa(i%players)), fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", i, i%65536, i%4096, (i/7)%4096, i*7919)}
	}
	dir := b.TempDir()
	for range b.N {
		// A day of decisions: the records in the current bucket of a 24 h window.
		db, err := pebble.Open(dir, &pebble.Options{Logger: quietPebble{}})
		if err != nil {
			b.Fatal(err)
		}
		bucket := now.UnixMilli() / IdempotencyWindowDefault.Milliseconds()
		batch := db.NewBatch()
		var k, v []byte
		for i := range n {
			k = idemRecordKey(k[:0], bucket, key(i))
			v = idemRecordValue(v[:0], hunt.Epoch{Partition: geo.Partition(i % 64), Seq: hunt.Seq(i/64 + 1)})
			if err := batch.Set(k, v, nil); err != nil {
				b.Fatal(err)
			}
			if batch.Len() > 4<<20 {
				if err := batch.Commit(pebble.NoSync); err != nil {
					b.Fatal(err)
				}
				batch = db.NewBatch()
			}
		}
		if err := batch.Commit(pebble.Sync); err != nil {
			b.Fatal(err)
		}
		if err := db.Close(); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		debug.FreeOSMemory()
		rss0 := rssBytes(b)

		b.ResetTimer()
		start := time.Now()
		e, err := Open(Config{Dir: dir, Clock: func() time.Time { return now }})
		if err != nil {
			b.Fatal(err)
		}
		openS := time.Since(start).Seconds()
		b.StopTimer()
		runtime.GC()
		debug.FreeOSMemory()
		rss1 := rssBytes(b)
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)

		x := &e.idem
		admitted := func(k idemKey) bool {
			sh := x.shard(k)
			sh.mu.Lock()
			defer sh.mu.Unlock()
			sh.scratch = bloomKey(sh.scratch[:0], k)
			return sh.filters[0].test(sh.scratch) || sh.filters[1].test(sh.scratch)
		}
		for i := 0; i < n; i += max(n/10_000, 1) {
			if !admitted(key(i)) {
				b.Fatalf("retained key %d is in neither filter: the filter would answer a retry as a new request", i)
			}
		}
		const fresh = 1_000_000
		positives := 0
		for i := range fresh {
			if admitted(idemKey{hunt.PlayerID("player-" + strconv.Itoa(i%players)), fmt.Sprintf("fresh-%d", i)}) {
				positives++
			}
		}
		if err := e.Close(); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(rss1)/(1<<20), "rss-MiB")
		b.ReportMetric(float64(rss1-rss0)/(1<<20), "rss-delta-MiB")
		b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
		b.ReportMetric(openS, "open-s")
		b.ReportMetric(float64(positives)/fresh, "false-positive-rate")
		b.ReportMetric(float64(n), "keys")
	}
}

// rssBytes is this process's resident set size (Linux).
func rssBytes(b *testing.B) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Skipf("no /proc/self/status: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kib << 10
		}
	}
	b.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// quietPebble drops Pebble's logs.
type quietPebble struct{}

func (quietPebble) Infof(string, ...any)  {}
func (quietPebble) Errorf(string, ...any) {}
func (quietPebble) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}
