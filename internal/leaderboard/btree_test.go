package leaderboard

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/cairnhq/cairn/internal/hunt"
)

// checkTree verifies every structural invariant of t: the order of the
// entries along the leaf list, the leaves' back links, that the in-order
// leaves of the nodes are that list, every count, every separator, the
// leaves' copies of their entries' keys, and the length.
func checkTree(t interface{ Fatalf(string, ...any) }, tr *tree) {
	var leaves []*leaf
	var walk func(nd *inner, lv int) int
	walk = func(nd *inner, lv int) int {
		if nd.n < 1 || nd.n > treeFanout {
			t.Fatalf("inner node on level %d with %d children", lv, nd.n)
		}
		total := 0
		for i := range nd.n {
			var c int
			var lo *entry // the first entry under child i
			if lv == 0 {
				lf := nd.leaves[i]
				if nd.kids[i] != nil || lf == nil {
					t.Fatalf("level 0 child %d: kids %v, leaf %v", i, nd.kids[i], lf)
				}
				leaves = append(leaves, lf)
				c = lf.n
				if lf.n > 0 {
					lo = lf.ent[0]
				}
			} else {
				if nd.leaves[i] != nil || nd.kids[i] == nil {
					t.Fatalf("level %d child %d: leaf %v, kids %v", lv, i, nd.leaves[i], nd.kids[i])
				}
				from := len(leaves)
				c = walk(nd.kids[i], lv-1)
				for _, lf := range leaves[from:] {
					if lf.n > 0 {
						lo = lf.ent[0]
						break
					}
				}
			}
			if nd.count[i] != c {
				t.Fatalf("level %d child %d: count %d; holds %d", lv, i, nd.count[i], c)
			}
			if i > 0 && lo != nil && before(lo.score, lo.tie, lo.player, nd.score[i], nd.tie[i], nd.player[i]) {
				t.Fatalf("level %d child %d: first entry (%s, %d) ahead of its separator (%s, %d)", lv, i, lo.player, lo.score, nd.player[i], nd.score[i])
			}
			total += c
		}
		return total
	}
	if n := walk(tr.root, tr.height-1); n != tr.length {
		t.Fatalf("length = %d; the root counts %d", tr.length, n)
	}
	if tr.first != leaves[0] {
		t.Fatalf("first leaf is not the leftmost")
	}
	var prev *entry
	i := 0
	for k, lf := range leaves {
		var want *leaf
		if k+1 < len(leaves) {
			want = leaves[k+1]
		}
		if lf.next != want || (k > 0 && lf.prev != leaves[k-1]) || (k == 0 && lf.prev != nil) {
			t.Fatalf("leaf %d: links differ from the in-order leaves", k)
		}
		if lf.n == 0 && len(leaves) > 1 {
			t.Fatalf("leaf %d is empty in a tree of %d leaves", k, len(leaves))
		}
		for j := range lf.n {
			x := lf.ent[j]
			i++
			if lf.score[j] != x.score || lf.tie[j] != x.tie || x.tie != tieKey(x.player) {
				t.Fatalf("rank %d (%s): leaf key (%d, %x), entry (%d, %x)", i, x.player, lf.score[j], lf.tie[j], x.score, x.tie)
			}
			if prev != nil && !before(prev.score, prev.tie, prev.player, x.score, x.tie, x.player) {
				t.Fatalf("rank %d (%s, %d) not before rank %d (%s, %d)", i-1, prev.player, prev.score, i, x.player, x.score)
			}
			prev = x
		}
		for j := lf.n; j < treeFanout; j++ {
			if lf.ent[j] != nil {
				t.Fatalf("leaf %d keeps a pointer past its end", k)
			}
		}
	}
	if i != tr.length {
		t.Fatalf("length = %d; the leaves hold %d", tr.length, i)
	}
	// Separators also bound the child before them: the last entry under
	// child i-1 ranks ahead of separator i. Checked through the ranks: a
	// descent by every entry's key finds that entry.
	for _, lf := range leaves {
		for j := range lf.n {
			if r := tr.rank(lf.ent[j]); r < 1 {
				t.Fatalf("rank(%s) = %d", lf.ent[j].player, r)
			}
		}
	}
}

// sortedModel is the obvious implementation: a slice sorted by the board order.
func sortedModel(scores map[hunt.PlayerID]int64) []Entry {
	out := make([]Entry, 0, len(scores))
	for p, s := range scores {
		out = append(out, Entry{Player: p, Score: s})
	}
	slices.SortFunc(out, func(a, b Entry) int {
		switch {
		case before(a.Score, tieKey(a.Player), a.Player, b.Score, tieKey(b.Player), b.Player):
			return -1
		case before(b.Score, tieKey(b.Player), b.Player, a.Score, tieKey(a.Player), a.Player):
			return 1
		}
		return 0
	})
	for i := range out {
		out[i].Rank = i + 1
	}
	return out
}

func TestTreeMatchesSortedModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		b := newBoard()
		scores := map[hunt.PlayerID]int64{}
		nPlayers := rapid.IntRange(1, 60).Draw(t, "players")
		player := rapid.Custom(func(t *rapid.T) hunt.PlayerID {
			return hunt.PlayerID(fmt.Sprintf("p%03d", rapid.IntRange(0, nPlayers-1).Draw(t, "i")))
		})
		t.Repeat(map[string]func(*rapid.T){
			"add": func(t *rapid.T) {
				p := player.Draw(t, "player")
				// Small deltas of both signs: many ties and moves both ways.
				d := rapid.Int64Range(-4, 6).Draw(t, "points")
				b.add(p, d)
				scores[p] += d
			},
			"get": func(t *rapid.T) {
				p := player.Draw(t, "player")
				model := sortedModel(scores)
				r, s, ok := b.get(p)
				i := slices.IndexFunc(model, func(e Entry) bool { return e.Player == p })
				if ok != (i >= 0) {
					t.Fatalf("get(%s) ok = %v; want %v", p, ok, i >= 0)
				}
				if ok && (r != model[i].Rank || s != model[i].Score) {
					t.Fatalf("get(%s) = (%d, %d); want (%d, %d)", p, r, s, model[i].Rank, model[i].Score)
				}
			},
			"range": func(t *rapid.T) {
				model := sortedModel(scores)
				from := rapid.IntRange(0, len(model)+2).Draw(t, "from")
				count := rapid.IntRange(0, 10).Draw(t, "count")
				got := b.appendRange(nil, from, count)
				var want []Entry
				if from >= 1 && from <= len(model) {
					want = model[from-1 : min(len(model), from-1+count)]
				}
				if !slices.Equal(got, want) {
					t.Fatalf("appendRange(%d, %d) = %v; want %v", from, count, got, want)
				}
			},
			"": func(t *rapid.T) {
				checkTree(t, &b.tree)
				if b.len() != len(scores) {
					t.Fatalf("len() = %d; want %d", b.len(), len(scores))
				}
			},
		})
		if got, want := b.appendRange(nil, 1, b.len()), sortedModel(scores); !slices.Equal(got, want) {
			t.Fatalf("whole board = %v; want %v", got, want)
		}
	})
}

// TestTreeLargeRandom complements the rapid test with a board tall enough
// to split inner nodes, and deltas of both signs that empty and merge leaves.
func TestTreeLargeRandom(t *testing.T) {
	b := newBoard()
	scores := map[hunt.PlayerID]int64{}
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 30_000 {
		p := hunt.PlayerID(fmt.Sprintf("p%05d", r.IntN(5000)))
		d := r.Int64N(20) - 5
		b.add(p, d)
		scores[p] += d
		if i%10_000 == 9_999 {
			checkTree(t, &b.tree)
		}
	}
	if b.tree.height < 2 {
		t.Fatalf("tree height = %d after %d players; want >= 2", b.tree.height, b.len())
	}
	want := sortedModel(scores)
	if got := b.appendRange(nil, 1, b.len()); !slices.Equal(got, want) {
		t.Fatalf("whole board differs from the sorted model (%d vs %d entries)", len(got), len(want))
	}
	for _, e := range want[:200] {
		if r, s, ok := b.get(e.Player); !ok || r != e.Rank || s != e.Score {
			t.Fatalf("get(%s) = (%d, %d, %v); want (%d, %d, true)", e.Player, r, s, ok, e.Rank, e.Score)
		}
	}
}

// TestTreeDrain moves whole ranges of a large board past everyone else, the
// top down and the bottom up, so leaves and then inner nodes empty out
// (merges, removals, the first leaf going), and reads pages starting at
// ranks all over the board.
func TestTreeDrain(t *testing.T) {
	for _, n := range []int{600, 3000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) { drain(t, n) })
	}
}

func drain(t *testing.T, n int) {
	b := newBoard()
	scores := map[hunt.PlayerID]int64{}
	for i := range n {
		p := hunt.PlayerID(fmt.Sprintf("p%05d", i))
		b.add(p, int64(i))
		scores[p] = int64(i)
	}
	check := func() {
		t.Helper()
		checkTree(t, &b.tree)
		want := sortedModel(scores)
		for _, from := range []int{1, 2, 31, 32, 33, 500, len(want) / 2, len(want) - 20, len(want)} {
			if got, w := b.appendRange(nil, from, 40), want[from-1:min(len(want), from+39)]; !slices.Equal(got, w) {
				t.Fatalf("appendRange(%d, 40) = %v; want %v", from, got, w)
			}
		}
	}
	low, high := int64(-1), int64(n)
	for round := range 6 {
		for range n * 5 / 6 {
			var x Entry
			if round%2 == 0 {
				x = b.appendRange(nil, 1, 1)[0] // the top goes to the bottom
				low--
				b.add(x.Player, low-x.Score)
				scores[x.Player] = low
			} else {
				x = b.appendRange(nil, b.len(), 1)[0] // the bottom goes to the top
				high++
				b.add(x.Player, high-x.Score)
				scores[x.Player] = high
			}
		}
		check()
	}
}

// deleteEntry removes x from t the way setScore does before it re-inserts
// (boards never shrink, so only tests delete).
func (t *tree) deleteEntry(x *entry) {
	var p treePath
	lf := t.descend(x.score, x.tie, x.player, -1, &p)
	pos := lf.search(x.score, x.tie, x.player)
	if pos >= lf.n || lf.ent[pos] != x {
		panic("deleteEntry: not found")
	}
	lf.cut(pos)
	t.length--
	t.rebalance(&p, lf)
}

// TestTreeShrinkAndGrow empties a tall tree in random order and fills it
// again, so the root gives way to its only child down to a single leaf.
func TestTreeShrinkAndGrow(t *testing.T) {
	var tr tree
	tr.init()
	r := rand.New(rand.NewPCG(8, 9))
	xs := make([]*entry, 20_000)
	for i := range xs {
		p := hunt.PlayerID(fmt.Sprintf("p%05d", i))
		xs[i] = &entry{player: p, tie: tieKey(p), score: r.Int64N(300)}
		tr.insert(xs[i])
	}
	checkTree(t, &tr)
	if tr.height < 3 {
		t.Fatalf("height %d after %d inserts; want >= 3", tr.height, len(xs))
	}
	for round := range 2 {
		r.Shuffle(len(xs), func(i, j int) { xs[i], xs[j] = xs[j], xs[i] })
		for i, x := range xs {
			tr.deleteEntry(x)
			if i%1000 == 0 || len(xs)-i < 40 {
				checkTree(t, &tr)
			}
		}
		if tr.length != 0 || tr.height != 1 || tr.root.n != 1 || tr.first != tr.root.leaves[0] {
			t.Fatalf("round %d, emptied: length %d, height %d, root children %d", round, tr.length, tr.height, tr.root.n)
		}
		for _, x := range xs {
			x.score = r.Int64N(300)
			tr.insert(x)
		}
		checkTree(t, &tr)
	}
}

func TestTreeTiesOrderByPlayerID(t *testing.T) {
	b := newBoard()
	for _, p := range []hunt.PlayerID{"carol", "alice", "dave", "bob"} {
		b.add(p, 10)
	}
	b.add("erin", 11)
	b.add("aaron", 9)
	want := []Entry{{1, "erin", 11}, {2, "alice", 10}, {3, "bob", 10}, {4, "carol", 10}, {5, "dave", 10}, {6, "aaron", 9}}
	if got := b.appendRange(nil, 1, 10); !slices.Equal(got, want) {
		t.Fatalf("appendRange(1, 10) = %v; want %v", got, want)
	}
	checkTree(t, &b.tree)
}

func TestTreeUpdateDoesNotAllocate(t *testing.T) {
	b := newBoard()
	for i := range 1000 {
		b.add(hunt.PlayerID(fmt.Sprintf("p%04d", i)), int64(i%50))
	}
	players := make([]hunt.PlayerID, 1000)
	for i := range players {
		players[i] = hunt.PlayerID(fmt.Sprintf("p%04d", i))
	}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		b.add(players[i%len(players)], 3)
		i += 7
	})
	if allocs != 0 {
		t.Fatalf("add of a ranked player: %v allocs; want 0", allocs)
	}
	checkTree(t, &b.tree)
}

const benchPlayers = 100_000

func benchBoard(b *testing.B) (*board, []hunt.PlayerID) {
	b.Helper()
	bd := newBoard()
	players := make([]hunt.PlayerID, benchPlayers)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range players {
		players[i] = hunt.PlayerID(fmt.Sprintf("player-%06d", i))
		bd.add(players[i], r.Int64N(10_000))
	}
	return bd, players
}

// BenchmarkUpdate: a grant's score change on a 100k-player board (delete + insert of the same entry, or in place).
func BenchmarkUpdate(b *testing.B) {
	bd, players := benchBoard(b)
	r := rand.New(rand.NewPCG(3, 4))
	idx := make([]int, 4096)
	for i := range idx {
		idx[i] = r.IntN(len(players))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		bd.add(players[idx[i%len(idx)]], 1+int64(i%100))
	}
}

// BenchmarkRank: a player's rank and score on a 100k-player board.
func BenchmarkRank(b *testing.B) {
	bd, players := benchBoard(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, _, ok := bd.get(players[(i*7919)%len(players)]); !ok {
			b.Fatal("player not ranked")
		}
	}
}

// BenchmarkInsert: a new player entering a board.
func BenchmarkInsert(b *testing.B) {
	bd := newBoard()
	players := make([]hunt.PlayerID, 1<<18)
	for i := range players {
		players[i] = hunt.PlayerID(fmt.Sprintf("player-%07d", i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		if n == len(players) {
			b.StopTimer()
			bd, n = newBoard(), 0
			b.StartTimer()
		}
		bd.add(players[n], int64(n%1000))
		n++
	}
}

// BenchmarkAround: a 21-entry window around a player on a 100k-player board.
func BenchmarkAround(b *testing.B) {
	bd, players := benchBoard(b)
	buf := make([]Entry, 0, 21)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		r, _, _ := bd.get(players[(i*7919)%len(players)])
		buf = bd.appendRange(buf[:0], max(1, r-10), 21)
	}
}

// TestTieKeyOrder: comparing tie keys first never contradicts comparing ids.
func TestTieKeyOrder(t *testing.T) {
	ids := []hunt.PlayerID{"a", "ab", "abc", "abcdefgh", "abcdefghi", "abcdefgz", "b", "p000123", "p000124", "Z", "0", "a-b", "a.b", "a:b", "a_b"}
	for _, a := range ids {
		for _, b := range ids {
			got := before(0, tieKey(a), a, 0, tieKey(b), b)
			if want := a < b; got != want {
				t.Errorf("before(tie %q, %q) = %v; want %v", a, b, got, want)
			}
		}
	}
}
