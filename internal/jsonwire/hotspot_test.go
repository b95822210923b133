package jsonwire

import (
	"testing"

	"github.com/cairnhq/cairn/internal/hunt"
)

// The fields and required bits of an imported hotspot, as the import
// endpoint passes them (httpapi's openapi test holds that list to the spec).
var testHotspotFields = []string{"id", "lat", "lon", "tickets", "reward", "points", "opens_at", "closes_at"}

const testHotspotRequired = 1<<0 | 1<<1 | 1<<2 | 1<<3

// FuzzDecodeHotspot: the fast path decodes exactly what StrictUnmarshal
// accepts, to the same value; whatever it leaves goes to StrictUnmarshal.
func FuzzDecodeHotspot(f *testing.F) {
	for _, s := range []string{
		`{"id":"h1","lat":48.8566,"lon":2.3522,"tickets":3,"reward":10,"points":5}`,
		` { "tickets" : 1 , "id" : "a" , "lon" : -0.5e1 , "lat" : 0 } `,
		`{"id":"h1","lat":1,"lon":2,"tickets":1,"opens_at":"2026-01-01T00:00:00Z"}`,
		`{"id":"h1","lat":1,"lon":2}`,
		`{"id":"h1","lat":1,"lon":2,"tickets":1.0}`,
		`{"id":"h1","lat":01,"lon":2,"tickets":1}`,
		`{"id":"h\u0031","lat":1,"lon":2,"tickets":1}`,
		`{"id":"h1","id":"h2","lat":1,"lon":2,"tickets":1}`,
		`{"id":"h1","lat":1e400,"lon":2,"tickets":1}`,
		`{"id":"h1","lat":1,"lon":2,"tickets":99999999999999999999}`,
		`{"id":"h1","lat":1,"lon":2,"tickets":1}x`,
		`{"id":"h1","lat":1,"lon":2,"tickets":null}`,
		`{"ID":"h1","lat":1,"lon":2,"tickets":1}`,
		`{}`, `[]`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast hunt.Hotspot
		ok := fastHotspot(b, &fast)
		var slow hunt.Hotspot
		err := StrictUnmarshal(b, &slow, testHotspotFields, testHotspotRequired)
		if ok && err != nil {
			t.Fatalf("fast path accepts %q, StrictUnmarshal refuses it: %v", b, err)
		}
		if ok && fast != slow {
			t.Fatalf("%q: fast path %+v, StrictUnmarshal %+v", b, fast, slow)
		}
		var got hunt.Hotspot
		gerr := DecodeHotspot(b, &got, testHotspotFields, testHotspotRequired)
		if (gerr == nil) != (err == nil) || (err != nil && gerr.Error() != err.Error()) || (err == nil && got != slow) {
			t.Fatalf("%q: DecodeHotspot = %+v, %v; StrictUnmarshal = %+v, %v", b, got, gerr, slow, err)
		}
	})
}

// TestFastHotspotTakesTheCommonShape: the generator's lines and the usual
// spacing take the fast path (else the import would be slow, not wrong).
func TestFastHotspotTakesTheCommonShape(t *testing.T) {
	for _, s := range []string{
		`{"id":"h12","lat":-12.345678,"lon":170.000001,"tickets":7,"reward":3,"points":20}`,
		`{ "id": "gold-1", "lat": 48.85, "lon": 2.35, "tickets": 1 }`,
	} {
		var hs hunt.Hotspot
		if !fastHotspot([]byte(s), &hs) || hs.ID == "" || hs.Tickets == 0 {
			t.Errorf("fastHotspot(%s) = %+v, false; want the fast path", s, hs)
		}
	}
}

func BenchmarkDecodeHotspot(b *testing.B) {
	line := []byte(`{"id":"h123456","lat":-12.345678,"lon":170.000001,"tickets":7,"reward":3,"points":20}`)
	var hs hunt.Hotspot
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := DecodeHotspot(line, &hs, testHotspotFields, testHotspotRequired); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("strict", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := StrictUnmarshal(line, &hs, testHotspotFields, testHotspotRequired); err != nil {
				b.Fatal(err)
			}
		}
	})
}
