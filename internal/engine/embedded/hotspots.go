package embedded

import (
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// The hotspot table: every hotspot of every hunt, numbered densely from 0 in
// the order they were first imported, its fields in flat arrays (a struct of
// arrays, chunkLen hotspots per chunk) rather than an object per hotspot, so
// that millions of hotspots cost a few dozen bytes each and no pointer the
// garbage collector must follow.
//
// Per hotspot: the partition and the id (fixed when the hotspot is created,
// before its index can be found), the published coordinates, terms and
// granted count (written only by the committer's settle goroutine, or by
// Open, read by anyone through atomics; the definition's fields together
// under the chunk's seqlock), and the decided count (written and read only
// by the owning partition's writer). Coordinates are kept at 1e-7 degree
// (hunt.Hotspot.Normalize rounds them so). What many hotspots share (the
// hunt, tickets, reward, points and opening window) is one entry of a table
// of distinct terms, and each hotspot holds its entry's index: hunts hand
// out a few tiers of tickets and rewards, so the table stays small (and at
// worst, every hotspot's terms distinct, costs 12 to 20 bytes more per
// hotspot than keeping the fields in place). A hotspot's hunt never changes, so it
// is read from whatever terms entry the hotspot has. Tickets, reward and
// points fit 32 bits (hunt.TicketsMax, RewardMax, PointsMax); the window is
// an index into a table of distinct windows. The geohash is derived from
// the coordinates. Entries are never removed while the process runs (a
// re-import that changes a hotspot's terms adds one if they are new); Open
// keeps only those in use.
//
// Ids are bytes in an arena of fixed blocks (never moved once written); a
// lookup is an open-addressing table of indexes keyed by (hunt, id), read
// without a lock and rebuilt under the creation mutex when it grows.

const (
	chunkBits   = 14
	chunkLen    = 1 << chunkBits
	idBlockBits = 20
	idBlockLen  = 1 << idBlockBits
)

// spotDef is a published (or writer-decided) definition. window 0 means "no
// definition": the hotspot was created by an import whose batch is not
// durable yet.
type spotDef struct {
	lat, lon                int32
	tickets, reward, points uint32
	window                  uint32 // 1 + index in the window table
}

func (d spotDef) exists() bool { return d.window != 0 }

type chunk struct {
	// Fixed at creation.
	part  [chunkLen]uint16
	idRef [chunkLen]uint32 // id block << idBlockBits | offset
	idLen [chunkLen]uint8

	// Published: one writer (the settle goroutine, or Open), any reader.
	ver     atomic.Uint32 // seqlock over the definition fields: odd while they change
	lat     [chunkLen]atomic.Int32
	lon     [chunkLen]atomic.Int32
	terms   [chunkLen]atomic.Uint32 // index in the terms table
	granted [chunkLen]atomic.Uint32

	// Writer-owned: the grants decided, durable or not.
	decided [chunkLen]uint32
}

// window is when a hotspot is open: unix ns, 0 = unbounded on that side.
type window struct{ opens, closes int64 }

// terms is what a hotspot shares with others: its hunt's ordinal
// (huntRegistry) and the definition's fields but the coordinates. window 0
// is "no definition" (see spotDef).
type terms struct{ hunt, tickets, reward, points, window uint32 }

func (x terms) hash() uint32 {
	h := uint64(x.hunt)<<32 | uint64(x.tickets)
	h = (h ^ uint64(x.reward)<<32 ^ uint64(x.points)) * 0x9e3779b97f4a7c15
	h = (h ^ uint64(x.window)) * 0xff51afd7ed558ccd
	return uint32(h >> 32)
}

type hotspotTable struct {
	mu     sync.Mutex // creation, and the window table's map
	chunks atomic.Pointer[[]*chunk]
	n      atomic.Uint32
	lookup atomic.Pointer[[]atomic.Uint32] // 0 empty, else index+1; len a power of two
	blocks atomic.Pointer[[]*[idBlockLen]byte]
	used   int // bytes used in the last id block (under mu)

	windows  atomic.Pointer[[]window] // append-only; index 0 is "always open"
	windowOf map[window]uint32        // under mu

	terms   atomic.Pointer[[]terms] // append-only
	termsOf []uint32                // under mu: open addressing over terms, 0 empty, else index+1
}

func (t *hotspotTable) init() {
	t.chunks.Store(&[]*chunk{})
	lk := make([]atomic.Uint32, 1024)
	t.lookup.Store(&lk)
	t.blocks.Store(&[]*[idBlockLen]byte{})
	t.used = idBlockLen
	ws := []window{{}}
	t.windows.Store(&ws)
	t.windowOf = map[window]uint32{{}: 0}
	t.terms.Store(&[]terms{})
	t.termsOf = make([]uint32, 64)
}

// intern returns the index of x in the terms table, adding it if new. The
// caller holds mu, or is Open.
func (t *hotspotTable) intern(x terms) uint32 {
	old := *t.terms.Load()
	mask := uint32(len(t.termsOf) - 1)
	j := x.hash() & mask
	for ; t.termsOf[j] != 0; j = (j + 1) & mask {
		if old[t.termsOf[j]-1] == x {
			return t.termsOf[j] - 1
		}
	}
	ts := append(old, x)
	t.terms.Store(&ts) // before any chunk holds the new index
	i := uint32(len(ts) - 1)
	if len(ts)*2 > len(t.termsOf) {
		t.termsOf = make([]uint32, len(t.termsOf)*2)
		mask = uint32(len(t.termsOf) - 1)
		for k := range ts {
			j := ts[k].hash() & mask
			for t.termsOf[j] != 0 {
				j = (j + 1) & mask
			}
			t.termsOf[j] = uint32(k) + 1
		}
		return i
	}
	t.termsOf[j] = i + 1
	return i
}

// termsAt returns hotspot i's terms entry.
func (t *hotspotTable) termsAt(i uint32) terms {
	x := t.chunk(i).terms[i&(chunkLen-1)].Load()
	return (*t.terms.Load())[x]
}

func (t *hotspotTable) len() uint32 { return t.n.Load() }

func (t *hotspotTable) chunk(i uint32) *chunk { return (*t.chunks.Load())[i>>chunkBits] }

func spotHash(huntOrd uint32, id string) uint32 {
	h := uint32(fnv32Offset)
	for range 4 {
		h ^= huntOrd & 0xff
		h *= 16777619
		huntOrd >>= 8
	}
	return fnv32(h, id)
}

// id returns the hotspot's id bytes (shared: do not change them).
func (t *hotspotTable) id(i uint32) []byte {
	c := t.chunk(i)
	ref, n := c.idRef[i&(chunkLen-1)], int(c.idLen[i&(chunkLen-1)])
	b := (*t.blocks.Load())[ref>>idBlockBits]
	off := int(ref & (idBlockLen - 1))
	return b[off : off+n]
}

func (t *hotspotTable) is(i, huntOrd uint32, id string) bool {
	return t.huntOf(i) == huntOrd && string(t.id(i)) == id
}

// find returns the index of (hunt, id), without a lock.
func (t *hotspotTable) find(huntOrd uint32, id string) (uint32, bool) {
	lk := *t.lookup.Load()
	mask := uint32(len(lk) - 1)
	for j := spotHash(huntOrd, id) & mask; ; j = (j + 1) & mask {
		v := lk[j].Load()
		if v == 0 {
			return 0, false
		}
		if t.is(v-1, huntOrd, id) {
			return v - 1, true
		}
	}
}

// create returns the index of (hunt, id), creating it in partition part if
// it is new. A new hotspot has no definition until one is published.
func (t *hotspotTable) create(huntOrd uint32, id string, part geo.Partition) uint32 {
	if i, ok := t.find(huntOrd, id); ok {
		return i
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if i, ok := t.find(huntOrd, id); ok {
		return i
	}
	return t.add(terms{hunt: huntOrd}, []byte(id), part, true)
}

// add creates (x.hunt, id) with terms x, which must be new; the caller holds
// mu, or is Open loading the store (whose keys are unique). Unless index is
// set, find will not see it until reindex.
func (t *hotspotTable) add(x terms, id []byte, part geo.Partition, index bool) uint32 {
	i := t.n.Load()
	if i>>chunkBits >= uint32(len(*t.chunks.Load())) {
		cs := append(*t.chunks.Load(), new(chunk))
		t.chunks.Store(&cs)
	}
	if t.used+len(id) > idBlockLen {
		bs := append(*t.blocks.Load(), new([idBlockLen]byte))
		t.blocks.Store(&bs)
		t.used = 0
	}
	bs := *t.blocks.Load()
	copy(bs[len(bs)-1][t.used:], id)
	c, k := t.chunk(i), i&(chunkLen-1)
	c.part[k], c.idLen[k] = uint16(part), uint8(len(id))
	c.terms[k].Store(t.intern(x))
	c.idRef[k] = uint32(len(bs)-1)<<idBlockBits | uint32(t.used)
	t.used += len(id)
	if !index {
		t.n.Store(i + 1)
		return i
	}
	lk := *t.lookup.Load()
	if int(i+1)*2 > len(lk) {
		t.reindexFor(i)
		lk = *t.lookup.Load()
	}
	t.n.Store(i + 1)
	insert(lk, spotHash(x.hunt, string(id)), i) // last: from here on find sees it
	return i
}

// reindex rebuilds the lookup over every hotspot (Open, once loaded).
func (t *hotspotTable) reindex() { t.reindexFor(t.n.Load()) }

// reindexFor publishes a lookup of hotspots 0..n-1 with room for one more.
func (t *hotspotTable) reindexFor(n uint32) {
	size := 1024
	for size < int(n+1)*2 {
		size *= 2
	}
	lk := make([]atomic.Uint32, size)
	for x := range n {
		insert(lk, spotHash(t.huntOf(x), string(t.id(x))), x)
	}
	t.lookup.Store(&lk)
}

func insert(lk []atomic.Uint32, h, i uint32) {
	mask := uint32(len(lk) - 1)
	j := h & mask
	for lk[j].Load() != 0 {
		j = (j + 1) & mask
	}
	lk[j].Store(i + 1)
}

func (t *hotspotTable) huntOf(i uint32) uint32 { return t.termsAt(i).hunt }

func (t *hotspotTable) partOf(i uint32) geo.Partition {
	return geo.Partition(t.chunk(i).part[i&(chunkLen-1)])
}

// def returns the published definition of hotspot i, consistent across its fields.
func (t *hotspotTable) def(i uint32) spotDef {
	c, k := t.chunk(i), i&(chunkLen-1)
	for {
		v := c.ver.Load()
		if v&1 == 0 {
			lat, lon, x := c.lat[k].Load(), c.lon[k].Load(), c.terms[k].Load()
			if c.ver.Load() == v {
				tm := (*t.terms.Load())[x]
				return spotDef{lat: lat, lon: lon, tickets: tm.tickets, reward: tm.reward, points: tm.points, window: tm.window}
			}
		}
	}
}

// termsOfDef is the terms entry of definition d for a hotspot of hunt huntOrd.
func termsOfDef(huntOrd uint32, d spotDef) terms {
	return terms{hunt: huntOrd, tickets: d.tickets, reward: d.reward, points: d.points, window: d.window}
}

// setDef publishes a definition; only the settle goroutine (or Open) calls it.
func (t *hotspotTable) setDef(i uint32, d spotDef) {
	t.mu.Lock()
	x := t.intern(termsOfDef(t.huntOf(i), d))
	t.mu.Unlock()
	c, k := t.chunk(i), i&(chunkLen-1)
	c.ver.Add(1)
	c.lat[k].Store(d.lat)
	c.lon[k].Store(d.lon)
	c.terms[k].Store(x)
	c.ver.Add(1)
}

// load adds hotspot (huntOrd, id) of partition part with definition d and
// granted (and decided) count, for Open only: it is not indexed (see
// reindex), and the fields are set with plain stores, since nothing reads
// the table before Open returns and the atomics' locked instructions were
// most of a snapshot's load (the layout of atomic.Int32/Uint32 is that of
// int32/uint32).
func (t *hotspotTable) load(huntOrd uint32, id []byte, part geo.Partition, d spotDef, granted uint32) uint32 {
	i := t.add(termsOfDef(huntOrd, d), id, part, false)
	c, k := t.chunk(i), i&(chunkLen-1)
	(*[chunkLen]int32)(unsafe.Pointer(&c.lat))[k] = d.lat
	(*[chunkLen]int32)(unsafe.Pointer(&c.lon))[k] = d.lon
	(*[chunkLen]uint32)(unsafe.Pointer(&c.granted))[k] = granted
	c.decided[k] = granted
	return i
}

func (t *hotspotTable) granted(i uint32) uint32 { return t.chunk(i).granted[i&(chunkLen-1)].Load() }

func (t *hotspotTable) setGranted(i, g uint32) { t.chunk(i).granted[i&(chunkLen-1)].Store(g) }

// decided is writer-owned: only hotspot i's partition writer (or Open) may call these.
func (t *hotspotTable) decided(i uint32) uint32 { return t.chunk(i).decided[i&(chunkLen-1)] }

func (t *hotspotTable) setDecided(i, n uint32) { t.chunk(i).decided[i&(chunkLen-1)] = n }

// window returns the window index for opens/closes, adding it if new.
func (t *hotspotTable) window(opens, closes time.Time) uint32 {
	w := window{unixNs(opens), unixNs(closes)}
	t.mu.Lock()
	defer t.mu.Unlock()
	if x, ok := t.windowOf[w]; ok {
		return x
	}
	ws := append(*t.windows.Load(), w)
	t.windows.Store(&ws)
	x := uint32(len(ws) - 1)
	t.windowOf[w] = x
	return x
}

func unixNs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNs(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// compact turns a normalized hotspot into its table form.
func (t *hotspotTable) compact(s *hunt.Hotspot) spotDef {
	return spotDef{
		lat: geo.ToE7(s.Lat), lon: geo.ToE7(s.Lon),
		tickets: uint32(s.Tickets), reward: uint32(s.Reward), points: uint32(s.Points),
		window: 1 + t.window(s.OpensAt, s.ClosesAt),
	}
}

// fill sets the fields of dst that decide and views need from d (not the
// ids or the geohash, which cost an allocation: see hotspot).
func (t *hotspotTable) fill(dst *hunt.Hotspot, d spotDef) {
	w := (*t.windows.Load())[d.window-1]
	dst.Lat, dst.Lon = geo.FromE7(d.lat), geo.FromE7(d.lon)
	dst.Tickets, dst.Reward, dst.Points = int64(d.tickets), int64(d.reward), int64(d.points)
	dst.OpensAt, dst.ClosesAt = fromUnixNs(w.opens), fromUnixNs(w.closes)
}

// hotspot is hotspot i with definition d, whole.
func (t *hotspotTable) hotspot(i uint32, huntID hunt.HuntID, d spotDef) hunt.Hotspot {
	h := hunt.Hotspot{Hunt: huntID, ID: hunt.HotspotID(t.id(i))}
	t.fill(&h, d)
	h.Geohash = geo.Encode(h.Lat, h.Lon, geo.GeohashLen)
	return h
}

// geohash is the integer geohash (geo.HashBits) of definition d.
func geohashOf(d spotDef) uint64 {
	return geo.EncodeBits(geo.FromE7(d.lat), geo.FromE7(d.lon), geo.HashBits)
}
