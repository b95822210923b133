package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// fakeSource is a handcrafted log plus the state an engine would report.
type fakeSource struct {
	events   []hunt.Event
	hunts    []hunt.Hunt
	hotspots map[hunt.HuntID][]hunt.HotspotView
	wallets  map[hunt.PlayerID]int64
	err      error // returned by Events when set
	reads    int   // Events calls from the start of the log
	tails    int   // Events calls after some seqs
	// onState, when set, runs at every read of the state (Hunts, Wallet):
	// the live writes a test lands between the audit's reads of the log.
	onState func(s *fakeSource)
	// onEvents, when set, runs at every Events call, before it reads.
	onEvents func(s *fakeSource)
}

// write appends e to partition p's log with the next seq.
func (s *fakeSource) write(p geo.Partition, e hunt.Event) {
	var seq hunt.Seq
	for _, o := range s.events {
		if o.Epoch.Partition == p {
			seq = max(seq, o.Epoch.Seq)
		}
	}
	e.Epoch = hunt.Epoch{Partition: p, Seq: seq + 1}
	e.At = t0.Add(time.Duration(len(s.events)) * time.Millisecond)
	s.events = append(s.events, e)
}

func (s *fakeSource) Events(ctx context.Context, after []hunt.Seq, fn func(*hunt.Event) error) error {
	if after == nil {
		s.reads++
	} else {
		s.tails++
	}
	if s.onEvents != nil {
		s.onEvents(s)
	}
	if s.err != nil {
		return s.err
	}
	for i := range s.events {
		e := s.events[i] // fn must not keep it; hand out a copy like a decoder would
		if p := int(e.Epoch.Partition); p < len(after) && e.Epoch.Seq <= after[p] {
			continue
		}
		if err := fn(&e); err != nil {
			return err
		}
	}
	return nil
}

func (s *fakeSource) Hunts(ctx context.Context) ([]hunt.Hunt, error) {
	if s.onState != nil {
		s.onState(s)
	}
	return s.hunts, nil
}

func (s *fakeSource) Hotspots(ctx context.Context, id hunt.HuntID, fn func(hunt.HotspotView) error) error {
	vs, ok := s.hotspots[id]
	if !ok {
		return hunt.ErrUnknownHunt
	}
	for _, v := range vs {
		if err := fn(v); err != nil {
			return err
		}
	}
	return nil
}

func (s *fakeSource) Wallet(ctx context.Context, p hunt.PlayerID) (hunt.Wallet, error) {
	if s.onState != nil {
		s.onState(s)
	}
	return hunt.Wallet{Player: p, Balance: s.wallets[p]}, nil
}

type fakeScores struct {
	scores map[string]int64 // "hunt/player"
	waited []hunt.Epoch
	onWait func() // when set, runs at every Wait: the engine publishing
}

func (f *fakeScores) Score(h hunt.HuntID, region string, p hunt.PlayerID) (int, int64, bool) {
	if region != "" {
		return 0, 0, false
	}
	s, ok := f.scores[string(h)+"/"+string(p)]
	return 1, s, ok
}

func (f *fakeScores) Wait(ctx context.Context, e hunt.Epoch) error {
	f.waited = append(f.waited, e)
	if f.onWait != nil {
		f.onWait()
	}
	return nil
}

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// logBuilder hands out contiguous seqs per partition.
type logBuilder struct {
	seq    map[geo.Partition]hunt.Seq
	events []hunt.Event
}

func (b *logBuilder) add(p geo.Partition, e hunt.Event) {
	if b.seq == nil {
		b.seq = map[geo.Partition]hunt.Seq{}
	}
	b.seq[p]++
	e.Epoch = hunt.Epoch{Partition: p, Seq: b.seq[p]}
	e.At = t0.Add(time.Duration(len(b.events)) * time.Millisecond)
	b.events = append(b.events, e)
}

func claim(player, key, spot string, out hunt.Outcome, reward, points int64) hunt.Event {
	e := hunt.Event{Kind: hunt.KindClaimCompleted, Player: hunt.PlayerID(player), Key: key,
		Hunt: "h", Hotspot: hunt.HotspotID(spot), Outcome: out}
	if out == hunt.Granted {
		e.Reward, e.Points = reward, points
	}
	return e
}

func spend(player, key string, out hunt.Outcome, amount, balance int64) hunt.Event {
	return hunt.Event{Kind: hunt.KindSpendCompleted, Player: hunt.PlayerID(player), Key: key,
		Outcome: out, Amount: amount, Balance: balance}
}

// clean builds a consistent log over two partitions and the matching state:
// spot a (2 tickets, both granted), spot b (5 tickets, 1 granted), grants to
// alice (a, b) and bob (a), rejected claims, and spends of alice.
func clean() (*fakeSource, *fakeScores) {
	var b logBuilder
	b.add(0, claim("alice", "k1", "a", hunt.Granted, 10, 100))
	b.add(0, claim("bob", "k1", "a", hunt.Granted, 10, 100))
	b.add(0, claim("carol", "k1", "a", hunt.SoldOut, 0, 0))
	b.add(0, claim("alice", "k2", "a", hunt.AlreadyClaimed, 0, 0))
	b.add(1, claim("alice", "k3", "b", hunt.Granted, 7, 70))
	b.add(1, claim("dave", "k1", "b", hunt.TooFar, 0, 0))
	b.add(2, spend("alice", "k4", hunt.Spent, 12, 5))
	b.add(2, spend("alice", "k5", hunt.InsufficientFunds, 50, 0))
	b.add(2, spend("alice", "k6", hunt.Spent, 5, 0))
	src := &fakeSource{
		events: b.events,
		hunts:  []hunt.Hunt{{ID: "h"}},
		hotspots: map[hunt.HuntID][]hunt.HotspotView{"h": {
			{Hotspot: hunt.Hotspot{ID: "a", Tickets: 2}, TicketsLeft: 0},
			{Hotspot: hunt.Hotspot{ID: "b", Tickets: 5}, TicketsLeft: 4},
			{Hotspot: hunt.Hotspot{ID: "c", Tickets: 3}, TicketsLeft: 3},
		}},
		wallets: map[hunt.PlayerID]int64{"alice": 0, "bob": 10},
	}
	sc := &fakeScores{scores: map[string]int64{"h/alice": 170, "h/bob": 100}}
	return src, sc
}

func mustCheck(t *testing.T, src Source, sc Scores) Report {
	t.Helper()
	r, err := Check(context.Background(), src, sc)
	if err != nil {
		t.Fatalf("Check() error = %v; want nil", err)
	}
	return r
}

func TestCheckCleanLog(t *testing.T) {
	src, sc := clean()
	r := mustCheck(t, src, sc)
	if !r.OK || r.ViolationCount != 0 || len(r.Violations) != 0 {
		t.Fatalf("Check(clean) = %+v; want OK with no violations", r)
	}
	want := Report{OK: true, Events: 9, Claims: 6, Grants: 3, Spends: 2, Players: 4, Hotspots: 3,
		Checked: []string{I1, I2, I3, I4, I5, I7}, Violations: []Violation{}, Rounds: 1}
	if got := fmt.Sprintf("%+v", r); got != fmt.Sprintf("%+v", want) {
		t.Errorf("Check(clean) = %s; want %+v", got, want)
	}
	const verdict = "verify: OK: 9 events, 6 claims, 3 grants, 2 spends, 4 players, 3 hotspots; I1 I2 I3 I4 I5 I7 hold"
	if got := r.Verdict(); got != verdict {
		t.Errorf("Verdict() = %q; want %q", got, verdict)
	}
	// The projection was asked to catch up with the last epoch of each partition.
	wantWaits := []hunt.Epoch{{Partition: 0, Seq: 4}, {Partition: 1, Seq: 2}, {Partition: 2, Seq: 3}}
	if !slices.Equal(sc.waited, wantWaits) {
		t.Errorf("Wait calls = %v; want %v", sc.waited, wantWaits)
	}
}

func TestCheckWithoutScoresSkipsI5(t *testing.T) {
	src, _ := clean()
	src.events[0].Points = 999 // would break I5, but there is no projection to compare with
	r := mustCheck(t, src, nil)
	if !r.OK {
		t.Fatalf("Check(nil scores) = %+v; want OK", r)
	}
	if !slices.Equal(r.Checked, []string{I1, I2, I3, I4, I7}) {
		t.Errorf("Checked = %v; want I1 I2 I3 I4 I7", r.Checked)
	}
	if !strings.HasSuffix(r.Verdict(), "I1 I2 I3 I4 I7 hold") {
		t.Errorf("Verdict() = %q; want it to end with the checked invariants", r.Verdict())
	}
}

// TestCheckDetects feeds one violating log per invariant; each must be found
// under the right invariant with a detail that names the culprit.
func TestCheckDetects(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(src *fakeSource, sc *fakeScores)
		inv    string
		detail string
	}{
		{"I1 more grants than tickets", func(src *fakeSource, sc *fakeScores) {
			// carol's sold_out becomes a grant: 3 grants of a 2-ticket hotspot.
			src.events[2].Outcome, src.events[2].Reward, src.events[2].Points = hunt.Granted, 10, 100
			src.wallets["carol"] = 10
			sc.scores["h/carol"] = 100
		}, I1, "hotspot h/a granted 3 > tickets 2"},
		{"I2 two grants to one player", func(src *fakeSource, sc *fakeScores) {
			src.events[3].Outcome, src.events[3].Reward, src.events[3].Points = hunt.Granted, 10, 100
			src.hotspots["h"][0].Tickets = 3
			src.wallets["alice"] += 10
			sc.scores["h/alice"] += 100
		}, I2, "player alice granted hotspot h/a twice: 0.1 and 0.4"},
		{"I3 one key decided twice", func(src *fakeSource, sc *fakeScores) {
			src.events[3].Key = "k1" // alice's already_claimed reuses her first key
		}, I3, `player alice key "k1" decided twice: 0.1 and 0.4`},
		{"I3 key shared by a claim and a spend", func(src *fakeSource, sc *fakeScores) {
			src.events[7].Key = "k3"
		}, I3, `player alice key "k3" decided twice: 1.1 and 2.2`},
		{"I4 balance differs from the fold", func(src *fakeSource, sc *fakeScores) {
			src.wallets["bob"] = 20 // a doubled credit
		}, I4, "player bob balance 20, fold says 10 (credits 10 − spent 0)"},
		{"I4 spend left a negative balance", func(src *fakeSource, sc *fakeScores) {
			src.events[8].Balance = -1
		}, I4, "player alice: spend 2.3 left balance -1 < 0"},
		{"I4 spend backed by credits that do not exist", func(src *fakeSource, sc *fakeScores) {
			src.events[6].Amount, src.events[6].Balance = 20, 0 // 20 + 5 spent of 17 credited
			src.events[8].Balance = 0
			src.wallets["alice"] = -8
		}, I4, "player alice spent 25 > credited 17"},
		{"I4 spend balance above all credits", func(src *fakeSource, sc *fakeScores) {
			src.events[6].Balance = 50 // claims 62 after spending 12; only 17 ever credited
		}, I4, "player alice: spend 2.1 implies credits ≥ 62 (balance after + spent so far), the log credits 17"},
		{"I5 score differs", func(src *fakeSource, sc *fakeScores) {
			sc.scores["h/bob"] = 200
		}, I5, "hunt h player bob score 200, fold says 100"},
		{"I5 granted player unranked", func(src *fakeSource, sc *fakeScores) {
			delete(sc.scores, "h/alice")
		}, I5, "hunt h player alice unranked, fold says score 170"},
		{"I7 seq gap", func(src *fakeSource, sc *fakeScores) {
			src.events[1].Epoch.Seq = 3
			src.events[2].Epoch.Seq = 4
			src.events[3].Epoch.Seq = 5
		}, I7, "partition 0: seq 3 follows 1 (want 2)"},
		{"I7 partition not starting at 1", func(src *fakeSource, sc *fakeScores) {
			for i := 4; i <= 5; i++ {
				src.events[i].Epoch.Seq += 10
			}
		}, I7, "partition 1: seq 11 follows 0 (want 1)"},
		{"I7 seq repeated", func(src *fakeSource, sc *fakeScores) {
			src.events[5].Epoch.Seq = 1
		}, I7, "partition 1: seq 1 follows 1 (want 2)"},
		{"I7 tickets_left differs from the fold", func(src *fakeSource, sc *fakeScores) {
			src.hotspots["h"][1].TicketsLeft = 5 // the engine forgot alice's grant of b
		}, I7, "hotspot h/b tickets_left 5, fold says 4 (tickets 5 − granted 1)"},
		{"I7 grant of a hotspot the engine does not list", func(src *fakeSource, sc *fakeScores) {
			src.hotspots["h"] = src.hotspots["h"][:1] // b is gone
		}, I7, "log grants 1 ticket(s) of hotspot h/b that the engine does not list"},
		{"I7 claim with a spend outcome", func(src *fakeSource, sc *fakeScores) {
			src.events[5].Outcome = hunt.Spent
		}, I7, "claim 1.2 has outcome spent"},
		{"I7 unknown event kind", func(src *fakeSource, sc *fakeScores) {
			src.events[5].Kind = 9
		}, I7, "event 1.2 has unknown kind 9"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, sc := clean()
			tc.break_(src, sc)
			r := mustCheck(t, src, sc)
			if r.OK {
				t.Fatalf("Check(%s) = OK; want a %s violation", tc.name, tc.inv)
			}
			want := Violation{Invariant: tc.inv, Detail: tc.detail}
			if !slices.Contains(r.Violations, want) {
				t.Fatalf("Check(%s) violations = %v; want them to contain %v", tc.name, r.Violations, want)
			}
			if r.ViolationCount != len(r.Violations) {
				t.Errorf("ViolationCount = %d; want %d", r.ViolationCount, len(r.Violations))
			}
			v := r.Verdict()
			if !strings.HasPrefix(v, "verify: FAIL: ") || !strings.Contains(v, want.String()) && len(r.Violations) <= verdictDetailsMax {
				t.Errorf("Verdict() = %q; want FAIL naming %q", v, want)
			}
		})
	}
}

func TestCheckCapsViolations(t *testing.T) {
	var b logBuilder
	for i := range ViolationsMax + 50 {
		// Every grant hits the same 1-ticket hotspot with a fresh player.
		b.add(0, claim(fmt.Sprintf("p%03d", i), "k", "a", hunt.Granted, 0, 0))
	}
	src := &fakeSource{
		events:   b.events,
		hunts:    []hunt.Hunt{{ID: "h"}},
		hotspots: map[hunt.HuntID][]hunt.HotspotView{"h": {{Hotspot: hunt.Hotspot{ID: "a", Tickets: 1000}, TicketsLeft: 850}}},
	}
	// 150 grants of a hotspot with 1000 tickets is fine; make every player's
	// wallet wrong instead: 150 I4 violations.
	src.wallets = map[hunt.PlayerID]int64{}
	for i := range ViolationsMax + 50 {
		src.wallets[hunt.PlayerID(fmt.Sprintf("p%03d", i))] = 1
	}
	r := mustCheck(t, src, nil)
	if r.ViolationCount != ViolationsMax+50 || len(r.Violations) != ViolationsMax {
		t.Fatalf("Check() kept %d of %d violations; want %d of %d", len(r.Violations), r.ViolationCount, ViolationsMax, ViolationsMax+50)
	}
	v := r.Verdict()
	if !strings.HasSuffix(v, "; ... (150 violations)") {
		t.Errorf("Verdict() = %q; want it to end with \"; ... (150 violations)\"", v)
	}
	if want := "verify: FAIL: I4 player p000 balance 1, fold says 0 (credits 0 − spent 0); I4 player p001"; !strings.HasPrefix(v, want) {
		t.Errorf("Verdict() = %q; want prefix %q", v, want)
	}
}

func TestCheckSourceError(t *testing.T) {
	boom := errors.New("disk on fire")
	src, _ := clean()
	src.err = boom
	if _, err := Check(context.Background(), src, nil); !errors.Is(err, boom) {
		t.Fatalf("Check(failing source) error = %v; want it to wrap %v", err, boom)
	}
	src, _ = clean()
	src.hunts = append(src.hunts, hunt.Hunt{ID: "ghost"})
	if _, err := Check(context.Background(), src, nil); !errors.Is(err, hunt.ErrUnknownHunt) {
		t.Fatalf("Check(hunt without hotspots) error = %v; want it to wrap %v", err, hunt.ErrUnknownHunt)
	}
}

func TestReportJSONRoundTrip(t *testing.T) {
	src, sc := clean()
	sc.scores["h/bob"] = 1
	r := mustCheck(t, src, sc)
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("Unmarshal(%s) error = %v", b, err)
	}
	if back.Verdict() != r.Verdict() {
		t.Errorf("Verdict after a JSON round trip = %q; want %q", back.Verdict(), r.Verdict())
	}
	for _, field := range []string{`"ok":false`, `"violations":[{"invariant":"I5"`, `"violation_count":1`, `"checked":["I1"`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("json.Marshal(report) = %s; want it to contain %s", b, field)
		}
	}
}

// TestDuplicatesAreConfirmed: the fold keeps hashes, so a repeated hash is
// only a suspect; the log is re-read once, and only when there are suspects,
// and a collision of two different keys is not reported.
func TestDuplicatesAreConfirmed(t *testing.T) {
	src, sc := clean()
	if r := mustCheck(t, src, sc); !r.OK || src.reads != 1 {
		t.Fatalf("Check(clean) read the log %d times (OK %v); want once", src.reads, r.OK)
	}
	src, sc = clean()
	src.events[3].Key = "k1"
	if r := mustCheck(t, src, sc); r.OK || src.reads != 2 {
		t.Fatalf("Check(duplicate key) read the log %d times (OK %v); want twice and a violation", src.reads, r.OK)
	}

	// A forged collision: two different keys share a suspect hash.
	src, _ = clean()
	var r Report
	f := fold{seed: maphash.MakeSeed(), keys: map[uint64]struct{}{}, holders: map[uint64]struct{}{}, suspects: map[uint64]struct{}{}}
	f.suspects[f.idemHash(&src.events[0])] = struct{}{}
	f.suspects[f.idemHash(&src.events[3])] = struct{}{}
	f.suspects[f.grantHash(&src.events[0])] = struct{}{}
	if err := f.confirmDuplicates(context.Background(), src, &r); err != nil {
		t.Fatal(err)
	}
	if r.ViolationCount != 0 {
		t.Errorf("confirmDuplicates(collision only) = %v; want no violation", r.Violations)
	}
}

// BenchmarkCheck folds a log of 100,000 claims and spends by 10,000 players
// over 1,000 hotspots in 16 partitions.
func BenchmarkCheck(b *testing.B) {
	var lb logBuilder
	const players, spots = 10_000, 1_000
	granted := map[string]int64{}
	wallets := map[hunt.PlayerID]int64{}
	for i := range 100_000 {
		p := fmt.Sprintf("p%d", i%players)
		if i%10 == 9 {
			lb.add(geo.Partition(i%16), spend(p, fmt.Sprintf("k%d", i), hunt.InsufficientFunds, 5, 0))
			continue
		}
		s := fmt.Sprintf("s%d", (i*7919)%spots)
		out := hunt.Granted
		if i >= players {
			out = hunt.AlreadyClaimed // one grant per player; the rest leave only their keys
		}
		lb.add(geo.Partition(i%16), claim(p, fmt.Sprintf("k%d", i), s, out, 1, 1))
		if out == hunt.Granted {
			granted[s]++
			wallets[hunt.PlayerID(p)]++
		}
	}
	src := &fakeSource{events: lb.events, hunts: []hunt.Hunt{{ID: "h"}}, hotspots: map[hunt.HuntID][]hunt.HotspotView{}, wallets: wallets}
	for s, g := range granted {
		src.hotspots["h"] = append(src.hotspots["h"], hunt.HotspotView{Hotspot: hunt.Hotspot{ID: hunt.HotspotID(s), Tickets: g}})
	}
	b.ReportAllocs()
	for b.Loop() {
		r, err := Check(context.Background(), src, nil)
		if err != nil || !r.OK {
			b.Fatalf("Check = %s, %v; want OK", r.Verdict(), err)
		}
	}
}

// TestCheckUnderLiveWrites lands writes between the audit's reads the way a
// live engine does; none of them is a violation, and a real one among them
// is still found.
func TestCheckUnderLiveWrites(t *testing.T) {
	once := func(fn func(s *fakeSource)) func(s *fakeSource) {
		done := false
		return func(s *fakeSource) {
			if !done {
				done = true
				fn(s)
			}
		}
	}
	t.Run("state ahead of the first read of the log", func(t *testing.T) {
		src, sc := clean()
		// A grant of b to bob lands after the log was read, before the
		// state is: the state shows it, the log's tail has it.
		src.onState = once(func(s *fakeSource) {
			s.write(1, claim("bob", "k9", "b", hunt.Granted, 7, 70))
			s.hotspots["h"][1].TicketsLeft--
			s.wallets["bob"] += 7
			sc.scores["h/bob"] += 70
		})
		r := mustCheck(t, src, sc)
		if !r.OK || r.Rounds != 1 || r.Events != 10 {
			t.Fatalf("Check(grant during the read) = %s (%d rounds, %d events); want OK in 1 round, 10 events", r.Verdict(), r.Rounds, r.Events)
		}
	})
	t.Run("log ahead of the state until published", func(t *testing.T) {
		src, sc := clean()
		// The grant is in the log but the engine publishes it only later,
		// before the projection (fed after publishing) reaches it.
		src.write(1, claim("bob", "k9", "b", hunt.Granted, 7, 70))
		sc.onWait = func() {
			src.hotspots["h"][1].TicketsLeft = 3
			src.wallets["bob"] = 17
			sc.scores["h/bob"] = 170
		}
		if r := mustCheck(t, src, sc); !r.OK {
			t.Fatalf("Check(grant published after the log read) = %s; want OK", r.Verdict())
		}
	})
	t.Run("a spend reserved before it is in the log", func(t *testing.T) {
		src, sc := clean()
		// bob's spend of 4 is taken off his balance when decided and lands
		// in the log only at the audit's second read of the tail.
		src.onState = once(func(s *fakeSource) { s.wallets["bob"] -= 4 })
		src.onEvents = func(s *fakeSource) {
			if s.tails == 2 {
				s.write(2, spend("bob", "k9", hunt.Spent, 4, 6))
			}
		}
		r := mustCheck(t, src, sc)
		if !r.OK || r.Rounds != 2 {
			t.Fatalf("Check(reserved spend) = %s (%d rounds); want OK in 2 rounds", r.Verdict(), r.Rounds)
		}
	})
	t.Run("a real violation under writes", func(t *testing.T) {
		src, sc := clean()
		src.wallets["bob"] = 110 // a credit nobody granted
		src.hotspots["h"] = append(src.hotspots["h"], hunt.HotspotView{Hotspot: hunt.Hotspot{ID: "d", Tickets: 1000}, TicketsLeft: 1000})
		n := 0
		src.onEvents = func(s *fakeSource) {
			// Every read of the log finds a new grant of d, shown by the state.
			n++
			p := hunt.PlayerID(fmt.Sprintf("p%d", n))
			s.write(3, claim(string(p), "k", "d", hunt.Granted, 1, 1))
			s.hotspots["h"][3].TicketsLeft--
			s.wallets[p] = 1
			sc.scores["h/"+string(p)] = 1
		}
		r := mustCheck(t, src, sc)
		want := Violation{Invariant: I4, Detail: "player bob balance 110, fold says 10 (credits 10 − spent 0)"}
		if r.OK || r.ViolationCount != 1 || !slices.Contains(r.Violations, want) {
			t.Fatalf("Check(bob's wallet corrupted, under writes) = %v; want exactly %v", r.Violations, want)
		}
		if r.Rounds != RoundsMax {
			t.Errorf("Rounds = %d; want %d (the log moved every round)", r.Rounds, RoundsMax)
		}
	})
	t.Run("a real violation on a still system", func(t *testing.T) {
		src, sc := clean()
		src.hotspots["h"][1].TicketsLeft = 5
		r := mustCheck(t, src, sc)
		want := Violation{Invariant: I7, Detail: "hotspot h/b tickets_left 5, fold says 4 (tickets 5 − granted 1)"}
		if r.OK || !slices.Contains(r.Violations, want) || r.Rounds != 2 {
			t.Fatalf("Check(still, h/b wrong) = %v in %d rounds; want %v in 2", r.Violations, r.Rounds, want)
		}
	})
}

// windowedSource is a fakeSource whose keys are honoured for a window.
type windowedSource struct {
	*fakeSource
	window time.Duration
}

func (w windowedSource) IdempotencyWindow() time.Duration { return w.window }

// TestKeyReusedAfterWindow: a key decided again once its previous decision
// is a window old was a new request, not a broken I3; within the window it
// still is one. The log is read partition by partition, so the uses are
// put in time order first.
func TestKeyReusedAfterWindow(t *testing.T) {
	reuse := func() *fakeSource {
		src, _ := clean()
		// alice's key k1 (claim 0.1 at t0) again for a claim of c in
		// partition 1 (read after partition 0), and a third time in
		// partition 0, all more than an hour apart.
		src.write(0, claim("alice", "k1", "a", hunt.AlreadyClaimed, 0, 0))
		src.events[len(src.events)-1].At = t0.Add(5 * time.Hour)
		src.write(1, claim("alice", "k1", "c", hunt.Granted, 1, 1))
		src.events[len(src.events)-1].At = t0.Add(2 * time.Hour)
		src.hotspots["h"][2].TicketsLeft = 2
		src.wallets["alice"]++
		return src
	}
	for _, tc := range []struct {
		window time.Duration
		want   []Violation
	}{
		{time.Hour, nil},
		{2 * time.Hour, nil},
		{3 * time.Hour, []Violation{{I3, `player alice key "k1" decided twice: 0.1 and 1.3`}}},
		{6 * time.Hour, []Violation{
			{I3, `player alice key "k1" decided twice: 0.1 and 1.3`},
			{I3, `player alice key "k1" decided twice: 1.3 and 0.5`}}},
	} {
		r := mustCheck(t, windowedSource{reuse(), tc.window}, nil)
		if fmt.Sprint(r.Violations) != fmt.Sprint(tc.want) && !(len(tc.want) == 0 && len(r.Violations) == 0) {
			t.Errorf("Check(key reused at 0h, 2h, 5h; window %v) = %v; want %v", tc.window, r.Violations, tc.want)
		}
	}
	// Without a window (the Redis engine keeps keys for ever) any reuse is one.
	if r := mustCheck(t, reuse(), nil); r.ViolationCount != 2 {
		t.Errorf("Check(key reused, no window) = %v; want 2 I3 violations", r.Violations)
	}
}
