// Package audit checks Cairn's invariants from the committed event log alone,
// without any engine code: it folds the log itself and compares the fold with
// what the engine and the leaderboard report.
//
// Invariants checked (docs/ARCHITECTURE.md):
//
//   - I7 log integrity: every partition's seqs are contiguous from 1, every
//     event has a known kind and an outcome of its kind, and every granted
//     hotspot is one the engine lists.
//   - I1 tickets: per hotspot, grants in the log ≤ its tickets; and I7 state ==
//     fold: tickets − grants == tickets_left as the engine reports it.
//   - I2 one per player: at most one grant per (player, hunt, hotspot).
//   - I3 idempotency: each (player, Idempotency-Key) appears at most once in the
//     log (claims and spends share a player's keys).
//   - I4 wallet: the engine's balance == Σ rewards of grants − Σ accepted spends;
//     every spend's recorded Balance is ≥ 0 and never more than all the
//     player's credits allow, and the fold is never negative.
//   - I5 leaderboard (when Scores is given): score(hunt, global, player) ==
//     Σ points of the player's grants in that hunt.
//
// I6 (durability) cannot be seen in a log; crash tests check it.
//
// Check reads the log first and the derived state (hotspots, wallets,
// scores) afterwards, with no snapshot between them: run it on a quiescent
// system (after a load run, or offline), or writes that land in between show
// up as I4/I5/I7 mismatches. If Scores also has a Wait(ctx, hunt.Epoch)
// method (the leaderboard projection does), Check first waits for it to
// catch up with the last epoch of every partition it folded.
//
// Cost: one pass over the log, plus a second only when the first saw a
// repeated I2/I3 key hash (a violation, or a rare hash collision that the
// second pass clears). Memory is O(events) 8-byte hashes plus O(players +
// hotspots with grants), since the server may run Check in-process.
//
// Concurrency: Check is a plain function; it calls the Source sequentially
// from the caller's goroutine and holds no state between calls.
package audit

import (
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"

	"github.com/cairnhq/cairn/internal/geo"
	"github.com/cairnhq/cairn/internal/hunt"
)

// Source is what the audit reads. engine.Engine satisfies it.
type Source interface {
	Events(ctx context.Context, after []hunt.Seq, fn func(*hunt.Event) error) error
	Hunts(ctx context.Context) ([]hunt.Hunt, error)
	Hotspots(ctx context.Context, id hunt.HuntID, fn func(hunt.HotspotView) error) error
	Wallet(ctx context.Context, player hunt.PlayerID) (hunt.Wallet, error)
}

// Scores is the leaderboard's read side. *leaderboard.Projection satisfies it.
type Scores interface {
	Score(h hunt.HuntID, region string, player hunt.PlayerID) (rank int, score int64, ok bool)
}

// waiter is the optional part of Scores that lets Check wait for a
// projection to apply everything the fold saw.
type waiter interface {
	Wait(ctx context.Context, e hunt.Epoch) error
}

// ViolationsMax bounds the violations kept in a Report; ViolationCount has the total.
const ViolationsMax = 100

// verdictDetailsMax is how many violations the one-line verdict names.
const verdictDetailsMax = 3

// Invariant names as they appear in violations and verdicts.
const (
	I1 = "I1"
	I2 = "I2"
	I3 = "I3"
	I4 = "I4"
	I5 = "I5"
	I7 = "I7"
)

// Violation is one broken invariant with a human-readable detail.
type Violation struct {
	Invariant string `json:"invariant"`
	Detail    string `json:"detail"`
}

func (v Violation) String() string { return v.Invariant + " " + v.Detail }

// Report is the outcome of Check. It is also the JSON body of GET /v1/admin/audit.
type Report struct {
	OK       bool `json:"ok"`
	Events   int  `json:"events"`
	Claims   int  `json:"claims"`
	Grants   int  `json:"grants"`
	Spends   int  `json:"spends"` // accepted spends
	Players  int  `json:"players"`
	Hotspots int  `json:"hotspots"`
	// Checked lists the invariants that were checked (I5 only with Scores).
	Checked []string `json:"checked"`
	// Violations holds at most ViolationsMax violations, in the order found.
	Violations     []Violation `json:"violations"`
	ViolationCount int         `json:"violation_count"`
}

func (r *Report) violate(inv, format string, args ...any) {
	r.ViolationCount++
	r.OK = false
	if len(r.Violations) < ViolationsMax {
		r.Violations = append(r.Violations, Violation{Invariant: inv, Detail: fmt.Sprintf(format, args...)})
	}
}

// Verdict is the one-line summary `cairn verify` prints.
func (r Report) Verdict() string {
	if r.OK && r.ViolationCount == 0 {
		return fmt.Sprintf("verify: OK: %d events, %d claims, %d grants, %d spends, %d players, %d hotspots; %s hold",
			r.Events, r.Claims, r.Grants, r.Spends, r.Players, r.Hotspots, strings.Join(r.Checked, " "))
	}
	var b strings.Builder
	b.WriteString("verify: FAIL: ")
	for i, v := range r.Violations {
		if i == verdictDetailsMax {
			b.WriteString("; ...")
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(v.String())
	}
	n := max(r.ViolationCount, len(r.Violations))
	fmt.Fprintf(&b, " (%d violation%s)", n, plural(n))
	return b.String()
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

type spotKey struct {
	hunt    hunt.HuntID
	hotspot hunt.HotspotID
}

// dupKey is a full key checked for duplicates (I2: player, hunt, hotspot of
// a grant; I3: player and Idempotency-Key of any event).
type dupKey struct {
	inv string
	a   string
	b   string
	c   string
}

type scoreKey struct {
	hunt   hunt.HuntID
	player hunt.PlayerID
}

// wallet is the fold of one player's wallet events.
type wallet struct {
	credits int64 // Σ rewards of grants
	spent   int64 // Σ accepted spends
	// claimed is the largest Balance + spent-so-far any spend recorded
	// (at claimedAt): the credits that spend must have been backed by.
	claimed   int64
	claimedAt hunt.Epoch
}

// fold is the state the log implies.
type fold struct {
	lastSeq map[geo.Partition]hunt.Seq
	granted map[spotKey]int64
	// holders and keys hold 64-bit hashes of the I2 and I3 keys, not the
	// strings: a log of millions of events then costs tens of MB, not
	// hundreds, inside a live server. A repeated hash is only a suspect;
	// confirmDuplicates re-reads the log for suspects and compares the keys.
	seed     maphash.Seed
	holders  map[uint64]struct{}
	keys     map[uint64]struct{}
	suspects map[uint64]struct{}
	wallets  map[hunt.PlayerID]*wallet
	points   map[scoreKey]int64
}

// Check folds src's whole log and checks I1–I5 and I7 against it and against
// what src (and scores, when not nil) report. A non-nil error means the check
// could not run (the source failed or ctx ended); violations are in the Report.
func Check(ctx context.Context, src Source, scores Scores) (Report, error) {
	r := Report{OK: true, Violations: []Violation{}}
	f := fold{
		lastSeq:  map[geo.Partition]hunt.Seq{},
		granted:  map[spotKey]int64{},
		seed:     maphash.MakeSeed(),
		holders:  map[uint64]struct{}{},
		keys:     map[uint64]struct{}{},
		suspects: map[uint64]struct{}{},
		wallets:  map[hunt.PlayerID]*wallet{},
		points:   map[scoreKey]int64{},
	}
	if err := src.Events(ctx, nil, func(e *hunt.Event) error {
		f.apply(&r, e)
		return nil
	}); err != nil {
		return Report{}, fmt.Errorf("audit: read events: %w", err)
	}
	if err := f.confirmDuplicates(ctx, src, &r); err != nil {
		return Report{}, err
	}
	r.Players = len(f.wallets)

	if err := checkHotspots(ctx, src, &f, &r); err != nil {
		return Report{}, err
	}
	if err := checkWallets(ctx, src, &f, &r); err != nil {
		return Report{}, err
	}
	r.Checked = []string{I1, I2, I3, I4, I7}
	if scores != nil {
		if err := checkScores(ctx, scores, &f, &r); err != nil {
			return Report{}, err
		}
		r.Checked = []string{I1, I2, I3, I4, I5, I7}
	}
	return r, nil
}

// apply folds one event into f, checking what can be checked in log order.
func (f *fold) apply(r *Report, e *hunt.Event) {
	r.Events++
	want := f.lastSeq[e.Epoch.Partition] + 1
	if e.Epoch.Seq != want {
		r.violate(I7, "partition %d: seq %d follows %d (want %d)", e.Epoch.Partition, e.Epoch.Seq, want-1, want)
	}
	// Keep going from what the log says, so one gap is reported once.
	if e.Epoch.Seq > f.lastSeq[e.Epoch.Partition] {
		f.lastSeq[e.Epoch.Partition] = e.Epoch.Seq
	}

	f.seen(f.keys, f.idemHash(e))
	w := f.wallets[e.Player]
	if w == nil {
		w = &wallet{}
		f.wallets[e.Player] = w
	}

	switch e.Kind {
	case hunt.KindClaimCompleted:
		r.Claims++
		if e.Outcome == hunt.Spent || e.Outcome == hunt.InsufficientFunds || !e.Outcome.Valid() {
			r.violate(I7, "claim %s has outcome %s", e.Epoch, e.Outcome)
			return
		}
		if e.Outcome != hunt.Granted {
			return
		}
		r.Grants++
		sk := spotKey{e.Hunt, e.Hotspot}
		f.granted[sk]++
		f.seen(f.holders, f.grantHash(e))
		w.credits += e.Reward
		f.points[scoreKey{e.Hunt, e.Player}] += e.Points
	case hunt.KindSpendCompleted:
		if e.Outcome != hunt.Spent && e.Outcome != hunt.InsufficientFunds {
			r.violate(I7, "spend %s has outcome %s", e.Epoch, e.Outcome)
			return
		}
		if e.Outcome != hunt.Spent {
			return
		}
		r.Spends++
		w.spent += e.Amount
		if e.Balance < 0 {
			r.violate(I4, "player %s: spend %s left balance %d < 0", e.Player, e.Epoch, e.Balance)
		}
		// Credits only accumulate, so no spend can leave more than all the
		// player's credits minus everything spent up to it. Credits from other
		// partitions may come later in this fold's order, so the bound is
		// checked at the end against the player's total; with Balance ≥ 0 it
		// also says the fold never went negative at any spend.
		if b := e.Balance + w.spent; b > w.claimed {
			w.claimed, w.claimedAt = b, e.Epoch
		}
	default:
		r.violate(I7, "event %s has unknown kind %d", e.Epoch, e.Kind)
	}
}

func (f *fold) idemHash(e *hunt.Event) uint64 {
	var h maphash.Hash
	h.SetSeed(f.seed)
	h.WriteString(string(e.Player))
	h.WriteByte(0)
	h.WriteString(e.Key)
	return h.Sum64() | 1 // odd: never collides with a grant hash
}

func (f *fold) grantHash(e *hunt.Event) uint64 {
	var h maphash.Hash
	h.SetSeed(f.seed)
	h.WriteString(string(e.Player))
	h.WriteByte(0)
	h.WriteString(string(e.Hunt))
	h.WriteByte(0)
	h.WriteString(string(e.Hotspot))
	return h.Sum64() &^ 1 // even
}

// seen adds h to set, or marks it a suspect if it is there already.
func (f *fold) seen(set map[uint64]struct{}, h uint64) {
	if _, dup := set[h]; dup {
		f.suspects[h] = struct{}{}
		return
	}
	set[h] = struct{}{}
}

// confirmDuplicates re-reads the log when the fold saw repeated hashes and
// reports the keys that really repeat (I2, I3), in log order, each with the
// epoch that first used it. Hash collisions that are not duplicates vanish.
func (f *fold) confirmDuplicates(ctx context.Context, src Source, r *Report) error {
	if len(f.suspects) == 0 {
		return nil
	}
	first := map[dupKey]hunt.Epoch{}
	check := func(k dupKey, e *hunt.Event) {
		if at, dup := first[k]; dup {
			switch k.inv {
			case I2:
				r.violate(I2, "player %s granted hotspot %s/%s twice: %s and %s", e.Player, e.Hunt, e.Hotspot, at, e.Epoch)
			case I3:
				r.violate(I3, "player %s key %q decided twice: %s and %s", e.Player, e.Key, at, e.Epoch)
			}
			return
		}
		first[k] = e.Epoch
	}
	err := src.Events(ctx, nil, func(e *hunt.Event) error {
		if _, ok := f.suspects[f.idemHash(e)]; ok {
			check(dupKey{I3, string(e.Player), e.Key, ""}, e)
		}
		if e.Kind == hunt.KindClaimCompleted && e.Outcome == hunt.Granted {
			if _, ok := f.suspects[f.grantHash(e)]; ok {
				check(dupKey{I2, string(e.Player), string(e.Hunt), string(e.Hotspot)}, e)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("audit: re-read events for duplicates: %w", err)
	}
	return nil
}

// checkHotspots compares the fold's grants with each hotspot's tickets (I1)
// and with the tickets_left the engine reports (I7).
func checkHotspots(ctx context.Context, src Source, f *fold, r *Report) error {
	hunts, err := src.Hunts(ctx)
	if err != nil {
		return fmt.Errorf("audit: list hunts: %w", err)
	}
	seen := make(map[spotKey]bool, len(f.granted))
	for _, h := range hunts {
		err := src.Hotspots(ctx, h.ID, func(v hunt.HotspotView) error {
			r.Hotspots++
			sk := spotKey{h.ID, v.ID}
			seen[sk] = true
			g := f.granted[sk]
			if g > v.Tickets {
				r.violate(I1, "hotspot %s/%s granted %d > tickets %d", h.ID, v.ID, g, v.Tickets)
			}
			if left := v.Tickets - g; left != v.TicketsLeft {
				r.violate(I7, "hotspot %s/%s tickets_left %d, fold says %d (tickets %d − granted %d)",
					h.ID, v.ID, v.TicketsLeft, left, v.Tickets, g)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("audit: list hotspots of %s: %w", h.ID, err)
		}
	}
	// Grants of hotspots the engine does not know: the log and the state disagree.
	var missing []spotKey
	for sk := range f.granted {
		if !seen[sk] {
			missing = append(missing, sk)
		}
	}
	slices.SortFunc(missing, func(a, b spotKey) int {
		return strings.Compare(string(a.hunt)+"\x00"+string(a.hotspot), string(b.hunt)+"\x00"+string(b.hotspot))
	})
	for _, sk := range missing {
		r.violate(I7, "log grants %d ticket(s) of hotspot %s/%s that the engine does not list", f.granted[sk], sk.hunt, sk.hotspot)
	}
	return nil
}

// checkWallets compares every player's reported balance with the fold (I4).
func checkWallets(ctx context.Context, src Source, f *fold, r *Report) error {
	players := make([]hunt.PlayerID, 0, len(f.wallets))
	for p := range f.wallets {
		players = append(players, p)
	}
	slices.Sort(players)
	for _, p := range players {
		w := f.wallets[p]
		want := w.credits - w.spent
		if want < 0 {
			r.violate(I4, "player %s spent %d > credited %d", p, w.spent, w.credits)
		}
		got, err := src.Wallet(ctx, p)
		if err != nil {
			return fmt.Errorf("audit: wallet of %s: %w", p, err)
		}
		if w.claimed > w.credits {
			r.violate(I4, "player %s: spend %s implies credits ≥ %d (balance after + spent so far), the log credits %d",
				p, w.claimedAt, w.claimed, w.credits)
		}
		if got.Balance != want {
			r.violate(I4, "player %s balance %d, fold says %d (credits %d − spent %d)", p, got.Balance, want, w.credits, w.spent)
		}
	}
	return nil
}

// checkScores compares each player's global score per hunt with the fold (I5).
func checkScores(ctx context.Context, scores Scores, f *fold, r *Report) error {
	if w, ok := scores.(waiter); ok {
		parts := make([]geo.Partition, 0, len(f.lastSeq))
		for p := range f.lastSeq {
			parts = append(parts, p)
		}
		slices.Sort(parts)
		for _, p := range parts {
			if err := w.Wait(ctx, hunt.Epoch{Partition: p, Seq: f.lastSeq[p]}); err != nil {
				return fmt.Errorf("audit: wait for the leaderboard to reach %d.%d: %w", p, f.lastSeq[p], err)
			}
		}
	}
	keys := make([]scoreKey, 0, len(f.points))
	for k := range f.points {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b scoreKey) int {
		if c := strings.Compare(string(a.hunt), string(b.hunt)); c != 0 {
			return c
		}
		return strings.Compare(string(a.player), string(b.player))
	})
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		want := f.points[k]
		_, got, ok := scores.Score(k.hunt, "", k.player)
		switch {
		case !ok && want != 0:
			r.violate(I5, "hunt %s player %s unranked, fold says score %d", k.hunt, k.player, want)
		case ok && got != want:
			r.violate(I5, "hunt %s player %s score %d, fold says %d", k.hunt, k.player, got, want)
		}
	}
	return nil
}
