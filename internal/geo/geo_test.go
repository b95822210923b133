package geo

import (
	"math"
	"testing"
)

func TestDistanceM(t *testing.T) {
	// Paris Notre-Dame to the Eiffel Tower is about 4.1 km; one degree of latitude about 111.2 km.
	for _, c := range []struct {
		lat1, lon1, lat2, lon2, want, tol float64
	}{
		{48.8530, 2.3499, 48.8584, 2.2945, 4100, 100},
		{0, 0, 1, 0, 111195, 10},
		{10, 10, 10, 10, 0, 0},
		{0, 179.9999, 0, -179.9999, 22.2, 1}, // across the antimeridian
	} {
		if got := DistanceM(c.lat1, c.lon1, c.lat2, c.lon2); math.Abs(got-c.want) > c.tol {
			t.Errorf("DistanceM(%v,%v,%v,%v) = %.1f; want %.1f±%.1f", c.lat1, c.lon1, c.lat2, c.lon2, got, c.want, c.tol)
		}
	}
}

func TestValidCoord(t *testing.T) {
	for _, c := range []struct {
		lat, lon float64
		want     bool
	}{{0, 0, true}, {90, 180, true}, {-90, -180, true}, {90.0001, 0, false}, {0, -180.5, false},
		{math.NaN(), 0, false}, {0, math.Inf(1), false}} {
		if got := ValidCoord(c.lat, c.lon); got != c.want {
			t.Errorf("ValidCoord(%v, %v) = %v; want %v", c.lat, c.lon, got, c.want)
		}
	}
}

func TestPartitionOf(t *testing.T) {
	// Same prefix, same partition; the partition is within range and spreads.
	a := PartitionOf("u09tunqu", 4, 64)
	b := PartitionOf("u09tzzzz", 4, 64)
	if a != b {
		t.Errorf("PartitionOf: same prefix gave %d and %d", a, b)
	}
	seen := map[Partition]bool{}
	for _, h := range []string{"u09t", "u09w", "dr5r", "9q8y", "gcpv", "u33d", "xn76", "r3gx", "6gyf", "c23n"} {
		p := PartitionOf(h, 4, 64)
		if p >= 64 {
			t.Fatalf("PartitionOf(%q) = %d; want < 64", h, p)
		}
		seen[p] = true
	}
	if len(seen) < 6 {
		t.Errorf("PartitionOf spreads 10 regions over %d partitions; want at least 6", len(seen))
	}
	if got := PartitionOf("u0", 4, 64); got != PartitionOf("u0", 2, 64) {
		t.Errorf("short geohash: %d", got)
	}
}

func TestNeighborsCoverRadius(t *testing.T) {
	lat, lon := 48.8566, 2.3522
	cells := Neighbors(lat, lon, 2000, 6)
	set := map[string]bool{}
	for _, c := range cells {
		set[c] = true
	}
	// Every point within the radius must fall in a returned cell.
	for i := 0; i < 360; i += 15 {
		for _, r := range []float64{0, 500, 1000, 1999} {
			rad := float64(i) * math.Pi / 180
			plat := lat + r*math.Cos(rad)/111320
			plon := lon + r*math.Sin(rad)/(111320*math.Cos(lat*math.Pi/180))
			if h := Encode(plat, plon, 6); !set[h] {
				t.Fatalf("Neighbors(r=2000) misses cell %s of a point %0.f m away at %d°", h, r, i)
			}
		}
	}
}

func TestValidGeohash(t *testing.T) {
	for _, c := range []struct {
		s    string
		want bool
	}{{"u09t", true}, {"", false}, {"u09a", false}, {"U09T", false}, {"0123456789bcd", false}} {
		if got := ValidGeohash(c.s); got != c.want {
			t.Errorf("ValidGeohash(%q) = %v; want %v", c.s, got, c.want)
		}
	}
}

// FuzzCoordinates: geohash and partition math never panic and stay in range
// for any valid coordinate.
func FuzzCoordinates(f *testing.F) {
	f.Add(48.8566, 2.3522, 500.0)
	f.Add(-90.0, 180.0, 0.0)
	f.Add(89.9999, -179.9999, 50000.0)
	f.Fuzz(func(t *testing.T, lat, lon, r float64) {
		if !ValidCoord(lat, lon) {
			return
		}
		h := Encode(lat, lon, GeohashLen)
		if !ValidGeohash(h) || len(h) != GeohashLen {
			t.Fatalf("Encode(%v,%v) = %q", lat, lon, h)
		}
		if p := PartitionOf(h, PrefixLenDefault, PartitionsDefault); p >= PartitionsDefault {
			t.Fatalf("PartitionOf = %d", p)
		}
		if d := DistanceM(lat, lon, 0, 0); math.IsNaN(d) || d < 0 || d > 20_100_000 {
			t.Fatalf("DistanceM = %v", d)
		}
		if r >= 0 && r <= 50000 {
			if cells := Neighbors(lat, lon, r, 6); len(cells) == 0 || len(cells) > 17*17 {
				t.Fatalf("Neighbors = %d cells", len(cells))
			}
		}
	})
}

func TestCellLen(t *testing.T) {
	for _, r := range []float64{10, 1000, 5000, 50000} {
		for _, lat := range []float64{0, 48.85, 70} {
			n := CellLen(lat, r, 6)
			if n < 1 || n > 6 || (n > 1 && ringsFor(lat, r, n) > RingsMax) {
				t.Errorf("CellLen(%v, %v) = %d", lat, r, n)
			}
		}
	}
	if CellLen(48.85, 10, 6) != 6 {
		t.Errorf("CellLen(small radius) = %d; want 6", CellLen(48.85, 10, 6))
	}
}

// TestDecodeCenter: the centre of a point's 9-character cell is within the
// cell's half-diagonal (~3.4 m) of the point.
func TestDecodeCenter(t *testing.T) {
	for _, p := range [][2]float64{{48.8566, 2.3522}, {-33.8688, 151.2093}, {0, 0}, {89.9, -179.9}} {
		lat, lon := DecodeCenter(Encode(p[0], p[1], GeohashLen))
		if d := DistanceM(p[0], p[1], lat, lon); d > 3.5 {
			t.Errorf("DecodeCenter(Encode(%v, %v)) = %v, %v: %.2f m away; want <= 3.5", p[0], p[1], lat, lon, d)
		}
	}
}

// TestHashBitsRoundTrip: HashToBits and BitsToHash are inverses, and agree
// with EncodeBits on the cell of a point.
func TestHashBitsRoundTrip(t *testing.T) {
	for _, p := range [][2]float64{{48.8566, 2.3522}, {-33.86, 151.2}, {89.9, -179.9}, {0, 0}} {
		s := Encode(p[0], p[1], GeohashLen)
		b, ok := HashToBits(s)
		if !ok || b != EncodeBits(p[0], p[1], HashBits) || BitsToHash(b, GeohashLen) != s {
			t.Fatalf("%v: %q -> %x (%v), EncodeBits %x, back %q", p, s, b, ok, EncodeBits(p[0], p[1], HashBits), BitsToHash(b, GeohashLen))
		}
	}
	if _, ok := HashToBits("abc"); ok { // 'a' is not in the alphabet
		t.Fatal(`HashToBits("abc") ok; want false`)
	}
}
