package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// importTimeoutCalls × CallTimeout bounds one import call: thousands of
// hotspots in one Function call can take seconds on a busy Redis.
const importTimeoutCalls = 10

// hotspotFields are the fields of a hotspot hash, in this order.
var hotspotFields = []string{"la", "lo", "t", "g", "rw", "pt", "oa", "ca", "gh"}

// PutHunt creates or updates a hunt. The Function reads the decision fields
// (window, radius, speed); j keeps the hunt as given for Hunt and Hunts.
func (e *Engine) PutHunt(ctx context.Context, h hunt.Hunt) error {
	if err := h.Normalize(); err != nil { // fills the default radius
		return err
	}
	j, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("redis engine: encode hunt: %w", err)
	}
	decision := []any{"sa", formatNS20(h.StartsAt), "ea", formatNS20(h.EndsAt),
		"r", formatFloat(h.ClaimRadiusM), "v", formatFloat(h.MaxSpeedMps)}
	if e.cc != nil {
		return e.putHuntCluster(ctx, h.ID, j, decision)
	}
	pipe := e.rdb.TxPipeline()
	pipe.HSet(ctx, keyHunt(h.ID), append([]any{"j", j}, decision...)...)
	pipe.SAdd(ctx, keyHunts, string(h.ID))
	if _, err := pipe.Exec(ctx); err != nil {
		return e.callErr("put hunt", err)
	}
	return nil
}

// putHuntCluster writes a hunt to a cluster: its decision fields to a copy
// in every partition's slot first (the claim Function reads them there),
// then the hunt, then the list of hunts. Not atomic across slots: a failed
// call leaves some copies new and is answered with an error, and the retry
// the caller makes converges; while copies differ, claims in different
// partitions may see the old or the new window, radius or speed.
func (e *Engine) putHuntCluster(ctx context.Context, id hunt.HuntID, j []byte, decision []any) error {
	pipe := e.rdb.Pipeline()
	for p := range e.cfg.Partitions {
		pipe.HSet(ctx, huntCopy(geo.Partition(p), id), decision...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return e.callErr("put hunt", err)
	}
	if err := e.rdb.HSet(ctx, e.ks.hunt(id), append([]any{"j", j}, decision...)...).Err(); err != nil {
		return e.callErr("put hunt", err)
	}
	if err := e.rdb.SAdd(ctx, keyHunts, string(id)).Err(); err != nil {
		return e.callErr("put hunt", err)
	}
	return nil
}

// Hunt returns a hunt or hunt.ErrUnknownHunt.
func (e *Engine) Hunt(ctx context.Context, id hunt.HuntID) (hunt.Hunt, error) {
	j, err := e.rdb.HGet(ctx, e.ks.hunt(id), "j").Bytes()
	if errors.Is(err, goredis.Nil) {
		return hunt.Hunt{}, hunt.ErrUnknownHunt
	}
	if err != nil {
		return hunt.Hunt{}, e.callErr("get hunt", err)
	}
	var h hunt.Hunt
	if err := json.Unmarshal(j, &h); err != nil {
		return hunt.Hunt{}, fmt.Errorf("%w: hunt %s: %v", errCorrupt, id, err)
	}
	return h, nil
}

// Hunts lists every hunt, ordered by id.
func (e *Engine) Hunts(ctx context.Context) ([]hunt.Hunt, error) {
	ids, err := e.rdb.SMembers(ctx, keyHunts).Result()
	if err != nil {
		return nil, e.callErr("list hunts", err)
	}
	slices.Sort(ids)
	pipe := e.rdb.Pipeline()
	cmds := make([]*goredis.StringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGet(ctx, e.ks.hunt(hunt.HuntID(id)), "j")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return nil, e.callErr("list hunts", err)
	}
	out := make([]hunt.Hunt, 0, len(ids))
	for i, c := range cmds {
		var h hunt.Hunt
		if err := json.Unmarshal([]byte(c.Val()), &h); err != nil {
			return nil, fmt.Errorf("%w: hunt %s: %v", errCorrupt, ids[i], err)
		}
		out = append(out, h)
	}
	return out, nil
}

// ImportHotspots upserts normalized hotspots of one hunt in one Function
// call (atomic, durable). A new hotspot's partition is
// geo.PartitionOf(geohash, PrefixLen, Partitions); an existing one keeps
// its partition (its state lives there) even when it moves. Tickets are
// clamped to at least what was granted (I1).
func (e *Engine) ImportHotspots(ctx context.Context, id hunt.HuntID, hs []hunt.Hotspot) error {
	if len(hs) > engine.ImportBatchMax {
		return fmt.Errorf("%w: %d hotspots in one import, at most %d", hunt.ErrInvalid, len(hs), engine.ImportBatchMax)
	}
	if len(hs) == 0 {
		if _, err := e.Hunt(ctx, id); err != nil {
			return err
		}
		return nil
	}
	args := make([]any, 0, 2+10*len(hs))
	args = append(args, string(id), len(hs))
	for i := range hs {
		s := hs[i] // a copy: the caller's slice is not ours to change
		s.Hunt = id
		if err := s.Normalize(); err != nil {
			return fmt.Errorf("hotspot %d (%q): %w", i, s.ID, err)
		}
		gh := s.Geohash
		p := geo.PartitionOf(gh, e.cfg.PrefixLen, e.cfg.Partitions)
		args = append(args, string(s.ID), uint64(p), formatFloat(s.Lat), formatFloat(s.Lon), s.Tickets, s.Reward, s.Points,
			formatNS20(s.OpensAt), formatNS20(s.ClosesAt), gh)
	}
	ctx, cancel := context.WithTimeout(ctx, importTimeoutCalls*e.cfg.CallTimeout)
	defer cancel()
	if e.cc != nil {
		return e.importCluster(ctx, id, args[2:])
	}
	msg, err := e.big.FCall(ctx, "cairn_import", []string{keyHunt(id), keyHsIndex(id), keyGeo(id)}, args...).Text()
	if err != nil {
		return e.callErr("import hotspots", err)
	}
	if msg != "ok" {
		a, err := parseAnswer(msg)
		if err != nil {
			return err
		}
		return codeErr(a.code)
	}
	return nil
}

// importCluster is ImportHotspots on a cluster, in single-slot steps: read
// the partitions the index has pinned, upsert the hotspots in each
// partition's slot (cairn_import_hotspots), then pin and index them in the
// hunt's slot (cairn_import_index). A hotspot pinned meanwhile to another
// partition (a concurrent first import of it elsewhere) is written there and
// indexed again. Each step is idempotent: an import that fails part way is
// answered with an error and a retry completes it; until then the hotspots
// written but not yet indexed are neither listed nor claimable.
// flat holds 10 values per hotspot: id partition lat lon tickets reward points opens closes geohash.
func (e *Engine) importCluster(ctx context.Context, id hunt.HuntID, flat []any) error {
	n, err := e.big.Exists(ctx, e.ks.hunt(id)).Result()
	if err != nil {
		return e.callErr("import hotspots", err)
	}
	if n == 0 {
		return hunt.ErrUnknownHunt
	}
	ids := make([]string, 0, len(flat)/10)
	for i := 0; i < len(flat); i += 10 {
		ids = append(ids, flat[i].(string))
	}
	pinned, err := e.big.HMGet(ctx, e.ks.hsIndex(id), ids...).Result()
	if err != nil {
		return e.callErr("import hotspots", err)
	}
	for i, v := range pinned {
		if s, ok := v.(string); ok {
			p, err := strconv.ParseUint(s, 10, 32)
			if err != nil || p >= uint64(e.cfg.Partitions) {
				return fmt.Errorf("%w: hotspot index %s/%s holds %q", errCorrupt, id, ids[i], s)
			}
			flat[10*i+1] = p
		}
	}
	todo := make([]int, len(ids))
	for i := range todo {
		todo[i] = i
	}
	for round := 0; len(todo) > 0; round++ {
		if round == 3 {
			return fmt.Errorf("%w: import hotspots: the index keeps moving %d hotspots", engine.ErrUnavailable, len(todo))
		}
		byPart := map[uint64][]int{}
		for _, i := range todo {
			p := flat[10*i+1].(uint64)
			byPart[p] = append(byPart[p], i)
		}
		pipe := e.big.Pipeline() // Exec answers the first failed call's error
		for p, is := range byPart {
			args := []any{string(id), p, len(is)}
			for _, i := range is {
				args = append(args, flat[10*i], flat[10*i+2], flat[10*i+3], flat[10*i+4], flat[10*i+5], flat[10*i+6],
					flat[10*i+7], flat[10*i+8], flat[10*i+9])
			}
			pipe.FCall(ctx, "cairn_import_hotspots", []string{keySeq(geo.Partition(p))}, args...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return e.callErr("import hotspots", err)
		}
		args := []any{len(todo)}
		for _, i := range todo {
			args = append(args, flat[10*i], flat[10*i+1], flat[10*i+9])
		}
		res, err := e.big.FCall(ctx, "cairn_import_index",
			[]string{e.ks.hunt(id), e.ks.hsIndex(id), e.ks.geo(id), e.ks.hsGeohash(id)}, args...).Result()
		if err != nil {
			return e.callErr("import hotspots", err)
		}
		if s, ok := res.(string); ok {
			a, err := parseAnswer(s)
			if err != nil {
				return err
			}
			return codeErr(a.code)
		}
		moved, _ := res.([]any)
		at := make(map[string]int, len(todo))
		for _, i := range todo {
			at[flat[10*i].(string)] = i
		}
		todo = todo[:0]
		for k := 0; k+1 < len(moved); k += 2 {
			sid, _ := moved[k].(string)
			ps, _ := moved[k+1].(string)
			p, err := strconv.ParseUint(ps, 10, 32)
			i, ok := at[sid]
			if err != nil || !ok || p >= uint64(e.cfg.Partitions) {
				return fmt.Errorf("%w: import index answered %v", errCorrupt, moved)
			}
			flat[10*i+1] = p
			todo = append(todo, i)
		}
	}
	return nil
}

// hotspotView builds a view from a hotspot hash's fields (hotspotFields order).
func hotspotView(h hunt.HuntID, id hunt.HotspotID, v []any) (hunt.HotspotView, bool) {
	if len(v) != len(hotspotFields) {
		return hunt.HotspotView{}, false
	}
	f := make([]string, len(v))
	for i, x := range v {
		s, ok := x.(string)
		if !ok {
			return hunt.HotspotView{}, false
		}
		f[i] = s
	}
	lat, err1 := strconv.ParseFloat(f[0], 64)
	lon, err2 := strconv.ParseFloat(f[1], 64)
	t, err3 := strconv.ParseInt(f[2], 10, 64)
	g, err4 := strconv.ParseInt(f[3], 10, 64)
	rw, err5 := strconv.ParseInt(f[4], 10, 64)
	pt, err6 := strconv.ParseInt(f[5], 10, 64)
	oa, err7 := parseNS20(f[6])
	ca, err8 := parseNS20(f[7])
	if errors.Join(err1, err2, err3, err4, err5, err6, err7, err8) != nil {
		return hunt.HotspotView{}, false
	}
	return hunt.HotspotView{
		Hotspot: hunt.Hotspot{Hunt: h, ID: id, Lat: lat, Lon: lon, Tickets: t, Reward: rw, Points: pt,
			OpensAt: oa, ClosesAt: ca, Geohash: f[8]},
		TicketsLeft: max(t-g, 0),
	}, true
}

// Hotspots calls fn for every hotspot of a hunt; see engine.Engine.
func (e *Engine) Hotspots(ctx context.Context, id hunt.HuntID, fn func(hunt.HotspotView) error) error {
	n, err := e.rdb.Exists(ctx, e.ks.hunt(id)).Result()
	if err != nil {
		return e.callErr("list hotspots", err)
	}
	if n == 0 {
		return hunt.ErrUnknownHunt
	}
	var cursor uint64
	for {
		kv, next, err := e.rdb.HScan(ctx, e.ks.hsIndex(id), cursor, "", 512).Result()
		if err != nil {
			return e.callErr("list hotspots", err)
		}
		pipe := e.rdb.Pipeline()
		ids := make([]hunt.HotspotID, 0, len(kv)/2)
		cmds := make([]*goredis.SliceCmd, 0, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			p, err := strconv.ParseUint(kv[i+1], 10, 32)
			if err != nil {
				return fmt.Errorf("%w: hotspot index %s: %q", errCorrupt, kv[i], kv[i+1])
			}
			ids = append(ids, hunt.HotspotID(kv[i]))
			cmds = append(cmds, pipe.HMGet(ctx, keyHotspot(geo.Partition(p), id, hunt.HotspotID(kv[i])), hotspotFields...))
		}
		if len(cmds) > 0 {
			if _, err := pipe.Exec(ctx); err != nil {
				return e.callErr("list hotspots", err)
			}
		}
		for i, c := range cmds {
			v, ok := hotspotView(id, ids[i], c.Val())
			if !ok {
				return fmt.Errorf("%w: hotspot %s/%s", errCorrupt, id, ids[i])
			}
			if err := fn(v); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// Wallet returns the player's balance (zero for an unknown player).
func (e *Engine) Wallet(ctx context.Context, player hunt.PlayerID) (hunt.Wallet, error) {
	v, err := e.rdb.HMGet(ctx, e.ks.wallet(player), "b", "p", "s").Result()
	if err != nil {
		return hunt.Wallet{}, e.callErr("wallet", err)
	}
	w := hunt.Wallet{Player: player}
	num := func(x any) int64 {
		s, _ := x.(string)
		n, _ := strconv.ParseInt(s, 10, 64)
		return n
	}
	w.Balance = num(v[0])
	w.Epoch = hunt.Epoch{Partition: geo.Partition(num(v[1])), Seq: hunt.Seq(num(v[2]))}
	return w, nil
}

// Ledger returns up to limit of the player's wallet changes, newest first.
func (e *Engine) Ledger(ctx context.Context, player hunt.PlayerID, limit int) ([]hunt.LedgerEntry, error) {
	if limit <= 0 {
		return nil, hunt.Invalid("limit", "must be positive")
	}
	limit = min(limit, engine.LedgerLimitMax)
	recs, err := e.rdb.LRange(ctx, e.ks.ledger(player), 0, int64(limit-1)).Result()
	if err != nil {
		return nil, e.callErr("ledger", err)
	}
	out := make([]hunt.LedgerEntry, 0, len(recs))
	for _, r := range recs {
		le, err := decodeLedger(r)
		if err != nil {
			return nil, err
		}
		out = append(out, le)
	}
	return out, nil
}
