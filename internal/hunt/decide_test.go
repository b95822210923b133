package hunt

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func testHunt() *Hunt {
	return &Hunt{ID: "h", ClaimRadiusM: 50, MaxSpeedMps: 10}
}

func testHotspot() *Hotspot {
	s := &Hotspot{ID: "s", Lat: 48.8566, Lon: 2.3522, Tickets: 2, Reward: 10, Points: 5}
	if err := s.Normalize(); err != nil {
		panic(err)
	}
	return s
}

func TestDecideClaim(t *testing.T) {
	at := func(lat, lon float64) *ClaimRequest {
		return &ClaimRequest{Player: "p", Key: "k", Hunt: "h", Hotspot: "s", Lat: lat, Lon: lon}
	}
	here := at(48.8566, 2.3522)
	far := at(48.8600, 2.3522) // ~378 m north
	cases := []struct {
		name string
		edit func(st *ClaimState)
		req  *ClaimRequest
		now  time.Time
		want Outcome
	}{
		{"granted", nil, here, t0, Granted},
		{"too far", nil, far, t0, TooFar},
		{"sold out", func(st *ClaimState) { st.Granted = 2 }, here, t0, SoldOut},
		{"sold out wins over too far", func(st *ClaimState) { st.Granted = 2 }, far, t0, SoldOut},
		{"already claimed", func(st *ClaimState) { st.AlreadyClaimed = true; st.Granted = 2 }, here, t0, AlreadyClaimed},
		{"hunt not started", func(st *ClaimState) { st.Hunt.StartsAt = t0.Add(time.Second) }, here, t0, NotOpen},
		{"hunt ended (end exclusive)", func(st *ClaimState) { st.Hunt.EndsAt = t0 }, here, t0, NotOpen},
		{"hotspot not open", func(st *ClaimState) { st.Hotspot.OpensAt = t0.Add(time.Minute) }, here, t0, NotOpen},
		{"hotspot closed", func(st *ClaimState) { st.Hotspot.ClosesAt = t0.Add(-time.Minute) }, here, t0, NotOpen},
		{"not open wins over already claimed", func(st *ClaimState) {
			st.Hotspot.ClosesAt = t0.Add(-time.Minute)
			st.AlreadyClaimed = true
		}, here, t0, NotOpen},
		{"implausible: 1 km in 10 s", func(st *ClaimState) {
			st.Last = Position{Lat: 48.8656, Lon: 2.3522, At: t0.Add(-10 * time.Second)}
		}, here, t0, ImplausibleMovement},
		{"plausible: 1 km in 200 s", func(st *ClaimState) {
			st.Last = Position{Lat: 48.8656, Lon: 2.3522, At: t0.Add(-200 * time.Second)}
		}, here, t0, Granted},
		{"speed check off", func(st *ClaimState) {
			st.Hunt.MaxSpeedMps = 0
			st.Last = Position{Lat: 10, Lon: 10, At: t0.Add(-time.Second)}
		}, here, t0, Granted},
		{"same spot twice within grace", func(st *ClaimState) {
			st.Last = Position{Lat: 48.85661, Lon: 2.3522, At: t0}
		}, here, t0, Granted},
	}
	for _, c := range cases {
		st := &ClaimState{Hunt: testHunt(), Hotspot: testHotspot()}
		if c.edit != nil {
			c.edit(st)
		}
		if got := DecideClaim(st, c.req, c.now); got != c.want {
			t.Errorf("%s: DecideClaim = %v; want %v", c.name, got, c.want)
		}
	}
}

func TestDecideSpend(t *testing.T) {
	for _, c := range []struct {
		balance, amount int64
		want            Outcome
	}{{10, 10, Spent}, {10, 11, InsufficientFunds}, {0, 1, InsufficientFunds}, {100, 1, Spent}} {
		if got := DecideSpend(c.balance, &SpendRequest{Amount: c.amount}); got != c.want {
			t.Errorf("DecideSpend(%d, %d) = %v; want %v", c.balance, c.amount, got, c.want)
		}
	}
}

func TestOutcomeNames(t *testing.T) {
	for o := Outcome(1); o < outcomeEnd; o++ {
		got, ok := ParseOutcome(o.String())
		if !ok || got != o {
			t.Errorf("ParseOutcome(%q) = %v, %v; want %v", o.String(), got, ok, o)
		}
	}
	if _, ok := ParseOutcome("none"); ok {
		t.Errorf("ParseOutcome(none) accepted")
	}
}

func TestValidKeyAndID(t *testing.T) {
	long := make([]byte, 256)
	for i := range long {
		long[i] = 'a'
	}
	for _, c := range []struct {
		s    string
		want bool
	}{{"a", true}, {"~!abc-123", true}, {"", false}, {"a b", false}, {"a\x7f", false}, {"é", false},
		{string(long[:255]), true}, {string(long), false}} {
		if got := ValidKey(c.s); got != c.want {
			t.Errorf("ValidKey(%q) = %v; want %v", c.s, got, c.want)
		}
	}
	for _, c := range []struct {
		s    string
		want bool
	}{{"player-1", true}, {"a:b.c_d", true}, {"", false}, {"a/b", false}, {"a b", false}, {string(long[:129]), false}} {
		if got := ValidID(c.s); got != c.want {
			t.Errorf("ValidID(%q) = %v; want %v", c.s, got, c.want)
		}
	}
}

func TestFingerprint(t *testing.T) {
	a := ClaimRequest{Hunt: "h", Hotspot: "s", Lat: 1, Lon: 2}
	b := a
	b.Hotspot = "t"
	c := a
	c.Lat = 1.0000001
	if a.Fingerprint() == b.Fingerprint() || a.Fingerprint() == c.Fingerprint() {
		t.Errorf("fingerprints collide: %x %x %x", a.Fingerprint(), b.Fingerprint(), c.Fingerprint())
	}
	d := a
	d.Player, d.Key = "other", "other" // who and which key are not content
	if a.Fingerprint() != d.Fingerprint() {
		t.Errorf("fingerprint depends on player/key")
	}
	s1 := SpendRequest{Amount: 5, Reason: "x"}
	s2 := SpendRequest{Amount: 5, Reason: "y"}
	if s1.Fingerprint() == s2.Fingerprint() || s1.Fingerprint() == 0 {
		t.Errorf("spend fingerprints: %x %x", s1.Fingerprint(), s2.Fingerprint())
	}
}

func TestNormalize(t *testing.T) {
	h := Hunt{ID: "h"}
	if err := h.Normalize(); err != nil || h.ClaimRadiusM != ClaimRadiusMDefault {
		t.Fatalf("Normalize(default) = %v, radius %v", err, h.ClaimRadiusM)
	}
	bad := []Hunt{{ID: ""}, {ID: "h", ClaimRadiusM: -1}, {ID: "h", MaxSpeedMps: -1},
		{ID: "h", StartsAt: t0, EndsAt: t0}}
	for _, b := range bad {
		if err := b.Normalize(); err == nil {
			t.Errorf("Hunt.Normalize(%+v) = nil; want error", b)
		}
	}
	badSpots := []Hotspot{{ID: "s", Lat: 91}, {ID: "s", Lon: -181}, {ID: "s", Tickets: -1},
		{ID: "s", Reward: -1}, {ID: "", Lat: 1}, {ID: "s", OpensAt: t0, ClosesAt: t0.Add(-1)}}
	for _, b := range badSpots {
		if err := b.Normalize(); err == nil {
			t.Errorf("Hotspot.Normalize(%+v) = nil; want error", b)
		}
	}
}

func TestConsistencyToken(t *testing.T) {
	e := Epoch{Partition: 17, Seq: 12345}
	got, err := ParseConsistencyToken(ConsistencyToken(e))
	if err != nil || got != e {
		t.Fatalf("ParseConsistencyToken(%q) = %v, %v; want %v", ConsistencyToken(e), got, err, e)
	}
	for _, bad := range []string{"", "1", "a.b", "1.0", "-1.2", "1.2.3", "99999999999.1"} {
		if _, err := ParseConsistencyToken(bad); err == nil {
			t.Errorf("ParseConsistencyToken(%q) = nil error", bad)
		}
	}
}

func BenchmarkDecideClaim(b *testing.B) {
	st := &ClaimState{Hunt: testHunt(), Hotspot: testHotspot(),
		Last: Position{Lat: 48.8560, Lon: 2.3520, At: t0.Add(-time.Minute)}}
	req := &ClaimRequest{Player: "p", Key: "k", Hunt: "h", Hotspot: "s", Lat: 48.8566, Lon: 2.3522}
	b.ReportAllocs()
	for b.Loop() {
		if DecideClaim(st, req, t0) != Granted {
			b.Fatal("not granted")
		}
	}
}
