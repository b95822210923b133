package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cairnhq/cairn/internal/engine/redis/redistest"
	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// nearbyHunt puts a hunt of the given hotspots (imported in chunks).
func nearbyHunt(t testing.TB, e *Engine, id hunt.HuntID, spots []hunt.Hotspot) {
	t.Helper()
	ctx := context.Background()
	if err := e.PutHunt(ctx, hunt.Hunt{ID: id, Name: "nearby"}); err != nil {
		t.Fatalf("PutHunt = %v", err)
	}
	for i := 0; i < len(spots); i += 1000 {
		if err := e.ImportHotspots(ctx, id, spots[i:min(i+1000, len(spots))]); err != nil {
			t.Fatalf("ImportHotspots = %v", err)
		}
	}
}

func spotAt(i int, lat, lon float64) hunt.Hotspot {
	s := hunt.Hotspot{ID: hunt.HotspotID(fmt.Sprintf("s%06d", i)), Lat: lat, Lon: lon, Tickets: 1}
	if err := s.Normalize(); err != nil {
		panic(err)
	}
	return s
}

// TestNearbyMatchesBruteForce: Nearby answers exactly the limit nearest
// hotspots within the radius, as a scan of every hotspot would, around a
// city, at both poles and across the antimeridian.
func TestNearbyMatchesBruteForce(t *testing.T) {
	srv := redistest.Start(t)
	e := start(t, testConfig(srv))
	rng := rand.New(rand.NewPCG(1, 2))
	var spots []hunt.Hotspot
	places := []struct{ lat, lon, spreadDeg float64 }{
		{48.85, 2.35, 0.4},    // a city
		{89.95, 0, 0.05},      // the north pole (longitudes anywhere)
		{-89.9, 0, 0.1},       // the south pole
		{10, 179.99, 0.05},    // the antimeridian
		{-45, -179.995, 0.02}, // the antimeridian, southern
	}
	for _, p := range places {
		for range 400 {
			lat := min(max(p.lat+(rng.Float64()*2-1)*p.spreadDeg, -90), 90)
			lon := p.lon + (rng.Float64()*2-1)*p.spreadDeg
			if p.lat > 89 || p.lat < -89 {
				lon = rng.Float64()*360 - 180
			}
			lon = lon - 360*float64(int((lon+540)/360)-1)
			spots = append(spots, spotAt(len(spots), lat, lon))
		}
	}
	nearbyHunt(t, e.Engine, "bf", spots)
	want := func(lat, lon, radiusM float64, limit int) []hunt.HotspotID {
		type sd struct {
			id hunt.HotspotID
			d  float64
		}
		var all []sd
		for _, s := range spots {
			if d := geo.DistanceM(lat, lon, s.Lat, s.Lon); d <= radiusM {
				all = append(all, sd{s.ID, d})
			}
		}
		slices.SortFunc(all, func(a, b sd) int { return cmp.Or(cmp.Compare(a.d, b.d), cmp.Compare(a.id, b.id)) })
		var ids []hunt.HotspotID
		for _, x := range all[:min(len(all), limit)] {
			ids = append(ids, x.id)
		}
		return ids
	}
	queries := []struct{ lat, lon, radiusM float64 }{
		{48.85, 2.35, 300}, {48.85, 2.35, 5000}, {48.85, 2.35, 50_000}, {48.9, 2.5, 20_000},
		{90, 0, 10_000}, {90, 123, 50_000}, {89.99, -170, 3000}, {-90, 0, 50_000}, {-89.95, 45, 20_000},
		{10, 180, 5000}, {10, -180, 5000}, {10.01, 179.999, 2000}, {-45, 180, 3000}, {-45, -179.99, 1000},
	}
	for _, q := range queries {
		for _, limit := range []int{1, 7, 50, 1000} {
			got, err := e.Nearby(context.Background(), "bf", q.lat, q.lon, q.radiusM, limit)
			if err != nil {
				t.Fatalf("Nearby(%v, %v, %v, %d) = %v", q.lat, q.lon, q.radiusM, limit, err)
			}
			var ids []hunt.HotspotID
			for _, v := range got {
				ids = append(ids, v.ID)
			}
			if w := want(q.lat, q.lon, q.radiusM, limit); !slices.Equal(ids, w) {
				t.Fatalf("Nearby(%v, %v, %v m, %d) = %d hotspots %v; want %d %v", q.lat, q.lon, q.radiusM, limit, len(ids), ids, len(w), w)
			}
		}
	}
}

// TestNearbyCover: the cover of a circle stays within nearbyCellsMax cells
// and contains the cell of every point of the circle, near the poles and
// across the antimeridian too.
func TestNearbyCover(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 300 {
		lat := rng.Float64()*180 - 90
		if rng.IntN(3) == 0 {
			lat = 90 - rng.Float64()*0.5
		}
		lon := rng.Float64()*360 - 180
		radius := []float64{10, 250, 1000, 20_000, 50_000}[rng.IntN(5)]
		cells := nearbyCover(lat, lon, radius)
		if len(cells) == 0 || len(cells) > nearbyCellsMax {
			t.Fatalf("nearbyCover(%v, %v, %v) has %d cells; want 1..%d", lat, lon, radius, len(cells), nearbyCellsMax)
		}
		for range 50 {
			// A random point within the circle: a bearing and a distance.
			plat, plon := destination(lat, lon, rng.Float64()*360, rng.Float64()*radius*0.999)
			gh := geo.Encode(plat, plon, geo.GeohashLen)
			if !slices.ContainsFunc(cells, func(c string) bool { return gh[:len(c)] == c }) {
				t.Fatalf("nearbyCover(%v, %v, %v) = %v misses %v,%v (%s)", lat, lon, radius, cells, plat, plon, gh)
			}
		}
	}
}

// destination is the point distM from lat/lon along bearing (degrees).
func destination(lat, lon, bearing, distM float64) (float64, float64) {
	const earthM = 6_371_008.8
	const rad = math.Pi / 180
	d := distM / earthM
	φ1, λ1, θ := lat*rad, lon*rad, bearing*rad
	φ2 := math.Asin(math.Sin(φ1)*math.Cos(d) + math.Cos(φ1)*math.Sin(d)*math.Cos(θ))
	λ2 := λ1 + math.Atan2(math.Sin(θ)*math.Sin(d)*math.Cos(φ1), math.Cos(d)-math.Sin(φ1)*math.Sin(φ2))
	lon2 := λ2 / rad
	for lon2 > 180 {
		lon2 -= 360
	}
	for lon2 < -180 {
		lon2 += 360
	}
	return min(max(φ2/rad, -90), 90), lon2
}

// TestNearbyCancelled: a cancelled request stops with the context's error.
func TestNearbyCancelled(t *testing.T) {
	srv := redistest.Start(t)
	e := start(t, testConfig(srv))
	nearbyHunt(t, e.Engine, "c", []hunt.Hotspot{spotAt(0, 1, 1)})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Nearby(ctx, "c", 1, 1, 50_000, 10); !errors.Is(err, context.Canceled) {
		t.Fatalf("Nearby(cancelled) = %v; want context.Canceled", err)
	}
}

// BenchmarkNearbyDense: the query of a hostile reader, radius 50 km and
// limit 1, inside a box of ~44 km holding 90,000 hotspots (10,000 more near the north pole),
// and the same at the north pole. Reports time and bytes per query.
//
//	go test -run '^$' -bench BenchmarkNearbyDense -benchmem ./internal/engine/redis
func BenchmarkNearbyDense(b *testing.B) {
	srv := redistest.Start(b)
	e := start(b, testConfig(srv))
	rng := rand.New(rand.NewPCG(5, 6))
	const n = 100_000
	spots := make([]hunt.Hotspot, n)
	for i := range spots {
		if i%10 == 0 {
			spots[i] = spotAt(i, 89.8+rng.Float64()*0.2, rng.Float64()*360-180)
			continue
		}
		spots[i] = spotAt(i, 10+rng.Float64()*0.4, 10+rng.Float64()*0.4)
	}
	nearbyHunt(b, e.Engine, "dense", spots)
	for _, q := range []struct {
		name     string
		lat, lon float64
		limit    int
	}{{"box-limit1", 10.2, 10.2, 1}, {"box-limit50", 10.2, 10.2, 50}, {"pole-limit1", 90, 0, 1}} {
		b.Run(q.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Nearby(context.Background(), "dense", q.lat, q.lon, 50_000, q.limit); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
