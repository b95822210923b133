package embedded

import (
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// The concurrent indexes shared by callers and partition writers. Each is
// sharded by a hash of its key so that callers on different keys rarely meet
// on one mutex; no lookup formats or allocates a key (struct keys of strings).

const shardCount = 256

func fnv32(h uint32, s string) uint32 {
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

const fnv32Offset = 2166136261

// ---- hotspots ----

// slot is one hotspot. def and granted are published by the owning partition
// writer after the batch that changed them is durable, and read by anyone;
// the fields below them belong to the writer alone (and to Open before any
// writer starts).
type slot struct {
	def     atomic.Pointer[hunt.Hotspot] // nil until the first import is durable
	granted atomic.Int64                 // durable grants
	hunt    *huntEntry
	part    geo.Partition // fixed when the slot is created (see store.go)

	// Writer-owned: the state decisions are made against, including the
	// effects of the batch being built.
	wdef     *hunt.Hotspot
	decided  int64
	claimers map[hunt.PlayerID]struct{}
}

type slotKey struct {
	hunt    hunt.HuntID
	hotspot hunt.HotspotID
}

type slotShard struct {
	mu sync.RWMutex
	m  map[slotKey]*slot
}

type slotIndex struct{ shards [shardCount]slotShard }

func (x *slotIndex) shard(k slotKey) *slotShard {
	return &x.shards[fnv32(fnv32(fnv32Offset, string(k.hunt)), string(k.hotspot))%shardCount]
}

func (x *slotIndex) get(k slotKey) *slot {
	sh := x.shard(k)
	sh.mu.RLock()
	s := sh.m[k]
	sh.mu.RUnlock()
	return s
}

func (x *slotIndex) put(k slotKey, s *slot) {
	sh := x.shard(k)
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = make(map[slotKey]*slot)
	}
	sh.m[k] = s
	sh.mu.Unlock()
}

// getOrCreate returns the slot of k, creating it with mk if missing.
func (x *slotIndex) getOrCreate(k slotKey, mk func() *slot) *slot {
	sh := x.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if s := sh.m[k]; s != nil {
		return s
	}
	if sh.m == nil {
		sh.m = make(map[slotKey]*slot)
	}
	s := mk()
	sh.m[k] = s
	return s
}

func (x *slotIndex) each(fn func(*slot)) {
	for i := range x.shards {
		sh := &x.shards[i]
		sh.mu.RLock()
		for _, s := range sh.m {
			fn(s)
		}
		sh.mu.RUnlock()
	}
}

// ---- hunts and the spatial index ----

// Spatial levels: cells of geohash length cellLenFinest, one shorter, ... A
// query uses the finest level whose cells cover its radius in at most
// ringsMax rings (geo.Neighbors' own cap), so a 50 m query looks at a few
// 600 m cells and a 50 km one at a few 20 km cells.
const (
	spatialLevels = 3
	cellLenFinest = 6
	ringsMax      = 8
)

func cellLen(level int) int { return cellLenFinest - level }

// huntEntry is one hunt: its definition (swapped whole by PutHunt) and the
// spatial index of its published hotspots.
type huntEntry struct {
	id  hunt.HuntID
	def atomic.Pointer[hunt.Hunt]
	mu  struct {
		sync.RWMutex
		all   []*slot // every published slot, append-only
		cells [spatialLevels]map[string][]*slot
	}
}

func newHuntEntry(id hunt.HuntID) *huntEntry {
	he := &huntEntry{id: id}
	for i := range he.mu.cells {
		he.mu.cells[i] = make(map[string][]*slot)
	}
	return he
}

// publish records that s now has definition def (old was its previous one,
// nil for a new slot) and moves it between cells if its position changed.
func (he *huntEntry) publish(s *slot, old, def *hunt.Hotspot) {
	if old != nil && old.Geohash[:cellLenFinest] == def.Geohash[:cellLenFinest] {
		return
	}
	he.mu.Lock()
	defer he.mu.Unlock()
	if old == nil {
		he.mu.all = append(he.mu.all, s)
	}
	for lvl := range spatialLevels {
		n := cellLen(lvl)
		if old != nil {
			c := old.Geohash[:n]
			list := he.mu.cells[lvl][c]
			for i, x := range list {
				if x == s {
					list[i] = list[len(list)-1]
					list[len(list)-1] = nil
					list = list[:len(list)-1]
					break
				}
			}
			if len(list) == 0 {
				delete(he.mu.cells[lvl], c)
			} else {
				he.mu.cells[lvl][c] = list
			}
		}
		c := def.Geohash[:n]
		he.mu.cells[lvl][c] = append(he.mu.cells[lvl][c], s)
	}
}

// all returns the published slots; the slice is shared and must not be changed.
func (he *huntEntry) all() []*slot {
	he.mu.RLock()
	defer he.mu.RUnlock()
	return he.mu.all
}

// candidates returns the slots in cells covering radiusM around lat/lon (a superset).
func (he *huntEntry) candidates(lat, lon, radiusM float64) []*slot {
	lvl := levelFor(lat, radiusM)
	if lvl < 0 {
		return he.all()
	}
	cells := geo.Neighbors(lat, lon, radiusM, cellLen(lvl))
	he.mu.RLock()
	defer he.mu.RUnlock()
	var out []*slot
	for _, c := range cells {
		out = append(out, he.mu.cells[lvl][c]...)
	}
	return out
}

// levelFor picks the finest level whose cells cover radiusM around a point
// at latitude lat in at most ringsMax-1 rings (one ring of slack for cells
// narrowing toward the poles), or -1 when none does (near the poles): the
// caller then scans the whole hunt.
func levelFor(lat, radiusM float64) int {
	const mPerDeg = 111_320.0
	cos := cosDeg(lat)
	for lvl := range spatialLevels {
		bits := 5 * cellLen(lvl)
		lonBits, latBits := (bits+1)/2, bits/2
		h := 180.0 / float64(uint64(1)<<latBits) * mPerDeg
		w := 360.0 / float64(uint64(1)<<lonBits) * mPerDeg * cos
		if w < 1 {
			continue
		}
		if radiusM/h <= ringsMax-1 && radiusM/w <= ringsMax-1 {
			return lvl
		}
	}
	return -1
}

func cosDeg(d float64) float64 { return math.Cos(d * math.Pi / 180) }

// ---- hunts registry ----

// huntRegistry holds every hunt in a copy-on-write map: claims read it without
// a lock; PutHunt (rare) copies it under mu.
type huntRegistry struct {
	mu   sync.Mutex
	snap atomic.Pointer[map[hunt.HuntID]*huntEntry]
}

func (r *huntRegistry) get(id hunt.HuntID) *huntEntry {
	if m := r.snap.Load(); m != nil {
		return (*m)[id]
	}
	return nil
}

func (r *huntRegistry) list() []*huntEntry {
	var out []*huntEntry
	if m := r.snap.Load(); m != nil {
		for _, he := range *m {
			out = append(out, he)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// ---- last positions ----

type posKey struct {
	player hunt.PlayerID
	hunt   hunt.HuntID
}

type position struct {
	lat, lon float64
	at       time.Time
	epoch    hunt.Epoch
}

// later orders wallet and position changes from different partitions the same
// way live and on replay: by time, then partition, then seq. Live partitions
// race, so "last applied" would not be a fold of the log; "latest" is (I7).
func later(at time.Time, e hunt.Epoch, than time.Time, te hunt.Epoch) bool {
	if !at.Equal(than) {
		return at.After(than)
	}
	if e.Partition != te.Partition {
		return e.Partition > te.Partition
	}
	return e.Seq > te.Seq
}

type posShard struct {
	mu sync.Mutex
	m  map[posKey]position
}

type posIndex struct{ shards [shardCount]posShard }

func (x *posIndex) shard(k posKey) *posShard {
	return &x.shards[fnv32(fnv32(fnv32Offset, string(k.player)), string(k.hunt))%shardCount]
}

func (x *posIndex) get(k posKey) hunt.Position {
	sh := x.shard(k)
	sh.mu.Lock()
	p := sh.m[k]
	sh.mu.Unlock()
	return hunt.Position{Lat: p.lat, Lon: p.lon, At: p.at}
}

// update keeps the latest of the stored position and p.
func (x *posIndex) update(k posKey, p position) {
	sh := x.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old, ok := sh.m[k]; ok && !later(p.at, p.epoch, old.at, old.epoch) {
		return
	}
	if sh.m == nil {
		sh.m = make(map[posKey]position)
	}
	sh.m[k] = p
}

// ---- wallets ----

// wallet is a player's balance across hunts. balance changes by atomic adds
// only: credits (after their batch is durable) from any partition, and spend
// reservations (before their batch commits) from the player's one spend
// partition, which alone subtracts; so a balance read by that partition can
// only have grown when it subtracts, and never goes below zero (I4).
type wallet struct {
	balance atomic.Int64
	mu      sync.Mutex // guards epoch and at
	epoch   hunt.Epoch
	at      time.Time
}

// change adds delta and records the change's epoch (replay, credits).
func (w *wallet) change(delta int64, at time.Time, e hunt.Epoch) {
	w.balance.Add(delta)
	w.touch(at, e)
}

// touch records that the event at epoch e changed the wallet.
func (w *wallet) touch(at time.Time, e hunt.Epoch) {
	w.mu.Lock()
	if later(at, e, w.at, w.epoch) {
		w.at, w.epoch = at, e
	}
	w.mu.Unlock()
}

type walletShard struct {
	mu sync.Mutex
	m  map[hunt.PlayerID]*wallet
}

type walletIndex struct{ shards [shardCount]walletShard }

func (x *walletIndex) shard(p hunt.PlayerID) *walletShard {
	return &x.shards[fnv32(fnv32Offset, string(p))%shardCount]
}

func (x *walletIndex) get(p hunt.PlayerID) *wallet {
	sh := x.shard(p)
	sh.mu.Lock()
	w := sh.m[p]
	sh.mu.Unlock()
	return w
}

func (x *walletIndex) getOrCreate(p hunt.PlayerID) *wallet {
	sh := x.shard(p)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	w := sh.m[p]
	if w == nil {
		if sh.m == nil {
			sh.m = make(map[hunt.PlayerID]*wallet)
		}
		w = &wallet{}
		sh.m[p] = w
	}
	return w
}

func (x *walletIndex) each(fn func(hunt.PlayerID, *wallet)) {
	for i := range x.shards {
		sh := &x.shards[i]
		sh.mu.Lock()
		for id, w := range sh.m {
			fn(id, w)
		}
		sh.mu.Unlock()
	}
}
