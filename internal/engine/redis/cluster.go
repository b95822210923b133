package redis

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// Redis Cluster mode (docs/REDIS.md, "Redis Cluster"). Every Function call
// touches the keys of one slot. A claim whose player keys (in the slot of
// the player's spend partition S) and hotspot (in partition P's slot) share
// a slot, S == P, is one cairn_claim call as on one Redis; otherwise it is
// three calls, each idempotent by the claim's key:
//
//  1. cairn_reserve (slot S): the player's record "<fp> P 0 -" (pending), or
//     key_reused; answers the player's last position in the hunt;
//  2. cairn_decide (slot P): decides, appends the event, takes the ticket,
//     with the partition's own record of (player, key), so a second call
//     replays;
//  3. cairn_credit (slot S): unless the player's record is final, credits
//     the wallet, ledger and last position and makes the record final.
//
// Each call is followed by WAIT MinReplicas on the same connection to the
// primary that owns the slot, and the node answers only after step 3. A
// node that dies between 2 and 3 leaves a pending record: the next retry of
// the key replays step 2 and runs 3, and every node's sweeper runs 3 for the
// claims of each partition's log past the partition's cursor whose player
// record is not final. The sweeper credits only events it has seen on the
// replicas (its read of the log is a write followed by WAIT), so a decision
// a failover may still lose is never credited. Spends are one call in slot
// S against the credited balance, so a balance never goes below zero.

// tailPoll is how long the cluster tailer waits after a round that found
// nothing new: a multi-slot blocking XREAD is refused by a cluster.
const tailPoll = 50 * time.Millisecond

// sweepBatch bounds the log entries one sweep reads per partition.
const sweepBatch = 512

// callSlot runs Function fn on the primary of keys[0]'s slot (keys all in
// one slot) and, with MinReplicas > 0, WAITs on the same connection for
// that many of the primary's replicas. A "Function not found" (a new empty
// primary) loads the library on that node and calls once more.
func (e *Engine) callSlot(ctx context.Context, fn string, keys []string, args ...any) (any, error) {
	v, err := e.callSlotOnce(ctx, fn, keys, args)
	if err != nil && needsSetup(err) {
		if lerr := e.loadLibraryForKey(ctx, keys[0]); lerr != nil {
			return nil, lerr
		}
		v, err = e.callSlotOnce(ctx, fn, keys, args)
	}
	return v, err
}

func (e *Engine) callSlotOnce(ctx context.Context, fn string, keys []string, args []any) (any, error) {
	if e.cfg.MinReplicas == 0 {
		v, err := e.rdb.FCall(ctx, fn, keys, args...).Result()
		if err != nil {
			return nil, e.clusterErr(ctx, fn, err)
		}
		return v, nil
	}
	node, err := e.cc.MasterForKey(ctx, keys[0])
	if err != nil {
		return nil, e.clusterErr(ctx, fn, err)
	}
	pipe := node.Pipeline()
	call := pipe.FCall(ctx, fn, keys, args...)
	wait := pipe.Do(ctx, "WAIT", e.cfg.MinReplicas, e.cfg.ReplicaTimeout.Milliseconds())
	_, _ = pipe.Exec(ctx)
	v, err := call.Result()
	if err == nil {
		err = wait.Err()
	}
	if err != nil {
		return nil, e.clusterErr(ctx, fn, err)
	}
	if n, _ := wait.Int64(); n < int64(e.cfg.MinReplicas) {
		return nil, fmt.Errorf("%w: %s: %w: %d of %d replicas within %v",
			engine.ErrUnavailable, fn, ErrNotReplicated, n, e.cfg.MinReplicas, e.cfg.ReplicaTimeout)
	}
	return v, nil
}

// clusterErr is callErr for a call to one slot's primary: a redirect or an
// outage also asks the client to reload the cluster's slot map (a failover,
// a slot moved), so the retry goes to the new owner.
func (e *Engine) clusterErr(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if isUnavailable(err) || goredis.HasErrorPrefix(err, "MOVED") || goredis.HasErrorPrefix(err, "ASK") {
		e.cc.ReloadState(context.WithoutCancel(ctx))
	}
	if goredis.HasErrorPrefix(err, "MOVED") || goredis.HasErrorPrefix(err, "ASK") {
		return unavailable(what, err)
	}
	if needsSetup(err) {
		return err // callSlot loads the library and retries
	}
	return e.callErr(what, err)
}

// loadLibraryForKey loads the library on the primary of key's slot.
func (e *Engine) loadLibraryForKey(ctx context.Context, key string) error {
	node, err := e.cc.MasterForKey(ctx, key)
	if err != nil {
		return unavailable("find the primary", err)
	}
	return e.ensureLibraryOn(ctx, node)
}

// callText is callSlot for a Function that answers a string.
func (e *Engine) callText(ctx context.Context, fn string, keys []string, args ...any) (string, error) {
	v, err := e.callSlot(ctx, fn, keys, args...)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%w: %s answered %T", errCorrupt, fn, v)
	}
	return s, nil
}

// decideCluster decides r in a cluster: one call when the player's slot is
// the partition's (every spend, and claims with S == P), else the split claim.
func (e *Engine) decideCluster(ctx context.Context, r *request) (string, error) {
	cctx, cancel := e.avail.callContext(ctx)
	defer cancel()
	start := time.Now()
	cctx, sp := startCall(cctx, "redis FCALL")
	msg, err := e.decideClusterCalls(cctx, r)
	endCall(sp, err)
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", err
	}
	e.met.CommitLatency.Observe(time.Since(start).Seconds())
	return msg, nil
}

func (e *Engine) decideClusterCalls(ctx context.Context, r *request) (string, error) {
	now := e.now()
	if r.kind == 's' || spendPartition(r.player, e.cfg.Partitions) == r.p {
		fn, keys, args := r.fcall(e.ks, now, "")
		return e.callText(ctx, fn, keys, args...)
	}
	ans, err := e.callText(ctx, "cairn_reserve", []string{e.ks.idem(r.player), e.ks.pos(r.player)},
		r.key, r.fp, uint64(r.p), string(r.hunt))
	if err != nil {
		return "", err
	}
	last, ok := strings.CutPrefix(ans, "ok ")
	if !ok {
		return ans, nil // err key_reused
	}
	msg, err := e.callText(ctx, "cairn_decide",
		[]string{huntCopy(r.p, r.hunt), keyHotspot(r.p, r.hunt, r.hotspot), keyClaimers(r.p, r.hunt, r.hotspot),
			keySeq(r.p), keyLog(r.p), keyPartIdem(r.p)},
		string(r.player), r.key, r.fp, string(r.hunt), string(r.hotspot), r.lat, r.lon,
		formatNS20(now), strconv.FormatInt(now.Unix(), 10), strconv.Itoa(now.Nanosecond()),
		strconv.FormatInt(now.UnixMilli(), 10), strconv.FormatUint(uint64(r.p), 10), r.rid, last)
	if err != nil {
		return "", err
	}
	rest, ok := strings.CutPrefix(msg, "ok ")
	if !ok {
		return msg, nil // err unknown_hunt, unknown_hotspot: nothing decided
	}
	rid, ev, ok := strings.Cut(rest, " ")
	if !ok {
		return "", fmt.Errorf("%w: decide answered %q", errCorrupt, msg)
	}
	if e.testHookBeforeCredit != nil && e.testHookBeforeCredit() {
		return "", unavailable("test hook: the node died before the credit", nil)
	}
	if err := e.credit(ctx, r.player, rid, ev); err != nil {
		return "", err
	}
	return msg, nil
}

// credit runs step 3 of a split claim for player: rid decided event ev.
func (e *Engine) credit(ctx context.Context, player hunt.PlayerID, rid, ev string) error {
	_, err := e.callSlot(ctx, "cairn_credit",
		[]string{e.ks.idem(player), e.ks.wallet(player), e.ks.ledger(player), e.ks.pos(player)}, rid, ev)
	return err
}

// tailCluster is tail for a cluster: a pipelined non-blocking XRANGE of
// every partition's log past its watermark (the client sends each primary
// its partitions), then a short pause when nothing was new.
func (e *Engine) tailCluster(ctx context.Context) {
	var batch []hunt.Event
	cmds := make([]*goredis.XMessageSliceCmd, len(e.logKeys))
	for ctx.Err() == nil {
		if !e.waitUp(ctx) {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, 4*e.cfg.CallTimeout)
		pipe := e.rdb.Pipeline()
		for p, k := range e.logKeys {
			seq, _, _ := e.parts[p].get()
			cmds[p] = pipe.XRangeN(cctx, k, "("+logID(seq), "+", tailCountMax)
		}
		_, err := pipe.Exec(cctx)
		cancel()
		got := 0
		for p, c := range cmds {
			msgs := c.Val()
			if c.Err() != nil || len(msgs) == 0 {
				continue
			}
			batch = batch[:0]
			for _, m := range msgs {
				var ev hunt.Event
				if err := messageEvent(m, &ev); err != nil {
					e.log.Error("redis engine: unreadable log entry skipped by the tailer", "stream", e.logKeys[p], "err", err)
					continue
				}
				if ev.Epoch.Partition != geo.Partition(p) {
					e.log.Error("redis engine: log entry of another partition", "stream", e.logKeys[p], "got", ev.Epoch)
					continue
				}
				batch = append(batch, ev)
			}
			last, _ := streamSeq(msgs[len(msgs)-1].ID)
			e.feed(geo.Partition(p), batch, last)
			got += len(msgs)
		}
		wait := tailPoll
		if err != nil && !errors.Is(err, goredis.Nil) {
			if ctx.Err() != nil {
				return
			}
			e.clusterErr(ctx, "tail the log", err)
			wait = e.cfg.HealthInterval
		}
		if got == 0 && !pause(ctx, wait) {
			return
		}
	}
}

// maintainCluster sweeps pending credits every MaintenanceInterval.
func (e *Engine) maintainCluster(ctx context.Context) {
	t := time.NewTicker(e.cfg.MaintenanceInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if up, _, _ := e.avail.get(); !up {
			continue
		}
		if err := e.libraryOnNewPrimaries(ctx); err != nil && ctx.Err() == nil {
			e.log.Warn("redis engine: function library not loaded on every primary; next round retries", "err", err)
		}
		if err := e.sweep(ctx); err != nil && ctx.Err() == nil {
			e.log.Debug("redis engine: sweep incomplete; next round retries", "err", err)
		}
	}
}

// sweepRoundsMax bounds the rounds of one sweep (each reads up to
// sweepBatch entries of every partition).
const sweepRoundsMax = 64

// sweep credits every claim of every partition's log, past the partition's
// cursor, whose player record is not final, and advances the cursor past
// what it has checked. Idempotent, safe on any number of nodes at once.
func (e *Engine) sweep(ctx context.Context) error {
	for range sweepRoundsMax {
		more, err := e.sweepRound(ctx)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// sweptEvent is a log entry a sweep read, with (claims) the records it reads.
type sweptEvent struct {
	ev   hunt.Event
	raw  string
	rec  *goredis.StringCmd // the player's record
	prec *goredis.StringCmd // the partition's record of (player, key)
}

type sweptBatch struct {
	p      geo.Partition
	from   hunt.Seq
	events []sweptEvent
}

// final reports whether a player's record is final (credited): "<fp> <p> <seq> <rid>", seq > 0.
func final(rec string) bool {
	f := strings.Fields(rec)
	return len(f) == 4 && f[2] != "0"
}

// sweepRound reads up to sweepBatch entries past every partition's cursor
// and credits what needs it, in three phases:
//
//  1. each partition's entries (cairn_sweep_read, whose WAIT proves them on
//     the replicas), then every claim's player and partition records in one
//     pipeline;
//  2. for each primary holding a record read as final, one write and WAIT
//     after those reads (cairn_sweep_read on a partition of that primary):
//     replication is one ordered stream per primary, so the records read
//     before it are on the replicas too. A final record a failover could
//     still lose is never taken as a reason to pass a claim by;
//  3. per partition, in log order: credit each claim whose record is not
//     final, and advance the cursor past what was checked, stopping at the
//     first claim that could not be settled.
//
// more reports that some partition had a full batch.
func (e *Engine) sweepRound(ctx context.Context) (more bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*e.cfg.CallTimeout)
	defer cancel()
	var errs []error
	var batches []sweptBatch
	pipe := e.rdb.Pipeline()
	reads := 0
	for p := range e.cfg.Partitions {
		b, err := e.sweepRead(ctx, geo.Partition(p))
		if err != nil {
			errs = append(errs, fmt.Errorf("partition %d: %w", p, err))
			continue
		}
		if len(b.events) == 0 {
			continue
		}
		more = more || len(b.events) >= sweepBatch
		for i := range b.events {
			if ev := &b.events[i]; ev.ev.Kind == hunt.KindClaimCompleted {
				ev.rec = pipe.HGet(ctx, e.ks.idem(ev.ev.Player), ev.ev.Key)
				ev.prec = pipe.HGet(ctx, keyPartIdem(b.p), string(ev.ev.Player)+" "+ev.ev.Key)
				reads++
			}
		}
		batches = append(batches, b)
	}
	if reads > 0 {
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
			return false, errors.Join(append(errs, e.clusterErr(ctx, "sweep", err))...)
		}
	}
	proven := e.sweepProve(ctx, batches)
	for _, b := range batches {
		if err := e.sweepSettle(ctx, b, proven); err != nil {
			errs = append(errs, fmt.Errorf("partition %d: %w", b.p, err))
		}
	}
	return more && len(errs) == 0, errors.Join(errs...)
}

// sweepRead reads partition p's cursor and the entries past it.
func (e *Engine) sweepRead(ctx context.Context, p geo.Partition) (sweptBatch, error) {
	b := sweptBatch{p: p}
	v, err := e.callSlot(ctx, "cairn_sweep_read", []string{keyCredited(p), keyLog(p)}, sweepBatch, 0)
	if err != nil {
		return b, err
	}
	arr, _ := v.([]any)
	if len(arr) < 1 {
		return b, fmt.Errorf("%w: sweep read answered %v", errCorrupt, v)
	}
	cur, _ := arr[0].(string)
	from, err := strconv.ParseUint(cur, 10, 64)
	if err != nil {
		return b, fmt.Errorf("%w: credited cursor %q", errCorrupt, cur)
	}
	b.from = hunt.Seq(from)
	for _, x := range arr[1:] {
		raw, _ := x.(string)
		var ev hunt.Event
		if err := decodeEvent(raw, &ev); err != nil {
			return b, err
		}
		b.events = append(b.events, sweptEvent{ev: ev, raw: raw})
	}
	return b, nil
}

// sweepProve makes one write and WAIT on each primary that holds a record
// read as final (phase 2 of sweepRound) and answers the primaries (by
// address) for which it succeeded. Without MinReplicas nothing is asked of
// replicas, and every record is taken as read.
func (e *Engine) sweepProve(ctx context.Context, batches []sweptBatch) map[string]bool {
	if e.cfg.MinReplicas == 0 {
		return nil
	}
	proven := map[string]bool{}
	probe := map[string]geo.Partition{} // a partition of each primary to write to
	for _, b := range batches {
		for _, ev := range b.events {
			if ev.rec == nil || !final(ev.rec.Val()) {
				continue
			}
			s := spendPartition(ev.ev.Player, e.cfg.Partitions)
			node, err := e.cc.MasterForKey(ctx, keyCredited(s))
			if err != nil {
				continue
			}
			probe[node.Options().Addr] = s
		}
	}
	for addr, s := range probe {
		// The partition's cursor written again (the same value): a write after the reads.
		if _, err := e.callSlot(ctx, "cairn_sweep_read", []string{keyCredited(s), keyLog(s)}, 1, 1); err == nil {
			proven[addr] = true
		}
	}
	return proven
}

// sweepSettle is phase 3 of sweepRound for one partition's batch.
func (e *Engine) sweepSettle(ctx context.Context, b sweptBatch, proven map[string]bool) (err error) {
	last := b.from
	for _, ev := range b.events {
		if ev.ev.Kind == hunt.KindClaimCompleted {
			if final(ev.rec.Val()) {
				if proven != nil {
					node, nerr := e.cc.MasterForKey(ctx, keyCredited(spendPartition(ev.ev.Player, e.cfg.Partitions)))
					if nerr != nil || !proven[node.Options().Addr] {
						err = unavailable("sweep: the credit of "+string(ev.ev.Player)+"/"+ev.ev.Key+" is not proven on the replicas", nerr)
						break
					}
				}
			} else {
				pf := strings.Fields(ev.prec.Val())
				if len(pf) != 3 || pf[1] != strconv.FormatUint(uint64(ev.ev.Epoch.Seq), 10) {
					err = fmt.Errorf("%w: claim %v of %s/%s has player record %q and partition record %q",
						errCorrupt, ev.ev.Epoch, ev.ev.Player, ev.ev.Key, ev.rec.Val(), ev.prec.Val())
					break
				}
				if err = e.credit(ctx, ev.ev.Player, pf[2], ev.raw); err != nil {
					break
				}
				e.swept.Add(1)
				e.met.Retries.WithLabelValues("credit").Inc()
			}
		}
		last = ev.ev.Epoch.Seq
	}
	if last > b.from {
		if aerr := e.rdb.FCall(ctx, "cairn_sweep_advance", []string{keyCredited(b.p)}, uint64(last)).Err(); aerr != nil && err == nil {
			err = e.clusterErr(ctx, "sweep", aerr)
		}
	}
	return err
}

// libraryOnNewPrimaries loads the function library on every primary that
// CLUSTER NODES lists and this node has not yet seen with it, including a
// primary just added with no slot (which the client's slot map does not
// know yet), so it has the library before a reshard gives it a slot. Each
// primary is checked once per node id and address: a failover promotes a
// replica, which has the library by replication, and is checked as a new
// primary all the same. A primary that loses its data on a restart is
// covered by callSlot, which loads the library when a call answers that
// the Function is missing.
func (e *Engine) libraryOnNewPrimaries(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 2*e.cfg.CallTimeout)
	defer cancel()
	text, err := e.cc.ClusterNodes(cctx).Result()
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range clusterPrimaries(text) {
		if _, ok := e.libPrimaries.Load(n); ok {
			continue
		}
		if err := e.libraryOnAddr(cctx, n.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n.addr, err))
			continue
		}
		e.libPrimaries.Store(n, struct{}{})
	}
	return errors.Join(errs...)
}

// clusterNode is a node as CLUSTER NODES names it.
type clusterNode struct{ id, addr string }

// clusterPrimaries lists the primaries of a CLUSTER NODES reply that are
// reachable members: flagged master, not failed or suspected to be, not in
// handshake, with an address.
func clusterPrimaries(text string) []clusterNode {
	var out []clusterNode
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		flags := "," + f[2] + ","
		if !strings.Contains(flags, ",master,") || strings.Contains(flags, ",fail,") || strings.Contains(flags, ",fail?,") ||
			strings.Contains(flags, ",handshake,") || strings.Contains(flags, ",noaddr,") {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@") // ip:port@cport[,hostname]
		if addr == "" || strings.HasPrefix(addr, ":") {
			continue
		}
		out = append(out, clusterNode{id: f[0], addr: addr})
	}
	return out
}

// libraryOnAddr is ensureLibraryOn on the node at addr, over a connection
// of its own (the node may own no slot, so the cluster client has no pool
// for it), with the cluster URL's credentials and TLS.
func (e *Engine) libraryOnAddr(ctx context.Context, addr string) error {
	cu, err := parseClusterURL(e.cfg.URL)
	if err != nil {
		return err
	}
	opt := &goredis.Options{
		Addr: addr, Username: cu.user, Password: cu.password, MaxRetries: -1, PoolSize: 1,
		DialTimeout: e.cfg.CallTimeout, ReadTimeout: e.cfg.CallTimeout, WriteTimeout: e.cfg.CallTimeout,
		ContextTimeoutEnabled: true, ClientName: "cairn-" + e.cfg.Consumer,
	}
	if cu.tls {
		opt.TLSConfig = &tls.Config{ServerName: cu.host, MinVersion: tls.VersionTLS12}
	}
	c := goredis.NewClient(opt)
	defer c.Close()
	return e.ensureLibraryOn(ctx, c)
}
