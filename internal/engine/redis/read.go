package redis

import (
	"cmp"
	"container/heap"
	"context"
	"math"
	"slices"
	"strconv"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// Bounds of one Nearby call. Units are in the names.
const (
	// nearbyScanMax bounds the index members one Nearby call reads, all
	// rounds together (~50 bytes each as they arrive): a dense area with a
	// large radius answers from the members of the cells nearest the point
	// first, never from the whole hunt.
	nearbyScanMax = 16_384
	// nearbyCellsMax bounds the geohash cells of one round's cover; the
	// cover uses the finest cells that keep within it, so it also bounds
	// the area read around the poles, where cells are narrow.
	nearbyCellsMax = 32
	// nearbyCellBatch is how many cells' ranges go in one pipeline: the
	// nearest cells are read first, and a cancelled request or a spent
	// budget stops between pipelines.
	nearbyCellBatch = 8
	// nearbyRadiusFirstM is the first round's radius; each round widens it
	// fourfold up to the request's, stopping as soon as limit hotspots are
	// known to be within it.
	nearbyRadiusFirstM = 250
	// cellSlackM: a member's 9-character geohash cell centre is within
	// ~3.4 m of its hotspot.
	cellSlackM = 10
)

// Nearby lists up to limit hotspots within radiusM of lat/lon, nearest first
// (ties by id). It reads the hunt's lexicographic geohash index in rounds of
// growing radius: each round reads the cells covering its circle (nearest
// cells first) and keeps, in a bounded heap, the best candidates by their
// cell centre's distance; once limit of them are surely within the round's
// radius, or the radius is the request's, it reads those hotspots and
// orders them by exact distance. Work is bounded by nearbyScanMax members
// and nearbyCellsMax cells per round whatever the hunt's size, the poles and
// the antimeridian included; a cancelled ctx stops it between pipelines.
func (e *Engine) Nearby(ctx context.Context, id hunt.HuntID, lat, lon, radiusM float64, limit int) ([]hunt.HotspotView, error) {
	n, err := e.rdb.Exists(ctx, e.ks.hunt(id)).Result()
	if err != nil {
		return nil, e.readErr(ctx, err)
	}
	if n == 0 {
		return nil, hunt.ErrUnknownHunt
	}
	limit = min(max(limit, 0), engine.NearbyLimitMax)
	radiusM = min(radiusM, engine.NearbyRadiusMMax)
	if limit == 0 || !(radiusM >= 0) || !geo.ValidCoord(lat, lon) {
		return nil, nil
	}
	best := candHeap{max: 2*limit + 16}
	budget := nearbyScanMax
	r := min(radiusM, nearbyRadiusFirstM)
	for {
		best.items = best.items[:0]
		sure, spent, err := e.scanRound(ctx, id, lat, lon, r, &best, &budget)
		if err != nil {
			return nil, err
		}
		if spent || sure >= limit || r >= radiusM {
			break
		}
		r = min(4*r, radiusM)
	}
	return e.nearbyViews(ctx, id, lat, lon, radiusM, limit, best.items)
}

// scanRound reads the members of the cells covering the circle of radius r
// into best; sure counts those surely within r. spent reports that the
// budget ran out (the round is incomplete).
func (e *Engine) scanRound(ctx context.Context, id hunt.HuntID, lat, lon, r float64, best *candHeap, budget *int) (sure int, spent bool, err error) {
	cells := nearbyCover(lat, lon, r)
	ranges := make([]*goredis.StringSliceCmd, 0, nearbyCellBatch)
	for i := 0; i < len(cells); i += nearbyCellBatch {
		if err := ctx.Err(); err != nil {
			return 0, false, err
		}
		if *budget <= 0 {
			return sure, true, nil
		}
		pipe := e.rdb.Pipeline()
		ranges = ranges[:0]
		batch := cells[i:min(i+nearbyCellBatch, len(cells))]
		// Each cell may take its share of the budget, so one pipeline
		// never brings more than the budget.
		count := int64((*budget + len(batch) - 1) / len(batch))
		for _, c := range batch {
			ranges = append(ranges, pipe.ZRangeByLex(ctx, e.ks.geo(id), &goredis.ZRangeBy{Min: "[" + c, Max: "[" + c + "\xff", Count: count}))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return 0, false, e.readErr(ctx, err)
		}
		for _, rg := range ranges {
			for _, m := range rg.Val() {
				if *budget <= 0 {
					return sure, true, nil
				}
				*budget--
				c, ok := parseMember(m, lat, lon)
				if !ok || c.d > r+cellSlackM {
					continue
				}
				if c.d <= r-cellSlackM {
					sure++
				}
				best.offer(c)
			}
		}
	}
	return sure, false, nil
}

// nearbyViews reads the candidates' hotspots and answers the limit nearest
// within radiusM by exact distance.
func (e *Engine) nearbyViews(ctx context.Context, id hunt.HuntID, lat, lon, radiusM float64, limit int, cands []cand) ([]hunt.HotspotView, error) {
	if len(cands) == 0 {
		return nil, nil
	}
	pipe := e.rdb.Pipeline()
	cmds := make([]*goredis.SliceCmd, len(cands))
	for i, c := range cands {
		cmds[i] = pipe.HMGet(ctx, keyHotspot(c.p, id, c.id), hotspotFields...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, e.readErr(ctx, err)
	}
	out := make([]hunt.HotspotView, 0, min(len(cands), limit))
	for i, c := range cmds {
		v, ok := hotspotView(id, cands[i].id, c.Val())
		if !ok {
			continue
		}
		if v.DistanceM = geo.DistanceM(lat, lon, v.Lat, v.Lon); v.DistanceM <= radiusM {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b hunt.HotspotView) int {
		return cmp.Or(cmp.Compare(a.DistanceM, b.DistanceM), cmp.Compare(a.ID, b.ID))
	})
	return out[:min(len(out), limit)], nil
}

// readErr is the error of a failed call of Nearby: the request's own end
// (cancelled, past its deadline) as itself, not as Redis being unavailable.
func (e *Engine) readErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return e.callErr("nearby", err)
}

// cand is a hotspot of the index: its id, partition, and the distance from
// the query point to its geohash cell's centre.
type cand struct {
	d  float64
	id hunt.HotspotID
	p  geo.Partition
}

// parseMember reads an index member, "geohash|id|partition".
func parseMember(m string, lat, lon float64) (cand, bool) {
	gh, rest, ok1 := strings.Cut(m, "|")
	sid, part, ok2 := strings.Cut(rest, "|")
	if !ok1 || !ok2 {
		return cand{}, false
	}
	p, err := strconv.ParseUint(part, 10, 32)
	if err != nil {
		return cand{}, false
	}
	clat, clon := geo.DecodeCenter(gh)
	return cand{d: geo.DistanceM(lat, lon, clat, clon), id: hunt.HotspotID(sid), p: geo.Partition(p)}, true
}

// candHeap keeps the max nearest candidates: a max-heap on (d, id), so the
// farthest kept is dropped first. max is twice the limit and then some, so
// that candidates whose cell centres tie within cellSlackM of the limit-th
// are kept for the exact comparison.
type candHeap struct {
	items []cand
	max   int
}

func (h *candHeap) offer(c cand) {
	if len(h.items) < h.max {
		heap.Push(h, c)
		return
	}
	if less(c, h.items[0]) {
		h.items[0] = c
		heap.Fix(h, 0)
	}
}

func less(a, b cand) bool { return a.d < b.d || (a.d == b.d && a.id < b.id) }

func (h *candHeap) Len() int           { return len(h.items) }
func (h *candHeap) Less(i, j int) bool { return less(h.items[j], h.items[i]) }
func (h *candHeap) Swap(i, j int)      { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *candHeap) Push(x any)         { h.items = append(h.items, x.(cand)) }
func (h *candHeap) Pop() any {
	c := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return c
}

// nearbyCover returns geohash cells that together contain every point within
// radiusM of lat/lon, nearest cells first: the finest cells (at most
// geo.GeohashLen characters) of which at most nearbyCellsMax cover the
// circle's bounding box. The box is a latitude band and a longitude range
// that wraps at the antimeridian; a circle that reaches a pole, or is wider
// than the longitudes, takes every longitude of its band.
func nearbyCover(lat, lon, radiusM float64) []string {
	const earthM = 6_371_008.8
	delta := radiusM / earthM // the circle's angular radius
	dLat := delta * 180 / math.Pi
	latMin, latMax := lat-dLat, lat+dLat
	full := false
	if latMax >= 90 {
		latMax, full = 90, true
	}
	if latMin <= -90 {
		latMin, full = -90, true
	}
	var dLon float64
	if !full {
		// The widest longitude span of a spherical cap around lat.
		if s := math.Sin(delta) / math.Cos(lat*math.Pi/180); s >= 1 {
			full = true
		} else {
			dLon = math.Asin(s)*180/math.Pi + 1e-9
		}
	}
	for chars := geo.GeohashLen; ; chars-- {
		latBits := 5 * chars / 2
		lonBits := 5*chars - latBits
		rowsAll, colsAll := 1<<latBits, 1<<lonBits
		cellH, cellW := 180/float64(rowsAll), 360/float64(colsAll)
		row0 := min(int(math.Floor((latMin+90)/cellH)), rowsAll-1)
		row1 := min(int(math.Floor((latMax+90)/cellH)), rowsAll-1)
		col0, cols := 0, colsAll
		if !full {
			col0 = int(math.Floor((lon - dLon + 180) / cellW))
			cols = min(int(math.Floor((lon+dLon+180)/cellW))-col0+1, colsAll)
		}
		if (row1-row0+1)*cols > nearbyCellsMax && chars > 1 {
			continue
		}
		type cell struct {
			hash string
			d    float64
		}
		cells := make([]cell, 0, (row1-row0+1)*cols)
		for row := row0; row <= row1; row++ {
			cLatMin := -90 + float64(row)*cellH
			for j := range cols {
				col := ((col0+j)%colsAll + colsAll) % colsAll
				cLonMin := -180 + float64(col)*cellW
				hash := geo.Encode(cLatMin+cellH/2, cLonMin+cellW/2, chars)
				// The cell's nearest point to lat/lon, for the order.
				nLat := min(max(lat, cLatMin), cLatMin+cellH)
				nLon := lon
				if off := math.Mod(lon-cLonMin+360, 360); off > cellW {
					if off-cellW < 360-off {
						nLon = cLonMin + cellW
					} else {
						nLon = cLonMin
					}
				}
				cells = append(cells, cell{hash, geo.DistanceM(lat, lon, nLat, nLon)})
			}
		}
		slices.SortFunc(cells, func(a, b cell) int { return cmp.Or(cmp.Compare(a.d, b.d), cmp.Compare(a.hash, b.hash)) })
		out := make([]string, len(cells))
		for i, c := range cells {
			out[i] = c.hash
		}
		return out
	}
}
