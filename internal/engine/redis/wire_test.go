package redis

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/hunt"
)

// encodeEvent is the Go mirror of cairn.lua's event(), for tests.
func encodeEvent(e *hunt.Event) string {
	return strings.Join([]string{eventVersion, strconv.Itoa(int(e.Kind)), strconv.Itoa(int(e.Outcome)),
		strconv.FormatUint(uint64(e.Epoch.Partition), 10), strconv.FormatUint(uint64(e.Epoch.Seq), 10),
		strconv.FormatInt(e.At.UnixMilli(), 10), string(e.Player), e.Key, strconv.FormatUint(e.Fingerprint, 10),
		string(e.Hunt), string(e.Hotspot), formatFloat(e.Lat), formatFloat(e.Lon), e.Geohash,
		strconv.FormatInt(e.Reward, 10), strconv.FormatInt(e.Points, 10), strconv.FormatInt(e.TicketsLeft, 10),
		strconv.FormatInt(e.Amount, 10), strconv.FormatInt(e.Balance, 10), e.Reason}, " ")
}

func TestEventRoundTrip(t *testing.T) {
	evs := []hunt.Event{
		{Kind: hunt.KindClaimCompleted, Epoch: hunt.Epoch{Partition: 17, Seq: 42}, At: time.UnixMilli(1_900_000_000_123).UTC(),
			Player: "p-1", Key: "k|!~", Fingerprint: 1<<64 - 1, Outcome: hunt.Granted, Hunt: "h", Hotspot: "s",
			Lat: 48.856600000000001, Lon: -0.1278, Geohash: "u09tvw0f6", Reward: 10, Points: 3, TicketsLeft: 0},
		{Kind: hunt.KindSpendCompleted, Epoch: hunt.Epoch{Partition: 0, Seq: 1}, At: time.UnixMilli(0).UTC(),
			Player: "p", Key: "k", Fingerprint: 1, Outcome: hunt.Spent, Amount: 5, Balance: 0, Reason: " a  hat, with spaces "},
	}
	for _, want := range evs {
		var got hunt.Event
		if err := decodeEvent(encodeEvent(&want), &got); err != nil || got != want {
			t.Errorf("decodeEvent(encodeEvent(%+v)) = %+v, %v; want the same event", want, got, err)
		}
	}
	for _, bad := range []string{"", "1", "2 1 1 0 1 0 p k 1 h s 0 0 g 0 0 0 0 0 ", "1 9 1 0 1 0 p k 1 h s 0 0 g 0 0 0 0 0 ",
		"1 1 1 0 0 0 p k 1 h s 0 0 g 0 0 0 0 0 ", "1 1 1 0 1 0 p k x h s 0 0 g 0 0 0 0 0 "} {
		var ev hunt.Event
		if err := decodeEvent(bad, &ev); err == nil {
			t.Errorf("decodeEvent(%q) = nil; want an error", bad)
		}
	}
}

func TestParseAnswer(t *testing.T) {
	for in, want := range map[string]answer{
		"ok a.1 1 2 3":        {rid: "a.1", event: "1 2 3"},
		"err key_reused":      {code: "key_reused"},
		"err unknown_hunt":    {code: "unknown_hunt"},
		"ok a.1 x y z reason": {rid: "a.1", event: "x y z reason"},
	} {
		if got, err := parseAnswer(in); err != nil || got != want {
			t.Errorf("parseAnswer(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "ok", "ok rid", "err", "err ", "maybe x y"} {
		if got, err := parseAnswer(bad); err == nil {
			t.Errorf("parseAnswer(%q) = %+v; want an error", bad, got)
		}
	}
}

func TestNS20OrdersLikeTime(t *testing.T) {
	ts := []time.Time{time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC), time.Unix(0, 0), time.Unix(1, 999),
		time.Unix(1_900_000_000, 1), time.Date(2261, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}
	for i := 1; i < len(ts); i++ {
		a, b := formatNS20(ts[i-1]), formatNS20(ts[i])
		if len(a) != 20 || len(b) != 20 || a > b {
			t.Errorf("formatNS20(%v) = %q, formatNS20(%v) = %q; want 20 digits, ordered", ts[i-1], a, ts[i], b)
		}
	}
	if formatNS20(time.Time{}) != "" {
		t.Errorf("formatNS20(zero) = %q; want \"\" (no bound)", formatNS20(time.Time{}))
	}
	now := time.Unix(1_900_000_000, 123456789).UTC()
	if got, err := parseNS20(formatNS20(now)); err != nil || !got.Equal(now) {
		t.Errorf("parseNS20(formatNS20(%v)) = %v, %v", now, got, err)
	}
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add("1 1 1 17 42 1900000000123 p k 18446744073709551615 h s 48.8566 2.3522 u09tvw0f6 10 3 0 0 0 ")
	f.Add("1 2 8 0 1 0 p k 1   0 0  0 0 0 5 0 a hat")
	f.Fuzz(func(t *testing.T, s string) {
		var ev hunt.Event
		if err := decodeEvent(s, &ev); err != nil {
			return
		}
		var again hunt.Event
		if err := decodeEvent(encodeEvent(&ev), &again); err != nil || again != ev {
			t.Fatalf("decodeEvent(encodeEvent(%+v)) = %+v, %v; want the same event", ev, again, err)
		}
	})
}

func FuzzDecodeLedger(f *testing.F) {
	f.Add("claim 3 7 1900000000123 10 h s ")
	f.Add("spend 3 8 1900000000124 -5   a hat")
	f.Fuzz(func(t *testing.T, s string) {
		le, err := decodeLedger(s)
		if err != nil {
			return
		}
		if le.Kind != "claim" && le.Kind != "spend" {
			t.Fatalf("decodeLedger(%q) kind %q", s, le.Kind)
		}
	})
}

func FuzzParseAnswer(f *testing.F) {
	f.Add("ok a.1 1 2 3")
	f.Add("err key_reused")
	f.Fuzz(func(t *testing.T, s string) {
		a, err := parseAnswer(s)
		if err == nil && (a.code == "") == (a.rid == "") {
			t.Fatalf("parseAnswer(%q) = %+v; want exactly a decision or an error code", s, a)
		}
	})
}
