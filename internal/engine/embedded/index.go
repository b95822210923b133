package embedded

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

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

// ---- hunts ----

// huntEntry is one hunt: its definition (swapped whole by PutHunt), its
// ordinal in the hotspot table and the spatial index of its published
// hotspots (spatial.go).
type huntEntry struct {
	id      hunt.HuntID
	ord     uint32
	def     atomic.Pointer[hunt.Hunt]
	spatial *spatial
}

// huntRegistry holds every hunt in copy-on-write tables, by id and by
// ordinal: claims read them without a lock; add (rare) copies them under mu.
type huntRegistry struct {
	mu    sync.Mutex
	snap  atomic.Pointer[map[hunt.HuntID]*huntEntry]
	byOrd atomic.Pointer[[]*huntEntry]
}

func (r *huntRegistry) init() {
	r.snap.Store(&map[hunt.HuntID]*huntEntry{})
	r.byOrd.Store(&[]*huntEntry{})
}

func (r *huntRegistry) get(id hunt.HuntID) *huntEntry {
	if m := r.snap.Load(); m != nil {
		return (*m)[id]
	}
	return nil
}

func (r *huntRegistry) ord(o uint32) *huntEntry { return (*r.byOrd.Load())[o] }

// add registers a new hunt with definition h; the caller holds mu.
func (r *huntRegistry) add(h *hunt.Hunt) *huntEntry {
	ords := *r.byOrd.Load()
	he := &huntEntry{id: h.ID, ord: uint32(len(ords)), spatial: newSpatial()}
	he.def.Store(h)
	old := *r.snap.Load()
	m := make(map[hunt.HuntID]*huntEntry, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[h.ID] = he
	ords = append(ords, he)
	r.byOrd.Store(&ords)
	r.snap.Store(&m)
	return he
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
//
// A reservation is not durable yet: a crash before its commit undoes it. So
// a wallet read answers a balance only once every spend it includes is
// durable: reserved counts the spends applied, settled those published, and
// a reader that saw more reserved than settled waits on settledCh
// (Engine.Wallet). Spends of a player are applied and published in one
// partition's seq order, so settled >= n means the first n are durable.
type wallet struct {
	balance   atomic.Int64
	reserved  atomic.Uint64 // spends applied (their amount subtracted from balance)
	mu        sync.Mutex    // guards epoch, at, settled and settledCh
	epoch     hunt.Epoch
	at        time.Time
	settled   uint64        // spends published (durable)
	settledCh chan struct{} // made by a waiting reader, closed by the next settle
}

// reserve subtracts a spend's amount before its commit (apply). The count
// comes first, so a reader that sees the lowered balance sees it too.
func (w *wallet) reserve(amount int64) {
	w.reserved.Add(1)
	w.balance.Add(-amount)
}

// settle records that the spend at epoch e is durable (publish) and wakes
// the readers waiting for it.
func (w *wallet) settle(at time.Time, e hunt.Epoch) {
	w.mu.Lock()
	w.settled++
	if later(at, e, w.at, w.epoch) {
		w.at, w.epoch = at, e
	}
	if w.settledCh != nil {
		close(w.settledCh)
		w.settledCh = nil
	}
	w.mu.Unlock()
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
