package redis

import (
	"context"
	"errors"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnhq/cairn/internal/geo"
)

// readBlock is how long one XREADGROUP/XREAD blocks before it is sent again.
// Shutdown does not wait for it: Run closes the blocking connections.
const readBlock = 2 * time.Second

// entry is one request stream entry of a partition.
type entry struct {
	p   geo.Partition
	msg goredis.XMessage
}

// consume is one reader: it takes batches from its partitions' request
// streams for this node's consumer and decides them. It first re-reads what
// the group still lists as pending for this consumer (a restart, or a Redis
// outage in the middle of a batch), then new entries (">").
func (e *Engine) consume(ctx context.Context, parts []geo.Partition) {
	history := true
	for ctx.Err() == nil {
		if !e.waitUp(ctx) {
			return
		}
		if history {
			if !e.consumeHistory(ctx, parts) {
				e.kickHealth()
				if !pause(ctx, e.cfg.HealthInterval) {
					return
				}
				continue
			}
			history = false
		}
		streams := make([]string, 0, 2*len(parts))
		for _, p := range parts {
			streams = append(streams, e.reqKeys[p])
		}
		for range parts {
			streams = append(streams, ">")
		}
		res, err := e.blk.XReadGroup(ctx, &goredis.XReadGroupArgs{
			Group: Group, Consumer: e.cfg.Consumer, Streams: streams, Count: int64(e.cfg.BatchLenMax), Block: readBlock,
		}).Result()
		if errors.Is(err, goredis.Nil) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			e.callErr("read requests", err)
			history = true
			if !pause(ctx, e.cfg.HealthInterval) {
				return
			}
			continue
		}
		e.process(ctx, e.entries(res))
	}
}

// consumeHistory decides this consumer's pending entries, page by page.
func (e *Engine) consumeHistory(ctx context.Context, parts []geo.Partition) bool {
	for _, p := range parts {
		after := "0"
		for ctx.Err() == nil {
			res, err := e.blk.XReadGroup(ctx, &goredis.XReadGroupArgs{
				Group: Group, Consumer: e.cfg.Consumer, Streams: []string{e.reqKeys[p], after},
				Count: int64(e.cfg.BatchLenMax), Block: -1,
			}).Result()
			if err != nil && !errors.Is(err, goredis.Nil) {
				e.callErr("read pending requests", err)
				return false
			}
			es := e.entries(res)
			if len(es) == 0 {
				break
			}
			after = es[len(es)-1].msg.ID
			e.process(ctx, es)
		}
	}
	return true
}

func (e *Engine) entries(res []goredis.XStream) []entry {
	var out []entry
	for _, s := range res {
		p, ok := e.partOfKey[s.Stream]
		if !ok {
			continue
		}
		for _, m := range s.Messages {
			out = append(out, entry{p: p, msg: m})
		}
	}
	return out
}

// process decides a batch in one pipelined round trip. Each Function call
// acknowledges its own entry and publishes its answer, so a batch cut short
// (crash, outage) leaves exactly the undecided entries pending. An entry
// that does not parse or whose call fails stays pending: it is retried by
// reclaim and dead-lettered after DeliveriesMax deliveries.
func (e *Engine) process(ctx context.Context, es []entry) {
	if len(es) == 0 {
		return
	}
	if e.testHookAfterRead != nil && e.testHookAfterRead() {
		return
	}
	// The batch in flight finishes even when Run is stopping.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 4*e.cfg.CallTimeout)
	defer cancel()
	now := e.now() // one decision time per batch, as the embedded writer does
	start := time.Now()
	pipe := e.rdb.Pipeline()
	cmds := make([]*goredis.Cmd, 0, len(es))
	for _, en := range es {
		r, err := parseRequest(en.p, en.msg)
		if err != nil {
			e.log.Warn("redis engine: poison request entry left pending", "stream", e.reqKeys[en.p], "err", err)
			continue
		}
		fn, keys, args := r.fcall(e.ks, now, en.msg.ID)
		cmds = append(cmds, pipe.FCall(cctx, fn, keys, args...))
	}
	if len(cmds) == 0 {
		return
	}
	_, err := pipe.Exec(cctx)
	e.met.BatchSize.Observe(float64(len(cmds)))
	if err == nil {
		e.met.CommitLatency.Observe(time.Since(start).Seconds())
		return
	}
	for _, c := range cmds {
		if err := c.Err(); err != nil {
			if isUnavailable(err) {
				e.callErr("decide", err)
				return
			}
			e.log.Warn("redis engine: request entry failed; left pending", "args", c.Args()[3:5], "err", err)
		}
	}
}

// reclaimLoop takes over entries that stayed pending longer than MinIdle
// with any consumer (a dead node, or a poison entry) and decides them again;
// the Function's idempotency record makes a second decision a replay. An
// entry delivered more than DeliveriesMax times goes to the dead-letter stream.
func (e *Engine) reclaimLoop(ctx context.Context) {
	every := max(e.cfg.MinIdle/2, time.Millisecond)
	for pause(ctx, every) {
		if up, _, _ := e.avail.get(); !up {
			continue
		}
		e.reclaim(ctx)
	}
}

func (e *Engine) reclaim(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 4*e.cfg.CallTimeout)
	defer cancel()
	pipe := e.rdb.Pipeline()
	claims := make([]*goredis.XAutoClaimCmd, len(e.reqKeys))
	for p, k := range e.reqKeys {
		claims[p] = pipe.XAutoClaim(cctx, &goredis.XAutoClaimArgs{
			Stream: k, Group: Group, Consumer: e.cfg.Consumer, MinIdle: e.cfg.MinIdle, Start: "0-0",
			Count: int64(e.cfg.BatchLenMax),
		})
	}
	if _, err := pipe.Exec(cctx); err != nil && !errors.Is(err, goredis.Nil) {
		e.callErr("reclaim", err)
		return
	}
	var es []entry
	for p, c := range claims {
		msgs, _ := c.Val()
		for _, m := range msgs {
			es = append(es, entry{p: geo.Partition(p), msg: m})
		}
	}
	if len(es) == 0 {
		return
	}
	// Delivery counts (XAUTOCLAIM has just counted this delivery).
	pipe = e.rdb.Pipeline()
	counts := make([]*goredis.XPendingExtCmd, len(es))
	for i, en := range es {
		counts[i] = pipe.XPendingExt(cctx, &goredis.XPendingExtArgs{
			Stream: e.reqKeys[en.p], Group: Group, Start: en.msg.ID, End: en.msg.ID, Count: 1,
		})
	}
	if _, err := pipe.Exec(cctx); err != nil && !errors.Is(err, goredis.Nil) {
		e.callErr("reclaim", err)
		return
	}
	live := es[:0]
	for i, en := range es {
		pend := counts[i].Val()
		if len(pend) == 1 && pend[0].RetryCount > int64(e.cfg.DeliveriesMax) {
			e.deadLetter(cctx, en, pend[0].RetryCount)
			continue
		}
		live = append(live, en)
	}
	e.met.Retries.WithLabelValues("reclaim").Add(float64(len(live)))
	e.process(ctx, live)
}

func (e *Engine) deadLetter(ctx context.Context, en entry, deliveries int64) {
	n, err := e.rdb.FCall(ctx, "cairn_dead", []string{e.reqKeys[en.p], keyDead(en.p)},
		Group, en.msg.ID, deliveries).Int()
	if err != nil {
		e.callErr("dead-letter", err)
		return
	}
	if n == 1 {
		e.met.DeadLetters.Inc()
		e.log.Warn("redis engine: request entry moved to the dead-letter stream",
			"stream", e.reqKeys[en.p], "id", en.msg.ID, "deliveries", deliveries)
	}
}

// maintain trims the request streams below what the group acknowledged,
// samples the backlog into Status and Metrics.ConsumerLag, and re-checks
// long waits whose published answer may have been lost.
func (e *Engine) maintain(ctx context.Context) {
	t := time.NewTicker(e.cfg.MaintenanceInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.recheckNow: // the answer channel was (re)subscribed
			e.recheck(ctx, 0)
			continue
		case <-t.C:
		}
		if up, _, _ := e.avail.get(); !up {
			continue
		}
		e.trim(ctx)
		e.recheck(ctx, recheckAfter)
	}
}

func (e *Engine) trim(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 4*e.cfg.CallTimeout)
	defer cancel()
	pipe := e.rdb.Pipeline()
	cmds := make([]*goredis.Cmd, len(e.reqKeys))
	for p, k := range e.reqKeys {
		cmds[p] = pipe.FCall(cctx, "cairn_trim", []string{k}, e.cfg.ConsumerIdleMax.Milliseconds())
	}
	if _, err := pipe.Exec(cctx); err != nil {
		e.callErr("trim", err)
		return
	}
	for p, c := range cmds {
		v, err := c.Int64Slice()
		if err != nil || len(v) != 4 {
			continue
		}
		if v[3] > 0 {
			e.log.Info("redis engine: removed idle consumers without pending entries", "stream", e.reqKeys[p], "removed", v[3])
		}
		depth := v[0] + v[1] // undelivered + pending
		e.parts[p].depth.Store(depth)
		e.lagGauge[p].Set(float64(depth))
	}
}
