package embedded

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cairnhq/cairn/internal/hunt"
)

// snapWorld is a store with one hunt of hotspots in several cities (so in
// several partitions), driven by claims and spends.
type snapWorld struct {
	t      *testing.T
	dir    string
	e      *Engine
	cancel context.CancelFunc
	done   chan error
	logs   *syncBuffer
	mod    []func(*Config)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newSnapWorld(t *testing.T, dir string, mod ...func(*Config)) *snapWorld {
	w := &snapWorld{t: t, dir: dir, logs: &syncBuffer{}, mod: mod}
	w.open()
	w.run()
	c := context.Background()
	if err := w.e.PutHunt(c, hunt.Hunt{ID: "h"}); err != nil {
		t.Fatal(err)
	}
	var spots []hunt.Hotspot
	for i, city := range foldCities {
		for j := range 5 {
			spots = append(spots, hunt.Hotspot{ID: hunt.HotspotID(fmt.Sprintf("c%ds%d", i, j)),
				Lat: city[0] + float64(j)*0.001, Lon: city[1], Tickets: 3, Reward: 10, Points: 2})
		}
	}
	if err := w.e.ImportHotspots(c, "h", spots); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *snapWorld) open() {
	cfg := Config{Dir: w.dir, Partitions: 4, Logger: slog.New(slog.NewTextHandler(w.logs, nil))}
	for _, m := range w.mod {
		m(&cfg)
	}
	e, err := Open(cfg)
	if err != nil {
		w.t.Fatalf("Open = %v\n%s", err, w.logs)
	}
	w.e = e
}

func (w *snapWorld) run() {
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel, w.done = cancel, make(chan error, 1)
	go func() { w.done <- w.e.Run(ctx) }()
	poll(w.t, "engine ready", func() bool { return w.e.Ready() == nil })
}

func (w *snapWorld) stop() {
	w.cancel()
	if err := <-w.done; err != nil {
		w.t.Fatalf("Run = %v", err)
	}
	if err := w.e.Close(); err != nil {
		w.t.Fatal(err)
	}
}

// claims sends n claims of players named prefix+i, spread over the hotspots.
func (w *snapWorld) claims(prefix string, n int) {
	for i := range n {
		city, j := foldCities[i%len(foldCities)], (i/len(foldCities))%5
		req := &hunt.ClaimRequest{Player: hunt.PlayerID(fmt.Sprintf("%s%d", prefix, i%7)), Key: fmt.Sprintf("%sk%d", prefix, i),
			Hunt: "h", Hotspot: hunt.HotspotID(fmt.Sprintf("c%ds%d", i%len(foldCities), j)), Lat: city[0] + float64(j)*0.001, Lon: city[1]}
		if _, err := w.e.Claim(context.Background(), req); err != nil {
			w.t.Fatalf("Claim = %v", err)
		}
	}
}

func (w *snapWorld) check() []SnapshotCheck {
	w.open()
	defer w.e.Close()
	checks, err := w.e.CheckSnapshots()
	if err != nil {
		w.t.Fatal(err)
	}
	return checks
}

// TestSnapshotsUnderLoad: snapshots taken while claims and spends flow
// from many goroutines are each exactly the fold of the log up to the seqs
// they cover (a consistent cut of durable groups), and a restart from the
// newest one plus the log after it equals a restart from the whole log.
func TestSnapshotsUnderLoad(t *testing.T) {
	w := newSnapWorld(t, t.TempDir())
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			for i := range 60 {
				city, j := foldCities[(g+i)%len(foldCities)], i%5
				player := hunt.PlayerID(fmt.Sprintf("g%dp%d", g, i%9))
				req := &hunt.ClaimRequest{Player: player, Key: fmt.Sprintf("g%dk%d", g, i), Hunt: "h",
					Hotspot: hunt.HotspotID(fmt.Sprintf("c%ds%d", (g+i)%len(foldCities), j)), Lat: city[0] + float64(j)*0.001, Lon: city[1]}
				if _, err := w.e.Claim(context.Background(), req); err != nil {
					t.Errorf("Claim = %v", err)
					return
				}
				if i%10 == 9 {
					if _, err := w.e.Spend(context.Background(), &hunt.SpendRequest{Player: player, Key: fmt.Sprintf("g%ds%d", g, i), Amount: 5, Reason: "shop"}); err != nil {
						t.Errorf("Spend = %v", err)
						return
					}
				}
			}
		})
	}
	var infos []SnapshotInfo
	for n := range 3 {
		poll(t, "claims under way", func() bool { return w.e.logMark() > uint64(4+100*n) })
		info, err := w.e.Snapshot(context.Background())
		if err != nil {
			t.Fatalf("Snapshot under load = %v", err)
		}
		infos = append(infos, info)
	}
	wg.Wait()
	live := dumpState(w.e)
	w.stop() // writes a final snapshot: the log moved
	checks := w.check()
	if len(checks) != snapKeep {
		t.Fatalf("%d snapshots kept; want %d", len(checks), snapKeep)
	}
	for _, c := range checks {
		if !c.OK {
			t.Fatalf("snapshot %s taken under load: %s", c.Name, c.Problem)
		}
	}
	if infos[0].Events == 0 || checks[0].Events <= infos[0].Events {
		t.Fatalf("snapshots cover %d then %d events; want the final one to cover more than the first, under load", infos[0].Events, checks[0].Events)
	}
	w.open()
	if w.e.Loaded() != checks[0].Name {
		t.Fatalf("Open started from %q; want the newest snapshot %s", w.e.Loaded(), checks[0].Name)
	}
	fromSnap := dumpState(w.e)
	w.e.Close()
	if err := os.RemoveAll(snapDir(w.dir)); err != nil {
		t.Fatal(err)
	}
	w.open()
	fromLog := dumpState(w.e)
	w.e.Close()
	if fromSnap != live || fromLog != live {
		t.Fatalf("state from the snapshot or the log differs from the live state:\nsnapshot:\n%s\nlog:\n%s",
			diffLines(live, fromSnap), diffLines(live, fromLog))
	}
}

// TestSnapshotUnusable: a torn snapshot, a corrupted one, and another
// store's are each skipped with a log line naming the file, and the start
// falls back to the previous snapshot or the whole log; the offline check
// reports each as not matching the log. A stale .tmp (a crash while
// writing) is ignored, then removed by the next snapshot.
func TestSnapshotUnusable(t *testing.T) {
	w := newSnapWorld(t, t.TempDir())
	w.claims("a", 40)
	first, err := w.e.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	w.claims("b", 40)
	w.stop() // a second snapshot
	dir := snapDir(w.dir)
	snaps, _ := listSnapshots(dir)
	if len(snaps) != 2 || snaps[1].name() != first.Name {
		t.Fatalf("snapshots %v; want 2, the older %s", snaps, first.Name)
	}
	newest, older := snaps[0].path, snaps[1].path
	good, err := os.ReadFile(newest)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "snap-00000000000000ff.cairn.tmp"), good[:len(good)/3], 0o600); err != nil {
		t.Fatal(err)
	}

	// Another store with the same hunt and as many claims, by other players.
	other := newSnapWorld(t, t.TempDir())
	other.claims("x", 80)
	other.stop()
	osnaps, _ := listSnapshots(snapDir(other.dir))
	foreign, err := os.ReadFile(osnaps[0].path)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name  string
		bytes []byte
		want  string // the snapshot Open must start from
	}{
		{"torn", good[:len(good)-7], first.Name},
		{"corrupt", func() []byte { b := bytes.Clone(good); b[len(b)/2]++; return b }(), first.Name},
		{"another store's", foreign, first.Name},
	} {
		if err := os.WriteFile(newest, tc.bytes, 0o600); err != nil {
			t.Fatal(err)
		}
		logStart := len(w.logs.String())
		w.open()
		got := w.e.Loaded()
		w.e.Close()
		logged := w.logs.String()[logStart:]
		if got != tc.want || !strings.Contains(logged, "snapshot unusable") || !strings.Contains(logged, filepath.Base(newest)) {
			t.Fatalf("%s newest snapshot: Open started from %q; want %q, with a log line naming %s:\n%s", tc.name, got, tc.want, filepath.Base(newest), logged)
		}
		checks := w.check()
		if len(checks) != 2 || checks[0].OK || !checks[1].OK {
			t.Fatalf("%s newest snapshot: offline check %+v; want the newest reported and the older OK", tc.name, checks)
		}
	}
	// Both unusable: the whole log.
	if err := os.WriteFile(older, good[:100], 0o600); err != nil {
		t.Fatal(err)
	}
	w.open()
	if w.e.Loaded() != "" {
		t.Fatalf("with every snapshot unusable Open started from %q; want the log", w.e.Loaded())
	}
	w.run()
	if _, err := w.e.Snapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.stop()
	if tmps, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(tmps) != 0 {
		t.Fatalf("stale snapshot files after a snapshot: %v", tmps)
	}
	for _, c := range w.check() {
		if !c.OK {
			t.Fatalf("after a new snapshot, %s: %s; want the unusable ones removed", c.Name, c.Problem)
		}
	}
}
