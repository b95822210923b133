// Package geo holds Cairn's pure geography: geohash encoding, great-circle
// distance, coordinate validation and the partition a hotspot belongs to.
//
// It does no IO and never reads the clock. Everything here is safe for
// concurrent use.
package geo

import (
	"errors"
	"math"

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
