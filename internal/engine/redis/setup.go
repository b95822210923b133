package redis

import (
	"context"
	"fmt"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnhq/cairn/internal/hunt"
)

// setup makes Redis ready for this node: persistence checked, configuration
// matching, library loaded, groups created. It runs at Open and again after
// every outage, because a Redis that comes back may have come back empty.
func (e *Engine) setup(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 4*e.cfg.CallTimeout)
	defer cancel()
	if err := e.checkDurability(ctx); err != nil {
		return err
	}
	if err := e.checkMeta(ctx); err != nil {
		return err
	}
	if err := e.ensureLibrary(ctx); err != nil {
		return err
	}
	return e.ensureGroups(ctx)
}

// checkDurability reads Redis's persistence settings: acknowledged writes
// survive a Redis crash only with appendonly yes and appendfsync always.
//
// In a cluster every primary is checked (ForEachMaster); the replicas'
// settings are the operator's (docs/REDIS.md).
func (e *Engine) checkDurability(ctx context.Context) error {
	if e.cc != nil {
		return e.cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
			return e.checkDurabilityOn(ctx, c)
		})
	}
	return e.checkDurabilityOn(ctx, e.rdb)
}

func (e *Engine) checkDurabilityOn(ctx context.Context, rdb goredis.Cmdable) error {
	vals, err := rdb.ConfigGet(ctx, "append*").Result()
	if err != nil {
		if isUnavailable(err) {
			return unavailable("read persistence settings", err)
		}
		if e.cfg.AllowVolatile {
			e.log.Warn("redis engine: cannot read persistence settings; running volatile as allowed", "err", err)
			return nil
		}
		return fmt.Errorf("%w: cannot read persistence settings (CONFIG GET: %v); start with --allow-volatile-redis to run anyway", ErrVolatile, err)
	}
	aof, fsync := vals["appendonly"], vals["appendfsync"]
	// An allkeys-* eviction policy drops any key when memory fills: an
	// idempotency record, a claimer set, a wallet (I1-I4), however durable
	// the AOF. Cairn sets no TTLs, so volatile-* policies never touch its keys.
	pol, err := rdb.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil && isUnavailable(err) {
		return unavailable("read eviction policy", err)
	}
	if policy := pol["maxmemory-policy"]; strings.HasPrefix(policy, "allkeys-") {
		if e.cfg.AllowVolatile {
			e.log.Warn("REDIS MAY EVICT CAIRN'S STATE: running anyway as allowed", "maxmemory-policy", policy)
			return nil
		}
		return fmt.Errorf("%w: maxmemory-policy=%s may evict any key; set maxmemory-policy noeviction, or start with --allow-volatile-redis",
			ErrVolatile, policy)
	}
	if aof == "yes" && fsync == "always" {
		return nil
	}
	if e.cfg.AllowVolatile {
		e.log.Warn("REDIS IS VOLATILE: acknowledged claims may be lost if Redis crashes; running anyway as allowed",
			"appendonly", aof, "appendfsync", fsync)
		return nil
	}
	return fmt.Errorf("%w: appendonly=%s appendfsync=%s; set appendonly yes and appendfsync always, or start with --allow-volatile-redis",
		ErrVolatile, aof, fsync)
}

// checkMeta stores the partitioning on first start and refuses another one later.
func (e *Engine) checkMeta(ctx context.Context) error {
	pipe := e.rdb.TxPipeline()
	pipe.HSetNX(ctx, keyMeta, "partitions", e.cfg.Partitions)
	pipe.HSetNX(ctx, keyMeta, "prefix_len", e.cfg.PrefixLen)
	pipe.HSetNX(ctx, keyMeta, "format", 1)
	got := pipe.HMGet(ctx, keyMeta, "partitions", "prefix_len")
	if _, err := pipe.Exec(ctx); err != nil {
		return unavailable("read meta", err)
	}
	want := []string{fmt.Sprint(e.cfg.Partitions), fmt.Sprint(e.cfg.PrefixLen)}
	for i, v := range got.Val() {
		if s, _ := v.(string); s != want[i] {
			return fmt.Errorf("%w: it has partitions=%v prefix_len=%v, this node has %d and %d",
				ErrMismatch, got.Val()[0], got.Val()[1], e.cfg.Partitions, e.cfg.PrefixLen)
		}
	}
	return nil
}

func (e *Engine) ensureGroups(ctx context.Context) error {
	if e.cc != nil {
		return nil // a cluster has no request streams (direct calls only)
	}
	pipe := e.rdb.Pipeline()
	cmds := make([]*goredis.StatusCmd, len(e.reqKeys))
	for p, k := range e.reqKeys {
		// From "0": entries queued before the group existed are processed too.
		cmds[p] = pipe.XGroupCreateMkStream(ctx, k, Group, "0")
	}
	_, _ = pipe.Exec(ctx)
	for _, c := range cmds {
		if err := c.Err(); err != nil && !goredis.HasErrorPrefix(err, "BUSYGROUP") {
			return unavailable("create consumer groups", err)
		}
	}
	return nil
}

// loadHeads sets each partition's watermark to the last event of its log:
// the tailer feeds sinks from there (sinks catch up on history with Events).
func (e *Engine) loadHeads(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 4*e.cfg.CallTimeout)
	defer cancel()
	pipe := e.rdb.Pipeline()
	cmds := make([]*goredis.XMessageSliceCmd, len(e.logKeys))
	for p, k := range e.logKeys {
		cmds[p] = pipe.XRevRangeN(ctx, k, "+", "-", 1)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return unavailable("read log heads", err)
	}
	for p, c := range cmds {
		if len(c.Val()) == 0 {
			continue
		}
		var ev hunt.Event
		if err := messageEvent(c.Val()[0], &ev); err != nil {
			return fmt.Errorf("redis engine: last event of %s: %w", e.logKeys[p], err)
		}
		e.parts[p].seq, e.parts[p].at = ev.Epoch.Seq, ev.At
	}
	return nil
}
