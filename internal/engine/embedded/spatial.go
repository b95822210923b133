package embedded

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cairnhq/cairn/internal/geo"
)

// The spatial index of one hunt: its hotspots' integer geohashes
// (geo.HashBits bits) with their indexes, in a few sorted runs of
// geometrically growing sizes plus a short unsorted tail (a small
// log-structured merge). Every geohash cell, at any length, is one range of
// a sorted run, so one structure serves every zoom level. A sorted run keeps
// the low 32 bits of each geohash and, once per stretch of entries that
// share the high bits, a mark (geo.HashBits is 45, so there are at most
// 2^13 stretches): about 8 bytes per hotspot.
//
// One goroutine adds (the settle goroutine, or Open); readers load the
// current view, which never changes once published: runs are immutable and
// the tail is only appended past the length a view holds.
//
// A hotspot that moves (a re-import with new coordinates) gets a new entry;
// the old one stays until its run is merged, where entries whose geohash is
// no longer their hotspot's are dropped. Queries compute distances from the
// hotspot's current coordinates, so a stale entry costs a little work and,
// while any hotspot of the hunt has moved, a check for duplicates.

const spatialTailLenMax = 256

// run is entries as they come: the unsorted tail, and what a sorted run is
// made from.
type run struct {
	gh  []uint64
	idx []uint32
}

func (r *run) len() int { return len(r.gh) }

// sorted is a run sorted by (geohash, index), its geohashes packed.
type sorted struct {
	lo    []uint32 // the low 32 bits of each entry's geohash
	idx   []uint32
	marks []mark // by start; the first at 0
}

// mark: from entry start on (to the next mark), the geohashes' high bits are hi.
type mark struct{ start, hi uint32 }

func (r *sorted) len() int { return len(r.lo) }

// push appends an entry, which must sort at or after the last one.
func (r *sorted) push(gh uint64, idx uint32) {
	r.pushGh(gh)
	r.idx = append(r.idx, idx)
}

// pushGh appends an entry's geohash only (its index is set by the caller).
func (r *sorted) pushGh(gh uint64) {
	if hi := uint32(gh >> 32); len(r.marks) == 0 || r.marks[len(r.marks)-1].hi != hi {
		r.marks = append(r.marks, mark{uint32(len(r.lo)), hi})
	}
	r.lo = append(r.lo, uint32(gh))
}

// search returns the first entry whose geohash is at least g.
func (r *sorted) search(g uint64) int {
	hi := uint32(g >> 32)
	m, _ := slices.BinarySearchFunc(r.marks, hi, func(m mark, t uint32) int { return cmp.Compare(m.hi, t) })
	if m == len(r.marks) {
		return r.len()
	}
	start := int(r.marks[m].start)
	if r.marks[m].hi != hi {
		return start
	}
	end := r.len()
	if m+1 < len(r.marks) {
		end = int(r.marks[m+1].start)
	}
	k, _ := slices.BinarySearch(r.lo[start:end], uint32(g))
	return start + k
}

// span returns the entries of r whose geohash is in [lo, hi).
func (r *sorted) span(lo, hi uint64) (int, int) {
	a := r.search(lo)
	return a, max(a, r.search(hi))
}

// cursor reads a sorted run's entries in order.
type cursor struct {
	r    *sorted
	i, m int // entry; the mark that covers it
}

func (c *cursor) more() bool { return c.i < c.r.len() }

func (c *cursor) gh() uint64 {
	for c.m+1 < len(c.r.marks) && int(c.r.marks[c.m+1].start) <= c.i {
		c.m++
	}
	return uint64(c.r.marks[c.m].hi)<<32 | uint64(c.r.lo[c.i])
}

type spatialView struct {
	runs  []sorted
	tail  run  // unsorted
	moved bool // some entry may be stale or duplicated
}

type spatial struct {
	mu    sync.Mutex // adders
	view  atomic.Pointer[spatialView]
	moved bool
}

func newSpatial() *spatial {
	s := &spatial{}
	s.view.Store(&spatialView{})
	return s
}

// spatialAdd is one entry to add: hotspot idx is now at geohash gh; moved
// if it was elsewhere before.
type spatialAdd struct {
	gh    uint64
	idx   uint32
	moved bool
}

// add records the entries of adds and publishes one new view.
func (s *spatial) add(t *hotspotTable, adds []spatialAdd) {
	if len(adds) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := *s.view.Load()
	for _, a := range adds {
		s.moved = s.moved || a.moved
		if v.tail.gh == nil {
			v.tail = run{make([]uint64, 0, spatialTailLenMax), make([]uint32, 0, spatialTailLenMax)}
		}
		v.tail.gh = append(v.tail.gh, a.gh)
		v.tail.idx = append(v.tail.idx, a.idx)
		if v.tail.len() < spatialTailLenMax {
			continue
		}
		v.runs = append(slices.Clip(v.runs), sortRun(v.tail))
		v.tail = run{}
		for n := len(v.runs); n >= 2 && v.runs[n-2].len() <= 2*v.runs[n-1].len(); n = len(v.runs) {
			v.runs = append(v.runs[:n-2:n-2], merge(t, v.runs[n-2], v.runs[n-1], s.moved))
		}
		if len(v.runs) == 1 && s.moved {
			// One run left: clean it, and no entry is stale any more.
			v.runs[0] = merge(t, v.runs[0], sorted{}, true)
			s.moved = false
		}
	}
	v.moved = s.moved
	s.view.Store(&v)
}

// bulk replaces the index with these entries, one per hotspot (Open,
// before any reader).
func (s *spatial) bulk(gh []uint64, idx []uint32) {
	s.view.Store(&spatialView{runs: []sorted{sortRun(run{gh, idx})}})
}

func sortRun(r run) sorted {
	type e struct {
		gh  uint64
		idx uint32
	}
	es := make([]e, r.len())
	for i := range es {
		es[i] = e{r.gh[i], r.idx[i]}
	}
	slices.SortFunc(es, func(a, b e) int {
		if c := cmp.Compare(a.gh, b.gh); c != 0 {
			return c
		}
		return cmp.Compare(a.idx, b.idx)
	})
	out := sorted{lo: make([]uint32, 0, len(es)), idx: make([]uint32, 0, len(es))}
	for _, x := range es {
		out.push(x.gh, x.idx)
	}
	return out
}

// merge merges two sorted runs; where some hotspot has moved (clean unset),
// it drops stale entries (whose geohash is no longer their hotspot's
// published one) and duplicates.
func merge(t *hotspotTable, a, b sorted, moved bool) sorted {
	out := sorted{lo: make([]uint32, 0, a.len()+b.len()), idx: make([]uint32, 0, a.len()+b.len())}
	var lastGh uint64
	keep := func(gh uint64, idx uint32) {
		if moved {
			if n := out.len(); n > 0 && lastGh == gh && out.idx[n-1] == idx {
				return
			}
			if d := t.def(idx); !d.exists() || geohashOf(d) != gh {
				return
			}
		}
		out.push(gh, idx)
		lastGh = gh
	}
	ca, cb := cursor{r: &a}, cursor{r: &b}
	for ca.more() || cb.more() {
		if !cb.more() || (ca.more() && (ca.gh() < cb.gh() || (ca.gh() == cb.gh() && a.idx[ca.i] <= b.idx[cb.i]))) {
			keep(ca.gh(), a.idx[ca.i])
			ca.i++
		} else {
			keep(cb.gh(), b.idx[cb.i])
			cb.i++
		}
	}
	return out
}

// count is the number of entries in the cell [lo, hi), stale ones included.
func (v *spatialView) count(lo, hi uint64) int {
	n := 0
	for i := range v.runs {
		a, b := v.runs[i].span(lo, hi)
		n += b - a
	}
	for _, gh := range v.tail.gh {
		if gh >= lo && gh < hi {
			n++
		}
	}
	return n
}

// each calls fn for every entry in the cell [lo, hi) until fn returns false.
func (v *spatialView) each(lo, hi uint64, fn func(idx uint32) bool) bool {
	for i := range v.runs {
		r := &v.runs[i]
		a, b := r.span(lo, hi)
		for _, idx := range r.idx[a:b] {
			if !fn(idx) {
				return false
			}
		}
	}
	for k, gh := range v.tail.gh {
		if gh >= lo && gh < hi && !fn(v.tail.idx[k]) {
			return false
		}
	}
	return true
}

// ---- nearest-first search ----

// Nearby's bounds: a cell with at most leafLenMax entries (or at full
// precision) is scanned, a bigger one split into its 32 children; at most
// nearbyScanMax entries are looked at per query (then the answer is the
// nearest among them: cells are visited nearest first).
const (
	leafLenMax    = 64
	nearbyScanMax = 1 << 16
)

// cell is a geohash cell of chars characters: the geohash range [lo, hi).
type cell struct {
	lo, hi uint64
	chars  int
	boundM float64 // no point of the cell is nearer than this
}

// hit is one candidate answer.
type hit struct {
	dist float64
	idx  uint32
}

// searcher is one nearby query's state.
type searcher struct {
	t        *hotspotTable
	v        *spatialView
	lat, lon float64
	radiusM  float64
	limit    int
	cells    []cell // min-heap by boundM
	best     []hit  // max-heap by (dist, id): the worst kept answer on top
	scanned  int
}

// nearest returns up to limit hotspots within radiusM of lat/lon, nearest
// first (ties by id), visiting cells in order of their distance and stopping
// once no unvisited cell can hold anything nearer than the limit-th answer.
func nearest(ctx context.Context, t *hotspotTable, v *spatialView, lat, lon, radiusM float64, limit int) ([]hit, error) {
	s := &searcher{t: t, v: v, lat: lat, lon: lon, radiusM: radiusM, limit: limit}
	s.split(cell{lo: 0, hi: 1 << geo.HashBits, chars: 0})
	for n := 0; len(s.cells) > 0; n++ {
		if n%64 == 63 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		c := s.popCell()
		if beyond(c.boundM, radiusM) || (len(s.best) == limit && beyond(c.boundM, s.best[0].dist)) {
			break
		}
		k := v.count(c.lo, c.hi)
		if k == 0 {
			continue
		}
		if k > leafLenMax && c.chars < geo.GeohashLen {
			s.split(c)
			continue
		}
		if !v.each(c.lo, c.hi, s.consider) {
			break
		}
	}
	out := s.best
	slices.SortFunc(out, s.cmpHit)
	return out, nil
}

// beyond reports whether a cell whose bound is boundM surely holds nothing
// at distM or nearer. The bound and geo.DistanceM round differently (a point
// 1e-191 degree away is 0 m for one and not for the other), so a cell within
// a micrometre, or a billionth, of distM is looked at.
func beyond(boundM, distM float64) bool { return boundM-1e-6-boundM*1e-9 > distM }

// split pushes the 32 children of c that can hold an answer.
func (s *searcher) split(c cell) {
	chars := c.chars + 1
	shift := uint(geo.HashBits - 5*chars)
	for k := range uint64(32) {
		lo := c.lo + k<<shift
		hi := lo + 1<<shift
		box := geo.CellBox(lo>>shift, uint(5*chars))
		b := geo.MinDistanceM(s.lat, s.lon, box)
		if beyond(b, s.radiusM) {
			continue
		}
		s.pushCell(cell{lo: lo, hi: hi, chars: chars, boundM: b})
	}
}

// consider offers hotspot idx as an answer; false stops the scan.
func (s *searcher) consider(idx uint32) bool {
	if s.scanned++; s.scanned > nearbyScanMax {
		return false
	}
	d := s.t.def(idx)
	if !d.exists() {
		return true
	}
	dist := geo.DistanceM(s.lat, s.lon, geo.FromE7(d.lat), geo.FromE7(d.lon))
	if dist > s.radiusM {
		return true
	}
	h := hit{dist, idx}
	if s.v.moved && slices.ContainsFunc(s.best, func(x hit) bool { return x.idx == idx }) {
		return true
	}
	if len(s.best) < s.limit {
		s.best = append(s.best, h)
		s.up(len(s.best) - 1)
		return true
	}
	if s.cmpHit(h, s.best[0]) < 0 {
		s.best[0] = h
		s.down(0)
	}
	return true
}

func (s *searcher) cmpHit(a, b hit) int {
	if c := cmp.Compare(a.dist, b.dist); c != 0 {
		return c
	}
	return slices.Compare(s.t.id(a.idx), s.t.id(b.idx))
}

// best is a max-heap under cmpHit.
func (s *searcher) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if s.cmpHit(s.best[i], s.best[p]) <= 0 {
			return
		}
		s.best[i], s.best[p] = s.best[p], s.best[i]
		i = p
	}
}

func (s *searcher) down(i int) {
	n := len(s.best)
	for {
		l, m := 2*i+1, i
		if l < n && s.cmpHit(s.best[l], s.best[m]) > 0 {
			m = l
		}
		if r := l + 1; r < n && s.cmpHit(s.best[r], s.best[m]) > 0 {
			m = r
		}
		if m == i {
			return
		}
		s.best[i], s.best[m] = s.best[m], s.best[i]
		i = m
	}
}

// cells is a min-heap by boundM.
func (s *searcher) pushCell(c cell) {
	s.cells = append(s.cells, c)
	i := len(s.cells) - 1
	for i > 0 {
		p := (i - 1) / 2
		if s.cells[p].boundM <= s.cells[i].boundM {
			break
		}
		s.cells[i], s.cells[p] = s.cells[p], s.cells[i]
		i = p
	}
}

func (s *searcher) popCell() cell {
	top := s.cells[0]
	n := len(s.cells) - 1
	s.cells[0] = s.cells[n]
	s.cells = s.cells[:n]
	i := 0
	for {
		l, m := 2*i+1, i
		if l < n && s.cells[l].boundM < s.cells[m].boundM {
			m = l
		}
		if r := l + 1; r < n && s.cells[r].boundM < s.cells[m].boundM {
			m = r
		}
		if m == i {
			return top
		}
		s.cells[i], s.cells[m] = s.cells[m], s.cells[i]
		i = m
	}
}
