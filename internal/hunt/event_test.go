package hunt

import (
	"math"
	"testing"
	"time"

	"pgregory.net/rapid"
)

func genEvent(t *rapid.T) Event {
	ident := rapid.StringMatching(`[a-z0-9:._-]{1,20}`)
	e := Event{
		Kind:        rapid.SampledFrom([]EventKind{KindClaimCompleted, KindSpendCompleted}).Draw(t, "kind"),
		Epoch:       Epoch{Partition: 0, Seq: Seq(rapid.Uint64Range(1, math.MaxUint64).Draw(t, "seq"))},
		At:          time.UnixMilli(rapid.Int64Range(0, 1<<45).Draw(t, "ms")).UTC(),
		Player:      PlayerID(ident.Draw(t, "player")),
		Key:         rapid.StringMatching(`[!-~]{1,255}`).Draw(t, "key"),
		Fingerprint: rapid.Uint64().Draw(t, "fp"),
		Outcome:     Outcome(rapid.IntRange(1, int(outcomeEnd)-1).Draw(t, "outcome")),
		Hunt:        HuntID(ident.Draw(t, "hunt")),
		Hotspot:     HotspotID(ident.Draw(t, "hotspot")),
		Lat:         rapid.Float64Range(-90, 90).Draw(t, "lat"),
		Lon:         rapid.Float64Range(-180, 180).Draw(t, "lon"),
		Geohash:     rapid.StringMatching(`[0-9b-hjkmnp-z]{0,9}`).Draw(t, "geohash"),
		Reward:      rapid.Int64().Draw(t, "reward"),
		Points:      rapid.Int64().Draw(t, "points"),
		TicketsLeft: rapid.Int64().Draw(t, "left"),
		Amount:      rapid.Int64().Draw(t, "amount"),
		Reason:      rapid.StringN(0, 50, 200).Draw(t, "reason"),
		Balance:     rapid.Int64().Draw(t, "balance"),
	}
	e.Epoch.Partition = 0
	return e
}

// TestEventRoundTrip: every event survives AppendEvent/DecodeEvent unchanged.
func TestEventRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		e := genEvent(t)
		b := AppendEvent(nil, &e)
		var got Event
		if err := DecodeEvent(b, &got); err != nil {
			t.Fatalf("DecodeEvent(AppendEvent(%+v)) = %v", e, err)
		}
		if got != e {
			t.Fatalf("round trip = %+v; want %+v", got, e)
		}
		// Every strict prefix is rejected, never mis-decoded.
		for i := 0; i < len(b); i++ {
			var x Event
			if DecodeEvent(b[:i], &x) == nil {
				t.Fatalf("DecodeEvent(prefix %d of %d) = nil; want error", i, len(b))
			}
		}
	})
}

// FuzzDecodeEvent: stored records never panic the decoder, and whatever
// decodes re-encodes to the same bytes (a canonical format).
func FuzzDecodeEvent(f *testing.F) {
	e := Event{Kind: KindClaimCompleted, Epoch: Epoch{Partition: 3, Seq: 9}, At: t0, Player: "p", Key: "k",
		Outcome: Granted, Hunt: "h", Hotspot: "s", Lat: 1, Lon: 2, Geohash: "u09tunq", Reward: 10, Points: 5}
	f.Add(AppendEvent(nil, &e))
	e.Kind, e.Outcome, e.Amount, e.Reason = KindSpendCompleted, Spent, 4, "hat"
	f.Add(AppendEvent(nil, &e))
	f.Add([]byte{1, 1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Event
		if DecodeEvent(b, &e) != nil {
			return
		}
		again := AppendEvent(nil, &e)
		var e2 Event
		if err := DecodeEvent(again, &e2); err != nil || !eventsEqual(e, e2) {
			t.Fatalf("re-decode = %+v, %v; want %+v", e2, err, e)
		}
	})
}

// eventsEqual compares events treating NaN coordinates bit-wise.
func eventsEqual(a, b Event) bool {
	if math.Float64bits(a.Lat) != math.Float64bits(b.Lat) || math.Float64bits(a.Lon) != math.Float64bits(b.Lon) {
		return false
	}
	a.Lat, a.Lon, b.Lat, b.Lon = 0, 0, 0, 0
	return a == b
}
