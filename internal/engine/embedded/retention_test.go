package embedded

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/audit"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/leaderboard"
)

// TestLogRetention: with --log-retention, a snapshot older than the
// retention and the idempotency window becomes the log's base once a newer
// one exists: the events before it, their ledger keys and import journal
// go; what stays answers as before. The state after a restart (from the
// newest snapshot, or from the base when the newest is lost) equals the
// live one; the audit and the leaderboard, folding the base and then the
// log, agree with it; a key decided before the base is a new request (it
// is past the window), one after it replays; the base is kept while it is
// one and removed once the base moves on; with every snapshot unreadable
// the store refuses to start rather than fold half a log.
func TestLogRetention(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	w := newSnapWorld(t, t.TempDir(), func(c *Config) {
		c.Clock, c.IdempotencyWindow, c.LogRetention, c.SnapshotInterval = clock.Now, time.Hour, 2*time.Hour, -1
	})
	c := context.Background()
	count := func() (events int) {
		if err := w.e.Events(c, nil, func(*hunt.Event) error { events++; return nil }); err != nil {
			t.Fatal(err)
		}
		return events
	}
	w.claims("a", 40)
	if _, err := w.e.Spend(c, &hunt.SpendRequest{Player: "a1", Key: "spend-a", Amount: 5, Reason: "shop"}); err != nil {
		t.Fatal(err)
	}
	first, err := w.e.Snapshot(c)
	if err != nil {
		t.Fatal(err)
	}
	eventsA := count()
	clock.Add(3 * time.Hour)
	w.claims("b", 40)
	if w.e.baseName() != "" {
		t.Fatalf("log truncated before any snapshot was old enough")
	}
	if _, err := w.e.Snapshot(c); err != nil {
		t.Fatal(err)
	}
	if w.e.baseName() != first.Name {
		t.Fatalf("base %q after a second snapshot with the first 3 h old (retention 2 h); want %s", w.e.baseName(), first.Name)
	}
	if got := count(); got != 40 || eventsA != 41 {
		t.Fatalf("%d events in the log before the truncation, %d after; want 41, then the 40 after the base", eventsA, got)
	}
	var baseGrants int
	if _, _, err := w.e.LogBase(c, func(ev *hunt.Event) error {
		if ev.Kind == hunt.KindClaimCompleted {
			baseGrants++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if baseGrants == 0 {
		t.Fatalf("the base gives no grants; want phase a's")
	}

	// The audit and the leaderboard fold the base, then the log.
	board, err := leaderboard.New(leaderboard.Options{Partitions: len(w.e.parts)})
	if err != nil {
		t.Fatal(err)
	}
	if err := board.Rebuild(c, w.e); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Check(c, w.e, board)
	if err != nil || !rep.OK || rep.BaseGrants != baseGrants {
		t.Fatalf("audit of a truncated log: %v %+v; want OK with %d base grants", err, rep, baseGrants)
	}
	wantPoints := map[hunt.PlayerID]int64{}
	for _, p := range w.e.parts {
		p.grants.each(func(spot, player uint32) { wantPoints[hunt.PlayerID(p.players.idOf(player))] += 2 })
	}
	for pl, want := range wantPoints {
		if _, got, _ := board.Score("h", "", pl); got != want {
			t.Fatalf("leaderboard score of %s after a rebuild from the base = %d; want %d", pl, got, want)
		}
	}

	// Idempotency: before the base is past the window; after it replays.
	res, err := w.e.Claim(c, &hunt.ClaimRequest{Player: "a0", Key: "ak0", Hunt: "h", Hotspot: "c0s0", Lat: foldCities[0][0], Lon: foldCities[0][1]})
	if err != nil || res.Replayed {
		t.Fatalf("retry of a key decided before the base = replayed %v, %v; want a new decision", res.Replayed, err)
	}
	res, err = w.e.Claim(c, &hunt.ClaimRequest{Player: "b0", Key: "bk0", Hunt: "h", Hotspot: "c0s0", Lat: foldCities[0][0], Lon: foldCities[0][1]})
	if err != nil || !res.Replayed {
		t.Fatalf("retry of a key decided after the base = replayed %v, %v; want a replay", res.Replayed, err)
	}
	led, err := w.e.Ledger(c, "a1", 100)
	if err != nil {
		t.Fatalf("ledger of a player with changes before the base: %v", err)
	}
	for _, le := range led {
		if le.Epoch.Seq < w.e.logStartOf(le.Epoch.Partition) {
			t.Fatalf("ledger entry %+v is before the log's start", le)
		}
	}

	live := dumpState(w.e)
	w.stop()
	snaps, _ := listSnapshots(snapDir(w.dir))
	if len(snaps) != 2 || snaps[1].name() != first.Name {
		t.Fatalf("snapshots %v; want the newest and the base", snaps)
	}
	w.open()
	if got := dumpState(w.e); w.e.Loaded() != snaps[0].name() || got != live {
		t.Fatalf("restart from %q (want %s):\n%s", w.e.Loaded(), snaps[0].name(), diffLines(live, got))
	}
	w.e.Close()
	if err := os.Remove(snaps[0].path); err != nil {
		t.Fatal(err)
	}
	w.open()
	if got := dumpState(w.e); w.e.Loaded() != first.Name || got != live {
		t.Fatalf("restart from %q with the newest snapshot gone (want the base %s):\n%s", w.e.Loaded(), first.Name, diffLines(live, got))
	}
	checks, err := w.e.CheckSnapshots()
	if err != nil || len(checks) != 1 || !checks[0].OK {
		t.Fatalf("offline check of the base: %+v %v", checks, err)
	}
	w.e.Close()

	// The base moves on: two newer snapshots, the older of them 3 h old.
	w.open()
	w.run()
	if _, err := w.e.Snapshot(c); err != nil {
		t.Fatal(err)
	}
	clock.Add(3 * time.Hour)
	w.claims("c", 20)
	if _, err := w.e.Snapshot(c); err != nil {
		t.Fatal(err)
	}
	if w.e.baseName() == first.Name {
		t.Fatalf("the base stayed %s; want the snapshot 3 h old", first.Name)
	}
	w.stop()
	if _, err := os.Stat(filepath.Join(snapDir(w.dir), first.Name)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the former base %s is still there (%v); want it removed", first.Name, err)
	}

	// Every snapshot unreadable: the log before the base is gone.
	snaps, _ = listSnapshots(snapDir(w.dir))
	for _, s := range snaps {
		corrupt(t, s.path)
	}
	cfg := Config{Dir: w.dir, Partitions: 4}
	if e, err := Open(cfg); err == nil || !errors.Is(err, ErrCorrupt) {
		if e != nil {
			e.Close()
		}
		t.Fatalf("Open with the log truncated and every snapshot corrupt = %v; want ErrCorrupt", err)
	}
}
