package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
	"github.com/cairnhq/cairn/internal/telemetry"
)

// request is a claim or spend as it travels: as stream entry fields from the
// receiving node to the deciding node, and as the Function's arguments.
type request struct {
	kind    byte // 'c' claim, 's' spend
	p       geo.Partition
	rid     string // incarnation.counter of the receiving node
	ch      string // the receiving node's answer channel; "" in direct mode
	player  hunt.PlayerID
	key     string
	fp      string
	hunt    hunt.HuntID
	hotspot hunt.HotspotID
	lat     string
	lon     string
	amount  string
	reason  string
}

// values are the request stream entry's fields (docs/REDIS.md).
func (r *request) values() []any {
	v := []any{"k", string(r.kind), "rid", r.rid, "ch", r.ch, "pl", string(r.player), "key", r.key, "fp", r.fp}
	if r.kind == 'c' {
		return append(v, "h", string(r.hunt), "hs", string(r.hotspot), "la", r.lat, "lo", r.lon)
	}
	return append(v, "am", r.amount, "rs", r.reason)
}

// parseRequest checks a request stream entry field by field: whatever does
// not parse is a poison entry, left pending until it is dead-lettered.
func parseRequest(p geo.Partition, m goredis.XMessage) (request, error) {
	s := func(k string) string { v, _ := m.Values[k].(string); return v }
	r := request{p: p, rid: s("rid"), ch: s("ch"), player: hunt.PlayerID(s("pl")), key: s("key"), fp: s("fp")}
	k := s("k")
	var errs []error
	if len(k) != 1 || (k[0] != 'c' && k[0] != 's') {
		errs = append(errs, fmt.Errorf("kind %q", k))
	} else {
		r.kind = k[0]
	}
	if r.rid == "" || strings.ContainsAny(r.rid, " \n") || (r.ch != "" && !strings.HasPrefix(r.ch, "cairn:done:")) {
		errs = append(errs, fmt.Errorf("rid %q / channel %q", r.rid, r.ch))
	}
	if !hunt.ValidID(string(r.player)) || !hunt.ValidKey(r.key) {
		errs = append(errs, fmt.Errorf("player %q / key %q", r.player, r.key))
	}
	if _, err := strconv.ParseUint(r.fp, 10, 64); err != nil {
		errs = append(errs, fmt.Errorf("fingerprint %q", r.fp))
	}
	switch r.kind {
	case 'c':
		r.hunt, r.hotspot, r.lat, r.lon = hunt.HuntID(s("h")), hunt.HotspotID(s("hs")), s("la"), s("lo")
		lat, err1 := strconv.ParseFloat(r.lat, 64)
		lon, err2 := strconv.ParseFloat(r.lon, 64)
		if !hunt.ValidID(string(r.hunt)) || !hunt.ValidID(string(r.hotspot)) || err1 != nil || err2 != nil || !geo.ValidCoord(lat, lon) {
			errs = append(errs, fmt.Errorf("claim target %q/%q at %q,%q", r.hunt, r.hotspot, r.lat, r.lon))
		}
	case 's':
		r.amount, r.reason = s("am"), s("rs")
		a, err := strconv.ParseInt(r.amount, 10, 64)
		if err != nil || a < 1 || a > hunt.AmountMax || len(r.reason) > hunt.ReasonLenMax {
			errs = append(errs, fmt.Errorf("spend %q %q", r.amount, r.reason))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return r, fmt.Errorf("%w: request entry %s: %v", errCorrupt, m.ID, err)
	}
	return r, nil
}

// fcall is the Function call that decides r at now; entry is the stream
// entry to acknowledge with the decision ("" in direct mode).
func (r *request) fcall(ks keyspace, now time.Time, entry string) (fn string, keys []string, args []any) {
	ps := strconv.FormatUint(uint64(r.p), 10)
	ms := strconv.FormatInt(now.UnixMilli(), 10)
	if r.kind == 's' {
		return "cairn_spend",
			[]string{keySeq(r.p), keyLog(r.p), ks.idem(r.player), ks.wallet(r.player), ks.ledger(r.player), keyReq(r.p)},
			[]any{string(r.player), r.key, r.fp, r.amount, r.reason, ms, ps, entry, Group, r.ch, r.rid}
	}
	return "cairn_claim",
		[]string{ks.claimHunt(r.p, r.hunt), keyHotspot(r.p, r.hunt, r.hotspot), keyClaimers(r.p, r.hunt, r.hotspot),
			keySeq(r.p), keyLog(r.p), ks.idem(r.player), ks.wallet(r.player), ks.ledger(r.player), ks.pos(r.player), keyReq(r.p)},
		[]any{string(r.player), r.key, r.fp, string(r.hunt), string(r.hotspot), r.lat, r.lon,
			formatNS20(now), strconv.FormatInt(now.Unix(), 10), strconv.Itoa(now.Nanosecond()), ms, ps, entry, Group, r.ch, r.rid}
}

// Claim decides a checked claim; see engine.Engine.
func (e *Engine) Claim(ctx context.Context, req *hunt.ClaimRequest) (hunt.ClaimResult, error) {
	if err := req.Check(); err != nil {
		return hunt.ClaimResult{}, err
	}
	if err := e.admit(ctx); err != nil {
		return hunt.ClaimResult{}, err
	}
	p, err := e.hotspotPartition(ctx, req.Hunt, req.Hotspot)
	if err != nil {
		return hunt.ClaimResult{}, err
	}
	r := request{kind: 'c', p: p, player: req.Player, key: req.Key, fp: strconv.FormatUint(req.Fingerprint(), 10),
		hunt: req.Hunt, hotspot: req.Hotspot, lat: formatFloat(req.Lat), lon: formatFloat(req.Lon)}
	ev, replayed, err := e.submit(ctx, &r, hunt.KindClaimCompleted)
	return hunt.ClaimResult{Event: ev, Replayed: replayed}, err
}

// Spend decides a checked spend; see engine.Engine. A player's spends share
// one partition (spendPartition), like the embedded engine's.
func (e *Engine) Spend(ctx context.Context, req *hunt.SpendRequest) (hunt.SpendResult, error) {
	if err := req.Check(); err != nil {
		return hunt.SpendResult{}, err
	}
	if err := e.admit(ctx); err != nil {
		return hunt.SpendResult{}, err
	}
	r := request{kind: 's', p: spendPartition(req.Player, e.cfg.Partitions), player: req.Player, key: req.Key,
		fp: strconv.FormatUint(req.Fingerprint(), 10), amount: strconv.FormatInt(req.Amount, 10), reason: req.Reason}
	ev, replayed, err := e.submit(ctx, &r, hunt.KindSpendCompleted)
	return hunt.SpendResult{Event: ev, Replayed: replayed}, err
}

// spendPartition is the partition of a player's spends: FNV-1a of the id.
func spendPartition(p hunt.PlayerID, partitions int) geo.Partition {
	return geo.PartitionOf(string(p), len(p), partitions)
}

// admit waits for Run and refuses calls when stopping or when Redis is down.
func (e *Engine) admit(ctx context.Context) error {
	select {
	case <-e.started:
	case <-e.stopping:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-e.stopping:
		return engine.ErrClosed
	default:
	}
	if up, _, err := e.avail.get(); !up {
		return unavailable("redis", err)
	}
	return nil
}

// hotspotPartition finds the partition that holds a hotspot's state. It is
// pinned at the first import, so a cached answer never goes stale.
func (e *Engine) hotspotPartition(ctx context.Context, h hunt.HuntID, s hunt.HotspotID) (geo.Partition, error) {
	k := hsKey{h, s}
	e.hsMu.RLock()
	p, ok := e.hsCache[k]
	e.hsMu.RUnlock()
	if ok {
		return p, nil
	}
	// One lookup per hotspot however many claims miss the cache at once (a storm).
	v, err, _ := e.hsLookups.Do(string(h)+"\x00"+string(s), func() (any, error) {
		cctx, cancel := e.avail.callContext(context.WithoutCancel(ctx))
		defer cancel()
		cctx, sp := startCall(cctx, "redis HGET")
		idx := e.ap.HGet(cctx, e.ks.hsIndex(h), string(s))
		endCall(sp, idx.Err())
		if err := idx.Err(); err != nil && !errors.Is(err, goredis.Nil) {
			return nil, e.callErr("find hotspot", err)
		}
		if errors.Is(idx.Err(), goredis.Nil) {
			ex, err := e.ap.Exists(cctx, e.ks.hunt(h)).Result()
			if err != nil {
				return nil, e.callErr("find hunt", err)
			}
			if ex == 0 {
				return nil, hunt.ErrUnknownHunt
			}
			return nil, hunt.ErrUnknownHotspot
		}
		v, err := strconv.ParseUint(idx.Val(), 10, 32)
		if err != nil || v >= uint64(e.cfg.Partitions) {
			return nil, fmt.Errorf("%w: hotspot index %s/%s holds %q", errCorrupt, h, s, idx.Val())
		}
		p := geo.Partition(v)
		e.hsMu.Lock()
		if len(e.hsCache) >= hotspotCacheLenMax {
			clear(e.hsCache) // crude but bounded; the cache refills with what is claimed
		}
		e.hsCache[k] = p
		e.hsMu.Unlock()
		return p, nil
	})
	if err != nil {
		return 0, err
	}
	return v.(geo.Partition), nil
}

// callErr turns a failed Redis call on the request path into the error the
// caller answers with, and tells the health loop when Redis looks gone.
func (e *Engine) callErr(what string, err error) error {
	if errors.Is(err, goredis.ErrPoolTimeout) {
		return fmt.Errorf("%w: %s: no free connection", engine.ErrOverloaded, what)
	}
	if isUnavailable(err) {
		if needsSetup(err) {
			// Redis came back without our library or groups: set up again.
			e.markDown(err)
		}
		e.kickHealth()
		return unavailable(what, err)
	}
	return fmt.Errorf("redis engine: %s: %w", what, err)
}

// submit has r decided, directly or through the request stream, and answers
// with the event, whether it is a replay of an earlier request's decision,
// or the error.
func (e *Engine) submit(ctx context.Context, r *request, kind hunt.EventKind) (hunt.Event, bool, error) {
	if e.inflight.Add(1) > int64(e.cfg.InflightMax) {
		e.inflight.Add(-1)
		return hunt.Event{}, false, engine.ErrOverloaded
	}
	defer e.inflight.Add(-1)
	var sp trace.Span
	if ctx, sp = telemetry.StartChild(ctx, "engine.submit"); sp != nil {
		defer sp.End()
	}
	r.rid = e.incarnation + "." + strconv.FormatUint(e.ridSeq.Add(1), 10)

	var msg string
	var err error
	if e.cfg.Direct {
		msg, err = e.decideDirect(ctx, r)
	} else {
		msg, err = e.decideQueued(ctx, r)
	}
	if err != nil {
		return hunt.Event{}, false, err
	}
	a, err := parseAnswer(msg)
	if err != nil {
		return hunt.Event{}, false, err
	}
	if a.code != "" {
		return hunt.Event{}, false, codeErr(a.code)
	}
	var ev hunt.Event
	if err := decodeEvent(a.event, &ev); err != nil {
		return hunt.Event{}, false, err
	}
	if ev.Kind != kind || ev.Player != r.player || ev.Key != r.key {
		return hunt.Event{}, false, fmt.Errorf("%w: answer for %s/%s is event %v of %s/%s",
			errCorrupt, r.player, r.key, ev.Epoch, ev.Player, ev.Key)
	}
	replayed := a.rid != r.rid
	if int(ev.Epoch.Partition) < len(e.parts) {
		e.feed(ev.Epoch.Partition, []hunt.Event{ev}, 0)
	}
	e.waitFed(ctx, ev.Epoch)
	if replayed {
		e.met.Replays.Inc()
	} else {
		e.met.Outcome(ev.Outcome).Inc()
	}
	return ev, replayed, nil
}

// decideDirect calls the Function from this node: one round trip.
func (e *Engine) decideDirect(ctx context.Context, r *request) (string, error) {
	cctx, cancel := e.avail.callContext(ctx)
	defer cancel()
	if e.cc != nil {
		return e.decideCluster(ctx, r)
	}
	start := time.Now()
	fn, keys, args := r.fcall(e.ks, e.now(), "")
	cctx, sp := startCall(cctx, "redis FCALL")
	if e.cfg.MinReplicas > 0 {
		msg, err := e.decideReplicated(ctx, cctx, start, fn, keys, args)
		endCall(sp, err)
		return msg, err
	}
	msg, err := e.ap.FCall(cctx, fn, keys, args...).Text()
	endCall(sp, err)
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", e.callErr("decide", err)
	}
	e.met.CommitLatency.Observe(time.Since(start).Seconds())
	return msg, nil
}

// decideReplicated sends the Function call and a WAIT for MinReplicas in one
// pipeline on one connection (WAIT counts the replicas that have every write
// of its own connection so far), and answers only if enough replicas have it.
// A replay writes too (the Function rewrites the idempotency record), so its
// WAIT also covers the decision it replays, made earlier on any connection.
func (e *Engine) decideReplicated(ctx, cctx context.Context, start time.Time, fn string, keys []string, args []any) (string, error) {
	pipe := e.rdb.Pipeline()
	call := pipe.FCall(cctx, fn, keys, args...)
	wait := pipe.Do(cctx, "WAIT", e.cfg.MinReplicas, e.cfg.ReplicaTimeout.Milliseconds())
	_, _ = pipe.Exec(cctx)
	msg, err := call.Text()
	if err == nil {
		err = wait.Err()
	}
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", e.callErr("decide", err)
	}
	if n, _ := wait.Int64(); n < int64(e.cfg.MinReplicas) {
		return "", fmt.Errorf("%w: decide: %w: %d of %d replicas within %v",
			engine.ErrUnavailable, ErrNotReplicated, n, e.cfg.MinReplicas, e.cfg.ReplicaTimeout)
	}
	e.met.CommitLatency.Observe(time.Since(start).Seconds())
	return msg, nil
}

// decideQueued appends r to its partition's request stream and waits for
// the answer some node's reader publishes on this node's channel.
func (e *Engine) decideQueued(ctx context.Context, r *request) (string, error) {
	r.ch = e.channel
	w := &waiter{rid: r.rid, player: r.player, key: r.key, fp: r.fp, since: time.Now(), done: make(chan waitResult, 1)}
	e.waiters.add(w)
	cctx, cancel := e.avail.callContext(ctx)
	cctx, sp := startCall(cctx, "redis XADD")
	err := e.ap.XAdd(cctx, &goredis.XAddArgs{Stream: keyReq(r.p), Values: r.values()}).Err()
	endCall(sp, err)
	cancel()
	if err != nil {
		e.waiters.remove(r.rid)
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", e.callErr("queue", err)
	}
	select {
	case res := <-w.done:
		return res.msg, res.err
	case <-ctx.Done():
		e.waiters.remove(r.rid)
		return "", ctx.Err()
	case <-e.stopping:
		e.waiters.remove(r.rid)
		return "", engine.ErrClosed
	}
}

// waitFed waits (bounded) until this node's tailer has fed epoch to the sinks.
func (e *Engine) waitFed(ctx context.Context, ep hunt.Epoch) {
	if int(ep.Partition) >= len(e.parts) {
		return
	}
	ps := &e.parts[ep.Partition]
	var timeout <-chan time.Time
	for {
		seq, _, ch := ps.get()
		if seq >= ep.Seq {
			return
		}
		if timeout == nil {
			t := time.NewTimer(sinkWaitMax)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-ch:
		case <-timeout:
			return
		case <-ctx.Done():
			return
		case <-e.stopping:
			return
		}
	}
}

// waiter is a queued call waiting for its answer.
type waiter struct {
	rid    string
	player hunt.PlayerID
	key    string
	fp     string
	since  time.Time
	done   chan waitResult // buffered: the sender never blocks
}

type waitResult struct {
	msg string
	err error
}

// waiters is the node's table of queued calls by request id.
type waiters struct {
	mu sync.Mutex
	m  map[string]*waiter
}

func (ws *waiters) add(w *waiter) {
	ws.mu.Lock()
	if ws.m == nil {
		ws.m = make(map[string]*waiter)
	}
	ws.m[w.rid] = w
	ws.mu.Unlock()
}

func (ws *waiters) remove(rid string) {
	ws.mu.Lock()
	delete(ws.m, rid)
	ws.mu.Unlock()
}

// complete hands res to the waiter of rid, if it still waits.
func (ws *waiters) complete(rid string, res waitResult) {
	ws.mu.Lock()
	w := ws.m[rid]
	delete(ws.m, rid)
	ws.mu.Unlock()
	if w != nil {
		w.done <- res
	}
}

func (ws *waiters) failAll(err error) {
	ws.mu.Lock()
	m := ws.m
	ws.m = nil
	ws.mu.Unlock()
	for _, w := range m {
		w.done <- waitResult{err: err}
	}
}

// older lists the waiters that have waited longer than d.
func (ws *waiters) older(d time.Duration) []*waiter {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	var out []*waiter
	for _, w := range ws.m {
		if time.Since(w.since) > d {
			out = append(out, w)
		}
	}
	return out
}

func (ws *waiters) len() int {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return len(ws.m)
}

// listen receives this node's answers ("<rid> <answer>") and hands them to
// the waiters. Pub/Sub is at-most-once: after a reconnection the waiters
// ask Redis for their decisions (recheck).
func (e *Engine) listen(ctx context.Context, ps *goredis.PubSub) {
	for {
		msg, err := ps.Receive(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			e.kickHealth()
			if !pause(ctx, e.cfg.HealthInterval) {
				return
			}
			continue
		}
		switch m := msg.(type) {
		case *goredis.Subscription:
			// (Re)subscribed: answers published while we were away are lost;
			// the maintenance loop asks Redis for the waiting calls' decisions.
			select {
			case e.recheckNow <- struct{}{}:
			default:
			}
		case *goredis.Message:
			rid, ans, ok := strings.Cut(m.Payload, " ")
			if ok {
				e.waiters.complete(rid, waitResult{msg: ans})
			}
		}
	}
}

// recheck asks Redis for the decisions of the waiters older than age and
// answers those already decided (from the idempotency record and the log).
func (e *Engine) recheck(ctx context.Context, age time.Duration) {
	ws := e.waiters.older(age)
	if len(ws) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, e.cfg.CallTimeout)
	defer cancel()
	pipe := e.rdb.Pipeline()
	recs := make([]*goredis.StringCmd, len(ws))
	for i, w := range ws {
		recs[i] = pipe.HGet(cctx, e.ks.idem(w.player), w.key)
	}
	if _, err := pipe.Exec(cctx); err != nil && !errors.Is(err, goredis.Nil) {
		return
	}
	for i, w := range ws {
		f := strings.Fields(recs[i].Val())
		if len(f) != 4 {
			continue // not decided yet
		}
		if f[0] != w.fp {
			e.waiters.complete(w.rid, waitResult{msg: "err key_reused"})
			continue
		}
		p, err1 := strconv.ParseUint(f[1], 10, 32)
		seq, err2 := strconv.ParseUint(f[2], 10, 64)
		if err1 != nil || err2 != nil || p >= uint64(e.cfg.Partitions) {
			continue
		}
		msgs, err := e.rdb.XRangeN(cctx, keyLog(geo.Partition(p)), logID(hunt.Seq(seq)), logID(hunt.Seq(seq)), 1).Result()
		if err != nil || len(msgs) != 1 {
			continue
		}
		ev, _ := msgs[0].Values["e"].(string)
		e.waiters.complete(w.rid, waitResult{msg: "ok " + f[3] + " " + ev})
	}
}
