// Package geo holds Cairn's pure geography: geohash encoding, great-circle
// distance, coordinate validation and the partition a hotspot belongs to.
//
// It does no IO and never reads the clock. Everything here is safe for
// concurrent use.
package geo

import (
	"errors"
	"math"
	"strings"

	"github.com/mmcloughlin/geohash"
)

// Partition numbers a log partition. Partitions are 0..Count-1.
type Partition uint32

// Default sizing; see docs/ARCHITECTURE.md, "The claim pipeline".
const (
	PartitionsDefault = 64
	PrefixLenDefault  = 4
	GeohashLen        = 9 // ~5 m cells; what a hotspot's geohash is stored at
	earthRadiusM      = 6371008.8
	PartitionsMax     = 4096
	PrefixLenMax      = GeohashLen
)

// ErrBadCoordinate reports a latitude/longitude that is not a finite point on Earth.
var ErrBadCoordinate = errors.New("coordinate out of range")

// ValidCoord reports whether lat/lon is a finite point: lat in [-90, 90], lon in [-180, 180].
func ValidCoord(lat, lon float64) bool {
	return !math.IsNaN(lat) && !math.IsNaN(lon) && lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180
}

// CheckCoord returns ErrBadCoordinate when ValidCoord is false.
func CheckCoord(lat, lon float64) error {
	if !ValidCoord(lat, lon) {
		return ErrBadCoordinate
	}
	return nil
}

// Encode returns the geohash of lat/lon with the given number of characters (1..12).
func Encode(lat, lon float64, chars int) string {
	return geohash.EncodeWithPrecision(lat, lon, uint(chars))
}

// DecodeCenter returns the centre of the geohash cell hash (lat, lon).
func DecodeCenter(hash string) (lat, lon float64) {
	return geohash.DecodeCenter(hash)
}

// ValidGeohash reports whether s is a non-empty geohash of at most 12 characters
// in the base-32 geohash alphabet.
func ValidGeohash(s string) bool {
	if len(s) == 0 || len(s) > 12 {
		return false
	}
	return geohash.Validate(s) == nil
}

// DistanceM is the great-circle (haversine) distance in metres.
func DistanceM(lat1, lon1, lat2, lon2 float64) float64 {
	const rad = math.Pi / 180
	dLat := (lat2 - lat1) * rad
	dLon := (lon2 - lon1) * rad
	a := math.Sin(dLat/2)*math.Sin(dLat/2) +
		math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	if a > 1 {
		a = 1
	}
	return 2 * earthRadiusM * math.Asin(math.Sqrt(a))
}

// PartitionOf maps a hotspot's geohash to its partition: FNV-1a of the first
// prefixLen characters, modulo count. Hotspots of one region share a partition.
func PartitionOf(hash string, prefixLen int, count int) Partition {
	if prefixLen < len(hash) {
		hash = hash[:prefixLen]
	}
	// FNV-1a, inlined so the hot path does not allocate a hash.Hash.
	h := uint32(2166136261)
	for i := 0; i < len(hash); i++ {
		h ^= uint32(hash[i])
		h *= 16777619
	}
	return Partition(h % uint32(count))
}

// RingsMax bounds Neighbors: at most (2*RingsMax+1)^2 cells.
const RingsMax = 8

// CellLen returns the longest geohash length, at most maxChars, whose cells
// cover a circle of radiusM around latitude lat within RingsMax rings.
func CellLen(lat, radiusM float64, maxChars int) int {
	for chars := maxChars; chars > 1; chars-- {
		if ringsFor(lat, radiusM, chars) <= RingsMax {
			return chars
		}
	}
	return 1
}

func ringsFor(lat, radiusM float64, chars int) int {
	box := geohash.BoundingBox(geohash.EncodeWithPrecision(lat, 0, uint(chars)))
	cellH := (box.MaxLat - box.MinLat) * 111_320.0
	cellW := (box.MaxLng - box.MinLng) * 111_320.0 * math.Cos(lat*math.Pi/180)
	if cellW < 1 {
		cellW = 1
	}
	return int(math.Ceil(math.Max(radiusM/cellH, radiusM/cellW)))
}

// Neighbors returns the geohash cells of the given length that cover a circle
// of radiusM metres around lat/lon (the centre cell and enough rings of
// neighbours). The answer is a superset; callers filter by DistanceM. Callers
// choose chars with CellLen; beyond RingsMax rings the cover is incomplete.
func Neighbors(lat, lon, radiusM float64, chars int) []string {
	center := geohash.EncodeWithPrecision(lat, lon, uint(chars))
	rings := min(ringsFor(lat, radiusM, chars), RingsMax)
	seen := map[string]struct{}{center: {}}
	out := []string{center}
	frontier := []string{center}
	for r := 0; r < rings; r++ {
		var next []string
		for _, c := range frontier {
			for _, n := range geohash.Neighbors(c) {
				if _, ok := seen[n]; ok {
					continue
				}
				seen[n] = struct{}{}
				out = append(out, n)
				next = append(next, n)
			}
		}
		frontier = next
	}
	return out
}

// Coordinates are kept at 1e-7 degree (about 1.1 cm at the equator) in
// fixed point: an int32 holds any latitude or longitude.
const e7 = 1e7

// ToE7 is lat or lon in units of 1e-7 degree, rounded to nearest.
func ToE7(deg float64) int32 { return int32(math.Round(deg * e7)) }

// FromE7 is the inverse of ToE7; FromE7(ToE7(x)) is the float64 a
// normalized hotspot coordinate holds, and ToE7(FromE7(v)) == v.
func FromE7(v int32) float64 { return float64(v) / e7 }

// RoundE7 rounds deg to the 1e-7 degree grid the engines keep.
func RoundE7(deg float64) float64 { return FromE7(ToE7(deg)) }

// HashBits is the number of bits of a GeohashLen-character geohash.
const HashBits = 5 * GeohashLen

// EncodeBits is the geohash of lat/lon as an integer of bits bits (5 per
// character): the same cell as Encode with bits/5 characters.
func EncodeBits(lat, lon float64, bits uint) uint64 {
	// The library wraps lat 90 to the southernmost cell (its integer
	// overflows); the pole belongs to the northernmost. (lon 180 wraps to
	// -180, which is the same meridian.)
	lat = min(lat, 90-1e-9)
	return geohash.EncodeIntWithPrecision(lat, lon, bits)
}

// Box is a geohash cell's extent in degrees.
type Box struct{ MinLat, MaxLat, MinLon, MaxLon float64 }

// CellBox is the extent of the cell whose geohash is the integer hash of bits bits.
func CellBox(hash uint64, bits uint) Box {
	b := geohash.BoundingBoxIntWithPrecision(hash, bits)
	return Box{b.MinLat, b.MaxLat, b.MinLng, b.MaxLng}
}

// MinDistanceM is a lower bound, in metres, of the great-circle distance from
// lat/lon to any point of b (0 when the point is inside). It is the larger of
// two bounds that hold for every point of b: the latitude gap (no path is
// shorter than its change of latitude), and, when lon is outside the cell's
// longitudes, the distance to the nearer of the great circles through the
// cell's two bounding meridians (a path into the cell crosses one of them).
func MinDistanceM(lat, lon float64, b Box) float64 {
	const rad = math.Pi / 180
	var d float64
	if lat < b.MinLat {
		d = (b.MinLat - lat) * rad
	} else if lat > b.MaxLat {
		d = (lat - b.MaxLat) * rad
	}
	if lon < b.MinLon || lon > b.MaxLon {
		cos := math.Abs(math.Cos(lat * rad))
		x := math.Min(math.Abs(math.Sin((lon-b.MinLon)*rad)), math.Abs(math.Sin((lon-b.MaxLon)*rad)))
		d = math.Max(d, math.Asin(math.Min(1, cos*x)))
	}
	return d * earthRadiusM
}

const base32Alphabet = "0123456789bcdefghjkmnpqrstuvwxyz"

// HashToBits is the integer form (5 bits per character) of a geohash of at
// most 12 characters; ok is false for another character or length.
func HashToBits(s string) (bits uint64, ok bool) {
	if len(s) > 12 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		v := strings.IndexByte(base32Alphabet, s[i])
		if v < 0 {
			return 0, false
		}
		bits = bits<<5 | uint64(v)
	}
	return bits, true
}

// BitsToHash is the inverse of HashToBits for a geohash of chars characters.
func BitsToHash(bits uint64, chars int) string {
	b := make([]byte, chars)
	for i := chars - 1; i >= 0; i-- {
		b[i] = base32Alphabet[bits&31]
		bits >>= 5
	}
	return string(b)
}
