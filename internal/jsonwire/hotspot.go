package jsonwire

import (
	"strconv"

	"github.com/cairnhq/cairn/internal/hunt"
)

// DecodeHotspot decodes one imported hotspot object into hs with
// StrictUnmarshal's rules (fields, required). The common shape, an object of
// id, lat, lon, tickets and optionally reward and points, with plain ASCII
// ids and numbers, is decoded directly, without reflection: it is most of an
// import's CPU otherwise. Anything else (times, escapes, unknown or repeated
// members, null, bad syntax) goes to StrictUnmarshal, which also writes every
// error, so both paths answer alike (FuzzDecodeHotspot).
func DecodeHotspot(b []byte, hs *hunt.Hotspot, fields []string, required uint64) error {
	if fastHotspot(b, hs) {
		return nil
	}
	*hs = hunt.Hotspot{}
	return StrictUnmarshal(b, hs, fields, required)
}

// fastHotspot decodes b if it has the common shape and reports whether it did.
func fastHotspot(b []byte, hs *hunt.Hotspot) bool {
	var out hunt.Hotspot
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i++
	const (
		fID = 1 << iota
		fLat
		fLon
		fTickets
		fReward
		fPoints
	)
	seen := 0
	for first := true; ; first = false {
		i = skipWS(b, i)
		if i >= len(b) {
			return false
		}
		if b[i] == '}' {
			if first {
				return false
			}
			i++
			break
		}
		if !first {
			if b[i] != ',' {
				return false
			}
			i = skipWS(b, i+1)
		}
		key, j, ok := plainString(b, i)
		if !ok {
			return false
		}
		i = skipWS(b, j)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipWS(b, i+1)
		var bit int
		switch key {
		case "id":
			bit = fID
			var s string
			if s, i, ok = plainString(b, i); !ok {
				return false
			}
			out.ID = hunt.HotspotID(s)
		case "lat", "lon":
			bit = fLat
			if key == "lon" {
				bit = fLon
			}
			var tok []byte
			if tok, i, ok = number(b, i, false); !ok {
				return false
			}
			f, err := strconv.ParseFloat(string(tok), 64)
			if err != nil {
				return false
			}
			if key == "lat" {
				out.Lat = f
			} else {
				out.Lon = f
			}
		case "tickets", "reward", "points":
			var tok []byte
			if tok, i, ok = number(b, i, true); !ok {
				return false
			}
			n, err := strconv.ParseInt(string(tok), 10, 64)
			if err != nil {
				return false
			}
			switch key {
			case "tickets":
				bit, out.Tickets = fTickets, n
			case "reward":
				bit, out.Reward = fReward, n
			default:
				bit, out.Points = fPoints, n
			}
		default:
			return false
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
	}
	if skipWS(b, i) != len(b) || seen&(fID|fLat|fLon|fTickets) != fID|fLat|fLon|fTickets {
		return false
	}
	*hs = out
	return true
}

func skipWS(b []byte, i int) int {
	for i < len(b) && IsSpace(b[i]) {
		i++
	}
	return i
}

// plainString reads a JSON string at b[i] made only of printable ASCII
// without escapes; ok is false for anything else.
func plainString(b []byte, i int) (s string, next int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return "", i, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return string(b[i+1 : j]), j + 1, true
		case c == '\\' || c < 0x20 || c >= 0x7f:
			return "", i, false
		}
	}
	return "", i, false
}

// number reads a JSON number at b[i] (an integer only, when integer is set).
func number(b []byte, i int, integer bool) (tok []byte, next int, ok bool) {
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() bool {
		s := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i > s
	}
	if i < len(b) && b[i] == '0' {
		i++
	} else if !digits() {
		return nil, start, false
	}
	if !integer {
		if i < len(b) && b[i] == '.' {
			i++
			if !digits() {
				return nil, start, false
			}
		}
		if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
			i++
			if i < len(b) && (b[i] == '+' || b[i] == '-') {
				i++
			}
			if !digits() {
				return nil, start, false
			}
		}
	}
	// The number must end here: a delimiter or the end of the input.
	if i < len(b) {
		switch b[i] {
		case ',', '}', ' ', '\t', '\n', '\r':
		default:
			return nil, start, false
		}
	}
	return b[start:i], i, true
}
