package embedded

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// memEngine is an engine with tables and one hunt "h" but no store, for
// tests of the in-memory indexes alone.
func memEngine() (*Engine, *huntEntry) {
	e := &Engine{}
	e.spots.init()
	e.hunts.init()
	e.hunts.mu.Lock()
	he := e.hunts.add(&hunt.Hunt{ID: "h"})
	e.hunts.mu.Unlock()
	return e, he
}

// put imports (or moves) hotspot id to lat/lon as the committer would publish it.
func put(e *Engine, he *huntEntry, id string, lat, lon float64) {
	h := hunt.Hotspot{ID: hunt.HotspotID(id), Lat: lat, Lon: lon, Tickets: 1}
	if err := h.Normalize(); err != nil {
		panic(err)
	}
	i := e.spots.create(he.ord, id, 0)
	if a, ok := e.publishDef(i, e.spots.compact(&h)); ok {
		he.spatial.add(&e.spots, []spatialAdd{a})
	}
}

// bruteNearby is Nearby by scanning every hotspot.
func bruteNearby(e *Engine, lat, lon, radiusM float64, limit int) []hit {
	var out []hit
	for i := range e.spots.len() {
		d := e.spots.def(i)
		if dist := geo.DistanceM(lat, lon, geo.FromE7(d.lat), geo.FromE7(d.lon)); dist <= radiusM {
			out = append(out, hit{dist, i})
		}
	}
	slices.SortFunc(out, func(a, b hit) int {
		if c := cmp.Compare(a.dist, b.dist); c != 0 {
			return c
		}
		return slices.Compare(e.spots.id(a.idx), e.spots.id(b.idx))
	})
	return out[:min(limit, len(out))]
}

// TestNearestMatchesScan: the nearest-first search answers exactly what a
// scan of every hotspot does, for random hotspots clustered anywhere
// (poles and the antimeridian included), moved ones, duplicates of one
// position, and random queries.
func TestNearestMatchesScan(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		e, he := memEngine()
		// Cluster centres, some of them where cells are awkward.
		centres := [][2]float64{{48.85, 2.35}, {89.999, 0}, {-89.999, 120}, {0, 179.9999}, {0, -179.9999}, {-33.9, 151.2}}
		pick := func(label string) (float64, float64) {
			c := centres[rapid.IntRange(0, len(centres)-1).Draw(rt, label+"-centre")]
			spread := rapid.SampledFrom([]float64{0, 0.0001, 0.01, 1}).Draw(rt, label+"-spread")
			lat := c[0] + rapid.Float64Range(-spread, spread).Draw(rt, label+"-dlat")
			lon := c[1] + rapid.Float64Range(-spread, spread).Draw(rt, label+"-dlon")
			lat = max(-90, min(90, lat))
			if lon > 180 {
				lon -= 360
			} else if lon < -180 {
				lon += 360
			}
			return lat, lon
		}
		n := rapid.IntRange(1, 3*spatialTailLenMax).Draw(rt, "hotspots")
		for k := range n {
			lat, lon := pick("spot")
			put(e, he, fmt.Sprintf("s%d", k), lat, lon)
		}
		for range rapid.IntRange(0, 50).Draw(rt, "moves") {
			lat, lon := pick("move")
			put(e, he, fmt.Sprintf("s%d", rapid.IntRange(0, n-1).Draw(rt, "moved")), lat, lon)
		}
		for range 20 {
			lat, lon := pick("query")
			r := rapid.SampledFrom([]float64{1, 50, 2000, 50_000}).Draw(rt, "radius")
			limit := rapid.IntRange(1, 40).Draw(rt, "limit")
			got, err := nearest(context.Background(), &e.spots, he.spatial.view.Load(), lat, lon, r, limit)
			if err != nil {
				rt.Fatal(err)
			}
			want := bruteNearby(e, lat, lon, r, limit)
			if !slices.Equal(got, want) {
				rt.Fatalf("nearest(%v, %v, r=%v, limit %d) = %v; want %v", lat, lon, r, limit, got, want)
			}
		}
	})
}

// TestMinDistanceIsABound: no point of a cell is nearer than its bound.
func TestMinDistanceIsABound(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		chars := rapid.IntRange(1, geo.GeohashLen).Draw(rt, "chars")
		bits := uint(5 * chars)
		h := rapid.Uint64Range(0, 1<<bits-1).Draw(rt, "cell")
		b := geo.CellBox(h, bits)
		lat := rapid.Float64Range(-90, 90).Draw(rt, "lat")
		lon := rapid.Float64Range(-180, 180).Draw(rt, "lon")
		bound := geo.MinDistanceM(lat, lon, b)
		for range 50 {
			plat := rapid.Float64Range(b.MinLat, b.MaxLat).Draw(rt, "plat")
			plon := rapid.Float64Range(b.MinLon, b.MaxLon).Draw(rt, "plon")
			if d := geo.DistanceM(lat, lon, plat, plon); d < bound*(1-1e-9)-1e-6 {
				rt.Fatalf("point %v,%v of cell %v is %v m from %v,%v; bound says %v", plat, plon, b, d, lat, lon, bound)
			}
		}
	})
}

// TestNearbyStopsOnCancel: a cancelled request stops the search.
func TestNearbyStopsOnCancel(t *testing.T) {
	e, he := memEngine()
	for k := range 5000 {
		put(e, he, fmt.Sprintf("s%d", k), 10+float64(k%100)*0.001, 10+float64(k/100)*0.001)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Nearby(ctx, "h", 10, 10, 50_000, 1000); err == nil {
		t.Fatal("Nearby with a cancelled context answered; want its error")
	}
}

// BenchmarkNearbyDense: 200k hotspots in a box of about 44 km; one query of
// radius 50 km in the middle (limit 1 and limit 100). The budget is a few
// milliseconds and well under 1 MB allocated per query, whatever the size.
func BenchmarkNearbyDense(b *testing.B) {
	e, he := memEngine()
	r := rand.New(rand.NewPCG(1, 2))
	for k := range 200_000 {
		put(e, he, fmt.Sprintf("h%d", k), 10+r.Float64()*0.4-0.2, 10+r.Float64()*0.4-0.2)
	}
	for _, limit := range []int{1, 100} {
		b.Run(fmt.Sprintf("limit=%d", limit), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if v, err := e.Nearby(context.Background(), "h", 10, 10, 50_000, limit); err != nil || len(v) != limit {
					b.Fatalf("Nearby = %d, %v", len(v), err)
				}
			}
		})
	}
}

// ghs reads every geohash of a sorted run, in order.
func ghs(r *sorted) []uint64 {
	var out []uint64
	for c := (cursor{r: r}); c.more(); c.i++ {
		out = append(out, c.gh())
	}
	return out
}

// TestSortedRunPacking holds a packed sorted run to the plain sorted slice it
// packs: every entry reads back, and every span is the plain binary search's,
// for geohashes that cross the packed high bits often or seldom.
func TestSortedRunPacking(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		his := rapid.IntRange(1, 1<<13).Draw(t, "highs")
		n := rapid.IntRange(0, 300).Draw(t, "n")
		gh := make([]uint64, n)
		for i := range gh {
			hi := uint64(rapid.IntRange(0, his-1).Draw(t, "hi"))
			lo := uint64(rapid.OneOf(rapid.Uint32Range(0, 3), rapid.Uint32(), rapid.Uint32Range(1<<32-4, 1<<32-1)).Draw(t, "lo"))
			gh[i] = hi<<32 | lo
		}
		idx := make([]uint32, n)
		for i := range idx {
			idx[i] = uint32(i)
		}
		r := sortRun(run{slices.Clone(gh), idx})
		slices.Sort(gh)
		if r.len() != n || len(r.idx) != n {
			t.Fatalf("len %d (%d indexes), want %d", r.len(), len(r.idx), n)
		}
		if got := ghs(&r); !slices.Equal(got, gh) {
			t.Fatalf("entries read %x, want %x", got, gh)
		}
		for range 20 {
			a := rapid.OneOf(rapid.SampledFrom(append(gh, 0)), rapid.Uint64Range(0, uint64(his)<<32)).Draw(t, "lo bound")
			b := a + rapid.Uint64Range(0, 1<<33).Draw(t, "width")
			wa, _ := slices.BinarySearch(gh, a)
			wb, _ := slices.BinarySearch(gh, b)
			if ga, gb := r.span(a, b); ga != wa || gb != wb {
				t.Fatalf("span(%x, %x) = %d, %d; want %d, %d", a, b, ga, gb, wa, wb)
			}
		}
		// merge (with nothing moved) of two halves equals the whole.
		h := n / 2
		m := merge(nil, sortRun(run{slices.Clone(gh[:h]), slices.Clone(idx[:h])}), sortRun(run{slices.Clone(gh[h:]), slices.Clone(idx[h:])}), false)
		if got := ghs(&m); !slices.Equal(got, gh) {
			t.Fatalf("merged entries read %x, want %x", got, gh)
		}
	})
}
