package redis

import (
	"context"
	"errors"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// tailCountMax bounds the events one XREAD returns per partition.
const tailCountMax = 1024

// eventsPageLen is the XRANGE page size of Events.
const eventsPageLen = 1024

func messageEvent(m goredis.XMessage, ev *hunt.Event) error {
	s, ok := m.Values["e"].(string)
	if !ok {
		return fmt.Errorf("%w: log entry %s has no event", errCorrupt, m.ID)
	}
	if err := decodeEvent(s, ev); err != nil {
		return err
	}
	if seq, err := streamSeq(m.ID); err != nil || seq != ev.Epoch.Seq {
		return fmt.Errorf("%w: log entry %s holds seq %d", errCorrupt, m.ID, ev.Epoch.Seq)
	}
	return nil
}

// tail follows every partition's log stream from the watermark (one blocking
// XREAD over all of them) and feeds the sinks, in seq order per partition,
// on every node: each node's leaderboard and live feed see every event,
// whichever node decided it.
func (e *Engine) tail(ctx context.Context) {
	var batch []hunt.Event
	for ctx.Err() == nil {
		if !e.waitUp(ctx) {
			return
		}
		streams := make([]string, 0, 2*len(e.logKeys))
		streams = append(streams, e.logKeys...)
		for p := range e.parts {
			seq, _, _ := e.parts[p].get()
			streams = append(streams, logID(seq))
		}
		res, err := e.blk.XRead(ctx, &goredis.XReadArgs{Streams: streams, Count: tailCountMax, Block: readBlock}).Result()
		if errors.Is(err, goredis.Nil) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			e.callErr("tail the log", err)
			if !pause(ctx, e.cfg.HealthInterval) {
				return
			}
			continue
		}
		for _, s := range res {
			p, ok := e.partOfKey[s.Stream]
			if !ok || len(s.Messages) == 0 {
				continue
			}
			batch = batch[:0]
			next, _, _ := e.parts[p].get()
			for _, m := range s.Messages {
				var ev hunt.Event
				if err := messageEvent(m, &ev); err != nil {
					// The log is the truth; a record this node cannot read is
					// skipped here (the sinks miss it) and reported loudly.
					e.log.Error("redis engine: unreadable log entry skipped by the tailer", "stream", s.Stream, "err", err)
					continue
				}
				if ev.Epoch.Seq != next+1 || ev.Epoch.Partition != p {
					e.log.Error("redis engine: gap in the log", "stream", s.Stream, "want_seq", next+1, "got", ev.Epoch)
				}
				next = ev.Epoch.Seq
				batch = append(batch, ev)
			}
			if len(batch) > 0 {
				for _, sk := range e.sinks {
					sk.Committed(p, batch)
				}
				last := batch[len(batch)-1]
				e.parts[p].advance(last.Epoch.Seq, last.At)
			} else if seq, err := streamSeq(s.Messages[len(s.Messages)-1].ID); err == nil {
				_, at, _ := e.parts[p].get()
				e.parts[p].advance(seq, at) // past unreadable records, so the tail moves on
			}
		}
	}
}

// Events replays the committed log; see engine.Engine. It reads Redis
// directly (XRANGE), so it works without Run.
func (e *Engine) Events(ctx context.Context, after []hunt.Seq, fn func(*hunt.Event) error) error {
	var ev hunt.Event
	for p := range e.cfg.Partitions {
		var from hunt.Seq
		if p < len(after) {
			from = after[p]
		}
		for {
			msgs, err := e.rdb.XRangeN(ctx, keyLog(geo.Partition(p)), logID(from+1), "+", eventsPageLen).Result()
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return e.callErr("read the log", err)
			}
			for _, m := range msgs {
				if err := messageEvent(m, &ev); err != nil {
					return err
				}
				if err := fn(&ev); err != nil {
					return err
				}
				from = ev.Epoch.Seq
			}
			if len(msgs) < eventsPageLen {
				break
			}
		}
	}
	return nil
}
