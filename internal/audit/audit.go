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
//     log (claims and spends share a player's keys), or, when the Source says
//     how long a key is honoured (IdempotencyWindow), at most once per window.
//   - I4 wallet: the engine's balance == Σ rewards of grants − Σ accepted spends;
//     every spend's recorded Balance is ≥ 0 and never more than all the
//     player's credits allow, and the fold is never negative.
//   - I5 leaderboard (when Scores is given): score(hunt, global, player) ==
//     Σ points of the player's grants in that hunt.
//
// I6 (durability) cannot be seen in a log; crash tests check it.
//
// Check is valid under live writes: it reads the state between two reads of
// the log and checks that each hotspot, wallet and score lies between its
// fold before and its fold after (see Check), re-reading what does not for a
// few rounds, so a write landing meanwhile is not taken for a violation and
// a lasting disagreement still is. If Scores also has a Wait(ctx, hunt.Epoch)
// method (the leaderboard projection does), Check waits for it to catch up
// with the fold before each read of the state: the projection is fed after
// the engine publishes, so the state then shows at least the fold.
//
// Cost: one pass over the log and the state, short reads of the log's tail
// (one per round and a closing one), plus a second whole pass only when the
// first saw a repeated I2/I3 key hash (a violation, or a rare hash collision that the
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
	"maps"
	"slices"
	"strings"
	"time"

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

// based is the optional part of Source whose log may start at a snapshot
// (engine.Based: the embedded store with --log-retention): LogBase gives
// what the dropped prefix folded to, and the fold starts from it.
type based interface {
	LogBase(ctx context.Context, fn func(*hunt.Event) error) ([]hunt.Seq, time.Time, error)
}

// Scores is the leaderboard's read side. *leaderboard.Projection satisfies it.
type Scores interface {
	Score(h hunt.HuntID, region string, player hunt.PlayerID) (rank int, score int64, ok bool)
}

// windowed is the optional part of Source that says how long a decided
// (player, Idempotency-Key) is honoured (the embedded engine's
// --idempotency-window). A key decided again at least that long after its
// previous decision is a new request, not a broken I3. Without it, a key
// may be decided once only.
type windowed interface {
	IdempotencyWindow() time.Duration
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
	// Rounds is how many times the state was read (more than one when some
	// of it disagreed with the log at first, under live writes).
	Rounds int `json:"rounds"`
	// BaseGrants counts the grants folded from the base of a log truncated
	// at a snapshot (--log-retention), included in Grants; not in Events.
	BaseGrants int `json:"base_grants,omitempty"`
	// Snapshots are the offline check's findings about the embedded
	// store's snapshot files (AddSnapshot); absent online.
	Snapshots []SnapshotStatus `json:"snapshots,omitempty"`
}

// SnapshotStatus is one snapshot file checked against the log.
type SnapshotStatus struct {
	Name    string `json:"name"`
	Events  uint64 `json:"events"`
	OK      bool   `json:"ok"`
	Problem string `json:"problem,omitempty"`
}

// AddSnapshot records the check of one snapshot; a problem is an I7
// violation (a snapshot must be the fold of the log up to where it stops).
func (r *Report) AddSnapshot(name string, events uint64, problem string) {
	r.Snapshots = append(r.Snapshots, SnapshotStatus{Name: name, Events: events, OK: problem == "", Problem: problem})
	if problem != "" {
		r.violate(I7, "snapshot %s: %s", name, problem)
	}
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
		var snaps string
		if n := len(r.Snapshots); n > 0 {
			snaps = fmt.Sprintf("; %d snapshot%s equal%s the fold of the log", n, plural(n), map[bool]string{true: "s", false: ""}[n == 1])
		}
		return fmt.Sprintf("verify: OK: %d events, %d claims, %d grants, %d spends, %d players, %d hotspots; %s hold%s",
			r.Events, r.Claims, r.Grants, r.Spends, r.Players, r.Hotspots, strings.Join(r.Checked, " "), snaps)
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
	// late is what the spends of the closing read spent: they are not held
	// to the credits, which may lie past the end of what was read.
	late int64
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
	// tail, while not nil, collects what the events read after a read of
	// the state changed: the state may show any prefix of them.
	tail *tail
	// closing is set for the last read of the log: its spends are not held
	// to the credits (their credits may lie past the end of the read).
	closing bool
	// baseRead is set once the source's base (a truncated log's start) is folded.
	baseRead bool
}

func newFold() *fold {
	return &fold{
		lastSeq:  map[geo.Partition]hunt.Seq{},
		granted:  map[spotKey]int64{},
		seed:     maphash.MakeSeed(),
		holders:  map[uint64]struct{}{},
		keys:     map[uint64]struct{}{},
		suspects: map[uint64]struct{}{},
		wallets:  map[hunt.PlayerID]*wallet{},
		points:   map[scoreKey]int64{},
	}
}

// tail is what one stretch of the log added, per item the state is compared
// on. Grants, credits and points only grow and spends only shrink a balance,
// so after a tail an item's state lies between the fold before it and the
// fold before it plus its tail's gains (minus its spends, for a balance).
type tail struct {
	grants  map[spotKey]int64
	credits map[hunt.PlayerID]int64
	spent   map[hunt.PlayerID]int64
	points  map[scoreKey]int64
}

func newTail() *tail {
	return &tail{grants: map[spotKey]int64{}, credits: map[hunt.PlayerID]int64{},
		spent: map[hunt.PlayerID]int64{}, points: map[scoreKey]int64{}}
}

// after is the per-partition position of the fold, as Events takes it.
func (f *fold) after() []hunt.Seq {
	var n int
	for p := range f.lastSeq {
		n = max(n, int(p)+1)
	}
	out := make([]hunt.Seq, n)
	for p, s := range f.lastSeq {
		out[p] = s
	}
	return out
}

// read folds the log from where the fold stands to its end as src has it
// now (first the base of a truncated log, where src has one).
func (f *fold) read(ctx context.Context, src Source, r *Report) error {
	if b, ok := src.(based); ok && !f.baseRead {
		f.baseRead = true
		after, _, err := b.LogBase(ctx, func(e *hunt.Event) error {
			f.applyBase(r, e)
			return nil
		})
		if err != nil {
			return fmt.Errorf("audit: read the log's base: %w", err)
		}
		for p, s := range after {
			f.lastSeq[geo.Partition(p)] = s
		}
	}
	var after []hunt.Seq
	if len(f.lastSeq) > 0 {
		after = f.after()
	}
	if err := src.Events(ctx, after, func(e *hunt.Event) error {
		f.apply(r, e)
		return nil
	}); err != nil {
		return fmt.Errorf("audit: read events: %w", err)
	}
	return nil
}

// RoundsMax bounds the rounds of Check: a state that disagrees with the log
// under live writes is read again, with the log after it, up to this many
// times before the disagreement is reported.
const RoundsMax = 8

// recheckPauseMin is the pause before the second round; it doubles each
// round (10 ms … 640 ms, 1.27 s in all), leaving a decision that was
// applied to the state but not yet written to the log (a spend's
// reservation) time to land in the log.
const recheckPauseMin = 10 * time.Millisecond

// Check folds src's whole log and checks I1–I5 and I7 against it and against
// what src (and scores, when not nil) report. A non-nil error means the check
// could not run (the source failed or ctx ended); violations are in the Report.
//
// It is valid under live writes. The state is read between two reads of the
// log: first the log up to E1 (per partition), then (once the projection has
// applied E1, so the engine has published it) the state, then the log from E1
// to E2. Each hotspot, wallet and score read lies between its fold at E1 and
// its fold at E2 (grants, credits and points only grow, spends only shrink a
// balance), which is what is checked; equal to the fold at E1 is always
// consistent. What disagrees is read again, with the log after it, for up to
// RoundsMax rounds, and only a disagreement that lasts is a violation. The
// state checked is that of the hotspots, players and scores in the log up to
// E1; everything read is checked for I1–I3, I7's seqs and the spends' I4.
func Check(ctx context.Context, src Source, scores Scores) (Report, error) {
	r := Report{OK: true, Violations: []Violation{}}
	f := newFold()
	if err := f.read(ctx, src, &r); err != nil {
		return Report{}, err
	}
	r.Players = len(f.wallets)
	r.Checked = []string{I1, I2, I3, I4, I7}
	if scores != nil {
		r.Checked = []string{I1, I2, I3, I4, I5, I7}
	}

	// Round 0 reads the whole state; later rounds only what disagreed.
	var sus *pending
	still := 0 // consecutive rounds whose tail was empty
	for round := range RoundsMax {
		r.Rounds = round + 1
		if round > 0 {
			if err := pause(ctx, recheckPauseMin<<(round-1)); err != nil {
				return Report{}, fmt.Errorf("audit: %w", err)
			}
		}
		if err := waitScores(ctx, scores, f); err != nil {
			return Report{}, err
		}
		p := newPending()
		if err := checkHotspots(ctx, src, f, &r, round == 0, sus, p); err != nil {
			return Report{}, err
		}
		if err := checkWallets(ctx, src, f, round == 0, sus, p); err != nil {
			return Report{}, err
		}
		if scores != nil {
			if err := checkScores(ctx, scores, f, round == 0, sus, p); err != nil {
				return Report{}, err
			}
		}
		if p.empty() {
			sus = nil
			break
		}
		f.tail = newTail()
		events := r.Events
		err := f.read(ctx, src, &r)
		t := f.tail
		f.tail = nil
		if err != nil {
			return Report{}, err
		}
		sus = p.settle(f, t)
		if sus.empty() {
			sus = nil
			break
		}
		// Two rounds in a row with no write in between read a still
		// system: what disagrees will go on disagreeing.
		if r.Events == events {
			if still++; still == 2 {
				break
			}
		} else {
			still = 0
		}
	}
	if sus != nil {
		sus.report(&r)
	}

	// The closing read: every spend read so far was decided against credits
	// durable before it was written, so all of them are in the log by now.
	f.closing = true
	if err := f.read(ctx, src, &r); err != nil {
		return Report{}, err
	}
	if err := f.confirmDuplicates(ctx, src, &r); err != nil {
		return Report{}, err
	}
	checkSpends(f, &r)
	return r, nil
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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
		if t := f.tail; t != nil {
			t.grants[sk]++
			t.credits[e.Player] += e.Reward
			t.points[scoreKey{e.Hunt, e.Player}] += e.Points
		}
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
		if t := f.tail; t != nil {
			t.spent[e.Player] += e.Amount
		}
		if e.Balance < 0 {
			r.violate(I4, "player %s: spend %s left balance %d < 0", e.Player, e.Epoch, e.Balance)
		}
		if f.closing {
			// Its credits may be in partitions the closing read had passed.
			w.late += e.Amount
			return
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

// applyBase folds one event of a truncated log's base: a grant (I1, I2,
// credits, points) or a player's spends before the log's start. They have
// no seq and no idempotency key.
func (f *fold) applyBase(r *Report, e *hunt.Event) {
	w := f.wallets[e.Player]
	if w == nil {
		w = &wallet{}
		f.wallets[e.Player] = w
	}
	switch {
	case e.Kind == hunt.KindClaimCompleted && e.Outcome == hunt.Granted:
		r.Grants++
		r.BaseGrants++
		f.granted[spotKey{e.Hunt, e.Hotspot}]++
		f.seen(f.holders, f.grantHash(e))
		w.credits += e.Reward
		f.points[scoreKey{e.Hunt, e.Player}] += e.Points
	case e.Kind == hunt.KindSpendCompleted && e.Outcome == hunt.Spent:
		w.spent += e.Amount
		if e.Balance < 0 {
			r.violate(I4, "player %s: the log's base leaves balance %d < 0", e.Player, e.Balance)
		}
		if b := e.Balance + w.spent; b > w.claimed {
			w.claimed, w.claimedAt = b, e.Epoch
		}
	default:
		r.violate(I7, "the log's base holds an event of kind %d, outcome %s", e.Kind, e.Outcome)
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
	var window time.Duration
	if w, ok := src.(windowed); ok {
		window = w.IdempotencyWindow()
	}
	type use struct {
		epoch hunt.Epoch
		at    time.Time
	}
	// I2 repeats are reported as they are read; I3's uses are collected and
	// checked in time order, since a key may be decided again once its
	// previous decision is a window old, and the log is read partition by
	// partition, not in time order.
	firstGrant := map[dupKey]hunt.Epoch{}
	keyUses := map[dupKey][]use{}
	var keyOrder []dupKey
	if b, ok := src.(based); ok { // a truncated log's grants before its start
		_, _, err := b.LogBase(ctx, func(e *hunt.Event) error {
			if e.Kind == hunt.KindClaimCompleted && e.Outcome == hunt.Granted {
				if _, ok := f.suspects[f.grantHash(e)]; ok {
					firstGrant[dupKey{I2, string(e.Player), string(e.Hunt), string(e.Hotspot)}] = e.Epoch
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("audit: re-read the log's base for duplicates: %w", err)
		}
	}
	err := src.Events(ctx, nil, func(e *hunt.Event) error {
		if e.Epoch.Seq > f.lastSeq[e.Epoch.Partition] {
			return nil // written after the fold's reads: not folded
		}
		if _, ok := f.suspects[f.idemHash(e)]; ok {
			k := dupKey{I3, string(e.Player), e.Key, ""}
			if _, seen := keyUses[k]; !seen {
				keyOrder = append(keyOrder, k)
			}
			keyUses[k] = append(keyUses[k], use{e.Epoch, e.At})
		}
		if e.Kind == hunt.KindClaimCompleted && e.Outcome == hunt.Granted {
			if _, ok := f.suspects[f.grantHash(e)]; ok {
				k := dupKey{I2, string(e.Player), string(e.Hunt), string(e.Hotspot)}
				if at, dup := firstGrant[k]; dup {
					r.violate(I2, "player %s granted hotspot %s/%s twice: %s and %s", e.Player, e.Hunt, e.Hotspot, at, e.Epoch)
				} else {
					firstGrant[k] = e.Epoch
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("audit: re-read events for duplicates: %w", err)
	}
	for _, k := range keyOrder {
		uses := keyUses[k]
		slices.SortStableFunc(uses, func(a, b use) int { return a.at.Compare(b.at) })
		for i := 1; i < len(uses); i++ {
			if window > 0 && uses[i].at.Sub(uses[i-1].at) >= window {
				continue // past the window the key was a new request
			}
			r.violate(I3, "player %s key %q decided twice: %s and %s", k.a, k.b, uses[i-1].epoch, uses[i].epoch)
		}
	}
	return nil
}

// waitScores waits, when scores can, until the projection has applied
// everything the fold read. The projection is fed after the engine publishes
// an event, so the engine's state then shows at least the fold.
func waitScores(ctx context.Context, scores Scores, f *fold) error {
	w, ok := scores.(waiter)
	if !ok {
		return nil
	}
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
	return nil
}

// pending holds the state reads that disagreed with the fold they were read
// after, with what was read; after the next read of the log, those that the
// log's tail does not explain, with the violation they would be.
type pending struct {
	spots   map[spotKey]spotRead
	wallets map[hunt.PlayerID]walletRead
	scores  map[scoreKey]scoreRead
}

type spotRead struct {
	tickets, left int64
	detail        string
}

type walletRead struct {
	balance int64
	detail  string
}

type scoreRead struct {
	score  int64
	ranked bool
	detail string
}

func newPending() *pending {
	return &pending{spots: map[spotKey]spotRead{}, wallets: map[hunt.PlayerID]walletRead{}, scores: map[scoreKey]scoreRead{}}
}

func (p *pending) empty() bool {
	return len(p.spots) == 0 && len(p.wallets) == 0 && len(p.scores) == 0
}

// settle checks every read against the fold before and after t (f has
// folded t) and returns those outside it, each with its violation.
func (p *pending) settle(f *fold, t *tail) *pending {
	out := newPending()
	for sk, v := range p.spots {
		g2 := f.granted[sk]
		g1 := g2 - t.grants[sk]
		if v.left >= v.tickets-g2 && v.left <= v.tickets-g1 {
			continue
		}
		if g1 == g2 {
			v.detail = fmt.Sprintf("hotspot %s/%s tickets_left %d, fold says %d (tickets %d − granted %d)",
				sk.hunt, sk.hotspot, v.left, v.tickets-g1, v.tickets, g1)
		} else {
			v.detail = fmt.Sprintf("hotspot %s/%s tickets_left %d, fold says %d to %d while it was read (tickets %d − granted %d to %d)",
				sk.hunt, sk.hotspot, v.left, v.tickets-g2, v.tickets-g1, v.tickets, g1, g2)
		}
		out.spots[sk] = v
	}
	for pl, v := range p.wallets {
		w := f.wallets[pl]
		credits, spent := w.credits-t.credits[pl], w.spent-t.spent[pl]
		b1 := credits - spent
		lo, hi := b1-t.spent[pl], b1+t.credits[pl]
		if v.balance >= lo && v.balance <= hi {
			continue
		}
		if lo == hi {
			v.detail = fmt.Sprintf("player %s balance %d, fold says %d (credits %d − spent %d)", pl, v.balance, b1, credits, spent)
		} else {
			v.detail = fmt.Sprintf("player %s balance %d, fold says %d to %d while it was read (credits %d to %d − spent %d to %d)",
				pl, v.balance, lo, hi, credits, w.credits, spent, w.spent)
		}
		out.wallets[pl] = v
	}
	for k, v := range p.scores {
		p2 := f.points[k]
		p1 := p2 - t.points[k]
		switch {
		case v.ranked && v.score >= p1 && v.score <= p2, !v.ranked && p1 == 0:
			continue
		case !v.ranked && p1 == p2:
			v.detail = fmt.Sprintf("hunt %s player %s unranked, fold says score %d", k.hunt, k.player, p1)
		case !v.ranked:
			v.detail = fmt.Sprintf("hunt %s player %s unranked, fold says score %d to %d while it was read", k.hunt, k.player, p1, p2)
		case p1 == p2:
			v.detail = fmt.Sprintf("hunt %s player %s score %d, fold says %d", k.hunt, k.player, v.score, p1)
		default:
			v.detail = fmt.Sprintf("hunt %s player %s score %d, fold says %d to %d while it was read", k.hunt, k.player, v.score, p1, p2)
		}
		out.scores[k] = v
	}
	return out
}

// report adds the violations of p, in a stable order: hotspots, wallets, scores.
func (p *pending) report(r *Report) {
	spots := slices.SortedFunc(maps.Keys(p.spots), compareSpots)
	for _, sk := range spots {
		r.violate(I7, "%s", p.spots[sk].detail)
	}
	for _, pl := range slices.Sorted(maps.Keys(p.wallets)) {
		r.violate(I4, "%s", p.wallets[pl].detail)
	}
	for _, k := range slices.SortedFunc(maps.Keys(p.scores), compareScores) {
		r.violate(I5, "%s", p.scores[k].detail)
	}
}

func compareSpots(a, b spotKey) int {
	if c := strings.Compare(string(a.hunt), string(b.hunt)); c != 0 {
		return c
	}
	return strings.Compare(string(a.hotspot), string(b.hotspot))
}

func compareScores(a, b scoreKey) int {
	if c := strings.Compare(string(a.hunt), string(b.hunt)); c != 0 {
		return c
	}
	return strings.Compare(string(a.player), string(b.player))
}

// checkHotspots reads the hotspots (all of them when first, else those in
// sus) and notes in p those whose tickets_left differs from the fold (I7).
// When first it also checks each hotspot's grants against its tickets (I1)
// and that every hotspot the fold granted is listed (I7).
func checkHotspots(ctx context.Context, src Source, f *fold, r *Report, first bool, sus *pending, p *pending) error {
	hunts, err := src.Hunts(ctx)
	if err != nil {
		return fmt.Errorf("audit: list hunts: %w", err)
	}
	var seen map[spotKey]bool
	var want map[hunt.HuntID]bool
	if first {
		seen = make(map[spotKey]bool, len(f.granted))
	} else {
		want = map[hunt.HuntID]bool{}
		for sk := range sus.spots {
			want[sk.hunt] = true
		}
	}
	for _, h := range hunts {
		if !first && !want[h.ID] {
			continue
		}
		err := src.Hotspots(ctx, h.ID, func(v hunt.HotspotView) error {
			sk := spotKey{h.ID, v.ID}
			g := f.granted[sk]
			if first {
				r.Hotspots++
				seen[sk] = true
				// Tickets never drop below the grants decided before the read,
				// and every grant folded so far was.
				if g > v.Tickets {
					r.violate(I1, "hotspot %s/%s granted %d > tickets %d", h.ID, v.ID, g, v.Tickets)
				}
			} else if _, ok := sus.spots[sk]; !ok {
				return nil
			}
			if v.Tickets-g != v.TicketsLeft {
				p.spots[sk] = spotRead{tickets: v.Tickets, left: v.TicketsLeft}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("audit: list hotspots of %s: %w", h.ID, err)
		}
	}
	if !first {
		return nil
	}
	// Grants of hotspots the engine does not know: the log and the state disagree.
	var missing []spotKey
	for sk := range f.granted {
		if !seen[sk] {
			missing = append(missing, sk)
		}
	}
	slices.SortFunc(missing, compareSpots)
	for _, sk := range missing {
		r.violate(I7, "log grants %d ticket(s) of hotspot %s/%s that the engine does not list", f.granted[sk], sk.hunt, sk.hotspot)
	}
	return nil
}

// checkWallets reads the wallets (of every player folded when first, else
// those in sus) and notes in p those whose balance differs from the fold (I4).
func checkWallets(ctx context.Context, src Source, f *fold, first bool, sus *pending, p *pending) error {
	var players []hunt.PlayerID
	if first {
		players = slices.Sorted(maps.Keys(f.wallets))
	} else {
		players = slices.Sorted(maps.Keys(sus.wallets))
	}
	for _, pl := range players {
		w := f.wallets[pl]
		got, err := src.Wallet(ctx, pl)
		if err != nil {
			return fmt.Errorf("audit: wallet of %s: %w", pl, err)
		}
		if got.Balance != w.credits-w.spent {
			p.wallets[pl] = walletRead{balance: got.Balance}
		}
	}
	return nil
}

// checkSpends checks the wallets against the log alone (I4): nobody spent
// more than they were credited, and no spend's recorded balance needs more
// credits than the log has.
func checkSpends(f *fold, r *Report) {
	for _, pl := range slices.Sorted(maps.Keys(f.wallets)) {
		w := f.wallets[pl]
		if spent := w.spent - w.late; spent > w.credits {
			r.violate(I4, "player %s spent %d > credited %d", pl, spent, w.credits)
		}
		if w.claimed > w.credits {
			r.violate(I4, "player %s: spend %s implies credits ≥ %d (balance after + spent so far), the log credits %d",
				pl, w.claimedAt, w.claimed, w.credits)
		}
	}
}

// checkScores reads each player's global score per hunt (of every score
// folded when first, else those in sus) and notes in p those that differ
// from the fold (I5).
func checkScores(ctx context.Context, scores Scores, f *fold, first bool, sus *pending, p *pending) error {
	var keys []scoreKey
	if first {
		keys = slices.SortedFunc(maps.Keys(f.points), compareScores)
	} else {
		keys = slices.SortedFunc(maps.Keys(sus.scores), compareScores)
	}
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		want := f.points[k]
		_, got, ok := scores.Score(k.hunt, "", k.player)
		if (!ok && want != 0) || (ok && got != want) {
			p.scores[k] = scoreRead{score: got, ranked: ok}
		}
	}
	return nil
}
