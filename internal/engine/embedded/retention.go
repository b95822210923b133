package embedded

// Log retention (Config.LogRetention, serve --log-retention): once a
// snapshot is older than both the retention and the idempotency window, the
// log before it may go. The log is truncated at a snapshot (the base), never
// in between, so that what was dropped is exactly that snapshot's state:
//
//  1. m/logstart is written, synced, naming the base and the seq each
//     partition's log now starts after. From here on every reader skips
//     what is below (Events, Ledger, idempotency records: an i/ record
//     naming a dropped event is past the window, so a new request).
//  2. The dropped events' ledger keys, the events and the import journal
//     up to the base are deleted; a crash in between is finished by the
//     next Open.
//
// The base is kept with the newest snapshots (prune), since a start falls
// back on it, and since what the dropped prefix folded to is read from it:
// LogBase gives the audit and the leaderboard one event per grant and one
// spend total per player, so their folds start where the log does.
// Truncation takes the second newest snapshot as the base, so the newest
// has a fallback; with both unreadable the store cannot start (the log
// before them is gone): that is the price of retention.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/telemetry"
)

const logStartKey = "m/logstart"

// logBase is the m/logstart record: the log was truncated at this snapshot.
type logBase struct {
	Snapshot  string   `json:"snapshot"`
	Seqs      []uint64 `json:"seqs"` // the log holds each partition's events after these
	Imports   []uint64 `json:"imports"`
	CreatedMs int64    `json:"created_ms"` // the snapshot's
}

// readLogStart reads m/logstart (absent: the log is whole).
func (e *Engine) readLogStart() error {
	v, closer, err := e.rd.Get([]byte(logStartKey))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var b logBase
	err = json.Unmarshal(v, &b)
	closer.Close()
	if err != nil || len(b.Seqs) != len(e.parts) || len(b.Imports) != len(e.parts) {
		return fmt.Errorf("%w: key %q: unreadable (%v)", ErrCorrupt, logStartKey, err)
	}
	e.setBase(&b)
	return nil
}

func (e *Engine) setBase(b *logBase) {
	e.base.Store(b)
	for i, q := range b.Seqs {
		e.parts[i].logStart.Store(q + 1)
	}
}

// logStartOf is the first seq of partition p still in the log.
func (e *Engine) logStartOf(p geo.Partition) hunt.Seq {
	if int(p) >= len(e.parts) {
		return 1
	}
	return hunt.Seq(max(e.parts[p].logStart.Load(), 1))
}

// retain truncates the log at the second newest snapshot when the
// retention allows it (after a snapshot was written; one at a time, under
// snap.mu).
func (e *Engine) retain(dir string) error {
	keep := e.cfg.LogRetention
	if keep <= 0 {
		return nil
	}
	snaps, err := listSnapshots(dir)
	if err != nil || len(snaps) < 2 {
		return err
	}
	s := &snaps[1]
	if err := s.check(); err != nil {
		return nil // pruning keeps only usable ones; a file gone bad since waits for the next round
	}
	cutoff := e.cfg.Clock().Add(-max(keep, e.cfg.IdempotencyWindow))
	if s.hdr.CreatedMs > cutoff.UnixMilli() {
		return nil
	}
	moved := false
	for i, p := range e.parts {
		start := e.logStartOf(p.id)
		if s.hdr.Seqs[i]+1 < uint64(start) {
			return nil // older than the current base: never move back
		}
		moved = moved || s.hdr.Seqs[i]+1 > uint64(start)
	}
	if !moved {
		return nil
	}
	b := &logBase{Snapshot: s.name(), Seqs: s.hdr.Seqs, Imports: s.hdr.Imports, CreatedMs: s.hdr.CreatedMs}
	js, _ := json.Marshal(b)
	if err := e.db.Set([]byte(logStartKey), js, pebble.Sync); err != nil {
		return fmt.Errorf("record the log's new start: %w", err)
	}
	e.setBase(b)
	e.log.Info("log truncated at a snapshot", "snapshot", s.name(), "created", time.UnixMilli(s.hdr.CreatedMs).UTC())
	if err := e.hook(FaultTruncate); err != nil {
		return err
	}
	return e.dropPrefix()
}

// dropPrefix deletes what m/logstart says is gone and is still there: the
// events before each partition's start, their ledger keys and the import
// journal the base covers. Idempotent; Open calls it to finish one a crash
// cut short.
func (e *Engine) dropPrefix() error {
	b := e.base.Load()
	if b == nil {
		return nil
	}
	for _, p := range e.parts {
		lo, hi := eventKey(nil, p.id, 1), eventKey(nil, p.id, e.logStartOf(p.id))
		it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			return err
		}
		batch := e.db.NewBatch()
		var ev hunt.Event
		var lk []byte
		for it.First(); it.Valid(); it.Next() {
			v, err := it.ValueAndErr()
			if err == nil {
				err = hunt.DecodeEvent(v, &ev)
			}
			if err != nil {
				it.Close()
				batch.Close()
				return fmt.Errorf("%w: key %x: %v", ErrCorrupt, it.Key(), err)
			}
			if ev.Credit() != 0 {
				lk = ledgerKey(lk[:0], &ev)
				batch.Delete(lk, nil)
			}
			if batch.Count() >= 4096 {
				if err := batch.Commit(pebble.NoSync); err != nil {
					it.Close()
					return err
				}
				batch = e.db.NewBatch()
			}
		}
		if err := it.Close(); err != nil {
			batch.Close()
			return err
		}
		batch.DeleteRange(lo, hi, nil)
		batch.DeleteRange(journalKey(nil, p.id, 0, 0), journalKey(nil, p.id, b.Imports[p.id]+1, 0), nil)
		if err := batch.Commit(pebble.Sync); err != nil {
			return err
		}
	}
	return nil
}

// LogBase gives what the log's dropped prefix folded to, as events: one
// granted claim per grant the base snapshot holds (with its hunt, hotspot,
// geohash, reward and points, at epoch seq 0) and one spend per player of
// what the player spent before it (its reward total less its balance then).
// It returns the seqs each partition's log continues after, and the base's
// time; after is nil when the log is whole (fn is not called).
func (e *Engine) LogBase(ctx context.Context, fn func(*hunt.Event) error) ([]hunt.Seq, time.Time, error) {
	b := e.base.Load()
	if b == nil {
		return nil, time.Time{}, nil
	}
	at := time.UnixMilli(b.CreatedMs).UTC()
	s := &snapFile{path: filepath.Join(snapDir(e.cfg.Dir), b.Snapshot)}
	if err := s.check(); err != nil {
		return nil, at, fmt.Errorf("%w: the log starts at snapshot %s, which is unreadable: %v", ErrCorrupt, b.Snapshot, err)
	}
	hunts, err := e.readHunts()
	if err != nil {
		return nil, at, err
	}
	cfg := e.cfg
	cfg.Metrics, cfg.InboxLenMax = telemetry.Discard(), 1
	x := newBuilderEngine(cfg, e.db, e.db, e.meta)
	if err := x.loadSnapshot(s, hunts); err != nil {
		return nil, at, fmt.Errorf("%w: the log starts at snapshot %s: %v", ErrCorrupt, b.Snapshot, err)
	}
	t := &x.spots
	ords := *x.hunts.byOrd.Load()
	rewards := map[hunt.PlayerID]int64{}
	var ev hunt.Event
	for _, p := range x.parts {
		if uint64(p.seq) != b.Seqs[p.id] {
			return nil, at, fmt.Errorf("%w: snapshot %s covers seq %d of partition %d; the log starts after %d", ErrCorrupt, b.Snapshot, p.seq, p.id, b.Seqs[p.id])
		}
		for j, k := range p.grants.table {
			if k == 0 {
				continue
			}
			if err := ctx.Err(); err != nil {
				return nil, at, err
			}
			spot, pl := uint32(k>>32)-1, uint32(k)
			m := p.grants.meta[j]
			ev = hunt.Event{Kind: hunt.KindClaimCompleted, Outcome: hunt.Granted, Epoch: hunt.Epoch{Partition: p.id}, At: at,
				Player: hunt.PlayerID(p.players.idOf(pl)), Hunt: ords[t.huntOf(spot)].id, Hotspot: hunt.HotspotID(t.id(spot)),
				Geohash: geo.BitsToHash(m.gh, geo.GeohashLen), Reward: int64(m.reward), Points: int64(m.points)}
			rewards[ev.Player] += ev.Reward
			if err := fn(&ev); err != nil {
				return nil, at, err
			}
		}
	}
	var werr error
	x.wallets.each(func(id hunt.PlayerID, w *wallet) {
		spent := rewards[id] - w.balance.Load()
		if werr != nil || spent == 0 {
			return
		}
		if spent < 0 {
			werr = fmt.Errorf("%w: snapshot %s: wallet of %s holds %d, more than its grants' rewards %d", ErrCorrupt, b.Snapshot, id, w.balance.Load(), rewards[id])
			return
		}
		ev = hunt.Event{Kind: hunt.KindSpendCompleted, Outcome: hunt.Spent, Epoch: hunt.Epoch{Partition: w.epoch.Partition}, At: at,
			Player: id, Amount: spent, Balance: w.balance.Load(), Reason: "before the log's start"}
		werr = fn(&ev)
	})
	if werr != nil {
		return nil, at, werr
	}
	after := make([]hunt.Seq, len(b.Seqs))
	for i, q := range b.Seqs {
		after[i] = hunt.Seq(q)
	}
	return after, at, nil
}

var _ engine.Based = (*Engine)(nil)

// baseName is the snapshot the log was truncated at ("" = the log is whole).
func (e *Engine) baseName() string {
	if b := e.base.Load(); b != nil {
		return b.Snapshot
	}
	return ""
}

// eventGone reports whether the event an e/ key names was dropped.
func (e *Engine) eventGone(ek []byte) bool {
	if len(ek) != eventKeyLen {
		return false
	}
	p := geo.Partition(binary.BigEndian.Uint32(ek[2:6]))
	return hunt.Seq(binary.BigEndian.Uint64(ek[6:])) < e.logStartOf(p)
}
