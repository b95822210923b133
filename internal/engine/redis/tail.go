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
	var batch []hunt.Event // fed synchronously, so reused
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
			for _, m := range s.Messages {
				var ev hunt.Event
				if err := messageEvent(m, &ev); err != nil {
					// The log is the truth; a record this node cannot read is
					// skipped here (the sinks miss it) and reported loudly.
					e.log.Error("redis engine: unreadable log entry skipped by the tailer", "stream", s.Stream, "err", err)
					continue
				}
				if ev.Epoch.Partition != p {
					e.log.Error("redis engine: log entry of another partition", "stream", s.Stream, "got", ev.Epoch)
					continue
				}
				batch = append(batch, ev)
			}
			last, _ := streamSeq(s.Messages[len(s.Messages)-1].ID)
			e.feed(p, batch, last)
		}
	}
}

// earlyLenMax bounds the answered events a partition holds while it waits
// for an earlier one; past it they are left to the tailer.
const earlyLenMax = 4096

// feed hands events of partition p to the sinks in seq order, each once, and
// advances the watermark. Two sources feed it: the tailer, with consecutive
// events read from the log (fromLog > 0: the seq of the last entry read,
// which the watermark then passes even if an entry was unreadable or absent),
// and submit, with the event of an answer this node just received
// (fromLog == 0). An answered event is fed at once when it is the next one
// in the partition, so its caller does not wait for the tailer's next round
// trip; one further ahead (another node's event, or a concurrent answer
// still on its way, lies before it) waits in early until the gap is filled
// by either source.
func (e *Engine) feed(p geo.Partition, evs []hunt.Event, fromLog hunt.Seq) {
	ps := &e.parts[p]
	ps.feedMu.Lock()
	defer ps.feedMu.Unlock()
	cur, at, _ := ps.get()
	var out []hunt.Event
	take := func(ev hunt.Event) {
		out = append(out, ev)
		cur, at = ev.Epoch.Seq, ev.At
	}
	for _, ev := range evs {
		switch {
		case ev.Epoch.Seq <= cur:
		case ev.Epoch.Seq == cur+1:
			take(ev)
		case fromLog > 0:
			e.log.Error("redis engine: gap in the log", "partition", p, "want_seq", cur+1, "got", ev.Epoch)
			take(ev)
		case len(ps.early) < earlyLenMax:
			if ps.early == nil {
				ps.early = make(map[hunt.Seq]hunt.Event)
			}
			ps.early[ev.Epoch.Seq] = ev
		}
		for len(ps.early) > 0 {
			next, ok := ps.early[cur+1]
			if !ok {
				break
			}
			delete(ps.early, cur+1)
			take(next)
		}
	}
	if fromLog > cur {
		cur = fromLog // past unreadable records, so the tail moves on
	}
	for s := range ps.early {
		if s <= cur {
			delete(ps.early, s)
		}
	}
	if len(out) > 0 {
		for _, sk := range e.sinks {
			sk.Committed(p, out)
		}
	}
	ps.advance(cur, at)
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
